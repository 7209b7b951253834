import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { loadavg } from "node:os";
import { chromium, type Page } from "playwright-core";
import { expectJson, httpsClient } from "./https.js";
import {
  benchAdminKey,
  removeDir,
  repoRoot,
  separateCpus,
  startAgenthost,
  tempDir,
} from "./processes.js";
import { envInt, fixed, quantile, renderSection, verdict, type Section } from "./report.js";

/*
 * The web console: the gzip size of what the first page loads (its HTML's script, stylesheet
 * and module preloads; later pages are separate chunks loaded when shown), and the time from
 * navigation to the agents list rendered in Chromium with 1,000 agents in the project
 * (created through the API in a temporary service). The list shows the API's first page of 20;
 * "rendered" is the moment its 20th row is in the DOM, taken in the page by a
 * MutationObserver against the navigation's start (performance.now()). Cold: a fresh browser
 * context each time (no cache, no connection); warm: a reload of the same tab.
 *
 *   node --import tsx bench/consoleAgents.ts      (BENCH_AGENTS, BENCH_SAMPLES)
 */

const maxFirstPageKb = 250;

/** Milliseconds from the navigation's start. */
interface Timing {
  rendered: number;
  html: number;
  apiStart: number;
  apiEnd: number;
}
const maxRenderMs = 1000;
const rows = 20;

function build() {
  const run = spawnSync(
    process.execPath,
    [
      path.join(repoRoot, "node_modules/vite/bin/vite.js"),
      "build",
      "--config",
      "web/vite.config.ts",
    ],
    { cwd: repoRoot, encoding: "utf8" },
  );
  if (run.status !== 0) throw new Error(`vite build failed:\n${run.stdout}\n${run.stderr}`);
}

/** The assets web/dist/index.html loads, each with its gzip size (zlib level 9, as served pre-compressed would be at best; Vite reports the same). */
function firstPage(): { file: string; bytes: number; gzip: number }[] {
  const dist = path.join(repoRoot, "web/dist");
  const html = readFileSync(path.join(dist, "index.html"), "utf8");
  const files = [
    "index.html",
    ...[...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]!),
  ];
  return [...new Set(files)].map((file) => {
    const data = readFileSync(path.join(dist, file));
    return { file, bytes: data.length, gzip: gzipSync(data, { level: 9 }).length };
  });
}

/** Records when the list's 20th row first appears (before any page script runs). */
const observeRows = `(() => {
  const seen = () => {
    if (document.querySelectorAll("tbody tr").length >= ${rows} && !window.__rendered)
      window.__rendered = performance.now();
  };
  new MutationObserver(seen).observe(document, { childList: true, subtree: true });
})();`;

