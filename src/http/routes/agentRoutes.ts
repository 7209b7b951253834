import type { FastifyInstance } from "fastify";
import { agentCard, agentEndpoint } from "../../contract/requests.js";
import {
  createAgentBody,
  forceQuery,
  listAgentsQuery,
  patchAgentBody,
  updateAgentBody,
} from "../../contract/requests.js";
import type { AgentService } from "../../domain/agentService.js";
import { AppError } from "../../domain/errors.js";
import type { JsonObject } from "../../domain/model.js";
import { projectOf } from "../auth.js";
import { isMultipart, type CodeUploadHandlers } from "./codeRoutes.js";
import { checkPreviewFeatures, type FeatureMode } from "../features.js";
import { presentAgent, presentDeletedAgent, presentPage } from "../presenters.js";
import { parse } from "../../contract/validate.js";

type NameParams = { project: string; name: string };

/** Agents (contract §3.1). Routes validate, make one service call, and present. */
export function agentRoutes(
  app: FastifyInstance,
  agents: AgentService,
  uploads: CodeUploadHandlers,
  features: FeatureMode,
) {
  app.get("/agents", async (request) => {
    const { limit, order, after, before, kind, include } = parse(listAgentsQuery, request.query);
    const query = { limit, order, after, before, kind };
    if (include === "live_session_count")
      return presentPage(
        await agents.listWithLiveSessions(projectOf(request), query),
        ({ agent, liveSessions }) => ({ ...presentAgent(agent), live_session_count: liveSessions }),
      );
    return presentPage(await agents.list(projectOf(request), query), presentAgent);
  });

  app.post("/agents", async (request) => {
    if (isMultipart(request)) return uploads.createAgent(request);
    const body = parse(createAgentBody, request.body);
    checkPreviewFeatures(features, request, body);
    return presentAgent(await agents.create(projectOf(request), body));
  });

  app.get<{ Params: NameParams }>("/agents/:name", async (request) =>
    presentAgent(await agents.get(projectOf(request), request.params.name)),
  );

  // POST /agents/{name} is an update; /agents/{name}:enable and :disable are verbs on it.
  app.post<{ Params: NameParams }>("/agents/:name", async (request, reply) => {
    const { name, verb } = splitVerb(request.params.name);
    if (verb === "enable" || verb === "disable") {
      await agents.setState(projectOf(request), name, verb === "enable" ? "enabled" : "disabled");
      return reply.code(204).send();
    }
    if (verb !== undefined) throw new AppError("not_found", `Unknown operation ':${verb}'.`);
    if (isMultipart(request)) return uploads.updateAgent(request, name);
    const body = parse(updateAgentBody, request.body);
    checkPreviewFeatures(features, request, body);
    return presentAgent(await agents.update(projectOf(request), name, body));
  });

  app.patch<{ Params: NameParams }>("/agents/:name", async (request) => {
    const body = parse(patchAgentBody, request.body);
    return presentAgent(await agents.patch(projectOf(request), request.params.name, body));
  });

  app.delete<{ Params: NameParams }>("/agents/:name", async (request) => {
    const { force } = parse(forceQuery, request.query);
    await agents.delete(projectOf(request), request.params.name, force);
    return presentDeletedAgent(request.params.name);
  });
}

export function splitVerb(segment: string): { name: string; verb?: string } {
  const colon = segment.lastIndexOf(":");
  return colon < 0
    ? { name: segment }
    : { name: segment.slice(0, colon), verb: segment.slice(colon + 1) };
}

/** Checks a merge-patched endpoint configuration and card against the contract. */
export function validateEndpoint(patched: { agent_endpoint: unknown; agent_card: unknown }) {
  return {
    agent_endpoint:
      patched.agent_endpoint == null
        ? null
        : (parse(agentEndpoint, patched.agent_endpoint, "agent_endpoint.") as JsonObject),
    agent_card:
      patched.agent_card == null
        ? null
        : (parse(agentCard, patched.agent_card, "agent_card.") as JsonObject),
  };
}
