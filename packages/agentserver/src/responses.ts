import type { IncomingMessage, ServerResponse } from "node:http";
import { fromHeaders, type AgentEnvironment, type Context } from "./context.js";
import {
  HttpError,
  decoded,
  drained,
  isAsyncIterable,
  newId,
  readBody,
  sendError,
  sendJson,
  startEventStream,
} from "./http.js";
import { whenAborted, type Work, type WorkTracker } from "./work.js";

/** One item of a Responses `input` (a message, or any other item, passed as it came). */
export interface InputItem {
  id?: string;
  type?: string;
  role?: string;
  content?: string | { type?: string; text?: string; [key: string]: unknown }[];
  [key: string]: unknown;
}

/** The body of `POST /responses`, as the caller sent it. */
export interface ResponsesRequest {
  input?: string | InputItem[];
  stream?: boolean;
  background?: boolean;
  store?: boolean;
  model?: string;
  instructions?: string;
  metadata?: Record<string, string>;
  previous_response_id?: string;
  conversation?: unknown;
  agent_session_id?: string;
  [key: string]: unknown;
}

/** A Responses object (`object: "response"`). */
export interface ResponseObject {
  id: string;
  object: "response";
  created_at: number;
  status: "queued" | "in_progress" | "completed" | "failed" | "cancelled" | "incomplete";
  model: string;
  output: unknown[];
  error: { code: string; message: string } | null;
  [key: string]: unknown;
}

/** One event of a response's stream. */
export interface ResponseEvent {
  type: string;
  sequence_number: number;
  [key: string]: unknown;
}

/** The context of a `/responses` handler: the common one and the request's own facts. */
export interface ResponsesContext extends Context {
  /** The id of the response being made (`resp_…`). */
  responseId: string;
  /** The text of `input`: the string, or its messages' text parts joined by new lines. */
  inputText: string;
  /** `input` as a list of items, each with an id. */
  inputItems: InputItem[];
  /** Whether the caller asked for a stream / a background run. */
  stream: boolean;
  background: boolean;
}

/**
 * What a `/responses` handler returns: the answer's text; its text in pieces (an async
 * iterable, streamed as deltas); or a (partial) Responses object whose `output` is the
 * answer (its id, object and creation time are the server's). `null`/`undefined`: no output.
 */
export type ResponsesResult =
  | string
  | AsyncIterable<string>
  | (Partial<ResponseObject> & { output: unknown[] })
  | null
  | undefined;

export type ResponsesHandler = (
  request: ResponsesRequest,
  context: ResponsesContext,
) => ResponsesResult | Promise<ResponsesResult>;

export interface ResponsesLimits {
  maxBodyBytes: number;
  /** Responses kept for GET/cancel/DELETE/input_items (the oldest finished go first). */
  maxStored: number;
  /** Bytes of events kept per response for replays (`?stream=true`). */
  maxReplayBytes: number;
  keepAliveMs: number;
}

/** The text of a Responses `input`: a string, or the text parts of its items. */
export function inputText(input: unknown): string {
  if (typeof input === "string") return input;
  if (!Array.isArray(input)) return "";
  const texts: string[] = [];
  for (const item of input) {
    const content = typeof item === "object" && item !== null ? (item as InputItem).content : item;
    if (typeof content === "string") texts.push(content);
    else if (Array.isArray(content))
      for (const part of content) if (typeof part?.text === "string") texts.push(part.text);
  }
  return texts.join("\n");
}

/** `input` as items with ids (a string is one user message). */
function inputItems(input: unknown): InputItem[] {
  if (typeof input === "string")
    return [
      {
        id: newId("msg"),
        type: "message",
        role: "user",
        content: [{ type: "input_text", text: input }],
      },
    ];
  if (!Array.isArray(input)) return [];
  return input.map((item: InputItem) => {
    const type = item.type ?? "message";
    const content =
      typeof item.content === "string"
        ? [{ type: item.role === "assistant" ? "output_text" : "input_text", text: item.content }]
        : item.content;
    return {
      ...item,
      id: item.id ?? newId(type === "message" ? "msg" : "item"),
      type,
      ...(content !== undefined ? { content } : {}),
    };
  });
}

interface Subscriber {
  send(event: ResponseEvent): Promise<void>;
  ready(): Promise<void>;
  end(): void;
}

/** One response: its current state, its events (for replays) and who follows it. */
class Run {
  readonly events: ResponseEvent[] = [];
  private keptBytes = 0;
  private sequence = 0;
  finished = false;
  readonly subscribers = new Set<Subscriber>();
  private readonly doneWaiters = new Set<() => void>();
  readonly aborted: Promise<never>;

