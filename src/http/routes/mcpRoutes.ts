import type { FastifyInstance } from "fastify";
import type { AgentService } from "../../domain/agentService.js";
import { notFound } from "../../domain/errors.js";
import { clientHeadersOf } from "../../forwarder/sessionForwarder.js";
import type { AgentMcpServer } from "../../protocols/mcp/agentMcpServer.js";
import { projectOf } from "../auth.js";
import { protocolGate } from "./protocolGate.js";

const route = "/agents/:name/endpoint/protocols/mcp";

/**
 * An agent's MCP endpoint (Streamable HTTP), for agents that list `mcp`: the request, its
 * body parsed (and bounded) like every JSON body, goes to the agent's MCP server, whose
 * answer is sent as it is.
 */
export function mcpRoutes(app: FastifyInstance, agents: AgentService, mcp: AgentMcpServer) {
  const gate = protocolGate(agents, "mcp");
  app.all(route, { onRequest: gate.onRequest }, async (request, reply) => {
    const gone = new AbortController();
    reply.raw.once("close", () => gone.abort());
    const answer = await mcp.handle({
      caller: request.caller,
      project: projectOf(request),
      agent: gate.agentOf(request),
      request: {
        method: request.method,
        // The transport reads only the path and query: a constant origin, so no Host header
        // (which could be anything) is parsed as part of a URL.
        url: new URL(request.url, "https://agenthost.invalid").href,
        headers: request.headers,
        body: request.body,
      },
      clientHeaders: clientHeadersOf(request.headers),
      signal: gone.signal,
    });
    return reply.code(answer.status).headers(answer.headers).send(answer.body);
  });
  // Nothing lies below the MCP endpoint.
  app.all(`${route}/*`, { onRequest: gate.onRequest }, async (request) => {
    throw notFound(`Route '${request.method} ${request.url.split("?")[0]}'`);
  });
}
