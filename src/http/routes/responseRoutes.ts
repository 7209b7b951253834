import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  addItemsBody,
  createConversationBody,
  createResponseBody,
  listConversationsQuery,
  listItemsQuery,
  retrieveResponseQuery,
  updateConversationBody,
} from "../../contract/responses.js";
import { AppError } from "../../domain/errors.js";
import type { JsonObject } from "../../domain/model.js";
import { clientHeadersOf } from "../../forwarder/sessionForwarder.js";
import type { ConversationService } from "../../responses/conversationService.js";
import type {
  HostedAnswer,
  HostedOperation,
  ResponseService,
} from "../../responses/responseService.js";
import { projectOf } from "../auth.js";
import { presentConversation, presentPage } from "../presenters.js";
import { parse } from "../../contract/validate.js";
import { eventFrame, sendEvents } from "../sse.js";

type Params = { project: string; name?: string; id: string; item: string };

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
      { agentName: agentOf(request), clientHeaders: clientHeadersOf(request.headers) },
      gone.signal,
    );
    if (created.kind === "response") return created.response;
    if (created.kind === "stream") return streamEvents(reply, created.events);
    return sendHosted(reply, created);
  });

  /** A hosted agent's response: the operation is its session's (undefined for the service's). */
  const hosted = (request: FastifyRequest<{ Params: Params }>, operation: HostedOperation) =>
    responses.hosted(request.caller, projectOf(request), request.params.id, operation, {
      agentName: agentOf(request),
      clientHeaders: clientHeadersOf(request.headers),
    });

  app.get<{ Params: Params }>("/responses/:id", async (request, reply) => {
    const q = parse(retrieveResponseQuery, request.query);
    const theirs = await hosted(request, {
      op: "get",
      stream: q.stream,
      startingAfter: q.starting_after,
    });
    if (theirs?.kind === "hosted") return sendHosted(reply, theirs);
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

  app.post<{ Params: Params }>("/responses/:id/cancel", async (request, reply) => {
    const theirs = await hosted(request, { op: "cancel" });
    if (theirs?.kind === "hosted") return sendHosted(reply, theirs);
    return responses.cancel(request.caller, projectOf(request), request.params.id);
  });

  app.delete<{ Params: Params }>("/responses/:id", async (request, reply) => {
    const theirs = await hosted(request, { op: "delete" });
    if (theirs?.kind === "hosted") return sendHosted(reply, theirs);
    if (!theirs) await responses.delete(request.caller, projectOf(request), request.params.id);
    return { id: request.params.id, object: "response.deleted", deleted: true };
  });

  app.get<{ Params: Params }>("/responses/:id/input_items", async (request, reply) => {
    const q = parse(listItemsQuery, request.query);
    const page = { limit: q.limit, order: q.order, after: q.after, before: q.before };
    const theirs = await hosted(request, { op: "input_items", page });
    if (theirs?.kind === "hosted") return sendHosted(reply, theirs);
    return presentPage(
      await responses.inputItems(request.caller, projectOf(request), request.params.id, page),
      (i) => i,
    );
  });

  app.post<{ Params: Params }>("/conversations", async (request) => {
    const body = parse(createConversationBody, request.body ?? null);
    return presentConversation(
      await conversations.create(request.caller, projectOf(request), body),
    );
  });

  // Not in OpenAI's API: the caller's conversations, newest first (the console lists them).
  app.get<{ Params: Params }>("/conversations", async (request) => {
    const q = parse(listConversationsQuery, request.query);
    const page = await conversations.list(
      request.caller,
      projectOf(request),
      { agentName: agentOf(request) ?? q.agent_name },
      { limit: q.limit, order: q.order, after: q.after, before: q.before },
    );
    return presentPage(page, presentConversation);
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

/** A response's events as server-sent events, named by their type. */
function streamEvents(reply: FastifyReply, events: AsyncIterable<JsonObject>) {
  return sendEvents(
    reply,
    (async function* () {
      for await (const event of events) yield eventFrame(String(event.type), event);
    })(),
  );
}

/**
 * A hosted agent's answer as it comes (`body`: the agent's, or what reads it on the way), with
 * the container protocol's answer headers and a protocol's own `extra` ones.
 */
export function sendHosted(
  reply: FastifyReply,
  { answer, body }: Pick<HostedAnswer, "answer" | "body">,
  extra: Record<string, string> = {},
) {
  if (answer.status < 200 || answer.status > 599) {
    body.destroy();
    throw new AppError(
      "upstream_error",
      `The session's agent answered with status ${answer.status}, which is not an HTTP answer.`,
    );
  }
  reply
    .code(answer.status)
    .headers(answer.agentHeaders)
    .header("x-agent-session-id", answer.sessionId)
    .header("x-agent-foundry-call-id", answer.callId)
    .headers(extra);
  if (answer.contentType) reply.header("content-type", answer.contentType);
  return reply.send(body);
}
