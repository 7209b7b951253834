import { createHash } from "node:crypto";
import { forwarderFor } from "../forwarder/hostedCalls.js";
import { pipeline, Transform, type Readable } from "node:stream";
import type { Logger } from "pino";
import { sessionIdPattern } from "../contract/requests.js";
import { inputItem, type CreateResponseBody } from "../contract/responses.js";
import { parse } from "../contract/validate.js";
import { AppError, notFound } from "../domain/errors.js";
import type { Caller } from "../domain/keyService.js";
import type { JsonObject, Page, PageRequest, Version } from "../domain/model.js";
import type { AgentRepository, Clock } from "../domain/ports.js";
import { pickVersion, trafficRules } from "../domain/trafficRules.js";
import type { ForwardedAnswer, SessionForwarder } from "../forwarder/sessionForwarder.js";
import { budgetOf, type Attribution, type Meter } from "../gateway/metering.js";
import type { ModelGateway } from "../gateway/modelGateway.js";
import { linearValidator } from "../lib/jsonSchema.js";
import type { McpTools } from "../tools/mcp.js";
import { parseMcpTool } from "../tools/mcp.js";
import { Engine, ResponseFailure, type FunctionTool, type Turn } from "./engine.js";
import { newId, normalizeInput } from "./items.js";
import type { ConversationRepository, Item, ResponseRepository, StoredResponse } from "./ports.js";
import { Runs, type Run } from "./runs.js";

/*
 * The Responses API: a response is computed by the engine for a model or a prompt agent, or
 * handed to a hosted agent's session. Responses and conversations belong to the identity that
 * created them; nobody else finds them.
 */

export interface ResponseServiceDeps {
  agents: AgentRepository;
  responses: ResponseRepository;
  conversations: ConversationRepository;
  gateway: ModelGateway;
  mcp: McpTools;
  meter: Meter;
  forwarder?: SessionForwarder;
  clock: Clock;
  log: Logger;
}

/** A hosted agent's own answer, for the transport to pass on as it comes. */
export type HostedAnswer = { kind: "hosted"; answer: ForwardedAnswer; body: Readable };

/** What `create` gives the transport. */
export type Created =
  | { kind: "response"; response: JsonObject }
  | { kind: "stream"; events: AsyncIterable<JsonObject>; run: Run; background: boolean }
  | HostedAnswer;

/** An operation on a stored response, as a hosted agent's session is asked for it. */
export type HostedOperation =
  | { op: "get"; stream?: boolean; startingAfter?: number }
  | { op: "cancel" }
  | { op: "delete" }
  | { op: "input_items"; page: PageRequest };

/** Tool types the service cannot run: storable in a version, refused at invocation. */
const runnableTools = new Set(["function", "mcp"]);

/** Items of a chain walked back from a response, at most this many responses deep. */
const maxChain = 1000;

export class ResponseService {
  private readonly runs = new Runs();
  private readonly running = new Set<Promise<unknown>>();
  private readonly engine: Engine;

  constructor(private readonly deps: ResponseServiceDeps) {
    this.engine = new Engine(deps.gateway, deps.mcp);
  }

