import type { FastifyInstance, FastifyRequest } from "fastify";
import type { AgentService } from "../../domain/agentService.js";
import { AppError, notFound } from "../../domain/errors.js";
import { projectOf } from "../auth.js";

/** The protocols of an agent endpoint's `protocol_configuration` (contract §4.4). */
const knownProtocols = new Set([
  "activity",
  "responses",
  "a2a",
  "mcp",
  "invocations",
  "invocations_ws",
]);

/** The protocol a path segment under `…/endpoint/protocols/` names (`openai` is `responses`). */
const protocolOf = (segment: string) => (segment === "openai" ? "responses" : segment);

/**
 * Gates an agent's protocol routes: the `openai` routes answer only when the agent's endpoint
 * lists `responses`; any other protocol path answers 404 `protocol_not_enabled` naming the
 * protocol, or 501 `protocol_not_supported` when the endpoint lists one agenthost does not serve.
 */
export function protocolRoutes(app: FastifyInstance, agents: AgentService) {
  const gate = async (request: FastifyRequest) => {
    const { name, protocol } = request.params as { name: string; protocol: string };
    const wanted = protocolOf(protocol);
    await agents.requireProtocol(projectOf(request), name, wanted);
    const route = `${request.method} ${request.url.split("?")[0]}`;
    if (wanted === "responses") throw notFound(`Route '${route}'`);
    if (knownProtocols.has(wanted))
      throw new AppError(
        "protocol_not_supported",
        `Agent '${name}' lists the '${wanted}' protocol, which agenthost does not serve.`,
        "protocol",
      );
    throw notFound(`Route '${route}'`);
  };
  // In onRequest: the answer does not depend on the body, which is never read.
  const never = () => Promise.reject(new Error("the protocol gate always answers"));
  app.all("/agents/:name/endpoint/protocols/:protocol", { onRequest: gate }, never);
  app.all("/agents/:name/endpoint/protocols/:protocol/*", { onRequest: gate }, never);
}

/** A hook for the `openai` routes of an agent: they answer only if its endpoint lists `responses`. */
export function requireResponsesProtocol(agents: AgentService) {
  return async (request: FastifyRequest) => {
    const { name } = request.params as { name: string };
    await agents.requireProtocol(projectOf(request), name, "responses");
  };
}
