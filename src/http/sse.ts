import { once } from "node:events";
import type { FastifyReply } from "fastify";

/** Quiet streams get a comment line this often, so proxies and clients keep them open. */
const keepAliveMs = 15_000;

/**
 * Answers with server-sent events: each frame written as it comes, the next one read only
 * when the socket has taken the last (back-pressure), a comment on quiet streams. Ends with
 * the frames, or stops reading them when the client goes away.
 */
export async function sendEvents(reply: FastifyReply, frames: AsyncIterable<string>) {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    "x-request-id": String(reply.request.id),
  });
  const gone = new AbortController();
  res.once("close", () => gone.abort());
  const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), keepAliveMs);
  try {
    for await (const frame of frames) {
      if (gone.signal.aborted) break;
      keepAlive.refresh();
      if (!res.write(frame)) await once(res, "drain", { signal: gone.signal });
    }
  } catch (err) {
    if (!gone.signal.aborted) throw err;
  } finally {
    clearInterval(keepAlive);
    res.end();
  }
}

/** One SSE frame with an event name. */
export const eventFrame = (event: string, data: unknown) =>
  `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