  async create(
    caller: Caller,
    project: string,
    body: CreateResponseBody,
    /** The agent the route implies, and the caller's `x-client-*` headers for a hosted one. */
    scope: { agentName?: string; clientHeaders?: Record<string, string> } = {},
    clientGone?: AbortSignal,
  ): Promise<Created> {
    const reference = agentReferenceOf(body, scope.agentName);
    if (body.previous_response_id && body.conversation)
      throw new AppError(
        "invalid_parameter",
        "Send either previous_response_id or conversation, not both.",
        "conversation",
      );
    const previous = body.previous_response_id
      ? await this.owned(caller, project, body.previous_response_id, "previous_response_id")
      : undefined;
    const conversationId =
      typeof body.conversation === "string" ? body.conversation : body.conversation?.id;
    const conversation = conversationId
      ? await this.ownedConversation(caller, project, conversationId)
      : undefined;

    let version: Version | undefined;
    if (reference) {
      version = await this.pickVersion(project, reference, conversation);
      if (version.definition.kind === "hosted")
        return this.forwardHosted(caller, project, body, version, scope.clientHeaders, clientGone);
      if (version.definition.kind !== "prompt")
        throw new AppError(
          "invalid_parameter",
          `Agent '${reference.name}' is a ${version.definition.kind} agent, which cannot answer responses.`,
          "agent",
        );
    } else if (!body.model) {
      throw new AppError(
        "missing_parameter",
        "Missing required parameter 'model' (a deployment name), or name an agent.",
        "model",
      );
    }
    if (previous && (previous.sessionId || !ended(previous.body.status)))
      throw new AppError(
        "invalid_parameter",
        previous.sessionId
          ? `Response '${previous.id}' was answered by a hosted agent; continue it there.`
          : `Response '${previous.id}' is still ${String(previous.body.status)}; continue it once it has ended.`,
        "previous_response_id",
      );
    if (body.background && body.store === false)
      throw new AppError("invalid_parameter", "background requires store: true.", "store");

    const definition = (version?.definition ?? {}) as JsonObject;
    const turn = this.turnOf(project, body, definition);
    turn.history = previous
      ? await this.chain(project, previous)
      : conversation
        ? await this.deps.conversations.items(project, conversation.id)
        : [];
    turn.input = inputOf(body, turn.history);

    const id = newId("resp");
    const now = this.deps.clock();
    const store = body.store !== false;
    const background = body.background === true;
    const agentReference = version && {
      type: "agent_reference",
      name: version.agentName,
      version: String(version.version),
    };
    let response: JsonObject = {
      id,
      object: "response",
      created_at: now,
      status: background ? "queued" : "in_progress",
      background,
      error: null,
      incomplete_details: null,
      instructions: body.instructions ?? (definition.instructions as string | undefined) ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      model: turn.deployment,
      output: [],
      parallel_tool_calls: turn.parallelToolCalls,
      previous_response_id: previous?.id ?? null,
      conversation: conversation ? { id: conversation.id } : null,
      reasoning: null,
      store,
      temperature: turn.temperature ?? null,
      top_p: turn.topP ?? null,
      text: {
        format: body.text?.format ??
          (definition.text as JsonObject | undefined)?.format ?? { type: "text" },
      },
      tool_choice: turn.toolChoice ?? "auto",
      tools: [...((definition.tools as JsonObject[] | undefined) ?? []), ...(body.tools ?? [])].map(
        redactTool,
      ),
      truncation: "disabled",
      usage: null,
      metadata: body.metadata ?? {},
      user: null,
      ...(agentReference ? { agent_reference: agentReference } : {}),
    };
    const stored = (events: JsonObject[] | null): StoredResponse => ({
      id,
      project,
      owner: caller.subject,
      agentName: version?.agentName ?? null,
      sessionId: null,
      previousResponseId: previous?.id ?? null,
      conversationId: conversation?.id ?? null,
      body: response,
      input: turn.input,
      events,
      createdAt: now,
    });
    // A sandbox's calls count for its session; others for the agent and the conversation.
    const attribution: Attribution = caller.session
      ? {
          ...(await this.deps.meter.forCaller(caller, project)),
          conversationId: conversation?.id ?? null,
          responseId: id,
        }
      : {
          project,
          owner: caller.subject,
          agentName: version?.agentName ?? null,
          agentVersion: version?.version ?? null,
          sessionId: null,
          conversationId: conversation?.id ?? null,
          responseId: id,
          budget: version
            ? {
                ...budgetOf(version, this.deps.meter.defaults),
                startedAt: conversation?.createdAt ?? now,
              }
            : undefined,
        };
    const run = this.runs.start(id, project, caller.subject, maxRunsPerIdentity);
    if (!run)
      throw new AppError(
        "too_many_responses",
        `This identity already has ${maxRunsPerIdentity} responses running; wait for one to end.`,
      );
    // A background response is on disk from the start (a restart then marks it failed);
    // the others once they end (while they run, the run answers for them).
    if (background) await this.deps.responses.put(stored(null));
    const emit = (type: string) => run.emit({ type, response });
    if (background) emit("response.queued");
    emit("response.created");
    response = { ...response, status: "in_progress" };
    emit("response.in_progress");
    if (clientGone && !background)
      clientGone.addEventListener("abort", () => run.abort.abort(), { once: true });

    const finished = (async () => {
      let failure: unknown;
      try {
        const result = await this.engine.run(
          turn,
          {
            event: (e) => run.emit(e),
            beforeCall: () => this.deps.meter.check(attribution),
            usage: (deployment, u) => this.deps.meter.record(attribution, deployment, u),
          },
          run.abort.signal,
        );
        // A cancelled upstream call may end quietly: what was cut short is not complete.
        run.abort.signal.throwIfAborted();
        // The thread has the turn before anyone is told it is complete.
        if (conversation) {
          await this.deps.conversations.append(
            project,
            conversation.id,
            [...turn.input, ...result.output],
            this.deps.clock(),
          );
          if (conversation.agentName === null && version)
            await this.deps.conversations.update(project, conversation.id, {
              agentName: version.agentName,
              agentVersion: version.version,
            });
        }
        response = {
          ...response,
          status: "completed",
          output: result.output,
          usage: usageOf(result.usage),
        };
        emit("response.completed");
      } catch (err) {
        failure = err;
        const cancelled = run.abort.signal.aborted;
        response = {
          ...response,
          status: cancelled ? "cancelled" : "failed",
          error: cancelled ? null : errorOf(err),
        };
        emit(cancelled ? "response.incomplete" : "response.failed");
      }
      try {
        if (store) await this.deps.responses.put(stored(background ? run.events : null));
      } catch (err) {
        // Nobody may be waiting (a stream, the background): the failure is logged, not thrown.
        this.deps.log.error({ err, response: id }, "a response could not be saved");
      } finally {
        this.runs.finish(run);
      }
      // A cancelled run fails by its abort, which is no fault to log.
      if (
        failure !== undefined &&
        !run.abort.signal.aborted &&
        !(failure instanceof AppError) &&
        !(failure instanceof ResponseFailure)
      )
        this.deps.log.error({ err: failure, response: id }, "a response failed");
      return { response, failure };
    })();
    this.running.add(finished);
    void finished.finally(() => this.running.delete(finished));

    if (body.stream) return { kind: "stream", events: run.follow(-1, clientGone), run, background };
    if (background) return { kind: "response", response: { ...response, status: "queued" } };
    const { response: final, failure } = await finished;
    // A model server that failed the call fails the request (502/504), as a proxy would.
    if (failure instanceof AppError) throw failure;
    return { kind: "response", response: final };
  }

