import type { FastifyInstance, FastifyRequest } from "fastify";
import type { AgentService } from "../../domain/agentService.js";
import { notFound } from "../../domain/errors.js";
import { projectOf } from "../auth.js";
import { protocolGate } from "./protocolGate.js";

/** The protocol a path segment under `…/endpoint/protocols/` names (`openai` is `responses`). */
const protocolOf = (segment: string) => (segment === "openai" ? "responses" : segment);

/**
 * What no protocol's own route takes under `…/endpoint/protocols/`: 404 `protocol_not_enabled`
 * naming the protocol when the agent's endpoint does not list it, else 404 for the route.
 */
export function protocolRoutes(app: FastifyInstance, agents: AgentService) {
  const gate = async (request: FastifyRequest) => {
    const { name, protocol } = request.params as { name: string; protocol: string };
    await agents.requireProtocol(projectOf(request), name, protocolOf(protocol));
    throw notFound(`Route '${request.method} ${request.url.split("?")[0]}'`);
  };
  // In onRequest: the answer does not depend on the body, which is never read.
  const never = () => Promise.reject(new Error("the protocol gate always answers"));
  app.all("/agents/:name/endpoint/protocols/:protocol", { onRequest: gate }, never);
  app.all("/agents/:name/endpoint/protocols/:protocol/*", { onRequest: gate }, never);
}

/** A hook for the `openai` routes of an agent: they answer only if its endpoint lists `responses`. */
export const requireResponsesProtocol = (agents: AgentService) =>
  protocolGate(agents, "responses").onRequest;
