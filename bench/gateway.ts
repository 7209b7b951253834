import http from "node:http";
import https from "node:https";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { expectJson, httpsClient } from "./https.js";
import {
  benchAdminKey,
  removeDir,
  rss,
  separateCpus,
  startAgenthost,
  startChild,
  tempDir,
  type ChildServer,
} from "./processes.js";
import { envInt, fixed, quantile, renderSection, verdict, type Section } from "./report.js";

/*
 * The model gateway's own cost: chat completions and responses through the real service
 * (HTTPS, its local CA) to a stand-in OpenAI-compatible upstream (a TEST DOUBLE in a child
 * process, bench/standInUpstream.ts: a real model server cannot run here), beside the same
 * chat completion sent straight to the stand-in, in the same run, interleaved request by
 * request on kept-alive connections. Then many slow streams held open at once through the
 * service, with its RSS sampled.
 *
 *   node --import tsx bench/gateway.ts      (BENCH_GATEWAY_REQUESTS, BENCH_GATEWAY_STREAMS)
 */

const targets = { addedP50Ms: 2, addedP99Ms: 5 };
const deltas = 20;
const warmup = 50;
const slowChunks = 100;
const slowMs = 100;
const rssEveryMs = 20;
const mib = (bytes: number) => bytes / 1024 / 1024;

interface Timing {
  /** Until the first byte of the body. */
  firstByte: number;
  total: number;
}

interface Case {
  label: string;
  via: "agenthost" | "stand-in";
  method: "GET" | "POST";
  path: string;
  body?: unknown;
  /** Something only a whole, successful answer contains. */
  expect: string;
  /** The label of the case it is compared with (none: it is a baseline). */
  baseline?: string;
}

interface Target {
  transport: typeof http | typeof https;
  agent: http.Agent;
  origin: string;
  headers: Record<string, string>;
}