  /**
   * A hosted agent's response is its session's to read, cancel or delete: the operation is
   * forwarded there (the session that answered `create`, on the caller's behalf — the
   * session's owner check applies) and its answer is returned; undefined for the service's own
   * responses. A delete the agent answers with 2xx or 404 also forgets the service's record.
   */
  async hosted(
    caller: Caller,
    project: string,
    id: string,
    operation: HostedOperation,
    scope: { agentName?: string; clientHeaders?: Record<string, string> } = {},
  ): Promise<HostedAnswer | { kind: "deleted" } | undefined> {
    if (this.liveRun(caller, project, id)) return undefined;
    const stored = await this.owned(caller, project, id, "response_id");
    // An agent's endpoint reaches only that agent's responses.
    if (scope.agentName !== undefined && stored.agentName !== scope.agentName)
      throw notFound(`Response '${id}'`, "response_id");
    if (!stored.sessionId || !stored.agentName) return undefined;
    // The caller's delete always forgets the service's record; the agent is told if it can be.
    if (operation.op === "delete") await this.deps.responses.delete(project, stored.id);
    if (!this.deps.forwarder) {
      if (operation.op === "delete") return { kind: "deleted" };
      throw new AppError("sandbox_unavailable", "This host cannot run hosted agents' sessions.");
    }
    const { method, path } = hostedRoute(stored.id, operation);
    try {
      const answer = await this.deps.forwarder.forward({
        caller,
        project,
        agentName: stored.agentName,
        sessionId: stored.sessionId,
        method,
        path,
        clientHeaders: scope.clientHeaders,
      });
      return { kind: "hosted", answer, body: answer.body };
    } catch (err) {
      // A session that is gone (deleted, expired, spent) cannot be told; the record is gone.
      if (operation.op === "delete" && err instanceof AppError) return { kind: "deleted" };
      if (err instanceof AppError && err.code === "not_found")
        throw new AppError(
          "not_found",
          `Response '${id}' was answered by session '${stored.sessionId}', which no longer exists.`,
          "response_id",
        );
      throw err;
    }
  }

