import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import autocannon from "autocannon";
import { expectJson, httpsClient } from "./https.js";
import {
  benchAdminKey,
  removeDir,
  separateCpus,
  startAgenthost,
  startBareFastify,
  tempDir,
  type ChildServer,
} from "./processes.js";
import { envInt, fixed, quantile, renderSection, verdict, type Section } from "./report.js";

/*
 * Read throughput and latency of GET /agents/{name} and GET /agents (limit=20) beside a bare
 * Fastify hello-world, both over HTTPS, each server in its own child process while autocannon
 * runs here (2 cores: one serves, one loads).
 *
 *   node --import tsx bench/agentsHttp.ts      (BENCH_DURATION / BENCH_WARMUP in seconds)
 */

const connections = 10;
const fixedRate = 1000;
const seededAgents = 50;
const targets = { throughputShare: 0.5, p99Ms: 10 };

interface Target {
  label: string;
  server: ChildServer;
  path: string;
}

interface Load {
  result: autocannon.Result;
  /**
   * Every 200 response's latency in ms, unrounded. autocannon's own histogram keeps whole ms
   * and, under `overallRate`, adds synthetic samples (see BENCHMARKS.md).
   */
  latencies: number[];
  /** Server CPU time over wall time; ~1 means the server's one core was the limit. */
  serverCpu: number;
  /** The same for this process, the load generator. */
  clientCpu: number;
}

function fire(target: Target, duration: number, overallRate?: number): Promise<Load> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const serverBefore = target.server.cpuSeconds();
    const clientBefore = process.cpuUsage();
    const wallBefore = performance.now();
    const done = (result: autocannon.Result) => {
      const wall = (performance.now() - wallBefore) / 1000;
      const client = process.cpuUsage(clientBefore);
      resolve({
        result,
        latencies,
        serverCpu: (target.server.cpuSeconds() - serverBefore) / wall,
        clientCpu: (client.user + client.system) / 1e6 / wall,
      });
    };
    const instance = autocannon(
      {
        url: target.server.origin + target.path,
        connections,
        duration,
        ...(overallRate ? { overallRate } : {}),
        // Every target gets the same request bytes, the bare server included.
        headers: { authorization: `Bearer ${benchAdminKey}` },
        // autocannon always connects with rejectUnauthorized: false, so this CA is only
        // documentation; the certificates are checked by the https.ts requests before loading.
        tlsOptions: { ca: target.server.caPem },
      },
      (err, result) => (err ? reject(err) : done(result)),
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status === 200) latencies.push(ms);
    });
  });
}

const failures = (r: autocannon.Result) => r.errors + r.timeouts + r.non2xx;

async function seed(server: ChildServer): Promise<void> {
  const client = httpsClient(server.origin, server.caPem, benchAdminKey);
  try {
    for (let i = 1; i <= seededAgents; i++) {
      expectJson(
        await client.request("POST", "/api/projects/default/agents?api-version=v1", {
          name: `bench-${i}`,
          definition: { kind: "prompt", model: "gpt-4o" },
        }),
      );
    }
  } finally {
    client.close();
  }
}

/** One request through a verifying client: the route answers 200 and the certificate is good. */
async function check(target: Target): Promise<void> {
  const client = httpsClient(target.server.origin, target.server.caPem, benchAdminKey);
  try {
    expectJson(await client.request("GET", target.path));
  } finally {
    client.close();
  }
}

