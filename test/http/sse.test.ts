import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import Fastify, { type FastifyInstance } from "fastify";
import { sendEvents } from "../../src/http/sse.js";

/*
 * The SSE writer on a real Fastify server and real sockets, against a client that goes away
 * while the route is still preparing its stream (as `:exec` does in `sessions.exec`): the
 * writer must see it, end the frames (their cleanup runs: the session is released) and never
 * wait for a drain that cannot come.
 */

let app: FastifyInstance;
let port: number;
let outcome: Promise<{ aborted: boolean; cleanedUp: boolean; settled: boolean }>;
let report!: (r: { aborted: boolean; cleanedUp: boolean; settled: boolean }) => void;

before(async () => {
  app = Fastify();
  app.post("/events", async (request, reply) => {
    let cleanedUp = false;
    let signalSeen: AbortSignal | undefined;
    async function* frames() {
      try {
        // Large frames: the first write into a dead socket answers false.
        for (;;) yield `data: ${"x".repeat(1 << 20)}\n\n`;
      } finally {
        cleanedUp = true;
      }
    }
    const done = sendEvents(reply, async (signal) => {
      signalSeen = signal;
      // Preparing the stream takes a while; the client leaves meanwhile.
      while (!reply.raw.destroyed) await sleep(10);
      await sleep(50);
      return frames();
    });
    const settled = await Promise.race([done.then(() => true), sleep(3000).then(() => false)]);
    report({ aborted: signalSeen?.aborted ?? false, cleanedUp, settled });
    return reply;
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  port = (app.server.address() as AddressInfo).port;
});

after(() => app.close());

describe("server-sent events", () => {
  it("ends at once for a client gone before the stream began, its frames cleaned up", async () => {
    outcome = new Promise((resolve) => (report = resolve));
    const req = http.request({ port, host: "127.0.0.1", method: "POST", path: "/events" });
    req.on("error", () => {});
    req.setHeader("content-type", "application/json");
    req.end("{}");
    await sleep(100);
    req.destroy();
    const r = await outcome;
    assert.equal(r.settled, true, "the writer did not wait for a drain that cannot come");
    assert.equal(r.aborted, true, "the route's signal says the client is gone");
    assert.equal(r.cleanedUp, true, "the frames' own cleanup ran");
  });
});