  async get(caller: Caller, project: string, id: string): Promise<JsonObject> {
    const live = this.liveRun(caller, project, id);
    if (live) return lastSnapshot(live) ?? (await this.computed(caller, project, id)).body;
    return (await this.computed(caller, project, id)).body;
  }

  /** The caller's running response of this id, if there is one. */
  private liveRun(caller: Caller, project: string, id: string): Run | undefined {
    const live = this.runs.get(id);
    return live && live.project === project && live.owner === caller.subject ? live : undefined;
  }

  /** A response's stream again: events after `startingAfter`, then the live ones. */
  async stream(
    caller: Caller,
    project: string,
    id: string,
    startingAfter: number,
    signal: AbortSignal,
  ): Promise<AsyncIterable<JsonObject>> {
    const live = this.liveRun(caller, project, id);
    if (live) return live.follow(startingAfter, signal);
    await this.computed(caller, project, id);
    const events = await this.deps.responses.events(project, id);
    if (!events)
      throw new AppError(
        "invalid_parameter",
        "Only a background response can be streamed again (create it with background: true).",
        "stream",
      );
    return (async function* () {
      for (const e of events) if ((e.sequence_number as number) > startingAfter) yield e;
    })();
  }

  async cancel(caller: Caller, project: string, id: string): Promise<JsonObject> {
    const stored = await this.computed(caller, project, id);
    if (!stored.body.background)
      throw new AppError(
        "invalid_parameter",
        "Only a background response can be cancelled.",
        "response_id",
      );
    const live = this.runs.get(id);
    if (live) await stopRun(live);
    return (await this.deps.responses.get(project, id))?.body ?? stored.body;
  }

  async delete(caller: Caller, project: string, id: string): Promise<void> {
    await this.owned(caller, project, id, "response_id");
    const live = this.runs.get(id);
    if (live) await stopRun(live);
    await this.deps.responses.delete(project, id);
  }

  /** A page of the response's input items, as conversation items are paged. */
  async inputItems(
    caller: Caller,
    project: string,
    id: string,
    page: PageRequest,
  ): Promise<Page<Item>> {
    const items = (await this.computed(caller, project, id)).input;
    const ordered = page.order === "asc" ? items : [...items].reverse();
    const at = (cursor: string | undefined) =>
      cursor === undefined ? undefined : ordered.findIndex((i) => i.id === cursor);
    const after = at(page.after);
    const before = at(page.before);
    // An unknown cursor pages nowhere, as in a conversation.
    if (after === -1 || before === -1) return { items: [], hasMore: false };
    const start = after === undefined ? 0 : after + 1;
    const end = before ?? ordered.length;
    const window = ordered.slice(start, Math.max(start, end));
    // Only `before`: the items nearest to it.
    const slice =
      before !== undefined && after === undefined
        ? window.slice(-page.limit)
        : window.slice(0, page.limit);
    return { items: slice, hasMore: window.length > page.limit };
  }

  /** Cancels what still runs and waits until each has been saved (at shutdown). */
  async close() {
    this.runs.cancelAll();
    await Promise.allSettled([...this.running]);
  }

  /** After a restart: responses that were running when the service stopped have failed. */
  async recover(): Promise<number> {
    return this.deps.responses.failUnfinished(
      "The service stopped while this response was running.",
    );
  }

  private async owned(caller: Caller, project: string, id: string, param: string) {
    const stored = await this.deps.responses.get(project, id);
    // Another identity's response is not found, as the real service answers.
    if (!stored || stored.owner !== caller.subject) throw notFound(`Response '${id}'`, param);
    return stored;
  }

  /** One of the service's own responses (a hosted agent's are the agent's to read). */
  private async computed(caller: Caller, project: string, id: string) {
    const stored = await this.owned(caller, project, id, "response_id");
    if (stored.sessionId)
      throw new AppError(
        "invalid_parameter",
        `Response '${id}' was answered by the hosted session '${stored.sessionId}'; the service keeps only whose it is, not its content.`,
        "response_id",
      );
    return stored;
  }

