import type { FastifyInstance, FastifyRequest } from "fastify";
import { agentName, createVersionBody, updateAgentBody } from "../../contract/requests.js";
import type { CodeService } from "../../domain/codeService.js";
import { projectOf } from "../auth.js";
import { readCodeUpload } from "../codeUpload.js";
import { checkPreviewFeatures, type FeatureMode } from "../features.js";
import { presentAgent, presentVersion } from "../presenters.js";
import { parse } from "../../contract/validate.js";
import { z } from "zod";

type NameParams = { project: string; name: string };

export const isMultipart = (request: FastifyRequest) =>
  (request.headers["content-type"] ?? "").toLowerCase().startsWith("multipart/form-data");

const declaredSha = (request: FastifyRequest) => {
  const v = request.headers["x-ms-code-zip-sha256"];
  return Array.isArray(v) ? v[0] : v;
};

/**
 * Code uploads (contract §3.2 create-from-code, §3.4, §5). They share their routes with the
 * JSON operations and are told apart by `content-type: multipart/form-data`; the JSON routes
 * hand multipart requests to these handlers.
 */
export function codeUploadHandlers(code: CodeService, features: FeatureMode) {
  async function upload<T>(
    request: FastifyRequest,
    make: (metadata: unknown, up: Parameters<CodeService["createVersion"]>[3]) => Promise<T>,
  ) {
    const { metadata, blob } = await readCodeUpload(request.raw, code);
    try {
      return await make(metadata, { blob, declaredSha256: declaredSha(request) });
    } finally {
      await code.release(blob);
    }
  }
  return {
    /** POST /agents/{name}/versions (multipart): createVersionFromCode. */
    createVersion: (request: FastifyRequest<{ Params: NameParams }>) =>
      upload(request, async (metadata, up) => {
        const name = parse(agentName, request.params.name, "agent_name");
        const spec = parse(createVersionBody, metadata, "metadata.");
        checkPreviewFeatures(features, request, spec);
        return presentVersion(await code.createVersion(projectOf(request), name, spec, up));
      }),
    /** POST /agents (multipart, name in x-ms-agent-name): create_agent_from_code. */
    createAgent: (request: FastifyRequest) =>
      upload(request, async (metadata, up) => {
        const name = parse(
          z.string({ error: "required" }).pipe(agentName),
          request.headers["x-ms-agent-name"],
          "x-ms-agent-name",
        );
        const spec = parse(updateAgentBody, metadata, "metadata.");
        checkPreviewFeatures(features, request, spec);
        return presentAgent(await code.createAgent(projectOf(request), { ...spec, name }, up));
      }),
    /** POST /agents/{name} (multipart): update_agent_from_code. */
    updateAgent: (request: FastifyRequest<{ Params: NameParams }>, name: string) =>
      upload(request, async (metadata, up) => {
        const spec = parse(updateAgentBody, metadata, "metadata.");
        checkPreviewFeatures(features, request, spec);
        return presentAgent(await code.updateAgent(projectOf(request), name, spec, up));
      }),
  };
}

export type CodeUploadHandlers = ReturnType<typeof codeUploadHandlers>;

/** GET /agents/{name}/code:download — the exact uploaded bytes. */
export function codeDownloadRoute(app: FastifyInstance, code: CodeService) {
  app.get<{ Params: NameParams; Querystring: { agent_version?: string } }>(
    "/agents/:name/code::download",
    async (request, reply) => {
      const { agent_version } = parse(
        z.object({ agent_version: z.string().min(1).optional() }),
        request.query,
      );
      const { version, size, stream } = await code.download(
        projectOf(request),
        request.params.name,
        agent_version,
      );
      return reply
        .type("application/zip")
        .header("content-length", size)
        .header("x-ms-agent-version", String(version.version))
        .header(
          "content-disposition",
          `attachment; filename="${version.agentName}-${version.version}.zip"`,
        )
        .send(stream);
    },
  );
}