  constructor(
    public response: ResponseObject,
    readonly request: ResponsesRequest,
    readonly items: InputItem[],
    readonly controller: AbortController,
    private readonly maxReplayBytes: number,
  ) {
    this.aborted = whenAborted(controller.signal);
    this.aborted.catch(() => {});
  }

  /** Records and sends one event; waits for slow live readers before the next. */
  async emit(type: string, fields: Record<string, unknown>): Promise<void> {
    const event: ResponseEvent = { type, sequence_number: this.sequence++, ...fields };
    const size = JSON.stringify(event).length;
    const terminal = !type.endsWith(".delta");
    if (terminal || this.keptBytes + size <= this.maxReplayBytes) {
      this.events.push(event);
      this.keptBytes += size;
    }
    await Promise.all([...this.subscribers].map((s) => s.send(event)));
  }

  finish(): void {
    this.finished = true;
    for (const s of this.subscribers) s.end();
    this.subscribers.clear();
    for (const wake of this.doneWaiters) wake();
  }

  /** Resolves when the run has finished. */
  done(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => this.doneWaiters.add(resolve));
  }

  /** Sends the kept events after `after`, then the live ones until the run ends. */
  follow(after: number, subscriber: Subscriber): void {
    for (const e of this.events) if (e.sequence_number > after) void subscriber.send(e);
    if (this.finished) subscriber.end();
    else this.subscribers.add(subscriber);
  }
}

/** The `/responses` routes of the container contract over one handler. */
export class ResponsesProtocol {
  private readonly runs = new Map<string, Run>();

  constructor(
    private readonly handler: ResponsesHandler,
    private readonly env: AgentEnvironment,
    private readonly work: WorkTracker,
    private readonly limits: ResponsesLimits,
  ) {}

  /** Serves `req` (tracked as `work`) when it is one of the routes; `false` when it is not. */
  async route(req: IncomingMessage, res: ServerResponse, url: URL, work: Work): Promise<boolean> {
    const parts = url.pathname.split("/").slice(1);
    if (parts[0] !== "responses") return false;
    if (parts.length === 1) {
      if (req.method !== "POST") throw notAllowed();
      await this.create(req, res, work);
      return true;
    }
    const id = decoded(parts[1] ?? "");
    const sub = parts.slice(2).join("/");
    const run = this.runs.get(id);
    const known = () => {
      if (!run) throw new HttpError(404, "not_found", `no response '${id}'`, "response_id");
      return run;
    };
    if (sub === "" && req.method === "GET") await this.retrieve(known(), url, res);
    else if (sub === "" && req.method === "DELETE") {
      known().controller.abort(new Error("the response was deleted"));
      this.runs.delete(id);
      sendJson(res, 200, { id, object: "response.deleted", deleted: true });
    } else if (sub === "cancel" && req.method === "POST") await this.cancel(known(), res);
    else if (sub === "input_items" && req.method === "GET") this.listItems(known(), url, res);
    else if (["", "cancel", "input_items"].includes(sub)) throw notAllowed();
    else return false;
    return true;
  }

