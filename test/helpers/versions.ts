import type { NewVersion } from "../../src/domain/model.js";

/** A stored-version fixture for the Store port: a prompt version of `model`. */
export const newVersion = (model: string, extra: Partial<NewVersion> = {}): NewVersion => ({
  definition: { kind: "prompt", model },
  metadata: {},
  description: "",
  draft: false,
  status: "active",
  statusReason: null,
  contentHash: null,
  blueprintReference: null,
  digitalWorkerType: null,
  fingerprint: model,
  createdAt: 1_760_000_000,
  ...extra,
});