  private async ownedConversation(caller: Caller, project: string, id: string) {
    const c = await this.deps.conversations.get(project, id);
    if (!c || c.owner !== caller.subject) throw notFound(`Conversation '${id}'`, "conversation");
    return c;
  }

  /** The version that answers: named, else the conversation's, else the split's, else latest. */
  /**
   * The version of an agent that answers a call without a pinned version: the endpoint's
   * traffic split's pick (the same for every call of one `sticky` key), else the latest.
   */
  answeringVersion(project: string, agentName: string, sticky?: string): Promise<Version> {
    return this.pickVersion(
      project,
      { name: agentName },
      sticky === undefined ? undefined : { id: sticky, agentName: null, agentVersion: null },
    );
  }

  private async pickVersion(
    project: string,
    reference: { name: string; version?: string },
    conversation: { id: string; agentName: string | null; agentVersion: number | null } | undefined,
  ): Promise<Version> {
    const agent = await this.deps.agents.get(project, reference.name);
    if (!agent) throw notFound(`Agent '${reference.name}'`, "agent");
    let number: number;
    if (reference.version) number = Number(reference.version);
    else if (conversation?.agentName === reference.name && conversation.agentVersion !== null)
      number = conversation.agentVersion;
    else {
      // Sticky per conversation: its id decides, so every turn of it lands on one version.
      const picked = pickVersion(
        trafficRules(agent.agentEndpoint),
        conversation ? unitHash(conversation.id) : Math.random(),
      );
      number = picked ? Number(picked) : agent.latest.version;
    }
    const version =
      number === agent.latest.version
        ? agent.latest
        : await this.deps.agents.getVersion(project, reference.name, number);
    if (!version)
      throw notFound(`Version '${number}' of agent '${reference.name}'`, "agent.version");
    return version;
  }

  private turnOf(project: string, body: CreateResponseBody, definition: JsonObject): Turn {
    const tools = [
      ...((definition.tools as JsonObject[] | undefined) ?? []).map((t, i) => ({
        t,
        param: `agent.definition.tools[${i}]`,
      })),
      ...(body.tools ?? []).map((t, i) => ({ t: t as JsonObject, param: `tools[${i}]` })),
    ];
    const functions: FunctionTool[] = [];
    const mcp = [];
    for (const { t, param } of tools) {
      if (!runnableTools.has(String(t.type)))
        throw new AppError(
          "unsupported_tool",
          `Tool '${String(t.type)}' (${param}) cannot be run by this service; only function and mcp tools can.`,
          param,
        );
      if (t.type === "mcp") mcp.push(parseMcpTool(t, param));
      else {
        if (typeof t.name !== "string" || t.name.length === 0)
          throw new AppError(
            "missing_parameter",
            `Missing required parameter '${param}.name'.`,
            `${param}.name`,
          );
        functions.push(t as unknown as FunctionTool);
      }
    }
    const format = (body.text?.format ?? (definition.text as JsonObject | undefined)?.format) as
      { type: string; name?: string; schema?: Record<string, unknown> } | undefined;
    let schema: Turn["schema"];
    if (format?.type === "json_schema") {
      const validate = linearValidator(format.schema ?? {});
      if (typeof validate === "string")
        throw new AppError(
          "invalid_parameter",
          `text.format.schema is not accepted: ${validate}.`,
          "text.format.schema",
        );
      schema = { name: format.name ?? "answer", schema: format.schema ?? {}, validate };
    }
    const pick = <T>(a: T | null | undefined, b: unknown): T | null | undefined =>
      a !== undefined ? a : (b as T | null | undefined);
    return {
      project,
      deployment: (definition.model as string | undefined) ?? body.model!,
      instructions: [definition.instructions, body.instructions].filter(
        (i): i is string => typeof i === "string" && i.length > 0,
      ),
      history: [],
      input: [],
      functions,
      mcp,
      toolChoice: body.tool_choice ?? definition.tool_choice,
      parallelToolCalls: body.parallel_tool_calls ?? true,
      temperature: pick(body.temperature, definition.temperature),
      topP: pick(body.top_p, definition.top_p),
      maxOutputTokens: body.max_output_tokens,
      schema,
      jsonObject: format?.type === "json_object",
    };
  }

