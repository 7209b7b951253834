import { pino } from "pino";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { parseConfig } from "../src/config/config.js";
import type { Order } from "../src/domain/model.js";
import type { Store } from "../src/domain/ports.js";
import { createServices, openStore } from "../src/service.js";
import { expectJson, httpsClient } from "./https.js";
import { benchAdminKey, removeDir, separateCpus, startAgenthost, tempDir } from "./processes.js";
import { envInt, fixed, quantile, renderSection, verdict, type Section } from "./report.js";

/*
 * Keyset paging: one agent with 100,000 versions; the first page of GET /agents/{name}/versions
 * against pages 50 % and 99 % deep, in both orders. Sequential requests, interleaved
 * round-robin over the cases so machine noise hits them all alike; median per case. The same
 * pages are then timed on the store alone, where the fixed HTTP cost does not hide the query.
 *
 *   node --import tsx bench/pagingDeep.ts      (BENCH_VERSIONS, BENCH_SAMPLES)
 */

const agent = "deep";
const pageSize = 20;
const maxDeepToFirst = 1.5;

interface Case {
  order: Order;
  /** How many versions precede the page in this order. */
  skipped: number;
  /** The `after` cursor: the id of the last version before the page. */
  after?: string;
  /** The version the page must start with. */
  firstVersion: number;
}

function cases(versions: number): Case[] {
  // A deep page is still a full page, even with few versions (BENCH_VERSIONS).
  const depth = (share: number) => Math.min(Math.floor(versions * share), versions - pageSize);
  const depths = [0, depth(0.5), depth(0.99)];
  return (["desc", "asc"] as const).flatMap((order) =>
    depths.map((skipped) => {
      // The skipped-th version in this order, and the one after it.
      const last = order === "asc" ? skipped : versions + 1 - skipped;
      const first = order === "asc" ? skipped + 1 : versions - skipped;
      return {
        order,
        skipped,
        ...(skipped > 0 ? { after: `${agent}:${last}` } : {}),
        firstVersion: first,
      };
    }),
  );
}

/**
 * Writes the versions through the real domain code before the server starts. One transaction
 * per version, as the service does; the disk here makes that about 0.2 ms each.
 */
async function seed(dataDir: string, versions: number): Promise<void> {
  const config = parseConfig({ dataDir });
  const store = await openStore(config);
  try {
    const { agents } = createServices(store, config, pino({ level: "silent" }));
    for (let v = 1; v <= versions; v++) {
      await agents.createVersion("default", agent, {
        definition: {
          kind: "prompt",
          model: "gpt-4o",
          instructions: `You are version ${v} of the deep paging agent. Answer briefly.`,
        },
      });
    }
  } finally {
    await store.close();
  }
}

/** Runs `measure` over all cases round-robin; returns each case's durations in ms. */
async function roundRobin(
  all: Case[],
  rounds: number,
  measure: (c: Case) => Promise<number>,
): Promise<number[][]> {
  const times = all.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of all.entries()) times[i]!.push(await measure(c));
  }
  return times;
}

async function timeHttp(
  dataDir: string,
  all: Case[],
  warmup: number,
  samples: number,
): Promise<number[][]> {
  const server = await startAgenthost(dataDir);
  const client = httpsClient(server.origin, server.caPem, benchAdminKey);
  try {
    const measure = async (c: Case) => {
      const query = new URLSearchParams({ "api-version": "v1", limit: String(pageSize) });
      query.set("order", c.order);
      if (c.after) query.set("after", c.after);
      const path = `/api/projects/default/agents/${agent}/versions?${query}`;
      const start = performance.now();
      const response = await client.request("GET", path);
      const ms = performance.now() - start;
      const page = expectJson<{ data: { version: string }[] }>(response);
      if (page.data.length !== pageSize || page.data[0]?.version !== String(c.firstVersion)) {
        throw new Error(`wrong page for ${path}: ${response.body.slice(0, 200)}`);
      }
      return ms;
    };
    await roundRobin(all, warmup, measure);
    return await roundRobin(all, samples, measure);
  } finally {
    client.close();
    await server.stop();
  }
}

/** The same pages straight from the store (the SQL and row mapping, no HTTP). */
async function timeStore(
  dataDir: string,
  all: Case[],
  warmup: number,
  samples: number,
): Promise<number[][]> {
  const store: Store = await openStore(parseConfig({ dataDir }));
  try {
    const measure = async (c: Case) => {
      const start = performance.now();
      const page = await store.agents.listVersions("default", agent, {
        limit: pageSize,
        order: c.order,
        ...(c.after ? { after: c.after } : {}),
        includeDrafts: false,
      });
      const ms = performance.now() - start;
      if (page?.items[0]?.version !== c.firstVersion) throw new Error("wrong page from store");
      return ms;
    };
    await roundRobin(all, warmup, measure);
    return await roundRobin(all, samples, measure);
  } finally {
    await store.close();
  }
}

export async function pagingDeepBench(): Promise<Section> {
  const versions = Math.max(envInt("BENCH_VERSIONS", 100_000), 2 * pageSize);
  const samples = envInt("BENCH_SAMPLES", 200);
  const warmup = Math.ceil(samples / 4);
  const all = cases(versions);
  const placement = separateCpus();
  const dataDir = tempDir("agenthost-bench-paging-");
  try {
    const seedStart = performance.now();
    await seed(dataDir, versions);
    const seedSeconds = (performance.now() - seedStart) / 1000;
    const http = await timeHttp(dataDir, all, warmup, samples);
    const storeOnly = await timeStore(dataDir, all, warmup, samples);
    return present(all, http, storeOnly, { versions, samples, seedSeconds, placement });
  } finally {
    removeDir(dataDir);
  }
}

function present(
  all: Case[],
  http: number[][],
  storeOnly: number[][],
  run: { versions: number; samples: number; seedSeconds: number; placement: string },
): Section {
  const median = (times: number[][], i: number) => quantile(times[i]!, 0.5);
  // The first page of the same order is the reference for each deep page.
  const firstOf = (c: Case) => all.findIndex((o) => o.order === c.order && o.skipped === 0);
  let worst = 0;
  const rows = all.map((c, i) => {
    const httpRatio = median(http, i) / median(http, firstOf(c));
    const storeRatio = median(storeOnly, i) / median(storeOnly, firstOf(c));
    worst = Math.max(worst, httpRatio);
    return [
      c.order,
      c.after ? `after=${c.after} (${fixed((c.skipped / run.versions) * 100, 0)} % deep)` : "first",
      fixed(median(http, i)),
      fixed(quantile(http[i]!, 0.9)),
      fixed(httpRatio),
      fixed(median(storeOnly, i) * 1000, 0),
      fixed(storeRatio),
    ];
  });
  return {
    title: `Deep version paging (${run.versions.toLocaleString("en-US")} versions)`,
    table: {
      header: [
        "order",
        "page",
        "HTTP median ms",
        "HTTP p90 ms",
        "vs first (HTTP)",
        "store median µs",
        "vs first (store)",
      ],
      rows,
    },
    notes: [
      `limit=${pageSize}, ${run.samples} sequential requests per case over one kept-alive HTTPS connection, interleaved; seeding took ${fixed(run.seedSeconds, 1)} s; ${run.placement}.`,
      `Target: deep page within ${maxDeepToFirst}× of the first — ${verdict(worst <= maxDeepToFirst)} (worst HTTP ratio ${fixed(worst)}).`,
    ],
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.stdout.write(renderSection(await pagingDeepBench()));
}
