import http from "node:http";
import https from "node:https";
import { Transform, pipeline, type Readable } from "node:stream";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";

/** An MCP server's answer (one JSON body, or one event of a stream) passed the byte limit. */
export class AnswerTooLarge extends Error {
  override readonly name = "AnswerTooLarge";
  constructor(readonly limit: number) {
    super(`The MCP server's answer was larger than ${limit} bytes.`);
  }
}

const nullBodyStatuses = new Set([101, 204, 205, 304]);

/**
 * A `fetch` for the MCP transports over node:http(s) and one agent, so that the sockets to a
 * server are the agent's alone (destroying it leaves none open) and no answer grows without
 * bound in memory: a JSON (or any other) body may be `limit` bytes in all, an event stream
 * `limit` bytes per event. Past that the body fails with AnswerTooLarge and `onTooLarge`
 * is told. Redirects are never followed here (the transports follow same-origin ones).
 */
export function boundedFetch(
  agent: http.Agent,
  limit: number,
  onTooLarge: (err: AnswerTooLarge) => void,
): FetchLike {
  return (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(String(input));
      if (init.body !== undefined && init.body !== null && typeof init.body !== "string")
        return reject(new TypeError("Only string request bodies are sent."));
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => (headers[name] = value));
      const send = url.protocol === "https:" ? https.request : http.request;
      let req: http.ClientRequest;
      try {
        req = send(url, {
          method: init.method ?? "GET",
          headers,
          agent,
          signal: init.signal ?? undefined,
        });
      } catch (err) {
        return reject(err as Error);
      }
      req.on("error", reject);
      req.on("response", (res) => {
        try {
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers))
            for (const v of Array.isArray(value) ? value : [value ?? ""])
              responseHeaders.append(name, v);
          const status = res.statusCode ?? 0;
          let body: ReadableStream<Uint8Array> | null = null;
          if (nullBodyStatuses.has(status) || init.method === "HEAD") res.resume();
          else {
            const stream = /^text\/event-stream/i.test(res.headers["content-type"] ?? "");
            const limiter = byteLimit(limit, stream, onTooLarge);
            pipeline(res, limiter, () => {});
            body = webStream(limiter);
          }
          resolve(
            new Response(body, { status, statusText: res.statusMessage, headers: responseHeaders }),
          );
        } catch (err) {
          res.destroy();
          reject(err as Error);
        }
      });
      req.end(init.body ?? undefined);
    });
}

/**
 * A web stream reading `stream` on demand. (Node 20's Readable.toWeb throws an uncaught
 * ERR_INVALID_STATE when data arrives after the web stream was cancelled.)
 */
function webStream(stream: Readable): ReadableStream<Uint8Array> {
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { value, done } = await chunks.next();
          if (done) controller.close();
          else controller.enqueue(new Uint8Array(value.buffer, value.byteOffset, value.length));
        } catch (err) {
          controller.error(err);
        }
      },
      cancel() {
        stream.destroy();
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Passes bytes through until `limit` of them: in all, or with `perEvent` since the last blank
 * line (the end of a server-sent event; lines end in LF, CRLF or CR).
 */
function byteLimit(
  limit: number,
  perEvent: boolean,
  onTooLarge: (err: AnswerTooLarge) => void,
): Transform {
  let size = 0;
  let lineLength = 0;
  let afterCr = false;
  const tooLarge = () => {
    const err = new AnswerTooLarge(limit);
    onTooLarge(err);
    return err;
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (!perEvent) {
        size += chunk.length;
        return size > limit ? done(tooLarge()) : done(null, chunk);
      }
      for (const byte of chunk) {
        if (byte === 0x0a && afterCr) {
          afterCr = false;
          continue;
        }
        afterCr = byte === 0x0d;
        if (byte === 0x0a || byte === 0x0d) {
          if (lineLength === 0) size = 0;
          lineLength = 0;
        } else {
          lineLength++;
          if (++size > limit) return done(tooLarge());
        }
      }
      done(null, chunk);
    },
  });
}
