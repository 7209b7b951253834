import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { serve, type AgentServer } from "../../packages/agentserver/src/index.js";
import { removeDir, tempDir } from "../helpers/server.js";

/*
 * @agenthost/agentserver's /invocations routes, served on a Unix socket (as a sandbox's
 * relay reaches an agent) and asked with node:http: raw bytes in and out, a stream whose
 * first chunk arrives before the handler finished, the x-agent-invocation-id header, GET and
 * cancel by id, the OpenAPI document, the body limit and a handler's failure.
 */

let agent: AgentServer;
let dir: string;
let socketPath: string;
let release: () => void = () => {};
let cancelledWith: unknown;

const openapi = { openapi: "3.1.0", info: { title: "unit", version: "1" }, paths: {} };

before(async () => {
  dir = tempDir("agentserver-inv-");
  socketPath = path.join(dir, "agent.sock");
  agent = await serve({
    socketPath,
    handleSignals: false,
    log: () => {},
    maxBodyBytes: 1024,
    openapi,
    async invocations(request, ctx) {
      const route = request.query.get("do");
      if (route === "stream") return streamed();
      if (route === "json") return { echoed: await request.json(), session: ctx.sessionId };
      if (route === "chunks") {
        let n = 0;
        for await (const c of request.chunks()) n += c.length;
        return `read ${n} bytes`;
      }
      if (route === "hang") {
        ctx.signal.addEventListener("abort", () => (cancelledWith = ctx.signal.reason));
        return new Promise<never>(() => {});
      }
      if (route === "fail") throw new Error("asked to fail");
      if (route === "status") {
        ctx.setStatus(202);
        ctx.setHeader("content-type", "application/x-unit");
        ctx.setHeader("x-agent-trace", ctx.invocationId);
        return "accepted";
      }
      return request.body();
    },
  });
});

after(async () => {
  await agent.close(0);
  removeDir(dir);
});

async function* streamed() {
  yield "first\n";
  await new Promise<void>((resolve) => (release = resolve));
  yield Buffer.from("second\n");
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request over the socket; `onFirstChunk` sees the answer's first chunk as it comes. */
function call(
  method: string,
  url: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
  onFirstChunk?: (chunk: Buffer) => void,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: url, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => {
        if (chunks.length === 0) onFirstChunk?.(c);
        chunks.push(c);
      });
      res.on("end", () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("POST /invocations", () => {
  it("echoes raw bytes with their content type and an invocation id", async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 254]);
    const r = await call("POST", "/invocations", bytes, {
      "content-type": "application/x-raw",
      "x-agent-session-id": "sess-7",
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, bytes);
    assert.equal(r.headers["content-type"], "application/octet-stream");
    assert.match(r.headers["x-agent-invocation-id"] as string, /^inv_[0-9a-f]{48}$/);
    assert.equal(r.headers["x-agent-session-id"], "sess-7");
    // A well-formed id the platform sends is kept.
    const given = await call("POST", "/invocations", "x", {
      "x-agent-invocation-id": "inv-given-1",
    });
    assert.equal(given.headers["x-agent-invocation-id"], "inv-given-1");
  });

  it("answers JSON, a status and headers the handler set", async () => {
    const json = await call("POST", "/invocations?do=json", '{"a":[1,2]}', {
      "x-agent-session-id": "sess-8",
    });
    assert.equal(json.headers["content-type"], "application/json");
    assert.deepEqual(JSON.parse(json.body.toString()), {
      echoed: { a: [1, 2] },
      session: "sess-8",
    });
    const bad = await call("POST", "/invocations?do=json", "{nope");
    assert.equal(bad.status, 400);
    assert.equal(JSON.parse(bad.body.toString()).error.code, "invalid_json");
    const status = await call("POST", "/invocations?do=status", "");
    assert.equal(status.status, 202);
    assert.equal(status.headers["content-type"], "application/x-unit");
    assert.equal(status.headers["x-agent-trace"], status.headers["x-agent-invocation-id"]);
    assert.equal(status.body.toString(), "accepted");
  });

  it("streams: the first chunk arrives while the handler is still producing", async () => {
    let firstAt = 0;
    let released = 0;
    const answer = call("POST", "/invocations?do=stream", "", {}, (chunk) => {
      firstAt = Date.now();
      assert.equal(chunk.toString(), "first\n");
      setTimeout(() => {
        released = Date.now();
        release();
      }, 20);
    });
    const r = await answer;
    assert.ok(firstAt > 0 && released >= firstAt, "the first chunk came before the release");
    assert.equal(r.body.toString(), "first\nsecond\n");
    assert.equal(r.headers["transfer-encoding"], "chunked");
  });

  it("reads the body as it comes, and refuses one past the limit with 413", async () => {
    const r = await call("POST", "/invocations?do=chunks", Buffer.alloc(1000));
    assert.equal(r.body.toString(), "read 1000 bytes");
    for (const route of ["/invocations", "/invocations?do=chunks"]) {
      const big = await call("POST", route, Buffer.alloc(2048));
      assert.equal(big.status, 413, route);
      assert.equal(JSON.parse(big.body.toString()).error.code, "request_too_large");
    }
  });

  it("answers a handler's failure with 500 in the error envelope", async () => {
    const r = await call("POST", "/invocations?do=fail", "");
    assert.equal(r.status, 500);
    const error = JSON.parse(r.body.toString()).error;
    assert.equal(error.code, "server_error");
    assert.equal(error.message, "asked to fail");
    const id = r.headers["x-agent-invocation-id"] as string;
    const record = JSON.parse((await call("GET", `/invocations/${id}`)).body.toString());
    assert.equal(record.status, "failed");
  });
});

describe("invocations by id", () => {
  it("gets a finished invocation's status record", async () => {
    const done = await call("POST", "/invocations", "x");
    const id = done.headers["x-agent-invocation-id"] as string;
    const record = JSON.parse((await call("GET", `/invocations/${id}`)).body.toString());
    assert.equal(record.id, id);
    assert.equal(record.object, "invocation");
    assert.equal(record.status, "completed");
    assert.equal(typeof record.completed_at, "number");
  });

  it("cancels a running invocation: its signal aborts and its caller gets an answer", async () => {
    cancelledWith = undefined;
    const id = "inv-to-cancel";
    const pending = call("POST", "/invocations?do=hang", "", { "x-agent-invocation-id": id });
    await sleep(30);
    const running = JSON.parse((await call("GET", `/invocations/${id}`)).body.toString());
    assert.equal(running.status, "in_progress");
    const cancel = await call("POST", `/invocations/${id}/cancel`, "");
    assert.equal(cancel.status, 200);
    assert.ok(cancelledWith instanceof Error, "the handler's signal was aborted");
    const answer = await pending;
    assert.equal(answer.status, 499);
    assert.equal(JSON.parse(answer.body.toString()).error.code, "cancelled");
    const record = JSON.parse((await call("GET", `/invocations/${id}`)).body.toString());
    assert.equal(record.status, "cancelled");
    assert.equal((await call("GET", "/invocations/inv-none")).status, 404);
    assert.equal((await call("POST", "/invocations/inv-none/cancel")).status, 404);
  });

  it("serves the OpenAPI document, and 405 for a wrong method", async () => {
    const doc = await call("GET", "/invocations/docs/openapi.json");
    assert.equal(doc.status, 200);
    assert.deepEqual(JSON.parse(doc.body.toString()), openapi);
    assert.equal((await call("GET", "/invocations")).status, 405);
    assert.equal((await call("GET", "/responses")).status, 404, "no responses handler");
  });
});
