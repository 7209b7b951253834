import type { FastifyRequest } from "fastify";
import { AppError } from "../domain/errors.js";
import { parseFeatureHeader, requiredPreviewFeatures } from "../domain/previewFeatures.js";

export type FeatureMode = "lenient" | "strict";

/** Strict mode: refuse a request that uses a preview feature it did not opt into. */
export function checkPreviewFeatures(
  mode: FeatureMode,
  request: FastifyRequest,
  uses: Parameters<typeof requiredPreviewFeatures>[0],
): void {
  if (mode === "lenient") return;
  const header = request.headers["foundry-features"];
  const sent = parseFeatureHeader(Array.isArray(header) ? header.join(",") : header);
  const missing = requiredPreviewFeatures(uses).filter((f) => !sent.has(f));
  if (missing.length > 0) {
    throw new AppError(
      "preview_feature_required",
      `This request uses a preview feature; send the header 'Foundry-Features: ${missing.join(",")}'.`,
      "Foundry-Features",
    );
  }
}
