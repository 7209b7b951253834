import assert from "node:assert/strict";
import http from "node:http";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { after, before, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { APIError } from "openai";
import { openaiClient } from "../helpers/openaiClient.js";
import {
  adminRequest,
  httpsJson,
  removeDir,
  startServer,
  type TestServer,
} from "../helpers/server.js";
import { startStandInModel, type StandInModel } from "../helpers/standInModel.js";

/*
 * What the gateway does when the model server misbehaves: retries, an unreachable server, a
 * silent one (the deadline, 1 s here), one that stops mid-answer. The model server is a TEST
 * DOUBLE (test/helpers/standInModel.ts) scripted to fail.
 */

let server: TestServer;
let model: StandInModel;
let projectKey: string;

const admin = (method: string, route: string, body?: unknown) =>
  adminRequest(server, method, route, body);

const deploy = async (name: string, baseUrl: string) => {
  const r = await admin("PUT", `/projects/default/deployments/${name}`, {
    model: "stand-in-model",
    base_url: baseUrl,
  });
  assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
};

const chat = (model: string, stream = false) =>
  httpsJson(server, "POST", `${server.endpoint}/openai/v1/chat/completions`, {
    headers: { authorization: `Bearer ${projectKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model, stream, messages: [{ role: "user", content: "hello" }] }),
  });

/** A port on which nothing listens. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address() as { port: number };
  await new Promise((r) => probe.close(r));
  return port;
}

before(async () => {
  model = await startStandInModel();
  server = await startServer({ env: { AGENTHOST_UPSTREAM_TIMEOUT_SECONDS: "1" } });
  const key = await admin("POST", "/keys", { project: "default" });
  projectKey = key.body.key as string;
  await deploy("flaky", model.baseUrl);
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
  await model.close();
});

it("a 429, then a 503, then success: retried before the first chunk, the caller sees success", async () => {
  const statuses = [429, 503];
  model.answer(() => {
    const status = statuses.shift();
    return status ? { status, errorMessage: "busy" } : { text: "third time lucky" };
  });
  const before = model.requests.length;
  const r = await chat("flaky");
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const choices = r.body.choices as { message: { content: string } }[];
  assert.equal(choices[0]!.message.content, "third time lucky");
  assert.equal(model.requests.length - before, 3);
});

it("retries are bounded (upstreamRetries, 2): a 429 that persists is a 502 with the upstream's word", async () => {
  model.answer(() => ({ status: 429, errorMessage: "Rate limit reached for stand-in" }));
  const before = model.requests.length;
  const r = await chat("flaky");
  assert.equal(r.status, 502);
  const error = r.body.error as { code: string; message: string };
  assert.equal(error.code, "upstream_error");
  assert.match(error.message, /answered 429: Rate limit reached for stand-in \(after 3 attempts\)/);
  assert.equal(model.requests.length - before, 3);
});

it("a 400 from the upstream is not retried", async () => {
  model.answer(() => ({ status: 400, errorMessage: "messages: bad role" }));
  const before = model.requests.length;
  const r = await chat("flaky");
  assert.equal(r.status, 502);
  assert.match((r.body.error as { message: string }).message, /answered 400: messages: bad role/);
  assert.equal(model.requests.length - before, 1);
});

it("an unreachable upstream (connection refused) is a 502 within 1 s, retries included", async () => {
  await deploy("down", `http://127.0.0.1:${await closedPort()}/v1`);
  for (const stream of [false, true]) {
    const start = performance.now();
    const r = await chat("down", stream);
    const elapsed = performance.now() - start;
    assert.equal(r.status, 502, JSON.stringify(r.body));
    const error = r.body.error as { code: string; message: string };
    assert.equal(error.code, "upstream_error");
    assert.match(error.message, /could not be reached \(ECONNREFUSED\)/);
    assert.ok(elapsed < 1000, `answered after ${Math.round(elapsed)} ms`);
  }
});

it("a silent upstream is a 504 at the deadline, and its connection is closed", async () => {
  const silent = await startStandInModel();
  try {
    silent.answer(() => ({ silent: true }));
    await deploy("silent", silent.baseUrl);
    const start = performance.now();
    const r = await chat("silent");
    const elapsed = performance.now() - start;
    assert.equal(r.status, 504, JSON.stringify(r.body));
    assert.equal((r.body.error as { code: string }).code, "upstream_timeout");
    assert.ok(elapsed >= 950 && elapsed < 2500, `answered after ${Math.round(elapsed)} ms`);
    assert.equal(silent.requests.length, 1, "a timeout is not retried");
    // The gateway gave up on the upstream request: the stand-in's connection is gone.
    for (let i = 0; i < 40 && silent.openConnections() > 0; i++) await sleep(25);
    assert.equal(silent.openConnections(), 0);
  } finally {
    await silent.close();
  }
});

it("an upstream silent between two chunks: the stream ends with an upstream_timeout error", async () => {
  const stalling = await startStandInModel();
  try {
    stalling.answer(() => ({ chunks: ["first ", "second ", "never"], stallAfterChunks: 2 }));
    await deploy("stalls", stalling.baseUrl);
    const openai = openaiClient(server, projectKey);
    const stream = await openai.chat.completions.create({
      model: "stalls",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    let text = "";
    const start = performance.now();
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    })().then(
      () => assert.fail("expected the stream to fail"),
      (e: unknown) => e,
    );
    assert.equal(text, "first second ");
    assert.ok(err instanceof APIError, String(err));
    assert.match(err.message, /sent nothing for 1 s/);
    assert.equal((err.error as { code: string }).code, "upstream_timeout");
    assert.ok(performance.now() - start >= 900);
    for (let i = 0; i < 40 && stalling.openConnections() > 0; i++) await sleep(25);
    assert.equal(stalling.openConnections(), 0);
  } finally {
    await stalling.close();
  }
});

it("a caller that goes away mid-stream closes the upstream request too", async () => {
  const slow = await startStandInModel();
  try {
    slow.answer(() => ({ chunks: Array.from({ length: 40 }, (_, i) => `w${i} `), delayMs: 100 }));
    await deploy("slow", slow.baseUrl);
    const openai = openaiClient(server, projectKey);
    const stream = await openai.chat.completions.create({
      model: "slow",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    let n = 0;
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content && ++n === 2) break;
    for (let i = 0; i < 40 && slow.openConnections() > 0; i++) await sleep(25);
    assert.equal(slow.openConnections(), 0, "the upstream connection outlived the caller");
  } finally {
    await slow.close();
  }
});

/**
 * TEST DOUBLE: a hostile model server that answers every request with an endless body: one
 * server-sent event that never ends, or an error body that never ends.
 */
async function startFloodingModel(kind: "event" | "error") {
  const sockets = new Set<Socket>();
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(kind === "event" ? 200 : 500, {
      "content-type": kind === "event" ? "text/event-stream" : "application/json",
    });
    const piece = Buffer.alloc(64 * 1024, "x");
    if (kind === "event") res.write("data: ");
    const pour = () => {
      while (!res.destroyed && res.write(piece));
      if (!res.destroyed) res.once("drain", pour);
    };
    pour();
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests: () => requests,
    openConnections: () => sockets.size,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

it("an endless event from the upstream: a 502 once 1 MiB of it is read, not retried, connection closed", async () => {
  const flood = await startFloodingModel("event");
  try {
    await deploy("flood-event", flood.baseUrl);
    for (const stream of [false, true]) {
      const before = flood.requests();
      const r = await chat("flood-event", stream);
      assert.equal(r.status, 502, JSON.stringify(r.body));
      const error = r.body.error as { code: string; message: string };
      assert.equal(error.code, "upstream_error");
      assert.match(error.message, /answer was larger than 1048576 bytes in one event/);
      assert.equal(flood.requests() - before, 1, "a flood is not retried");
    }
    for (let i = 0; i < 40 && flood.openConnections() > 0; i++) await sleep(25);
    assert.equal(flood.openConnections(), 0);
  } finally {
    await flood.close();
  }
});

it("an endless error body: a 502 once 16 MiB of it are read, connection closed", async () => {
  const flood = await startFloodingModel("error");
  try {
    await deploy("flood-error", flood.baseUrl);
    const r = await chat("flood-error");
    assert.equal(r.status, 502, JSON.stringify(r.body));
    const error = r.body.error as { code: string; message: string };
    assert.equal(error.code, "upstream_error");
    assert.match(error.message, /answered 500: .*larger than 16777216 bytes/);
    for (let i = 0; i < 40 && flood.openConnections() > 0; i++) await sleep(25);
    assert.equal(flood.openConnections(), 0);
  } finally {
    await flood.close();
  }
});
