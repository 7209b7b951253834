import type { FastifyInstance } from "fastify";
import {
  createSessionBody,
  execSessionBody,
  listProjectSessionsQuery,
  listSessionsQuery,
} from "../../contract/requests.js";
import { AppError } from "../../domain/errors.js";
import type { SessionService } from "../../sessions/sessionService.js";
import { projectOf } from "../auth.js";
import { presentPage, presentProjectSession, presentSession, presentUsage } from "../presenters.js";
import { parse } from "../../contract/validate.js";
import { splitVerb } from "./agentRoutes.js";
import { eventFrame, sendEvents } from "../sse.js";

type NameParams = { project: string; name: string };
type SessionParams = NameParams & { id: string };

/** Sessions (contract §3.5). */
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

  // The project's sessions across its agents (an agenthost addition, docs/api.md).
  app.get<{ Params: { project: string } }>("/sessions", async (request) => {
    const q = parse(listProjectSessionsQuery, request.query);
    const ref = (cursor: string | undefined) => {
      if (cursor === undefined) return undefined;
      const [agentName, id] = cursor.split("/") as [string, string];
      return { agentName, id };
    };
    const page = await sessions.listProject(
      request.caller,
      projectOf(request),
      { limit: q.limit, order: q.order, after: ref(q.after), before: ref(q.before) },
      {
        agentName: q.agent_name,
        status: q.status,
        version: q.agent_version ? Number(q.agent_version) : undefined,
        owner: q.owner,
      },
    );
    const withOwner = request.caller.key.admin;
    return presentPage(
      page,
      (s) => presentProjectSession(s, withOwner),
      (s) => `${s.agent_name}/${s.agent_session_id}`,
    );
  });

  app.get<{ Params: SessionParams }>(`${base}/:id`, async (request) => {
    const { session, usage } = await sessions.describe(
      request.caller,
      projectOf(request),
      request.params.name,
      request.params.id,
    );
    return { ...presentSession(session), usage: presentUsage(usage) };
  });

  app.post<{ Params: SessionParams }>(`${base}/:id`, async (request, reply) => {
    const { name: id, verb } = splitVerb(request.params.id);
    if (verb === "exec") {
      const body = parse(execSessionBody, request.body);
      await sendEvents(reply, async (gone) =>
        frames(
          await sessions.exec(
            request.caller,
            projectOf(request),
            request.params.name,
            id,
            body,
            gone,
          ),
        ),
      );
      return reply;
    }
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
}

async function* frames(events: AsyncIterable<{ event: string; data: unknown }>) {
  for await (const e of events) yield eventFrame(e.event, e.data);
}