export async function consoleAgentsBench(): Promise<Section[]> {
  const agents = envInt("BENCH_AGENTS", 1000);
  const samples = envInt("BENCH_SAMPLES", 15);
  const placement = separateCpus();
  build();
  const assets = firstPage();
  const totalGzip = assets.reduce((n, a) => n + a.gzip, 0);
  const bundle: Section = {
    title: "8.1 Web console — first page size — `bench/consoleAgents.ts`",
    table: {
      header: ["file", "bytes", "gzip bytes"],
      rows: [
        ...assets.map((a) => [
          a.file.replace(/-[\w-]{8}\./, "-….").replace("assets/", ""),
          String(a.bytes),
          String(a.gzip),
        ]),
        ["**total**", String(assets.reduce((n, a) => n + a.bytes, 0)), String(totalGzip)],
      ],
    },
    notes: [
      "What web/dist/index.html loads before the first page shows (the sign-in or agents list); the other pages (agent, create, deploy) are chunks loaded when first shown.",
      `Target: ≤ ${maxFirstPageKb} KB gzip — ${verdict(totalGzip <= maxFirstPageKb * 1024)} (${fixed(totalGzip / 1024, 1)} KB).`,
    ],
  };

  const dataDir = tempDir("agenthost-bench-console-");
  const server = await startAgenthost(dataDir);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const client = httpsClient(server.origin, server.caPem, benchAdminKey);
    const seedStart = performance.now();
    for (let i = 0; i < agents; i++)
      expectJson(
        await client.request("POST", "/api/projects/default/agents?api-version=v1", {
          name: `agent-${String(i).padStart(4, "0")}`,
          definition: { kind: "prompt", model: "gpt-bench", instructions: `Agent number ${i}.` },
        }),
      );
    const seedSeconds = (performance.now() - seedStart) / 1000;
    client.close();

    const newTab = async () => {
      const context = await browser.newContext({
        ignoreHTTPSErrors: true,
        viewport: { width: 1280, height: 800 },
      });
      await context.addInitScript({ content: observeRows });
      // Signed in as the console does it: the key in this tab's session storage.
      await context.addInitScript({
        content: `sessionStorage.setItem("agenthost.key", ${JSON.stringify(benchAdminKey)});
sessionStorage.setItem("agenthost.project", ${JSON.stringify(JSON.stringify({ project: "default", admin: true }))});`,
      });
      return { context, page: await context.newPage() };
    };
    const measure = async (page: Page, go: () => Promise<unknown>) => {
      await go();
      await page.waitForFunction(
        () => (window as unknown as { __rendered?: number }).__rendered,
        null,
        { timeout: 30_000 },
      );
      // In the page (as text: this file is compiled without the DOM's types).
      const ms = (await page.evaluate(`(() => {
        const nav = performance.getEntriesByType("navigation")[0];
        const api = performance.getEntriesByType("resource").find((e) => e.name.includes("/agents?"));
        return {
          rendered: window.__rendered,
          html: nav.responseEnd,
          apiStart: api ? api.startTime : NaN,
          apiEnd: api ? api.responseEnd : NaN,
        };
      })()`)) as Timing;
      const shown = await page.locator("tbody tr").count();
      if (shown !== rows) throw new Error(`expected ${rows} rows, saw ${shown}`);
      const first = await page.locator("tbody tr td").first().innerText();
      if (first !== `agent-${String(agents - 1).padStart(4, "0")}`)
        throw new Error(`first row ${first}`);
      return ms;
    };
    const url = `${server.origin}/agents`;
    const cold: Timing[] = [];
    const warm: Timing[] = [];
    // One unmeasured run first (the service's first requests, Chromium's start-up).
    {
      const { context, page } = await newTab();
      await measure(page, () => page.goto(url));
      await context.close();
    }
    for (let i = 0; i < samples; i++) {
      const { context, page } = await newTab();
      cold.push(await measure(page, () => page.goto(url)));
      for (let j = 0; j < 1; j++) warm.push(await measure(page, () => page.reload()));
      await context.close();
    }
    const load = loadavg()
      .map((n) => fixed(n, 1))
      .join(" / ");
    const worst = quantile(
      cold.map((t) => t.rendered),
      0.9,
    );
    const row = (label: string, times: Timing[]) => {
      const med = (f: (t: Timing) => number) => fixed(quantile(times.map(f), 0.5), 0);
      return [
        label,
        String(times.length),
        med((t) => t.rendered),
        fixed(
          quantile(
            times.map((t) => t.rendered),
            0.9,
          ),
          0,
        ),
        fixed(Math.max(...times.map((t) => t.rendered)), 0),
        med((t) => t.html),
        med((t) => t.apiStart),
        med((t) => t.apiEnd - t.apiStart),
      ];
    };
    const render: Section = {
      title: `8.2 Web console — navigation to the agents list rendered, ${agents.toLocaleString("en")} agents — \`bench/consoleAgents.ts\``,
      table: {
        header: [
          "load",
          "samples",
          "rendered median ms",
          "p90 ms",
          "max ms",
          "page HTML received (median ms)",
          "API request sent",
          "API request took",
        ],
        rows: [
          row("cold (new context: no cache, new TLS connection)", cold),
          row("warm (reload: assets cached)", warm),
        ],
      },
      notes: [
        `${agents} prompt agents created through the API (POST /agents, sequential) in ${fixed(seedSeconds, 1)} s into a temporary service; Chromium ${browser.version()} headless at 1280×800; ${placement}.`,
        `Measured from the navigation's start to the list's ${rows}th row in the DOM (the API's first page, \`limit=20&include=live_session_count\`, newest first; every sample checks it shows ${rows} rows starting with the newest agent).`,
        `Load average (1 / 5 / 15 min) at the end: ${load} — on a shared machine the browser's share of its CPU, not the service, sets most of the time (see the columns: the API answers in tens of ms).`,
        `Target: ≤ ${maxRenderMs} ms — ${verdict(worst <= maxRenderMs)} (cold p90 ${fixed(worst, 0)} ms).`,
      ],
    };
    return [bundle, render];
  } finally {
    await browser.close();
    await server.stop();
    removeDir(dataDir);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  for (const section of await consoleAgentsBench())
    process.stdout.write(renderSection(section) + "\n");
}
