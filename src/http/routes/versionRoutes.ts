import type { FastifyInstance } from "fastify";
import {
  agentName,
  createVersionBody,
  forceQuery,
  listVersionsQuery,
} from "../../contract/requests.js";
import type { AgentService } from "../../domain/agentService.js";
import { projectOf } from "../auth.js";
import { isMultipart, type CodeUploadHandlers } from "./codeRoutes.js";
import { checkPreviewFeatures, type FeatureMode } from "../features.js";
import { presentDeletedVersion, presentPage, presentVersion } from "../presenters.js";
import { parse } from "../../contract/validate.js";
import { lastEventId, streamLog } from "./sessionFileRoutes.js";

type NameParams = { project: string; name: string };
type VersionParams = NameParams & { version: string };

/** Versions (contract §3.2). */
export function versionRoutes(
  app: FastifyInstance,
  agents: AgentService,
  uploads: CodeUploadHandlers,
  features: FeatureMode,
  options: { keepAliveMs: number } = { keepAliveMs: 60_000 },
) {
  app.get<{ Params: NameParams }>("/agents/:name/versions", async (request) => {
    const q = parse(listVersionsQuery, request.query);
    checkPreviewFeatures(features, request, { includeDrafts: q.include_drafts });
    const page = await agents.listVersions(projectOf(request), request.params.name, {
      limit: q.limit,
      order: q.order,
      after: q.after,
      before: q.before,
      includeDrafts: q.include_drafts,
    });
    return presentPage(page, presentVersion);
  });

  app.post<{ Params: NameParams }>("/agents/:name/versions", async (request) => {
    if (isMultipart(request)) return uploads.createVersion(request);
    // This route creates the agent when it is missing, so the name must be a valid one.
    const name = parse(agentName, request.params.name, "agent_name");
    const body = parse(createVersionBody, request.body);
    checkPreviewFeatures(features, request, body);
    return presentVersion(await agents.createVersion(projectOf(request), name, body));
  });

  app.get<{ Params: VersionParams }>("/agents/:name/versions/:version", async (request) =>
    presentVersion(
      await agents.getVersion(projectOf(request), request.params.name, request.params.version),
    ),
  );

  // The build log of a code-based version (SSE, the frames of a session's console stream).
  app.get<{ Params: VersionParams }>(
    "/agents/:name/versions/:version/build::logstream",
    async (request, reply) => {
      const { name, version } = request.params;
      const build = await agents.buildLog(projectOf(request), name, version);
      streamLog(reply, build.log, lastEventId(request), options.keepAliveMs, {
        connected: "Connected to the version's build log",
        ended: build.ended,
        onClose: build.release,
      });
      return reply;
    },
  );

  app.delete<{ Params: VersionParams }>("/agents/:name/versions/:version", async (request) => {
    const { force } = parse(forceQuery, request.query);
    const { name, version } = request.params;
    await agents.deleteVersion(projectOf(request), name, version, force);
    return presentDeletedVersion(name, version);
  });
}
