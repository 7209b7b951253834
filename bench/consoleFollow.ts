import { chmodSync } from "node:fs";
import https from "node:https";
import { pathToFileURL } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";
import { deployFixture } from "../test/helpers/agents.js";
import { ensureConsoleBuilt } from "../test/helpers/console.js";
import { sdk, startServer, type TestServer } from "../test/helpers/server.js";
import { removeDir, tempDir } from "./processes.js";
import { envInt, fixed, quantile, verdict, type Section } from "./report.js";

/*
 * The web console following a fast agent: the console-rate fixture
 * (test/fixtures/agents/console-rate) prints "line <i> <time_ns>" 1,000 times a second for
 * BENCH_CONSOLE_SECONDS (60) while a headless Chromium shows the session page. Every 250 ms the
 * page's latest line is read: its lag is the page's clock minus the time in the line (same
 * host). The tab's JS heap (CDP Runtime.getHeapUsage) is read every second, and after a forced
 * GC before and after the run.
 *
 *   node --import tsx bench/consoleFollow.ts   (BENCH_CONSOLE_SECONDS, BENCH_CONSOLE_RATE)
 */

const targets = { lagP99Ms: 1_000, heapGrowthMb: 64, heapPeakMb: 200 };
const agentName = "console-rate";
const mib = (bytes: number) => bytes / 1024 / 1024;

function post(server: TestServer, path: string, body: unknown) {
  return new Promise<number>((resolve, reject) => {
    const req = https.request(
      `${server.endpoint}${path}`,
      {
        method: "POST",
        ca: server.caPem,
        headers: {
          authorization: `Bearer ${server.adminKey}`,
          "content-type": "application/json",
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

export async function consoleFollowBench(): Promise<Section> {
  const seconds = envInt("BENCH_CONSOLE_SECONDS", 60);
  const rate = envInt("BENCH_CONSOLE_RATE", 1_000);
  ensureConsoleBuilt();
  const dataDir = tempDir("agenthost-bench-console-");
  chmodSync(dataDir, 0o711);
  const server = await startServer({ dataDir, env: { AGENTHOST_WARM_POOL_SIZE: "0" } });
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  try {
    const client = sdk(server, server.adminKey);
    await deployFixture(client, agentName, "console-rate");
    const session = await client.agents.createSession(agentName, {
      type: "version_ref",
      agent_version: "1",
    });
    const id = session.agent_session_id;
    const ask = (input: string) =>
      post(server, `/agents/${agentName}/endpoint/protocols/openai/responses?api-version=v1`, {
        input,
        agent_session_id: id,
      });
    if ((await ask("1 1")) !== 200) throw new Error("the agent did not answer");

    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 800 },
    });
    const page = await context.newPage();
    await page.goto(`${server.origin}/`);
    await page.evaluate((key) => {
      sessionStorage.setItem("agenthost.key", key);
      sessionStorage.setItem(
        "agenthost.project",
        JSON.stringify({ project: "default", admin: true }),
      );
    }, server.adminKey);
    await page.goto(`${server.origin}/agents/${agentName}/sessions/${id}`);
    await page
      .getByTestId("stream-state")
      .filter({ hasText: /^open$/ })
      .waitFor();
    const cdp = await context.newCDPSession(page);
    const heap = async (gc: boolean) => {
      if (gc) await cdp.send("HeapProfiler.collectGarbage");
      return (await cdp.send("Runtime.getHeapUsage")).usedSize;
    };
    const heapBefore = await heap(true);

    if ((await ask(`${seconds * rate} ${rate}`)) !== 200) throw new Error("the agent refused");
    const lags: number[] = [];
    const heaps: number[] = [];
    let lastIndex = -1;
    const end = Date.now() + seconds * 1000;
    let nextHeap = Date.now();
    while (Date.now() < end) {
      await sleep(250);
      const { text, now } = await page.evaluate(() => ({
        text: document.querySelector('[data-testid="latest-line"]')?.textContent ?? "",
        now: Date.now(),
      }));
      const match = /^line (\d+) (\d+)$/.exec(text);
      if (match) {
        lastIndex = Number(match[1]);
        lags.push(now - Number(BigInt(match[2]!) / 1_000_000n));
      }
      if (Date.now() >= nextHeap) {
        heaps.push(await heap(false));
        nextHeap += 1_000;
      }
    }
    // The last line printed, once it has been shown.
    await page
      .getByTestId("latest-line")
      .filter({ hasText: new RegExp(`^line ${seconds * rate - 1} `) })
      .waitFor({ timeout: 30_000 });
    const heapAfter = await heap(true);
    const peak = Math.max(...heaps);
    const p50 = quantile(lags, 0.5);
    const p99 = quantile(lags, 0.99);
    const growth = mib(heapAfter - heapBefore);
    return {
      title: "8. The console following 1,000 lines/s — `bench/consoleFollow.ts`",
      table: {
        header: [
          "lines/s",
          "seconds",
          "lag samples",
          "lag p50 ms",
          "lag p99 ms",
          "lag max ms",
          "heap before MiB",
          "heap peak MiB",
          "heap after GC MiB",
        ],
        rows: [
          [
            String(rate),
            String(seconds),
            String(lags.length),
            fixed(p50, 0),
            fixed(p99, 0),
            fixed(Math.max(...lags), 0),
            fixed(mib(heapBefore), 1),
            fixed(mib(peak), 1),
            fixed(mib(heapAfter), 1),
          ],
        ],
      },
      notes: [
        `Lag (page clock − time printed in the latest line shown, read every 250 ms) p99 ${fixed(p99, 0)} ms — target < ${targets.lagP99Ms} ms: ${verdict(p99 < targets.lagP99Ms)}. The last line sampled during the run was line ${lastIndex}; the page then showed the last of ${seconds * rate}.`,
        `JS heap growth over the run (after GC) ${fixed(growth, 1)} MiB — target ≤ ${targets.heapGrowthMb} MiB: ${verdict(growth <= targets.heapGrowthMb)}; peak ${fixed(mib(peak), 1)} MiB — target ≤ ${targets.heapPeakMb} MiB: ${verdict(mib(peak) <= targets.heapPeakMb)}. The terminal keeps 5,000 lines of scrollback and the download copy as many.`,
      ],
    };
  } finally {
    await browser.close();
    await server.stop();
    removeDir(dataDir);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const { renderSection } = await import("./report.js");
  process.stdout.write(renderSection(await consoleFollowBench()));
}