  /** Every item of the chain ending at `last`: each response's input, then its output. */
  private async chain(project: string, last: StoredResponse): Promise<Item[]> {
    const links: StoredResponse[] = [last];
    while (links.length < maxChain) {
      const prev = links.at(-1)!.previousResponseId;
      if (!prev) break;
      const r = await this.deps.responses.get(project, prev);
      if (!r) break;
      links.push(r);
    }
    return links
      .reverse()
      .flatMap((r) => [...r.input, ...((r.body.output as Item[] | undefined) ?? [])]);
  }

  private async forwardHosted(
    caller: Caller,
    project: string,
    body: CreateResponseBody,
    version: Version,
    clientHeaders: Record<string, string> | undefined,
    /** The caller left (or its deadline passed): the call to the agent is abandoned. */
    signal: AbortSignal | undefined,
  ): Promise<Created> {
    const forwarder = forwarderFor(this.deps.forwarder, caller);
    if (body.agent_session_id !== undefined && !sessionIdPattern.test(body.agent_session_id))
      throw new AppError(
        "invalid_parameter",
        "agent_session_id must be 8-128 of [A-Za-z0-9_-].",
        "agent_session_id",
      );
    // The body goes as the caller sent it, but for the agent's name (the session implies it).
    const rest: JsonObject = { ...body };
    for (const field of ["agent", "agent_reference", "agent_name"]) delete rest[field];
    const answer = await forwarder.forward({
      caller,
      project,
      agentName: version.agentName,
      sessionId: body.agent_session_id,
      version: version.version,
      path: "/responses",
      body: Buffer.from(JSON.stringify(rest)),
      contentType: "application/json",
      clientHeaders,
      signal,
    });
    if (answer.status >= 400) return { kind: "hosted", answer, body: answer.body };
    // A pipeline, not a pipe: the agent's answer cut short fails the recorder (its reader
    // learns at once), and the recorder destroyed (over a limit, a deadline, a client gone)
    // destroys the agent's answer, which frees its session.
    const recorder = this.recorder(caller, project, version.agentName, answer.sessionId);
    pipeline(answer.body, recorder, () => {});
    return { kind: "hosted", answer, body: recorder };
  }

  /**
   * Passes a hosted agent's answer through unchanged and remembers the response it names
   * (the first `id`: the response object's, or the `response.created` event's) as the
   * caller's and the session's — only if the project has no response of that id already,
   * so an agent cannot take over another's.
   */
  private recorder(caller: Caller, project: string, agentName: string, sessionId: string) {
    let seen = "";
    let done = false;
    const responses = this.deps.responses;
    const now = this.deps.clock();
    const log = this.deps.log;
    return new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        if (!done) {
          seen += chunk.toString("utf8");
          const m = /"id"\s*:\s*"([A-Za-z0-9_-]{1,256})"/.exec(seen);
          if (m || seen.length > 64 * 1024) {
            done = true;
            seen = "";
            if (m)
              void responses
                .claim({
                  id: m[1]!,
                  project,
                  owner: caller.subject,
                  agentName,
                  sessionId,
                  previousResponseId: null,
                  conversationId: null,
                  body: { id: m[1]!, object: "response", agent_session_id: sessionId },
                  input: [],
                  events: null,
                  createdAt: now,
                })
                .catch((err: unknown) => log.warn({ err }, "a hosted response was not recorded"));
          }
        }
        callback(null, chunk);
      },
    });
  }
}

/** The agent's route for an operation on its response `id` (an id the recorder checked). */
function hostedRoute(
  id: string,
  operation: HostedOperation,
): { method: "GET" | "POST" | "DELETE"; path: string } {
  const base = `/responses/${encodeURIComponent(id)}`;
  const query = new URLSearchParams();
  switch (operation.op) {
    case "get":
      if (operation.stream) query.set("stream", "true");
      if (operation.startingAfter !== undefined)
        query.set("starting_after", String(operation.startingAfter));
      return { method: "GET", path: withQuery(base, query) };
    case "cancel":
      return { method: "POST", path: `${base}/cancel` };
    case "delete":
      return { method: "DELETE", path: base };
    case "input_items": {
      const { limit, order, after, before } = operation.page;
      query.set("limit", String(limit));
      if (order) query.set("order", order);
      if (after !== undefined) query.set("after", after);
      if (before !== undefined) query.set("before", before);
      return { method: "GET", path: withQuery(`${base}/input_items`, query) };
    }
  }
}

