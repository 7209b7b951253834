import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/** A request that cannot be served, answered in the OpenAI error envelope. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

/** Answers `data` as JSON (with the headers a handler set before, if any). */
export function sendJson(
  res: ServerResponse,
  status: number,
  data: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const raw = Buffer.from(JSON.stringify(data));
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.writeHead(status, { "content-type": "application/json", "content-length": raw.length });
  res.end(raw);
}

/** Answers an error in the envelope `{ error: { message, type, code, param } }`. */
export function sendError(res: ServerResponse, error: HttpError): void {
  sendJson(res, error.status, {
    error: {
      message: error.message,
      type: error.status >= 500 ? "server_error" : "invalid_request_error",
      code: error.code,
      param: error.param,
    },
  });
}

/** The request's body, at most `limit` bytes (413 past it). */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const tooLarge = (limit: number) =>
  new HttpError(413, "request_too_large", `the request body is larger than ${limit} bytes`);

/** Starts a server-sent event stream; comments every `keepAliveMs` keep idle proxies open. */
export function startEventStream(
  res: ServerResponse,
  headers: Record<string, string>,
  keepAliveMs: number,
) {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
  const timer = setInterval(() => res.write(": keep-alive\n\n"), keepAliveMs);
  timer.unref();
  res.on("close", () => clearInterval(timer));
  return {
    /** Writes one event (`event:` its type, `data:` its JSON); resolves when it may write more. */
    send(event: { type: string }): Promise<void> {
      res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      return drained(res);
    },
    end() {
      clearInterval(timer);
      res.end();
    },
  };
}

/** Waits until `res` may take more data (or is gone). */
export function drained(res: ServerResponse): Promise<void> {
  if (!res.writableNeedDrain || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** `true` for a value one can `for await` over (and is not a string or bytes). */
export function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function"
  );
}

/** A fresh id: `prefix` and 48 hex digits. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString("hex")}`;
}

/** A path segment decoded; one that is not valid percent-encoding stays as it is. */
export function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