/** One request on a kept-alive connection; the answer is checked after the clock stops. */
function timed(target: Target, c: Case): Promise<Timing> {
  const payload = c.body === undefined ? undefined : JSON.stringify(c.body);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstByte = NaN;
    const req = target.transport.request(
      new URL(c.path, target.origin),
      {
        method: c.method,
        agent: target.agent,
        headers: {
          ...target.headers,
          ...(payload
            ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
            : {}),
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (d: Buffer) => {
          if (parts.length === 0) firstByte = performance.now() - t0;
          parts.push(d);
        });
        res.on("end", () => {
          const total = performance.now() - t0;
          const text = Buffer.concat(parts).toString("utf8");
          if (res.statusCode !== 200 || !text.includes(c.expect))
            reject(new Error(`${c.label}: HTTP ${res.statusCode}: ${text.slice(0, 500)}`));
          else resolve({ firstByte, total });
        });
        res.on("error", reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`${c.label} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

const chat = (model: string, stream: boolean) => ({
  model,
  messages: [{ role: "user", content: "hi" }],
  stream,
});
const answerText = "tok ".repeat(deltas);

function cases(): Case[] {
  const project = "/api/projects/default/openai/v1";
  return [
    {
      label: "chat completion, not streamed",
      via: "stand-in",
      method: "POST",
      path: "/v1/chat/completions",
      body: chat("stand-in-model", false),
      expect: answerText,
    },
    {
      label: "chat completion, streamed",
      via: "stand-in",
      method: "POST",
      path: "/v1/chat/completions",
      body: chat("stand-in-model", true),
      expect: "data: [DONE]",
    },
    {
      label: "GET models",
      via: "stand-in",
      method: "GET",
      path: "/v1/models",
      expect: "stand-in-model",
    },
    {
      label: "chat completion, not streamed",
      via: "agenthost",
      method: "POST",
      path: `${project}/chat/completions`,
      body: chat("chat", false),
      expect: answerText,
      baseline: "chat completion, not streamed",
    },
    {
      label: "chat completion, streamed",
      via: "agenthost",
      method: "POST",
      path: `${project}/chat/completions`,
      body: chat("chat", true),
      expect: "data: [DONE]",
      baseline: "chat completion, streamed",
    },
    {
      label: "response, not streamed",
      via: "agenthost",
      method: "POST",
      path: `${project}/responses`,
      body: { model: "chat", input: "hi" },
      expect: answerText.trimEnd(),
      baseline: "chat completion, not streamed",
    },
    {
      label: "response, streamed",
      via: "agenthost",
      method: "POST",
      path: `${project}/responses`,
      body: { model: "chat", input: "hi", stream: true },
      expect: "response.completed",
      baseline: "chat completion, streamed",
    },
    {
      label: "GET models",
      via: "agenthost",
      method: "GET",
      path: `${project}/models`,
      expect: '"chat"',
      baseline: "GET models",
    },
  ];
}

interface StreamsResult {
  streams: number;
  before: number;
  peak: number;
  after: { seconds: number; rss: number }[];
  allOpenMs: number;
  totalMs: number;
  complete: number;
  serverCpu: number;
}

/** `streams` slow streamed chat completions through the service at once, RSS sampled. */
async function holdStreams(
  server: ChildServer,
  key: string,
  streams: number,
): Promise<StreamsResult> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: streams, ca: server.caPem });
  const payload = JSON.stringify({
    model: "chat",
    messages: [{ role: "user", content: "slow" }],
    stream: true,
  });
  await sleep(1000);
  const before = rss(server.pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rss(server.pid))), rssEveryMs);
  const cpu0 = server.cpuSeconds();
  const t0 = performance.now();
  let opened = 0;
  let allOpenMs = NaN;
  const one = () =>
    new Promise<boolean>((resolve, reject) => {
      const req = https.request(
        `${server.origin}/api/projects/default/openai/v1/chat/completions`,
        {
          method: "POST",
          agent,
          headers: {
            authorization: `Bearer ${key}`,
            "content-type": "application/json",
            "content-length": Buffer.byteLength(payload),
          },
        },
        (res) => {
          let text = "";
          let first = true;
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            if (first && ++opened === streams) allOpenMs = performance.now() - t0;
            first = false;
            text += d;
          });
          res.on("end", () =>
            resolve(
              res.statusCode === 200 &&
                text.split('"content":"tick "').length - 1 === slowChunks &&
                text.endsWith("data: [DONE]\n\n"),
            ),
          );
          res.on("error", reject);
        },
      );
      req.setTimeout(60_000, () => req.destroy(new Error("stream timed out")));
      req.on("error", reject);
      req.end(payload);
    });
  try {
    const results = await Promise.all(Array.from({ length: streams }, one));
    const totalMs = performance.now() - t0;
    const serverCpu = (server.cpuSeconds() - cpu0) / (totalMs / 1000);
    clearInterval(sampler);
    peak = Math.max(peak, rss(server.pid));
    agent.destroy(); // the client's idle TLS connections go
    const after: StreamsResult["after"] = [];
    for (const seconds of [1, 10]) {
      await sleep((seconds - (after.at(-1)?.seconds ?? 0)) * 1000);
      after.push({ seconds, rss: rss(server.pid) });
    }
    const complete = results.filter(Boolean).length;
    return { streams, before, peak, after, allOpenMs, totalMs, complete, serverCpu };
  } finally {
    clearInterval(sampler);
    agent.destroy();
  }
}

export async function gatewayBench(): Promise<Section[]> {
  const requests = envInt("BENCH_GATEWAY_REQUESTS", 500);
  const streams = envInt("BENCH_GATEWAY_STREAMS", 200);
  const placement = separateCpus();
  const dataDir = tempDir("agenthost-bench-gateway-");
  let upstream: ChildServer | undefined;
  let server: ChildServer | undefined;
  const agents: http.Agent[] = [];
  try {
    upstream = await startChild(
      "bench/standInUpstream.ts",
      [String(deltas), String(slowChunks), String(slowMs)],
      {},
      null,
      true,
    );
    server = await startAgenthost(dataDir, { AGENTHOST_MODEL_DISCOVERY: "off" });
    const admin = httpsClient(server.origin, server.caPem, benchAdminKey);
    expectJson(
      await admin.request("PUT", "/admin/projects/default/deployments/chat", {
        model: "stand-in-model",
        base_url: `${upstream.origin}/v1`,
      }),
      201,
    );
    const { key } = expectJson<{ key: string }>(
      await admin.request("POST", "/admin/keys", { project: "default", name: "bench" }),
      201,
    );
    admin.close();

    const direct: Target = {
      transport: http,
      agent: new http.Agent({ keepAlive: true, maxSockets: 1 }),
      origin: upstream.origin,
      headers: {},
    };
    const viaService: Target = {
      transport: https,
      agent: new https.Agent({ keepAlive: true, maxSockets: 1, ca: server.caPem }),
      origin: server.origin,
      headers: { authorization: `Bearer ${key}` },
    };
    agents.push(direct.agent, viaService.agent);
    const all = cases();
    const timings = new Map<Case, Timing[]>(all.map((c) => [c, []]));
    const round = async (keep: boolean) => {
      for (const c of all) {
        const t = await timed(c.via === "agenthost" ? viaService : direct, c);
        if (keep) timings.get(c)!.push(t);
      }
    };
    for (let i = 0; i < warmup; i++) await round(false);
    // The streams first, while the service's heap holds little garbage from the timed runs.
    // Twice: memory kept by the first wave and not reused by the second would be a leak.
    const held = [await holdStreams(server, key, streams), await holdStreams(server, key, streams)];
    // Round-robin, one request of each case per round, so drift on a shared machine hits all.
    for (let i = 0; i < requests; i++) await round(true);
    // The service's CPU per request, case by case (its own runs; /proc counts in 10 ms ticks).
    const cpuPerRequest = new Map<Case, number>();
    for (const c of all.filter((c) => c.via === "agenthost")) {
      const cpu0 = server.cpuSeconds();
      for (let i = 0; i < requests; i++) await timed(viaService, c);
      cpuPerRequest.set(c, ((server.cpuSeconds() - cpu0) / requests) * 1000);
    }
    return [latencySection(requests, timings, cpuPerRequest, placement), streamsSection(held)];
  } finally {
    for (const a of agents) a.destroy();
    await server?.stop();
    await upstream?.stop();
    removeDir(dataDir);
  }
}

function latencySection(
  requests: number,
  timings: Map<Case, Timing[]>,
  cpuPerRequest: Map<Case, number>,
  placement: string,
): Section {
  const find = (label: string) =>
    [...timings.entries()].find(([c]) => c.via === "stand-in" && c.label === label)![1];
  const q = (ts: Timing[], key: keyof Timing, p: number) =>
    quantile(
      ts.map((t) => t[key]),
      p,
    );
  const misses: string[] = [];
  const rows = [...timings.entries()].map(([c, ts]) => {
    const base = c.baseline === undefined ? undefined : find(c.baseline);
    const added = (key: keyof Timing, p: number) =>
      base === undefined ? "–" : fixed(q(ts, key, p) - q(base, key, p));
    if (base !== undefined && c.label !== "GET models") {
      const a50 = q(ts, "total", 0.5) - q(base, "total", 0.5);
      const a99 = q(ts, "total", 0.99) - q(base, "total", 0.99);
      if (a50 > targets.addedP50Ms || a99 > targets.addedP99Ms)
        misses.push(`${c.label} (+${fixed(a50)} / +${fixed(a99)} ms)`);
    }
    return [
      `${c.via === "agenthost" ? "agenthost (HTTPS)" : "stand-in direct (HTTP)"}: ${c.label}`,
      c.baseline === undefined ? "baseline" : `stand-in ${c.baseline}`,
      `${fixed(q(ts, "firstByte", 0.5))} / ${fixed(q(ts, "firstByte", 0.99))}`,
      `${fixed(q(ts, "total", 0.5))} / ${fixed(q(ts, "total", 0.99))}`,
      `${added("firstByte", 0.5)} / ${added("firstByte", 0.99)}`,
      `${added("total", 0.5)} / ${added("total", 0.99)}`,
      cpuPerRequest.has(c) ? fixed(cpuPerRequest.get(c)!) : "–",
    ];
  });
  return {
    title: "Model gateway latency — `bench/gateway.ts`",
    table: {
      header: [
        "Request",
        "compared with",
        "first byte p50 / p99 ms",
        "total p50 / p99 ms",
        "added first byte p50 / p99 ms",
        "added total p50 / p99 ms",
        "service CPU ms / request",
      ],
      rows,
    },
    notes: [
      `${requests} sequential requests per row after ${warmup} untimed (and the streams below), round-robin over the rows; one kept-alive connection per side (HTTPS to the service, trusting its CA; plain HTTP straight to the stand-in); ${placement}, the stand-in beside the load generator.`,
      `The stand-in answers at once: ${deltas} deltas of "tok " streamed, or the same text in one JSON answer. "Added" is agenthost's quantile minus the compared row's. Service CPU per request: ${requests} more requests of each agenthost row on their own, the service's utime + stime over them.`,
      `Target: ≤ ${targets.addedP50Ms} ms added at p50 and ≤ ${targets.addedP99Ms} ms at p99 (total time) — ${verdict(misses.length === 0)}${misses.length ? ` (${misses.join(", ")})` : ""}.`,
    ],
  };
}

function streamsSection(waves: StreamsResult[]): Section {
  const first = waves[0]!;
  const growth = (bytes: number) => fixed(mib(bytes - first.before), 1);
  const row = (moment: string, bytes: number, perStream = "–") => [
    moment,
    fixed(mib(bytes), 1),
    growth(bytes),
    perStream,
  ];
  const rows = waves.flatMap((r, i) => [
    row(`wave ${i + 1}: before`, r.before),
    row(
      `wave ${i + 1}: ${r.streams} streams open (peak)`,
      r.peak,
      fixed((r.peak - r.before) / r.streams / 1024, 1),
    ),
    ...r.after.map((a) => row(`wave ${i + 1}: ${a.seconds} s after they ended`, a.rss)),
  ]);
  return {
    title: "Model gateway: concurrent streams — `bench/gateway.ts`",
    table: {
      header: ["moment", "server RSS MiB", "growth vs first before MiB", "per stream KiB"],
      rows,
    },
    notes: [
      `After ${warmup} untimed requests of each kind, two waves of ${first.streams} streamed chat completions through the service at once, each answered by the stand-in with ${slowChunks} deltas ${slowMs} ms apart; RSS of the service process from /proc every ${rssEveryMs} ms. Per stream: (peak − that wave's before) / streams.`,
      ...waves.map(
        (r, i) =>
          `Wave ${i + 1}: all ${r.streams} had their first chunk after ${fixed(r.allOpenMs, 0)} ms and ended after ${fixed(r.totalMs / 1000, 1)} s; ${r.complete} of ${r.streams} got every delta and \`[DONE]\`; server CPU meanwhile ${Math.round(r.serverCpu * 100)} % of one core.`,
      ),
    ],
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  for (const section of await gatewayBench()) process.stdout.write(renderSection(section) + "\n");
}