const withQuery = (path: string, query: URLSearchParams) =>
  query.size === 0 ? path : `${path}?${query.toString()}`;

/** This call's input items for the engine, checked; outputs only answer calls of the thread. */
function inputOf(body: CreateResponseBody, history: Item[]): Item[] {
  const raw = body.input ?? [];
  const items =
    typeof raw === "string"
      ? [normalizeInput(raw)]
      : raw.map((entry, i) => normalizeInput(parse(inputItem, entry, `input[${i}]`)));
  const known = new Set(history.filter((i) => i.type === "function_call").map((i) => i.call_id));
  const requests = new Set(
    history.filter((i) => i.type === "mcp_approval_request").map((i) => i.id),
  );
  items.forEach((item, i) => {
    if (item.type === "mcp_approval_response" && !requests.has(String(item.approval_request_id)))
      throw new AppError(
        "invalid_parameter",
        `No mcp_approval_request '${String(item.approval_request_id)}' in this thread.`,
        `input[${i}].approval_request_id`,
      );
    if (item.type === "function_call") known.add(item.call_id);
    if (item.type === "function_call_output" && !known.has(item.call_id))
      throw new AppError(
        "invalid_parameter",
        `No function_call with call_id '${String(item.call_id)}' precedes this output.`,
        `input[${i}].call_id`,
      );
  });
  return items;
}

const ended = (status: unknown) =>
  status === "completed" ||
  status === "failed" ||
  status === "cancelled" ||
  status === "incomplete";

/** A tool as a response shows it: an MCP server's header values are its author's secrets. */
function redactTool(tool: JsonObject): JsonObject {
  if (tool.type !== "mcp" || typeof tool.headers !== "object" || tool.headers === null) return tool;
  return {
    ...tool,
    headers: Object.fromEntries(Object.keys(tool.headers).map((k) => [k, "[redacted]"])),
  };
}

/** Responses one identity may have running at once. */
const maxRunsPerIdentity = 64;

/** The agent named by the body (`agent_reference`, `agent`, `agent_name`) or the route. */
function agentReferenceOf(
  body: CreateResponseBody,
  routeAgent: string | undefined,
): { name: string; version?: string } | undefined {
  const raw = body.agent_reference ?? body.agent ?? body.agent_name;
  const ref = typeof raw === "string" ? { name: raw } : raw;
  if (routeAgent) {
    if (ref && ref.name !== routeAgent)
      throw new AppError(
        "invalid_parameter",
        `The body names agent '${ref.name}' but the endpoint is agent '${routeAgent}'.`,
        "agent",
      );
    return { name: routeAgent, version: ref?.version };
  }
  return ref && { name: ref.name, version: ref.version };
}

/** A stable number in [0, 1) from a string. */
const unitHash = (s: string) => createHash("sha256").update(s).digest().readUInt32BE(0) / 2 ** 32;

const usageOf = (u: { input_tokens: number; output_tokens: number }) => ({
  input_tokens: u.input_tokens,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: u.output_tokens,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: u.input_tokens + u.output_tokens,
});

function errorOf(err: unknown): JsonObject {
  if (err instanceof ResponseFailure) return { code: err.code, message: err.message };
  if (err instanceof AppError) return { code: err.code, message: err.message };
  return { code: "server_error", message: "The response failed unexpectedly." };
}

function lastSnapshot(run: Run): JsonObject | undefined {
  for (let i = run.events.length - 1; i >= 0; i--) {
    const r = run.events[i]!.response as JsonObject | undefined;
    if (r) return r;
  }
  return undefined;
}

/** Cancels a run and waits for its end (its last event, its save). */
async function stopRun(run: Run) {
  run.abort.abort();
  for await (const event of run.follow(run.events.length - 1)) void event;
}
