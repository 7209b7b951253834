import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { AgentService } from "../../domain/agentService.js";
import { AppError } from "../../domain/errors.js";
import { clientHeadersOf, type ForwardedAnswer } from "../../forwarder/sessionForwarder.js";
import type { InvocationService } from "../../protocols/invocations/invocationService.js";
import { projectOf } from "../auth.js";
import { upgradeOf, upgraded } from "../connections.js";
import { sendHosted } from "./responseRoutes.js";

type Params = { name: string; id: string };

/**
 * An agent endpoint's `invocations` and `invocations_ws` protocols (docs/api.md#invocations):
 * raw bytes both ways, never parsed or collected here; the WebSocket handshake answered once the
 * agent's own is done. Each answers only if the agent's endpoint lists its protocol.
 */
export function invocationRoutes(
  app: FastifyInstance,
  agents: AgentService,
  invocations: InvocationService,
) {
  app.register(
    async (scope) => {
      // The body is the agent's: whatever its type, it is piped on as it comes.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser("*", (_request, _payload, done) => done(null));

      const requires = (protocol: string) => async (request: FastifyRequest) => {
        const { name } = request.params as Params;
        await agents.requireProtocol(projectOf(request), name, protocol);
      };
      const invocationsOnly = { onRequest: requires("invocations") };

      scope.post<{ Params: Params }>("/invocations", invocationsOnly, async (request, reply) => {
        const length = request.headers["content-length"];
        const { invocationId, answer } = await invocations.invoke(
          request.caller,
          projectOf(request),
          request.params.name,
          {
            sessionId: sessionOf(request),
            body: request.raw,
            contentType: request.headers["content-type"],
            contentLength: length === undefined ? undefined : Number(length),
            query: passedQuery(request.url),
            clientHeaders: clientHeadersOf(request.headers),
            signal: callerGone(reply),
          },
        );
        return send(reply, answer, invocationId);
      });

      scope.get<{ Params: Params }>(
        "/invocations/docs/openapi.json",
        invocationsOnly,
        async (request, reply) => {
          const answer = await invocations.openapi(
            request.caller,
            projectOf(request),
            request.params.name,
            {
              sessionId: sessionOf(request),
              clientHeaders: clientHeadersOf(request.headers),
              signal: callerGone(reply),
            },
          );
          return send(reply, answer);
        },
      );

      const operate =
        (op: "get" | "cancel") =>
        async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
          const answer = await invocations.operate(
            request.caller,
            projectOf(request),
            request.params.name,
            request.params.id,
            {
              op,
              query: passedQuery(request.url),
              clientHeaders: clientHeadersOf(request.headers),
            },
            callerGone(reply),
          );
          return send(reply, answer, request.params.id);
        };
      scope.get<{ Params: Params }>("/invocations/:id", invocationsOnly, operate("get"));
      scope.post<{ Params: Params }>("/invocations/:id/cancel", invocationsOnly, operate("cancel"));

      // invocations_ws: the caller's handshake comes through the routing (auth, this gate) as
      // an ordinary GET; the connection is the service's once the agent has accepted its own.
      scope.addHook("preClose", (done) => {
        invocations.closeSockets();
        done();
      });

      scope.get<{ Params: Params }>(
        "/invocations_ws",
        { onRequest: requires("invocations_ws") },
        async (request, reply) => {
          const connection = upgradeOf(request.raw);
          const key = request.headers["sec-websocket-key"];
          if (
            !connection ||
            request.headers.upgrade?.toLowerCase() !== "websocket" ||
            typeof key !== "string" ||
            !/^[A-Za-z0-9+/]{22}==$/.test(key) ||
            request.headers["sec-websocket-version"] !== "13"
          )
            throw new AppError(
              "invalid_parameter",
              "This route is a WebSocket: open it with an `Upgrade: websocket` handshake (version 13).",
              "upgrade",
            );
          await invocations.accept(request.caller, projectOf(request), request.params.name, {
            sessionId: sessionOf(request),
            query: passedQuery(request.url),
            protocols: subprotocolsOf(request.headers["sec-websocket-protocol"]),
            clientHeaders: clientHeadersOf(request.headers),
            connection: { req: request.raw, socket: connection.socket, head: connection.head },
            take: () => {
              upgraded(request.raw);
              reply.hijack();
            },
          });
        },
      );
    },
    { prefix: "/agents/:name/endpoint/protocols" },
  );
}

/** The session the caller named (`agent_session_id` in the query, once), if any. */
function sessionOf(request: FastifyRequest): string | undefined {
  const { agent_session_id: id } = request.query as { agent_session_id?: unknown };
  if (id === undefined || typeof id === "string") return id;
  throw new AppError(
    "invalid_parameter",
    "agent_session_id may be given once.",
    "agent_session_id",
  );
}

/** An RFC 7230 token: what a WebSocket subprotocol's name is made of. */
const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The caller's `Sec-WebSocket-Protocol` offer: comma-separated tokens, none twice. */
function subprotocolsOf(offered: string | string[] | undefined): string[] {
  if (offered === undefined) return [];
  const list = (Array.isArray(offered) ? offered.join(",") : offered)
    .split(",")
    .map((p) => p.trim());
  if (list.length > 64 || list.some((p) => !token.test(p)) || new Set(list).size !== list.length)
    throw new AppError(
      "invalid_parameter",
      "Sec-WebSocket-Protocol must be a list of distinct subprotocol names (RFC 6455 §4.1).",
      "sec-websocket-protocol",
    );
  return list;
}

/** The query for the agent: the caller's, but for the service's own parameters. */
function passedQuery(url: string): string {
  const at = url.indexOf("?");
  if (at < 0) return "";
  const query = new URLSearchParams(url.slice(at + 1));
  query.delete("api-version");
  query.delete("agent_session_id");
  const text = query.toString();
  return text ? `?${text}` : "";
}

/** Aborted when the caller's connection ends before its answer has been sent. */
function callerGone(reply: FastifyReply): AbortSignal {
  const gone = new AbortController();
  reply.raw.once("close", () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return gone.signal;
}

/** An agent's answer as it comes, with its invocation id when it has one. */
const send = (reply: FastifyReply, answer: ForwardedAnswer, invocationId?: string) =>
  sendHosted(
    reply,
    { answer, body: answer.body },
    invocationId ? { "x-agent-invocation-id": invocationId } : {},
  );
