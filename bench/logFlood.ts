import { chmodSync } from "node:fs";
import https from "node:https";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { deployFixture } from "../test/helpers/agents.js";
import { sdk, startServer, type TestServer } from "../test/helpers/server.js";
import { cpuSeconds, removeDir, rss, tempDir } from "./processes.js";
import { envInt, fixed, quantile, verdict, type Section } from "./report.js";

/*
 * Agents flooding their output, on the real service over HTTPS: sessions of the log-flood
 * fixture (test/fixtures/agents/log-flood) each print lines of 8,191 control characters to
 * stdout as fast as the pipe takes them, from their start, with one log-stream client reading
 * one of them. Meanwhile `GET /agents/{name}` is timed (one request every 10 ms on a kept-alive
 * connection) and the server's RSS sampled. Baseline in the same run, on the same server: the
 * same GETs before any session exists.
 *
 *   node --import tsx bench/logFlood.ts      (BENCH_FLOOD_SECONDS, BENCH_FLOOD_SESSIONS)
 */

const targets = { rssMb: 512, p99Ms: 50 };
const agentName = "flood";
const fixture = "log-flood";
const getEveryMs = 10;
const rssEveryMs = 20;
const mib = (bytes: number) => bytes / 1024 / 1024;

// Servers left running by a failed run: SIGKILL (their sandboxes die with them).
const liveServers = new Set<TestServer>();
process.once("exit", () => liveServers.forEach((s) => void s.kill()));

interface Phase {
  latencies: number[];
  peakRss: number;
  /** Server CPU, fraction of one core. */
  cpu: number;
}

/** GETs the agent every `getEveryMs` for `seconds`, sampling the server's RSS. */
async function timeGets(server: TestServer, agent: https.Agent, seconds: number): Promise<Phase> {
  const url = `${server.endpoint}/agents/${agentName}?api-version=v1`;
  const latencies: number[] = [];
  let peakRss = rss(server.pid);
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rss(server.pid))), rssEveryMs);
  const cpu0 = cpuSeconds(server.pid);
  const t0 = performance.now();
  try {
    while (performance.now() - t0 < seconds * 1000) {
      const start = performance.now();
      const status = await get(url, server, agent);
      if (status !== 200) throw new Error(`GET ${url} answered ${status}`);
      latencies.push(performance.now() - start);
      await sleep(getEveryMs);
    }
  } finally {
    clearInterval(sampler);
  }
  const cpu = (cpuSeconds(server.pid) - cpu0) / ((performance.now() - t0) / 1000);
  return { latencies, peakRss: Math.max(peakRss, rss(server.pid)), cpu };
}