  private async create(req: IncomingMessage, res: ServerResponse, request_: Work): Promise<void> {
    const raw = await readBody(req, this.limits.maxBodyBytes);
    let request: ResponsesRequest;
    try {
      request = JSON.parse(raw.toString("utf8")) as ResponsesRequest;
    } catch {
      throw new HttpError(400, "invalid_json", "the body is not JSON");
    }
    if (typeof request !== "object" || request === null || Array.isArray(request))
      throw new HttpError(400, "invalid_request", "the body must be a JSON object");
    const input = request.input;
    if (input !== undefined && typeof input !== "string" && !Array.isArray(input))
      throw new HttpError(400, "invalid_type", "'input' must be a string or an array", "input");
    if (
      Array.isArray(input) &&
      !input.every((i) => typeof i === "object" && i !== null && !Array.isArray(i))
    )
      throw new HttpError(400, "invalid_type", "each 'input' item must be an object", "input");
    for (const flag of ["stream", "background", "store"] as const)
      if (request[flag] !== undefined && typeof request[flag] !== "boolean")
        throw new HttpError(400, "invalid_type", `'${flag}' must be a boolean`, flag);
    const background = request.background === true;
    const stream = request.stream === true;
    if (background && request.store === false)
      throw new HttpError(400, "invalid_request", "a background response must be stored", "store");

    // A background run outlives its request: it is work of its own.
    const work = background ? this.work.begin() : request_;
    const response: ResponseObject = {
      id: newId("resp"),
      object: "response",
      created_at: Math.floor(Date.now() / 1000),
      status: background ? "queued" : "in_progress",
      model: typeof request.model === "string" ? request.model : (this.env.agentName ?? "agent"),
      output: [],
      error: null,
      background,
      ...(typeof request.instructions === "string" ? { instructions: request.instructions } : {}),
      ...(request.metadata && typeof request.metadata === "object"
        ? { metadata: request.metadata }
        : {}),
    };
    const items = inputItems(input ?? []);
    const run = new Run(response, request, items, work.controller, this.limits.maxReplayBytes);
    if (request.store !== false) this.keep(run);

    const headers: Record<string, string> = {};
    let answered = false;
    const context: ResponsesContext = {
      ...fromHeaders(req.headers, this.env),
      signal: work.controller.signal,
      setHeader(name, value) {
        if (!answered) headers[name.toLowerCase()] = value;
      },
      responseId: response.id,
      inputText: inputText(input),
      inputItems: items,
      stream,
      background,
    };
    // A caller that goes away ends a response that is not a background one.
    res.on("close", () => {
      if (!background && !run.finished)
        work.controller.abort(new Error("the caller closed the request"));
    });
    const started = this.execute(run, request, context);
    void started
      .catch(() => {})
      .finally(() => {
        if (background) work.end();
        if (request.store === false) this.runs.delete(run.response.id);
      });

    if (background && !stream) {
      answered = true;
      sendJson(res, 200, run.response);
      return;
    }
    if (stream) {
      answered = true;
      const events = startEventStream(res, headers, this.limits.keepAliveMs);
      run.follow(-1, {
        send: (e) => events.send(e),
        ready: () => drained(res),
        end: () => events.end(),
      });
      await run.done();
      return;
    }
    await run.done();
    answered = true;
    if (res.destroyed) return;
    if (run.response.status === "failed")
      sendJson(res, 500, { error: { type: "server_error", ...run.response.error, param: null } });
    else if (run.response.status === "cancelled")
      sendError(
        res,
        this.work.draining
          ? new HttpError(503, "shutting_down", "the agent shut down before it answered")
          : new HttpError(409, "cancelled", "the response was deleted before it completed"),
      );
    else sendJson(res, 200, run.response, headers);
  }

  /**
   * Runs the handler and turns what it gives into the response's events. The handler is
   * called before this returns (its code up to its first `await` has run), so the headers it
   * set by then go out with a stream's first byte.
   */
  private async execute(run: Run, request: ResponsesRequest, context: ResponsesContext) {
    let pending: ResponsesResult | Promise<ResponsesResult>;
    try {
      pending = this.handler(request, context);
    } catch (e) {
      pending = Promise.reject(e);
    }
    const result = Promise.race([Promise.resolve(pending), run.aborted]);
    result.catch(() => {});
    await run.emit("response.created", { response: run.response });
    run.response = { ...run.response, status: "in_progress" };
    await run.emit("response.in_progress", { response: run.response });
    try {
      const value = await result;
      if (typeof value === "string") await this.streamText(run, one(value));
      else if (isAsyncIterable(value)) await this.streamText(run, value);
      else if (value && typeof value === "object") await this.fullResponse(run, value);
      run.response = {
        ...run.response,
        status: "completed",
        completed_at: Math.floor(Date.now() / 1000),
      };
      await run.emit("response.completed", { response: run.response });
    } catch (e) {
      if (run.controller.signal.aborted) {
        run.response = { ...run.response, status: "cancelled" };
      } else {
        run.response = {
          ...run.response,
          status: "failed",
          error: { code: "server_error", message: e instanceof Error ? e.message : String(e) },
        };
        // (a response the handler made unserialisable fails here too: nothing more to send)
        await run.emit("response.failed", { response: run.response }).catch(() => {});
      }
    } finally {
      run.finish();
    }
  }

  /** One assistant message whose text comes in pieces, each a delta event. */
  private async streamText(run: Run, pieces: AsyncIterable<unknown>): Promise<void> {
    const index = run.response.output.length;
    const item = {
      id: newId("msg"),
      type: "message",
      role: "assistant",
      status: "in_progress",
      content: [] as unknown[],
    };
    await run.emit("response.output_item.added", { output_index: index, item });
    const at = { item_id: item.id, output_index: index, content_index: 0 };
    await run.emit("response.content_part.added", {
      ...at,
      part: { type: "output_text", text: "", annotations: [] },
    });
    const iterator = pieces[Symbol.asyncIterator]();
    let text = "";
    try {
      for (;;) {
        const next = await Promise.race([iterator.next(), run.aborted]);
        if (next.done) break;
        const delta = String(next.value);
        if (delta === "") continue;
        text += delta;
        await run.emit("response.output_text.delta", { ...at, delta, logprobs: [] });
      }
    } catch (e) {
      void Promise.resolve(iterator.return?.()).catch(() => {});
      throw e;
    }
    const part = { type: "output_text", text, annotations: [] };
    await run.emit("response.output_text.done", { ...at, text, logprobs: [] });
    await run.emit("response.content_part.done", { ...at, part });
    const done = { ...item, status: "completed", content: [part] };
    run.response = { ...run.response, output: [...run.response.output, done] };
    await run.emit("response.output_item.done", { output_index: index, item: done });
  }

