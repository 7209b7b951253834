import { once } from "node:events";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  addItemsBody,
  createConversationBody,
  createResponseBody,
  listItemsQuery,
  retrieveResponseQuery,
  updateConversationBody,
} from "../../contract/responses.js";
import type { JsonObject } from "../../domain/model.js";
import type { ConversationService } from "../../responses/conversationService.js";
import type { Item } from "../../responses/ports.js";
import type { ResponseService } from "../../responses/responseService.js";
import { projectOf } from "../auth.js";
import { presentConversation, presentPage } from "../presenters.js";
import { parse } from "../validate.js";

type Params = { project: string; name?: string; id: string; item: string };

/** Quiet streams get a comment line this often, so proxies and clients keep them open. */
const keepAliveMs = 15_000;

/**
 * The Responses and Conversations API (the `openai` client's shapes), mounted at the
 * project's `/openai/v1` and at each agent's `/endpoint/protocols/openai` (where the agent is
 * implied by the route).
 */
export function responseRoutes(
  app: FastifyInstance,
  responses: ResponseService,
  conversations: ConversationService,
) {
  const agentOf = (request: FastifyRequest) => (request.params as Params).name;

  app.post<{ Params: Params }>("/responses", async (request, reply) => {
    const body = parse(createResponseBody, request.body);
    // A hosted agent's session may also be named in the query.
    const { agent_session_id: inQuery } = request.query as { agent_session_id?: unknown };
    if (body.agent_session_id === undefined && typeof inQuery === "string")
      body.agent_session_id = inQuery;
    const gone = new AbortController();
    reply.raw.once("close", () => gone.abort());
    const created = await responses.create(
      request.caller,
      projectOf(request),
      body,
      { agentName: agentOf(request) },
      gone.signal,
    );
    if (created.kind === "response") return created.response;
    if (created.kind === "stream") return streamEvents(reply, created.events);
    const { answer } = created;
    reply.code(answer.status).header("x-agent-session-id", answer.sessionId);
    if (answer.contentType) reply.header("content-type", answer.contentType);
    return reply.send(answer.body);
  });

  app.get<{ Params: Params }>("/responses/:id", async (request, reply) => {
    const q = parse(retrieveResponseQuery, request.query);
    if (!q.stream) return responses.get(request.caller, projectOf(request), request.params.id);
    const gone = new AbortController();
    reply.raw.once("close", () => gone.abort());
    const events = await responses.stream(
      request.caller,
      projectOf(request),
      request.params.id,
      q.starting_after ?? -1,
      gone.signal,
    );
    return streamEvents(reply, events);
  });

  app.post<{ Params: Params }>("/responses/:id/cancel", (request) =>
    responses.cancel(request.caller, projectOf(request), request.params.id),
  );

  app.delete<{ Params: Params }>("/responses/:id", async (request) => {
    await responses.delete(request.caller, projectOf(request), request.params.id);
    return { id: request.params.id, object: "response.deleted", deleted: true };
  });

  app.get<{ Params: Params }>("/responses/:id/input_items", async (request) => {
    const q = parse(listItemsQuery, request.query);
    const items = await responses.inputItems(request.caller, projectOf(request), request.params.id);
    return presentPage(pageOf(items, q), (i) => i);
  });

  app.post<{ Params: Params }>("/conversations", async (request) => {
    const body = parse(createConversationBody, request.body ?? null);
    return presentConversation(
      await conversations.create(request.caller, projectOf(request), body),
    );
  });

  app.get<{ Params: Params }>("/conversations/:id", async (request) =>
    presentConversation(
      await conversations.get(request.caller, projectOf(request), request.params.id),
    ),
  );

  app.post<{ Params: Params }>("/conversations/:id", async (request) => {
    const body = parse(updateConversationBody, request.body);
    return presentConversation(
      await conversations.update(
        request.caller,
        projectOf(request),
        request.params.id,
        body.metadata,
      ),
    );
  });

  app.delete<{ Params: Params }>("/conversations/:id", async (request) => {
    await conversations.delete(request.caller, projectOf(request), request.params.id);
    return { id: request.params.id, object: "conversation.deleted", deleted: true };
  });

  app.post<{ Params: Params }>("/conversations/:id/items", async (request) => {
    const body = parse(addItemsBody, request.body);
    const items = await conversations.addItems(
      request.caller,
      projectOf(request),
      request.params.id,
      body.items,
    );
    return presentPage({ items, hasMore: false }, (i) => i);
  });

  app.get<{ Params: Params }>("/conversations/:id/items", async (request) => {
    const q = parse(listItemsQuery, request.query);
    const page = await conversations.listItems(
      request.caller,
      projectOf(request),
      request.params.id,
      {
        limit: q.limit,
        order: q.order,
        after: q.after,
        before: q.before,
      },
    );
    return presentPage(page, (i) => i);
  });

  app.get<{ Params: Params }>("/conversations/:id/items/:item", (request) =>
    conversations.getItem(
      request.caller,
      projectOf(request),
      request.params.id,
      request.params.item,
    ),
  );

  app.delete<{ Params: Params }>("/conversations/:id/items/:item", async (request) =>
    presentConversation(
      await conversations.deleteItem(
        request.caller,
        projectOf(request),
        request.params.id,
        request.params.item,
      ),
    ),
  );
}

/** A page of an in-memory list of items (a response's input). */
function pageOf(
  items: Item[],
  q: { limit: number; order: "asc" | "desc"; after?: string; before?: string },
) {
  const ordered = q.order === "asc" ? items : [...items].reverse();
  let start = 0;
  let end = ordered.length;
  if (q.after !== undefined) start = ordered.findIndex((i) => i.id === q.after) + 1 || end;
  if (q.before !== undefined) {
    const b = ordered.findIndex((i) => i.id === q.before);
    end = b < 0 ? start : b;
  }
  const slice = ordered.slice(start, end);
  return { items: slice.slice(0, q.limit), hasMore: slice.length > q.limit };
}

/**
 * Server-sent events of a response, written as they happen (each waits for the socket to
 * take the last), with a comment on quiet streams. The stream ends with the response.
 */
async function streamEvents(reply: FastifyReply, events: AsyncIterable<JsonObject>) {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    "x-request-id": String(reply.request.id),
  });
  const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), keepAliveMs);
  try {
    for await (const event of events) {
      if (res.destroyed) break;
      keepAlive.refresh();
      if (!res.write(`event: ${String(event.type)}\ndata: ${JSON.stringify(event)}\n\n`))
        await Promise.race([once(res, "drain"), once(res, "close")]);
    }
  } finally {
    clearInterval(keepAlive);
    res.end();
  }
}
