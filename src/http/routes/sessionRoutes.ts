import http from "node:http";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { createSessionBody, listSessionsQuery, sessionIdPattern } from "../../contract/requests.js";
import { AppError } from "../../domain/errors.js";
import { agentConnections } from "../../sessions/agentSocket.js";
import type { SessionService } from "../../sessions/sessionService.js";
import { projectOf } from "../auth.js";
import { presentPage, presentSession } from "../presenters.js";
import { parse } from "../validate.js";
import { splitVerb } from "./agentRoutes.js";

type NameParams = { project: string; name: string };
type SessionParams = NameParams & { id: string };

/** Sessions (contract §3.5) and requests to a session's agent (contract §7). */
export function sessionRoutes(app: FastifyInstance, sessions: SessionService) {
  const base = "/agents/:name/endpoint/sessions";

  app.post<{ Params: NameParams }>(base, async (request, reply) => {
    const body = parse(createSessionBody, request.body);
    const session = await sessions.create(
      request.caller,
      projectOf(request),
      request.params.name,
      body,
    );
    return reply.code(201).send(presentSession(session));
  });

  app.get<{ Params: NameParams }>(base, async (request) => {
    const q = parse(listSessionsQuery, request.query);
    const page = await sessions.list(
      request.caller,
      projectOf(request),
      request.params.name,
      { limit: q.limit, order: q.order, after: q.after, before: q.before },
      { status: q.status, version: q.agent_version ? Number(q.agent_version) : undefined },
    );
    return presentPage(page, presentSession, (s) => s.agent_session_id);
  });

  app.get<{ Params: SessionParams }>(`${base}/:id`, async (request) =>
    presentSession(
      await sessions.get(
        request.caller,
        projectOf(request),
        request.params.name,
        request.params.id,
      ),
    ),
  );

  app.post<{ Params: SessionParams }>(`${base}/:id`, async (request, reply) => {
    const { name: id, verb } = splitVerb(request.params.id);
    if (verb !== "stop") throw new AppError("not_found", `Unknown operation ':${verb ?? ""}'.`);
    await sessions.stop(request.caller, projectOf(request), request.params.name, id);
    return reply.code(204).send();
  });

  app.delete<{ Params: SessionParams }>(`${base}/:id`, async (request, reply) => {
    await sessions.delete(
      request.caller,
      projectOf(request),
      request.params.name,
      request.params.id,
    );
    return reply.code(204).send();
  });

  app.post<{ Params: NameParams; Querystring: { agent_session_id?: string } }>(
    "/agents/:name/endpoint/protocols/openai/responses",
    (request, reply) => forward(sessions, request, reply, "/responses"),
  );
}

/**
 * Hands a request to the session's agent through its socket and its answer back, streamed.
 * The session is `agent_session_id` of the body (or query); without one a new session of
 * the agent's latest version is created. The answer carries `x-agent-session-id`.
 */
async function forward(
  sessions: SessionService,
  request: FastifyRequest<{ Params: NameParams; Querystring: { agent_session_id?: string } }>,
  reply: FastifyReply,
  agentPath: string,
): Promise<FastifyReply> {
  const project = projectOf(request);
  const agentName = request.params.name;
  const body = (request.body ?? {}) as Record<string, unknown>;
  let id = body.agent_session_id ?? request.query.agent_session_id;
  if (id !== undefined && (typeof id !== "string" || !sessionIdPattern.test(id)))
    throw new AppError(
      "invalid_parameter",
      "agent_session_id must be 8-128 of [A-Za-z0-9_-].",
      "agent_session_id",
    );
  if (id === undefined) {
    const version = await sessions.defaultVersion(project, agentName);
    const created = await sessions.create(request.caller, project, agentName, {
      version_indicator: { type: "version_ref", agent_version: version },
    });
    id = created.id;
  }
  const { sandbox, release } = await sessions.open(
    request.caller,
    project,
    agentName,
    id as string,
  );
  const payload = Buffer.from(JSON.stringify(body));
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const upstream = http.request(
      {
        socketPath: sandbox.socketPath,
        agent: agentConnections,
        method: "POST",
        path: agentPath,
        headers: {
          "content-type": "application/json",
          "content-length": payload.length,
          "x-agent-session-id": id as string,
          "x-agent-user-id": request.caller.subject,
        },
      },
      resolve,
    );
    upstream.once("error", (err) => {
      release();
      reject(
        new AppError(
          "session_not_ready",
          `The session's agent did not answer: ${err.message}`,
          "agent_session_id",
        ),
      );
    });
    upstream.end(payload);
  });
  res.once("close", release);
  reply.code(res.statusCode ?? 502).header("x-agent-session-id", id as string);
  const type = res.headers["content-type"];
  if (type) reply.header("content-type", type);
  return reply.send(res);
}