export async function agentsHttpBench(): Promise<Section> {
  const duration = envInt("BENCH_DURATION", 10);
  const warmup = envInt("BENCH_WARMUP", 3);
  const placement = separateCpus();
  const dataDir = tempDir("agenthost-bench-");
  const bareTlsDir = tempDir("agenthost-bench-bare-");
  const servers: ChildServer[] = [];
  try {
    const agenthost = await startAgenthost(dataDir);
    servers.push(agenthost);
    const bare = await startBareFastify(bareTlsDir);
    servers.push(bare);
    await seed(agenthost);

    const list: Target[] = [
      { label: "bare Fastify `GET /` (baseline)", server: bare, path: "/" },
      {
        label: "`GET /agents/{name}`",
        server: agenthost,
        path: "/api/projects/default/agents/bench-25?api-version=v1",
      },
      {
        label: "`GET /agents?limit=20`",
        server: agenthost,
        path: "/api/projects/default/agents?api-version=v1&limit=20",
      },
    ];
    const measured: { target: Target; max: Load; paced: Load }[] = [];
    for (const target of list) {
      await check(target);
      await fire(target, warmup); // JIT, SQLite page cache, TLS sessions
      const max = await fire(target, duration);
      const paced = await fire(target, duration, fixedRate);
      measured.push({ target, max, paced });
    }
    return present(measured, `${duration} s per measurement; ${placement}`);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    removeDir(dataDir);
    removeDir(bareTlsDir);
  }
}

function present(measured: { target: Target; max: Load; paced: Load }[], how: string): Section {
  const bare = measured[0]!.max;
  const bareRps = bare.result.requests.average;
  const ms = (load: Load) =>
    `${fixed(quantile(load.latencies, 0.5))} / ${fixed(quantile(load.latencies, 0.99))}`;
  const rows = measured.map(({ target, max, paced }, i) => {
    const rps = max.result.requests.average;
    return [
      target.label,
      fixed(rps, 0),
      i === 0 ? "1.00" : fixed(rps / bareRps),
      ms(max),
      `${fixed(max.serverCpu * 100, 0)} % / ${fixed(max.clientCpu * 100, 0)} %`,
      fixed(max.result.throughput.average / rps, 0),
      fixed(paced.result.requests.average, 0),
      `${ms(paced)} / ${fixed(quantile(paced.latencies, 1), 1)}`,
      String(paced.result.latency.p99),
      String(failures(max.result) + failures(paced.result)),
    ];
  });
  const agentRows = measured.slice(1);
  const worstShare = Math.min(...agentRows.map((m) => m.max.result.requests.average / bareRps));
  const worstP99 = Math.max(...agentRows.map((m) => quantile(m.paced.latencies, 0.99)));
  return {
    title: "Agents over HTTPS vs bare Fastify",
    table: {
      header: [
        "Endpoint",
        "max req/s",
        "vs bare",
        "p50 / p99 ms at max",
        "CPU at max: server / autocannon",
        "bytes/resp",
        `req/s at ${fixedRate} target`,
        `p50 / p99 / max ms at ${fixedRate}/s`,
        `p99 ms at ${fixedRate}/s as autocannon reports it`,
        "errors + non-2xx",
      ],
      rows,
    },
    notes: [
      `${connections} connections, warm-up first, then ${how}. max = unthrottled, then autocannon \`overallRate: ${fixedRate}\`.`,
      baselineNote(bare),
      `Target: throughput ≥ ${targets.throughputShare * 100} % of bare — ${verdict(worstShare >= targets.throughputShare)} (lowest: ${fixed(worstShare * 100, 0)} %).`,
      `Target: p99 < ${targets.p99Ms} ms at ${fixedRate} req/s — ${verdict(worstP99 < targets.p99Ms)} (highest: ${fixed(worstP99)} ms).`,
    ],
  };
}

/** Who limited the baseline: if not the bare server, its figure is only a floor. */
function baselineNote(bare: Load): string {
  const cpu = `The bare server used ${fixed(bare.serverCpu * 100, 0)} % of its core at max and autocannon ${fixed(bare.clientCpu * 100, 0)} % of its own`;
  if (bare.serverCpu < 0.9) {
    return `${cpu}: autocannon was the limit, so the bare figure is a floor and the "vs bare" ratios are upper bounds.`;
  }
  if (bare.clientCpu >= 0.9) {
    return `${cpu}: both were near saturation, so the bare figure is about the most this machine can measure.`;
  }
  return `${cpu}: the server was the limit.`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.stdout.write(renderSection(await agentsHttpBench()));
}
