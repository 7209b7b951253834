import type { IncomingMessage, ServerResponse } from "node:http";
import { fromHeaders, header, type AgentEnvironment, type Context } from "./context.js";
import { HttpError, decoded, drained, isAsyncIterable, newId, readBody, sendJson } from "./http.js";
import { whenAborted, type Work } from "./work.js";

/** A `POST /invocations`: raw bytes, read whole (`body`, `text`, `json`) or as they come. */
export interface InvocationRequest {
  /** `content-type` of the request ("" when absent). */
  contentType: string;
  /** The query string of the request. */
  query: URLSearchParams;
  /** The whole body (at most the server's `maxBodyBytes`; 413 past it). */
  body(): Promise<Buffer>;
  /** The body as UTF-8 text. */
  text(): Promise<string>;
  /** The body parsed as JSON (a 400 answers a body that is not JSON). */
  json(): Promise<unknown>;
  /** The body as it arrives, in chunks (use this or `body`, not both). */
  chunks(): AsyncIterable<Buffer>;
}

/** The context of an `/invocations` handler. */
export interface InvocationsContext extends Context {
  /** This invocation's id, answered in `x-agent-invocation-id`. */
  invocationId: string;
  /** The answer's status (200 unless set; before the first byte). */
  setStatus(status: number): void;
}

/**
 * What an `/invocations` handler returns: a string (text/plain), bytes
 * (application/octet-stream), an async iterable of either (streamed as they come), or any
 * other value (JSON). `null`/`undefined`: an empty body. A `content-type` set with
 * `setHeader` wins.
 */
export type InvocationsResult =
  | string
  | Uint8Array
  | AsyncIterable<string | Uint8Array>
  | Record<string, unknown>
  | unknown[]
  | number
  | boolean
  | null
  | undefined;

export type InvocationsHandler = (
  request: InvocationRequest,
  context: InvocationsContext,
) => InvocationsResult | Promise<InvocationsResult>;

/** What `GET /invocations/{id}` answers by default. */
export interface InvocationRecord {
  id: string;
  object: "invocation";
  status: "in_progress" | "completed" | "failed" | "cancelled";
  created_at: number;
  completed_at: number | null;
  error: { code: string; message: string } | null;
}

export interface InvocationsOptions {
  handler: InvocationsHandler;
  /** Answers `GET /invocations/{id}` instead of the built-in status record. */
  get?: (id: string, record: InvocationRecord | undefined, context: Context) => InvocationsResult;
  /** Called on `POST /invocations/{id}/cancel` (the invocation's signal is aborted anyway). */
  cancel?: (
    id: string,
    record: InvocationRecord | undefined,
    context: Context,
  ) => InvocationsResult | Promise<InvocationsResult>;
  /** Served at `GET /invocations/docs/openapi.json`. */
  openapi?: Record<string, unknown>;
}

const idPattern = /^[A-Za-z0-9_.:-]{1,128}$/;

interface Entry {
  record: InvocationRecord;
  controller: AbortController;
}

