import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { after, before, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, VersionRefIndicator } from "@azure/ai-projects";
import { deployFixture } from "../helpers/agents.js";
import { httpsJson, removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";

/*
 * Agents flooding their stdout (the log-flood fixture: lines of 8,191 control characters, as
 * fast as the pipe takes them) cannot run the service out of memory or stall it: for a few
 * seconds of two floods, with a log-stream client reading one of them, the server's resident
 * memory stays bounded, `GET /agents/{name}` answers quickly, and the floods still reach the
 * log stream and the agents still answer.
 */

const floodMs = 5000;
/** Growth of the server's RSS over its size before the floods (it held 1-2 GiB unbounded). */
const maxGrowthBytes = 160 * 1024 * 1024;
/** Generous for a shared, busy machine; unpaced, one 64 KiB read cost 4 ms of the loop. */
const maxP99Ms = 250;

let server: TestServer;
let client: AIProjectClient;
const agent = `flood-${process.pid}`;

before(async () => {
  server = await startServer();
  client = sdk(server, server.adminKey);
  await deployFixture(client, agent, "log-flood");
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
});

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

/** Counts the frames of a session's log stream whose message is a whole flood line. */
function countFloodLines(id: string): { count: () => number; close: () => void } {
  let floodLines = 0;
  let tail = "";
  const flood = `"message":"${"?".repeat(8191)}"`;
  const req = httpsRequest(
    `${server.endpoint}/agents/${agent}/versions/1/sessions/${id}:logstream?api-version=v1`,
    { ca: server.caPem, headers: { authorization: `Bearer ${server.adminKey}` }, agent: false },
    (res) => {
      res.setEncoding("utf8");
      res.on("data", (text: string) => {
        const blocks = (tail + text).split("\n\n");
        tail = blocks.pop()!;
        for (const block of blocks) if (block.includes(flood)) floodLines++;
      });
    },
  );
  req.on("error", () => {});
  req.end();
  return { count: () => floodLines, close: () => req.destroy() };
}

const ask = (id: string) =>
  httpsJson(
    server,
    "POST",
    `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
    {
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ input: "how much?", agent_session_id: id }),
    },
  );

it("stays within its memory and keeps answering while two agents flood their output", async (t) => {
  const before = rss(server.pid);
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const s = await client.agents.createSession(agent, {
      type: "version_ref",
      agent_version: "1",
    } as VersionRefIndicator);
    ids.push(s.agent_session_id);
  }
  const reader = countFloodLines(ids[0]!);
  for (const id of ids) assert.equal((await ask(id)).status, 200, "the agent answers"); // started
  let peak = rss(server.pid);
  const sampler = setInterval(() => (peak = Math.max(peak, rss(server.pid))), 20);
  const latencies: number[] = [];
  const end = Date.now() + floodMs;
  while (Date.now() < end) {
    const t0 = performance.now();
    const res = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/${agent}?api-version=v1`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    latencies.push(performance.now() - t0);
    assert.equal(res.status, 200);
    await sleep(20);
  }
  clearInterval(sampler);
  peak = Math.max(peak, rss(server.pid));
  latencies.sort((a, b) => a - b);
  const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1]!;
  const growth = peak - before;
  const mib = (n: number) => (n / 1024 / 1024).toFixed(1);
  const summary = `RSS ${mib(before)} → peak ${mib(peak)} MiB; GET p99 ${p99.toFixed(1)} ms over ${latencies.length}`;
  t.diagnostic(summary);
  assert.ok(growth < maxGrowthBytes, summary);
  assert.ok(p99 < maxP99Ms, summary);
  // The floods flowed (at the paced rate) and the agents are alive.
  assert.ok(reader.count() > 100, `${reader.count()} flood lines streamed; ${summary}`);
  for (const id of ids) {
    const answer = await ask(id);
    assert.equal(answer.status, 200);
    assert.match(JSON.stringify(answer.body), /written [1-9]\d*/);
  }
  reader.close();
});