function get(url: string, server: TestServer, agent: https.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { agent, headers: { authorization: `Bearer ${server.adminKey}` } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** Reads a session's log stream, counting whole flood lines and "not sent" notes. */
function readLog(server: TestServer, sessionId: string) {
  const counts = { floodLines: 0, bytes: 0 };
  let tail = "";
  const flood = `"message":"${"?".repeat(8191)}"`;
  const req = https.request(
    `${server.endpoint}/agents/${agentName}/versions/1/sessions/${sessionId}:logstream?api-version=v1`,
    { ca: server.caPem, headers: { authorization: `Bearer ${server.adminKey}` }, agent: false },
    (res) => {
      res.setEncoding("utf8");
      res.on("data", (text: string) => {
        counts.bytes += text.length;
        const blocks = (tail + text).split("\n\n");
        tail = blocks.pop()!;
        for (const block of blocks) if (block.includes(flood)) counts.floodLines++;
      });
    },
  );
  req.on("error", () => {});
  req.end();
  return { counts, close: () => req.destroy() };
}

/** The agent's answer: how many bytes it has written to stdout so far. */
async function writtenBy(server: TestServer, sessionId: string) {
  const url = `${server.endpoint}/agents/${agentName}/endpoint/protocols/openai/responses?api-version=v1`;
  const body = JSON.stringify({ input: "how much?", agent_session_id: sessionId });
  const text = await new Promise<string>((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: "POST",
        ca: server.caPem,
        headers: {
          authorization: `Bearer ${server.adminKey}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        },
      },
      (res) => {
        let answer = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (answer += d));
        res.on("end", () =>
          res.statusCode === 200 ? resolve(answer) : reject(new Error(answer.slice(0, 300))),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
  return Number(/written (\d+)/.exec(text)?.[1] ?? NaN);
}

export async function logFloodBench(): Promise<Section> {
  const seconds = envInt("BENCH_FLOOD_SECONDS", 30);
  const sessions = envInt("BENCH_FLOOD_SESSIONS", 4);
  const dataDir = tempDir("agenthost-bench-flood-");
  chmodSync(dataDir, 0o711); // the sandbox uid must traverse the data dir
  const server = await startServer({ dataDir, env: { AGENTHOST_WARM_POOL_SIZE: "0" } });
  liveServers.add(server);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: server.caPem });
  try {
    const client = sdk(server, server.adminKey);
    await deployFixture(client, agentName, fixture);
    const baseline = await timeGets(server, agent, Math.min(10, seconds));
    const rssBefore = rss(server.pid);
    const ids: string[] = [];
    for (let i = 0; i < sessions; i++) {
      const s = await client.agents.createSession(agentName, {
        type: "version_ref",
        agent_version: "1",
      });
      ids.push(s.agent_session_id);
    }
    const reader = readLog(server, ids[0]!);
    const started = await Promise.all(ids.map((id) => writtenBy(server, id)));
    const flood = await timeGets(server, agent, seconds);
    const written = await Promise.all(ids.map((id) => writtenBy(server, id)));
    reader.close();
    const perSession = written.map((w, i) => (w - started[i]!) / seconds);
    return section(seconds, sessions, baseline, flood, rssBefore, perSession, reader.counts);
  } finally {
    agent.destroy();
    await server.stop();
    liveServers.delete(server);
    removeDir(dataDir);
  }
}

function section(
  seconds: number,
  sessions: number,
  baseline: Phase,
  flood: Phase,
  rssBefore: number,
  perSession: number[],
  reader: { floodLines: number; bytes: number },
): Section {
  const row = (name: string, p: Phase) => {
    const p50 = quantile(p.latencies, 0.5);
    const p99 = quantile(p.latencies, 0.99);
    return [
      name,
      String(p.latencies.length),
      fixed(p50),
      fixed(p99),
      fixed(Math.max(...p.latencies), 1),
      fixed(p50 / quantile(baseline.latencies, 0.5)),
      fixed(p99 / quantile(baseline.latencies, 0.99)),
      fixed(mib(p.peakRss), 1),
      `${Math.round(p.cpu * 100)} %`,
    ];
  };
  const p99 = quantile(flood.latencies, 0.99);
  const rate = perSession.reduce((a, b) => a + b, 0) / perSession.length;
  return {
    title: "Agents flooding their output — `bench/logFlood.ts`",
    table: {
      header: [
        "Phase",
        "GETs",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p50 vs baseline",
        "p99 vs baseline",
        "peak RSS MiB",
        "server CPU",
      ],
      rows: [row("no flood (baseline)", baseline), row(`${sessions} sessions flooding`, flood)],
    },
    notes: [
      `${sessions} sessions of the log-flood fixture print lines of 8,191 control characters to stdout as fast as the pipe takes them, for ${seconds} s; one log-stream client reads the first. \`GET /agents/{name}\` every ${getEveryMs} ms on one kept-alive HTTPS connection; RSS sampled every ${rssEveryMs} ms.`,
      `Read from each agent: ${fixed(mib(rate), 2)} MiB/s on average (${perSession.map((r) => fixed(mib(r), 2)).join(", ")}); the rest of its writes waited on the full pipe. The log-stream client got ${reader.floodLines} whole flood lines (${fixed(mib(reader.bytes), 1)} MiB).`,
      `RSS before the floods ${fixed(mib(rssBefore), 1)} MiB, peak during them ${fixed(mib(flood.peakRss), 1)} MiB.`,
      `Target: server RSS ≤ ${targets.rssMb} MB — ${verdict(mib(flood.peakRss) <= targets.rssMb)}.`,
      `Target: GET p99 < ${targets.p99Ms} ms while flooding — ${verdict(p99 < targets.p99Ms)} (${fixed(p99)} ms).`,
    ],
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const { renderSection } = await import("./report.js");
  process.stdout.write(renderSection(await logFloodBench()));
}
