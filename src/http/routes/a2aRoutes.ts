import { formatSSEErrorEvent, formatSSEEvent } from "@a2a-js/sdk";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { AgentService } from "../../domain/agentService.js";
import { AppError, notFound } from "../../domain/errors.js";
import type { Agent } from "../../domain/model.js";
import type { A2aCardSite, A2aService, RpcBody, RpcEvent } from "../../protocols/a2a/a2aService.js";
import { projectOf } from "../auth.js";
import { depthOf, maxJsonDepth } from "../jsonBody.js";
import { sendEvents } from "../sse.js";

type Params = { project: string; name: string };

/** A `Host` header this service can name itself by in the card's URLs. */
const hostPattern = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/**
 * An agent's A2A endpoint (`…/endpoint/protocols/a2a`): its card at
 * `/.well-known/agent-card.json` and JSON-RPC at the endpoint itself (answers and errors as
 * JSON-RPC; `message/stream` as server-sent events). Only when the agent's endpoint lists `a2a`.
 */
export function a2aRoutes(app: FastifyInstance, agents: AgentService, a2a: A2aService) {
  app.register(
    async (scope) => {
      // In onRequest: an agent that does not list a2a is refused before the body is read.
      // The agent found then is the one its handler uses.
      scope.addHook("onRequest", async (request) => {
        servedBy.set(
          request,
          await agents.requireProtocol(projectOf(request), (request.params as Params).name, "a2a"),
        );
      });
      // A body that is not JSON is the protocol's parse error, not the API's 400.
      const parseJson = scope.getDefaultJsonParser("error", "error");
      scope.removeContentTypeParser("application/json");
      scope.addContentTypeParser("application/json", { parseAs: "string" }, (request, text, done) =>
        parseJson(request, text as string, (err: Error | null, value?: unknown) => {
          if (err) return done(null, { malformed: `The body is not JSON: ${err.message}` });
          if (depthOf(value) > maxJsonDepth)
            return done(null, {
              malformed: `The body is nested deeper than ${maxJsonDepth} levels.`,
            });
          done(null, { json: value });
        }),
      );

      scope.get<{ Params: Params }>("/.well-known/agent-card.json", async (request, reply) => {
        const card = a2a.card(agentOf(request), siteOf(request));
        return reply.header("cache-control", "no-store").header("vary", "A2A-Version").send(card);
      });

      scope.post<{ Params: Params }>("/", async (request, reply) => {
        const body = (request.body ?? { malformed: "The body is empty." }) as RpcBody;
        const answer = await a2a.call(request.caller, agentOf(request), body, {
          a2aVersion: a2aVersionOf(request),
          requestId: request.id,
        });
        if (answer.kind === "json") return answer.body;
        return sendEvents(reply, framesOf(answer.events));
      });

      const noRoute = async (request: FastifyRequest) => {
        throw notFound(`Route '${request.method} ${request.url.split("?")[0]}'`);
      };
      scope.route({ method: ["GET", "PUT", "PATCH", "DELETE"], url: "/", handler: noRoute });
      scope.all("/*", noRoute);
    },
    { prefix: "/agents/:name/endpoint/protocols/a2a" },
  );
}

const servedBy = new WeakMap<FastifyRequest, Agent>();

function agentOf(request: FastifyRequest): Agent {
  const agent = servedBy.get(request);
  if (!agent) throw new Error("an A2A request without its agent");
  return agent;
}

function a2aVersionOf(request: FastifyRequest): string | undefined {
  const version = request.headers["a2a-version"];
  return typeof version === "string" ? version : undefined;
}

/** Where the card is served from, for its URLs: only the card needs the `Host` header. */
function siteOf(request: FastifyRequest): A2aCardSite {
  const host = request.headers.host ?? "";
  if (!hostPattern.test(host))
    throw new AppError("invalid_parameter", "The Host header does not name a host.", "host");
  return {
    origin: `${request.protocol}://${host}`,
    projectSegment: (request.params as Params).project,
    apiVersion: String((request.query as Record<string, unknown>)["api-version"]),
    a2aVersion: a2aVersionOf(request),
  };
}

/** A stream's JSON-RPC responses as server-sent events (an error as an `error` event). */
async function* framesOf(events: AsyncIterable<RpcEvent>): AsyncGenerator<string> {
  for await (const e of events)
    yield "event" in e ? formatSSEEvent(e.event) : formatSSEErrorEvent(e.error);
}
