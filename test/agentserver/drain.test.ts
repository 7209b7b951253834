import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

/*
 * SIGTERM to a real agent process on @agenthost/agentserver: it stops accepting (new
 * connections are refused, a new request on a kept-alive connection gets 503), the request
 * in flight finishes with its whole answer, and it exits 0 well before the deadline; a
 * handler that never ends is cut at the drain deadline and the process still exits.
 */

const script = path.join(import.meta.dirname, "drainAgent.ts");

interface Agent {
  child: ChildProcess;
  port: number;
  exited: Promise<{ code: number | null; at: number }>;
  output: () => string;
}

async function start(drainSeconds: string): Promise<Agent> {
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    env: { PATH: process.env.PATH, AGENTSERVER_DRAIN_SECONDS: drainSeconds },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.on("exit", (code) => resolve({ code, at: Date.now() })),
  );
  for (let i = 0; i < 400; i++) {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
    if (m) return { child, port: Number(m[1]), exited, output: () => out };
    await sleep(25);
  }
  child.kill("SIGKILL");
  throw new Error(`the agent did not start:\n${out}`);
}

function ask(
  port: number,
  input: string,
  agent?: http.Agent,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/responses",
        agent,
        headers: { "content-type": "application/json" },
      },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ input }));
  });
}

describe("SIGTERM", () => {
  it("finishes the request in flight, refuses new ones, and exits before the deadline", async () => {
    const agent = await start("5");
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // A kept-alive connection, idle by the time of the signal, and one request in flight.
      assert.equal((await ask(agent.port, "warm", keepAlive)).status, 200);
      const inFlight = ask(agent.port, "slow");
      await sleep(150);
      const signalled = Date.now();
      agent.child.kill("SIGTERM");
      await sleep(100);
      await assert.rejects(ask(agent.port, "late"), /ECONNREFUSED/, "new connections refused");
      const finished = await inFlight;
      assert.equal(finished.status, 200);
      assert.match(finished.body, /"text":"slow done"/);
      const { code, at } = await agent.exited;
      assert.equal(code, 0, agent.output());
      assert.ok(at - signalled < 3000, `exited ${at - signalled} ms after SIGTERM`);
      assert.match(agent.output(), /SIGTERM: finishing 1 in flight/);
    } finally {
      keepAlive.destroy();
      agent.child.kill("SIGKILL");
    }
  });

  it("answers 503 to a request on a kept-alive connection during the drain", async () => {
    const agent = await start("5");
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await ask(agent.port, "warm", keepAlive)).status, 200);
      // The connection is busy with a slow request when the signal comes, so it stays open.
      const slow = ask(agent.port, "slow", keepAlive);
      const next = ask(agent.port, "after", keepAlive); // queued on the same connection
      await sleep(150);
      agent.child.kill("SIGTERM");
      assert.equal((await slow).status, 200);
      const refused = await next.catch((e: Error) => ({ status: 0, body: e.message }));
      // Either the 503 came on the kept connection or the connection was closed after the answer.
      assert.ok(
        refused.status === 503 || /ECONNREFUSED|ECONNRESET|socket hang up/.test(refused.body),
        JSON.stringify(refused),
      );
      if (refused.status === 503) assert.match(refused.body, /"code":"shutting_down"/);
      assert.equal((await agent.exited).code, 0);
    } finally {
      keepAlive.destroy();
      agent.child.kill("SIGKILL");
    }
  });

  it("cuts a hung handler at the drain deadline and exits", async () => {
    const agent = await start("1");
    try {
      const hung = ask(agent.port, "hang").catch((e: Error) => ({ status: 0, body: e.message }));
      await sleep(150);
      const signalled = Date.now();
      agent.child.kill("SIGTERM");
      const { code, at } = await agent.exited;
      const waited = at - signalled;
      assert.equal(code, 0, agent.output());
      assert.ok(waited >= 900 && waited < 2500, `exited ${waited} ms after SIGTERM`);
      assert.match(agent.output(), /drain deadline \(1 s\): aborting 1 in flight/);
      const answer = await hung;
      assert.equal(answer.status, 503, "the hung request is told the agent shut down");
      assert.match(answer.body, /"code":"shutting_down"/);
    } finally {
      agent.child.kill("SIGKILL");
    }
  });
});
