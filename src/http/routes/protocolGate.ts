import type { FastifyRequest } from "fastify";
import type { AgentService } from "../../domain/agentService.js";
import type { Agent } from "../../domain/model.js";
import { projectOf } from "../auth.js";

/**
 * An `onRequest` hook for a protocol's own routes: the agent must list `protocol` (404
 * `protocol_not_enabled` before the body is read); `agentOf` then gives the agent it found.
 */
export function protocolGate(agents: AgentService, protocol: string) {
  const found = new WeakMap<FastifyRequest, Agent>();
  return {
    onRequest: async (request: FastifyRequest) => {
      const { name } = request.params as { name: string };
      found.set(request, await agents.requireProtocol(projectOf(request), name, protocol));
    },
    agentOf: (request: FastifyRequest): Agent => found.get(request)!,
  };
}