  /** A response the handler made whole: its output items, each as events. */
  private async fullResponse(
    run: Run,
    result: Partial<ResponseObject> & { output?: unknown[] },
  ): Promise<void> {
    const own = { ...result };
    for (const key of ["id", "object", "created_at", "status", "output", "error"] as const)
      delete own[key];
    run.response = { ...run.response, ...own };
    const output = Array.isArray(result.output) ? result.output : [];
    for (const entry of output) {
      const index = run.response.output.length;
      const item = { ...(entry as Record<string, unknown>) };
      if (typeof item.id !== "string") item.id = newId(item.type === "message" ? "msg" : "item");
      await run.emit("response.output_item.added", { output_index: index, item });
      if (item.type === "message" && Array.isArray(item.content)) {
        for (const [c, part] of (item.content as { type?: string; text?: string }[]).entries()) {
          const at = { item_id: item.id, output_index: index, content_index: c };
          await run.emit("response.content_part.added", { ...at, part });
          if (part.type === "output_text" && typeof part.text === "string") {
            await run.emit("response.output_text.delta", { ...at, delta: part.text, logprobs: [] });
            await run.emit("response.output_text.done", { ...at, text: part.text, logprobs: [] });
          }
          await run.emit("response.content_part.done", { ...at, part });
        }
      }
      run.response = { ...run.response, output: [...run.response.output, item] };
      await run.emit("response.output_item.done", { output_index: index, item });
    }
  }

  private keep(run: Run): void {
    this.runs.set(run.response.id, run);
    if (this.runs.size <= this.limits.maxStored) return;
    for (const [id, r] of this.runs)
      if (r.finished) {
        this.runs.delete(id);
        return;
      }
  }

  private async retrieve(run: Run, url: URL, res: ServerResponse): Promise<void> {
    if (url.searchParams.get("stream") !== "true") {
      sendJson(res, 200, run.response);
      return;
    }
    const after = url.searchParams.get("starting_after");
    const from = after === null || after === "" ? -1 : Number(after);
    if (!Number.isInteger(from) || from < -1)
      throw new HttpError(
        400,
        "invalid_value",
        "'starting_after' must be an integer",
        "starting_after",
      );
    const events = startEventStream(res, {}, this.limits.keepAliveMs);
    run.follow(from, {
      send: (e) => events.send(e),
      ready: () => drained(res),
      end: () => events.end(),
    });
  }

  private async cancel(run: Run, res: ServerResponse): Promise<void> {
    if (run.response.background !== true)
      throw new HttpError(
        400,
        "invalid_request",
        "only a background response can be cancelled",
        "response_id",
      );
    if (!run.finished) {
      run.controller.abort(new Error("the response was cancelled"));
      await run.done();
    }
    sendJson(res, 200, run.response);
  }

  private listItems(run: Run, url: URL, res: ServerResponse): void {
    const q = url.searchParams;
    const limit = q.get("limit") === null ? 20 : Number(q.get("limit"));
    if (!Number.isInteger(limit) || limit < 1 || limit > 100)
      throw new HttpError(400, "invalid_value", "'limit' must be from 1 to 100", "limit");
    const order = q.get("order") ?? "desc";
    if (order !== "asc" && order !== "desc")
      throw new HttpError(400, "invalid_value", "'order' must be 'asc' or 'desc'", "order");
    let items = order === "asc" ? [...run.items] : [...run.items].reverse();
    const after = q.get("after");
    if (after) items = items.slice(items.findIndex((i) => i.id === after) + 1);
    const before = q.get("before");
    if (before) {
      const at = items.findIndex((i) => i.id === before);
      if (at >= 0) items = items.slice(0, at);
    }
    const data = items.slice(0, limit);
    sendJson(res, 200, {
      object: "list",
      data,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: items.length > data.length,
    });
  }
}

const notAllowed = () =>
  new HttpError(405, "method_not_allowed", "this method is not allowed on this route");

async function* one(text: string): AsyncIterable<string> {
  yield text;
}