/** The `/invocations` routes of the container contract. */
export class InvocationsProtocol {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly options: InvocationsOptions,
    private readonly env: AgentEnvironment,
    private readonly limits: { maxBodyBytes: number; maxStored: number },
  ) {}

  /** Serves `req` (tracked as `work`) when it is one of the routes; `false` when it is not. */
  async route(req: IncomingMessage, res: ServerResponse, url: URL, work: Work): Promise<boolean> {
    const parts = url.pathname.split("/").slice(1);
    if (parts[0] !== "invocations") return false;
    if (parts.length === 1) {
      if (req.method !== "POST") throw notAllowed();
      await this.invoke(req, res, url, work);
      return true;
    }
    if (parts[1] === "docs" && parts[2] === "openapi.json" && parts.length === 3) {
      if (req.method !== "GET") throw notAllowed();
      if (!this.options.openapi) throw new HttpError(404, "not_found", "no OpenAPI document");
      sendJson(res, 200, this.options.openapi);
      return true;
    }
    const id = decoded(parts[1] ?? "");
    const sub = parts.slice(2).join("/");
    const entry = this.entries.get(id);
    const context: Context = {
      ...fromHeaders(req.headers, this.env),
      signal: new AbortController().signal,
      setHeader: (name, value) => res.setHeader(name, value),
    };
    const missing = () => new HttpError(404, "not_found", `no invocation '${id}'`, "invocation_id");
    if (sub === "" && req.method === "GET") {
      if (this.options.get) {
        await this.answer(res, this.options.get(id, entry?.record, context), 200, context.signal);
      } else if (!entry) throw missing();
      else sendJson(res, 200, entry.record);
    } else if (sub === "cancel" && req.method === "POST") {
      if (!entry && !this.options.cancel) throw missing();
      entry?.controller.abort(new Error("the invocation was cancelled"));
      if (this.options.cancel) {
        const result = await this.options.cancel(id, entry?.record, context);
        await this.answer(res, result, 200, context.signal);
      } else sendJson(res, 200, entry!.record);
    } else if (sub === "" || sub === "cancel") throw notAllowed();
    else return false;
    return true;
  }

  private async invoke(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    work: Work,
  ): Promise<void> {
    const given = header(req.headers, "x-agent-invocation-id");
    const id = idPattern.test(given) && !this.entries.has(given) ? given : newId("inv");
    const record: InvocationRecord = {
      id,
      object: "invocation",
      status: "in_progress",
      created_at: Math.floor(Date.now() / 1000),
      completed_at: null,
      error: null,
    };
    this.keep(id, { record, controller: work.controller });
    const signal = work.controller.signal;
    res.on("close", () => {
      if (record.status === "in_progress")
        work.controller.abort(new Error("the caller closed the request"));
    });
    let status = 200;
    res.setHeader("x-agent-invocation-id", id);
    const base = fromHeaders(req.headers, this.env);
    if (base.sessionId) res.setHeader("x-agent-session-id", base.sessionId);
    const limit = this.limits.maxBodyBytes;
    let body: Promise<Buffer> | undefined;
    const request: InvocationRequest = {
      contentType: header(req.headers, "content-type"),
      query: url.searchParams,
      body: () => (body ??= readBody(req, limit)),
      text: async () => (await request.body()).toString("utf8"),
      json: async () => {
        const text = await request.text();
        try {
          return JSON.parse(text) as unknown;
        } catch {
          throw new HttpError(400, "invalid_json", "the body is not JSON");
        }
      },
      chunks: () => limited(req, limit),
    };
    const context: InvocationsContext = {
      ...base,
      signal,
      invocationId: id,
      setHeader: (name, value) => {
        if (!res.headersSent) res.setHeader(name, value);
      },
      setStatus: (s) => {
        if (Number.isInteger(s) && s >= 200 && s <= 599) status = s;
      },
    };
    const aborted = whenAborted(signal);
    aborted.catch(() => {});
    try {
      const result = await Promise.race([
        Promise.resolve(this.options.handler(request, context)),
        aborted,
      ]);
      await this.answer(res, result, status, signal, aborted);
      record.status = "completed";
    } catch (e) {
      record.status = signal.aborted ? "cancelled" : "failed";
      if (!signal.aborted)
        record.error = {
          code: "server_error",
          message: e instanceof Error ? e.message : String(e),
        };
      if (e instanceof HttpError && !res.headersSent) throw e;
      if (!res.headersSent && !res.destroyed)
        sendJson(res, signal.aborted ? 499 : 500, {
          error: {
            type: "server_error",
            code: signal.aborted ? "cancelled" : "server_error",
            message: record.error?.message ?? "the invocation was cancelled",
            param: null,
          },
        });
      else res.destroy();
    } finally {
      record.completed_at = Math.floor(Date.now() / 1000);
    }
  }

  /** Writes a handler's result: bytes, text, a stream of either, or JSON. */
  private async answer(
    res: ServerResponse,
    result: InvocationsResult,
    status: number,
    signal: AbortSignal,
    aborted?: Promise<never>,
  ): Promise<void> {
    const type = (t: string) => {
      if (!res.hasHeader("content-type")) res.setHeader("content-type", t);
    };
    if (typeof result === "string" || result instanceof Uint8Array) {
      const raw = typeof result === "string" ? Buffer.from(result) : result;
      type(typeof result === "string" ? "text/plain; charset=utf-8" : "application/octet-stream");
      res.writeHead(status, { "content-length": raw.length });
      res.end(raw);
      return;
    }
    if (isAsyncIterable(result)) {
      type("application/octet-stream");
      res.writeHead(status);
      res.flushHeaders();
      const iterator = (result as AsyncIterable<string | Uint8Array>)[Symbol.asyncIterator]();
      const stop = aborted ?? whenAborted(signal);
      stop.catch(() => {});
      try {
        for (;;) {
          const next = await Promise.race([iterator.next(), stop]);
          if (next.done) break;
          if (res.destroyed) throw new Error("the caller closed the request");
          res.write(typeof next.value === "string" ? next.value : Buffer.from(next.value));
          await drained(res);
        }
      } catch (e) {
        void Promise.resolve(iterator.return?.()).catch(() => {});
        throw e;
      }
      res.end();
      return;
    }
    if (result === undefined || result === null) {
      res.writeHead(status, { "content-length": 0 });
      res.end();
      return;
    }
    type("application/json");
    const raw = Buffer.from(JSON.stringify(result));
    res.writeHead(status, { "content-length": raw.length });
    res.end(raw);
  }

  private keep(id: string, entry: Entry): void {
    this.entries.set(id, entry);
    if (this.entries.size <= this.limits.maxStored) return;
    for (const [old, e] of this.entries)
      if (e.record.status !== "in_progress") {
        this.entries.delete(old);
        return;
      }
  }
}

/** The request's chunks, at most `limit` bytes in all. */
async function* limited(req: IncomingMessage, limit: number): AsyncIterable<Buffer> {
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit)
      throw new HttpError(
        413,
        "request_too_large",
        `the request body is larger than ${limit} bytes`,
      );
    yield chunk;
  }
}

const notAllowed = () =>
  new HttpError(405, "method_not_allowed", "this method is not allowed on this route");
