import type { JsonObject } from "./model.js";

/**
 * The `Foundry-Features` opt-ins a request needs (contract §1.6). In strict mode a request
 * without them is refused, as Foundry does; by default they are not required.
 */
export function requiredPreviewFeatures(request: {
  definition?: JsonObject;
  draft?: boolean | null;
  includeDrafts?: boolean;
  digital_worker_type?: string | null;
}): string[] {
  const needed = new Set<string>();
  const d = request.definition;
  if (d?.kind === "workflow") needed.add("WorkflowAgents=V1Preview");
  if (d?.kind === "external") needed.add("ExternalAgents=V1Preview");
  if (d?.kind === "voice") needed.add("VoiceAgents=V1Preview");
  if (request.draft || request.includeDrafts) needed.add("DraftAgents=V1Preview");
  if (request.digital_worker_type) needed.add("DigitalWorker=V1Preview");
  if (d?.kind === "prompt") {
    const tools = Array.isArray(d.tools) ? (d.tools as { type?: unknown }[]) : [];
    if (d.harness !== undefined || tools.some((t) => t.type === "github_copilot_toolset_preview")) {
      needed.add("GitHubCopilot=V1Preview");
    }
    if (d.skills !== undefined) needed.add("Skills=V1Preview");
  }
  return [...needed];
}

/** Parses `Foundry-Features: A=V1Preview, B=V1Preview` into its values. */
export function parseFeatureHeader(header: string | undefined): Set<string> {
  return new Set(
    (header ?? "")
      .split(",")
      .map((v) => v.trim())
      .filter(Boolean),
  );
}
