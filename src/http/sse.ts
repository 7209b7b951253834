import { once } from "node:events";
import type { FastifyReply } from "fastify";

/** Quiet streams get a comment line this often, so proxies and clients keep them open. */
const keepAliveMs = 15_000;

/**
 * Answers with server-sent events: each frame written as it comes, the next one read only
 * when the socket has taken the last (back-pressure), a comment on quiet streams. Ends with
 * the frames, or stops reading them when the client goes away.
 *
 * `frames` may be a function of the signal that aborts when the client goes away, called
 * before the answer's head is written: what it throws is answered as any error of the route
 * (a 4xx before the stream), and a client gone while it ran is seen (the frames are then
 * ended at once, their own cleanup run).
 */
export async function sendEvents(
  reply: FastifyReply,
  frames: AsyncIterable<string> | ((signal: AbortSignal) => Promise<AsyncIterable<string>>),
) {
  const res = reply.raw;
  const gone = new AbortController();
  const isGone = () => {
    if (!gone.signal.aborted && (res.destroyed || res.closed)) gone.abort();
    return gone.signal.aborted;
  };
  res.once("close", () => gone.abort());
  isGone();
  const source = typeof frames === "function" ? await frames(gone.signal) : frames;
  reply.hijack();
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    "x-request-id": String(reply.request.id),
  });
  const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), keepAliveMs);
  try {
    // Started even for a client already gone: a generator's cleanup runs only once started.
    for await (const frame of source) {
      if (isGone()) break;
      keepAlive.refresh();
      if (!res.write(frame) && !isGone()) await once(res, "drain", { signal: gone.signal });
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
