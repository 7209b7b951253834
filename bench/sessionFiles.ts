import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { chmodSync, createReadStream, readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { createServer, type AddressInfo } from "node:net";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import type { AIProjectClient } from "@azure/ai-projects";
import { deployFixture, fixtureDir } from "../test/helpers/agents.js";
import { sdk, startServer, type TestServer } from "../test/helpers/server.js";
import { cpuSeconds, measureRss, removeDir, rss, tempDir } from "./processes.js";
import { envInt, fixed, quantile, verdict, type Section } from "./report.js";

/*
 * Session files and the console-log stream on the real service over HTTPS, with the log-ticker
 * fixture (test/fixtures/agents/log-ticker), each part on a fresh server:
 *
 * 1. A 50 MiB session file uploaded and downloaded (streamed, raw HTTPS with the bearer key)
 *    beside a `cp` of the same file on the same disk, and the server's peak RSS growth.
 * 2. Log latency: the agent prints "tick <i> <time_ns>" every 2 ms; latency is the client's
 *    wall clock when the SSE frame arrives minus that time. Baseline in the same run: the same
 *    agent as a plain python3 process whose stdout the benchmark reads through a pipe.
 * 3. 1,000 log-stream clients on one session: all of them get every line; server memory.
 *
 *   node --import tsx bench/sessionFiles.ts
 *   (BENCH_FILE_MB, BENCH_ROUNDS, BENCH_TICKS, BENCH_LOG_CLIENTS)
 */

const targets = { share: 0.5, rssMb: 64, p50Ms: 5 };
const agentName = "ticker";
const fixture = "log-ticker";
/** Seen by the RSS sampler (/proc/<pid>/status) this often. */
const rssEveryMs = 20;
/** Log-stream clients connect this many at a time (a TLS handshake each). */
const openBatch = 100;
const linesForClients = 50;
const mib = (bytes: number) => bytes / 1024 / 1024;

/* ---- The service ---- */

interface Service {
  server: TestServer;
  client: AIProjectClient;
  /** The server process, for its RSS. */
  pid: number;
  version: string;
  /** Kept-alive connections for requests to the agent. */
  agent: https.Agent;
}

// Servers left running by a failed run: SIGKILL (their sandboxes die with them).
const liveServers = new Set<TestServer>();
process.once("exit", () => liveServers.forEach((s) => void s.kill()));

/** The child of this process that serves `dataDir` (startServer does not expose its pid). */
function serverPid(dataDir: string): number {
  const marker = `AGENTHOST_DATA_DIR=${dataDir}`;
  for (const name of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(") ") + 2).split(" ")[1]);
      const env = readFileSync(`/proc/${name}/environ`, "utf8").split("\0");
      if (ppid === process.pid && env.includes(marker)) return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error("cannot find the server process");
}

/** A fresh service with log-ticker deployed (no warm pool: nothing boots in the background). */
async function withService<T>(work: (service: Service) => Promise<T>): Promise<T> {
  const dataDir = tempDir("agenthost-bench-files-");
  chmodSync(dataDir, 0o711); // the sandbox uid must traverse the data dir
  const server = await startServer({ dataDir, env: { AGENTHOST_WARM_POOL_SIZE: "0" } });
  liveServers.add(server);
  const agent = new https.Agent({ keepAlive: true, ca: server.caPem });
  try {
    const client = sdk(server, server.adminKey);
    const { version } = await deployFixture(client, agentName, fixture);
    return await work({ server, client, pid: serverPid(dataDir), version, agent });
  } finally {
    agent.destroy();
    await server.stop();
    liveServers.delete(server);
    removeDir(dataDir);
  }
}

/** A new session whose agent has answered once (so its sandbox is up). */
async function readySession(service: Service): Promise<string> {
  const session = await service.client.agents.createSession(agentName, {
    type: "version_ref",
    agent_version: service.version,
  });
  await askAgent(service, session.agent_session_id, "0");
  return session.agent_session_id;
}

/** Has the session's agent print `input` ticks; resolves with its 200 answer. */
async function askAgent(service: Service, sessionId: string, input: string): Promise<void> {
  const { server, agent } = service;
  const url = `${server.endpoint}/agents/${agentName}/endpoint/protocols/openai/responses?api-version=v1`;
  const payload = JSON.stringify({ input, agent_session_id: sessionId });
  const { status, body } = await exchange(https.request, url, {
    method: "POST",
    agent,
    headers: {
      authorization: `Bearer ${server.adminKey}`,
      "content-type": "application/json",
      "content-length": Buffer.byteLength(payload),
    },
    body: payload,
  });
  if (status !== 200) throw new Error(`the agent answered ${status}: ${body.slice(0, 500)}`);
}

/** One request with a small body; the whole answer as text. */
function exchange(
  request: typeof http.request,
  url: string,
  options: http.RequestOptions & { body?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, options, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${url} timed out`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

/* ---- 1. Upload and download of a session file vs cp ---- */

interface FileRound {
  cpMs: number;
  /** cp, then `sync FILE` (fsync of the copy): the service fsyncs every upload. */
  cpSyncMs: number;
  upMs: number;
  downMs: number;
  /** CPU seconds of the server and of this process (the client) during each. */
  upCpu: Cpu;
  downCpu: Cpu;
  /** Peak RSS during this round's upload and download, minus the RSS just before. */
  growth: number;
  peak: number;
}

interface Cpu {
  server: number;
  client: number;
}

/** measureRss, plus the CPU seconds that the server and this process used meanwhile. */
async function measure<T>(pid: number, work: () => Promise<T>) {
  const server = cpuSeconds(pid);
  const client = process.cpuUsage();
  const result = await measureRss(pid, work, rssEveryMs);
  const { user, system } = process.cpuUsage(client);
  const cpu: Cpu = { server: cpuSeconds(pid) - server, client: (user + system) / 1e6 };
  return { ...result, cpu };
}

const fileUrl = (service: Service, sessionId: string, file: string) =>
  `${service.server.endpoint}/agents/${agentName}/endpoint/sessions/${sessionId}/files/content` +
  `?path=${encodeURIComponent(file)}&api-version=v1`;

/** The client reads the file in pieces this large (fewer, larger writes to the TLS socket). */
const readChunk = 1024 * 1024;

/** PUT of a file from disk as a streamed raw body (the official client buffers it whole). */
function upload(service: Service, url: string, file: string, size: number) {
  const { server } = service;
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: "PUT",
        ca: server.caPem,
        headers: {
          authorization: `Bearer ${server.adminKey}`,
          "content-type": "application/octet-stream",
          "content-length": size,
        },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    createReadStream(file, { highWaterMark: readChunk }).on("error", reject).pipe(req);
  });
}

/** GET of a file, hashed as it streams in. */
function download(service: Service, url: string) {
  const { server } = service;
  return new Promise<{ status: number; bytes: number; sha: string }>((resolve, reject) => {
    const hash = createHash("sha256");
    let bytes = 0;
    https
      .request(
        url,
        { ca: server.caPem, headers: { authorization: `Bearer ${server.adminKey}` } },
        (res) => {
          res.on("data", (d: Buffer) => {
            bytes += d.length;
            hash.update(d);
          });
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, bytes, sha: hash.digest("hex") }),
          );
        },
      )
      .on("error", reject)
      .end();
  });
}

function run(command: string, args: string[]): void {
  const r = spawnSync(command, args);
  if (r.status !== 0) throw new Error(`${command} failed: ${r.stderr.toString()}`);
}

interface FileResult {
  size: number;
  rounds: FileRound[];
  /** Highest RSS over all rounds minus the RSS before the first. */
  growth: number;
  official: { same: boolean; upMs: number; downMs: number };
}

/** The official client's upload (whole body in memory) and download of the same bytes. */
async function officialRoundTrip(
  service: Service,
  sessionId: string,
  bytes: Buffer,
  sha: string,
): Promise<{ same: boolean; upMs: number; downMs: number }> {
  const { agents } = service.client;
  const t0 = performance.now();
  await agents.uploadSessionFile(agentName, sessionId, "bench/official.bin", bytes);
  const t1 = performance.now();
  const got = await agents.downloadSessionFile(agentName, sessionId, "bench/official.bin");
  const hash = createHash("sha256");
  for await (const chunk of got.readableStreamBody!) hash.update(chunk as Buffer);
  const t2 = performance.now();
  return { same: hash.digest("hex") === sha, upMs: t1 - t0, downMs: t2 - t1 };
}

async function fileRounds(mb: number, rounds: number): Promise<FileResult> {
  const work = tempDir("agenthost-bench-file-");
  const source = path.join(work, "blob.bin");
  const bytes = randomBytes(mb * 1024 * 1024);
  const sha = createHash("sha256").update(bytes).digest("hex");
  writeFileSync(source, bytes);
  try {
    return await withService(async (service) => {
      const sessionId = await readySession(service);
      const url = fileUrl(service, sessionId, "bench/blob.bin");
      const results: FileRound[] = [];
      const before = rss(service.pid);
      for (let round = 1; round <= rounds; round++) {
        const copy = path.join(work, `copy-${round}.bin`);
        const t0 = performance.now();
        run("cp", [source, copy]);
        const cpMs = performance.now() - t0;
        run("sync", [copy]);
        const cpSyncMs = performance.now() - t0;
        removeDir(copy);

        const base = rss(service.pid);
        const up = await measure(service.pid, () => upload(service, url, source, bytes.length));
        const written = up.value.status === 201 ? JSON.parse(up.value.body).bytes_written : -1;
        if (written !== bytes.length)
          throw new Error(`upload answered ${up.value.status}: ${up.value.body.slice(0, 500)}`);
        const down = await measure(service.pid, () => download(service, url));
        if (down.value.status !== 200 || down.value.sha !== sha)
          throw new Error(`download ${down.value.status}: not the uploaded bytes`);
        const peak = Math.max(up.peak, down.peak);
        results.push({
          cpMs,
          cpSyncMs,
          upMs: up.ms,
          downMs: down.ms,
          upCpu: up.cpu,
          downCpu: down.cpu,
          growth: peak - base,
          peak,
        });
      }
      const growth = Math.max(...results.map((r) => r.peak)) - before;
      const official = await officialRoundTrip(service, sessionId, bytes, sha);
      return { size: bytes.length, rounds: results, growth, official };
    });
  } finally {
    removeDir(work);
  }
}

function fileSection(mb: number, r: FileResult): Section {
  const rate = (ms: number) => mib(r.size) / (ms / 1000);
  const cpuMs = (seconds: number) => fixed(seconds * 1000, 0);
  const shares = r.rounds.flatMap((x) => [x.cpMs / x.upMs, x.cpMs / x.downMs]);
  const lowest = Math.min(...shares);
  const rows = r.rounds.map((x, i) => [
    String(i + 1),
    fixed(rate(x.cpMs), 0),
    fixed(rate(x.cpSyncMs), 0),
    `${fixed(rate(x.upMs), 0)} (${fixed(x.cpMs / x.upMs)})`,
    `${fixed(rate(x.downMs), 0)} (${fixed(x.cpMs / x.downMs)})`,
    `${cpuMs(x.upCpu.server)} / ${cpuMs(x.upCpu.client)}`,
    `${cpuMs(x.downCpu.server)} / ${cpuMs(x.downCpu.client)}`,
    fixed(mib(x.growth), 1),
  ]);
  return {
    title: `Session file upload and download (${mb} MiB) vs cp`,
    table: {
      header: [
        "round",
        "cp MB/s",
        "cp + fsync MB/s",
        "upload MB/s (÷ cp)",
        "download MB/s (÷ cp)",
        "CPU ms upload: server / client",
        "CPU ms download: server / client",
        "server RSS growth MB",
      ],
      rows,
    },
    notes: [
      `${mb} MiB of random bytes, the most a session file may hold. Upload = PUT …/endpoint/sessions/{id}/files/content?path=bench/blob.bin streamed from disk over HTTPS (raw body, application/octet-stream) until the 201, which the service sends after writing, fsyncing and renaming the file; download = GET of the same URL, hashed by the client (SHA-256 equal to the upload's in every round). Every round overwrites the same file. MB/s are MiB/s.`,
      `cp copies the same file in the same directory as the service's data dir just before each round (the source is in the page cache; the copy is not fsynced). "cp + fsync" adds \`sync FILE\` on the copy, closer to what an upload does.`,
      `The client reads the file in ${readChunk / 1024 / 1024} MiB pieces. CPU: the server process from /proc (all its threads, 10 ms ticks) and the benchmark process (process.cpuUsage) during each transfer. Server RSS sampled every ${rssEveryMs} ms from /proc; per round: peak during the upload and download minus the RSS just before the round.`,
      `Official client, once after the rounds (not in the table): uploadSessionFile of the same ${mb} MiB (the whole body in memory) ${fixed(rate(r.official.upMs), 0)} MB/s, downloadSessionFile (hashed as it streams) ${fixed(rate(r.official.downMs), 0)} MB/s; same SHA-256 — ${r.official.same ? "yes" : "**no**"}.`,
      `Target: ≥ ${targets.share * 100} % of cp throughput — ${verdict(lowest >= targets.share)} (lowest: ${fixed(lowest)}).`,
      `Target: RSS growth < ${targets.rssMb} MB — ${verdict(mib(r.growth) < targets.rssMb)} (highest RSS over all rounds minus the RSS before the first: ${fixed(mib(r.growth), 1)} MB).`,
    ],
  };
}

/* ---- Log frames ---- */

interface LogEvent {
  id?: number;
  stream: string;
  message: string;
}

/** Splits a server-sent-events byte stream into log events. */
class SseParser {
  private text = "";
  private readonly decoder = new StringDecoder("utf8");

  push(chunk: Buffer): LogEvent[] {
    this.text += this.decoder.write(chunk);
    const events: LogEvent[] = [];
    for (let end = this.text.indexOf("\n\n"); end >= 0; end = this.text.indexOf("\n\n")) {
      const frame = this.text.slice(0, end);
      this.text = this.text.slice(end + 2);
      let id: number | undefined;
      let data: string | undefined;
      for (const line of frame.split("\n")) {
        if (line.startsWith("id: ")) id = Number(line.slice(4));
        else if (line.startsWith("data: ")) data = line.slice(6);
      }
      if (data !== undefined) events.push({ id, ...(JSON.parse(data) as LogEvent) });
    }
    return events;
  }
}

interface Tick {
  i: number;
  /** The agent's wall clock when it printed the line, in ms (µs precision). */
  printedMs: number;
}

function parseTick(line: string): Tick | undefined {
  const m = /^tick (\d+) (\d+)$/.exec(line);
  if (!m) return undefined;
  return { i: Number(m[1]), printedMs: Number(BigInt(m[2]!) / 1000n) / 1000 };
}

/**
 * Wall-clock ms with sub-ms resolution: performance.now() anchored to Date.now() right at one
 * of its millisecond edges. Made just before each measurement, so that the two clocks have no
 * time to drift apart. The median of seven anchors: on a busy machine the process is sometimes
 * preempted between the two reads, which would shift a single anchor by up to a millisecond.
 */
function wallClock(): () => number {
  const offsets = Array.from({ length: 7 }, () => {
    const start = Date.now();
    while (Date.now() === start) {
      // busy-wait for the next millisecond (at most 1 ms)
    }
    return Date.now() - performance.now();
  });
  const offset = quantile(offsets, 0.5);
  return () => offset + performance.now();
}

/** Where ticks go, with the client's wall clock when the bytes carrying them arrived. */
interface TickFeed {
  onTick?: (tick: Tick, receivedMs: number) => void;
}

/** Feeds the ticks of a log stream (SSE) to `feed`; `connected` once the greeting arrived. */
function followStream(body: Readable, feed: TickFeed, clock: () => number): Promise<void> {
  const parser = new SseParser();
  return new Promise((connected, reject) => {
    body.on("data", (chunk: Buffer) => {
      const receivedMs = clock();
      for (const event of parser.push(chunk)) {
        if (event.stream === "status" && event.message.startsWith("Connected")) connected();
        const tick = event.stream === "stdout" ? parseTick(event.message) : undefined;
        if (tick) feed.onTick?.(tick, receivedMs);
      }
    });
    body.on("error", reject);
  });
}

/** Has the agent print `count` ticks (through `trigger`); the latency of each, in ms. */
async function tickLatencies(
  feed: TickFeed,
  trigger: (input: string) => Promise<void>,
  count: number,
): Promise<number[]> {
  const latencies: number[] = [];
  let seen = 0;
  let timer: NodeJS.Timeout | undefined;
  const all = new Promise<void>((resolve, reject) => {
    feed.onTick = (tick, receivedMs) => {
      if (latencies[tick.i] === undefined) seen++;
      latencies[tick.i] = receivedMs - tick.printedMs;
      if (seen === count) resolve();
    };
    timer = setTimeout(() => reject(new Error(`only ${seen} of ${count} ticks arrived`)), 30_000);
  });
  try {
    await trigger(String(count));
    await all;
    return latencies;
  } finally {
    clearTimeout(timer);
    feed.onTick = undefined;
  }
}

/* ---- 2. Log latency ---- */

const warmupTicks = 50;

/** Subscribed with the official client's getSessionLogStream. */
function serviceLatencies(count: number): Promise<number[]> {
  return withService(async (service) => {
    const sessionId = await readySession(service);
    const stream = await service.client.agents.getSessionLogStream(
      agentName,
      service.version,
      sessionId,
    );
    const body = stream.readableStreamBody as Readable;
    try {
      const feed: TickFeed = {};
      await followStream(body, feed, wallClock());
      const trigger = (input: string) => askAgent(service, sessionId, input);
      await tickLatencies(feed, trigger, warmupTicks);
      return await tickLatencies(feed, trigger, count);
    } finally {
      body.destroy();
    }
  });
}

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, "close");
  return port;
}

/** The same agent as a plain python3 process; its stdout read through a pipe, line by line. */
async function pipeLatencies(count: number): Promise<number[]> {
  const port = await freePort();
  const child = spawn("/usr/bin/python3", ["main.py"], {
    cwd: fixtureDir(fixture),
    env: { PATH: "/usr/bin:/bin", PORT: String(port), PYTHONUNBUFFERED: "1", LANG: "C.UTF-8" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = once(child, "exit");
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  const agent = new http.Agent({ keepAlive: true });
  try {
    const feed: TickFeed = {};
    const clock = wallClock();
    let partial = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      const receivedMs = clock();
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        const tick = parseTick(line);
        if (tick) feed.onTick?.(tick, receivedMs);
      }
    });
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      const ready = await exchange(http.request, `${base}/readiness`, { agent }).catch(() => null);
      if (ready?.status === 200) break;
      if (i > 1000) throw new Error("the plain agent did not get ready");
      await sleep(10);
    }
    const trigger = async (input: string) => {
      const body = JSON.stringify({ input });
      const headers = { "content-type": "application/json" };
      const answer = await exchange(http.request, `${base}/responses`, {
        method: "POST",
        agent,
        headers,
        body,
      });
      if (answer.status !== 200) throw new Error(`plain agent answered ${answer.status}`);
    };
    await tickLatencies(feed, trigger, warmupTicks);
    return await tickLatencies(feed, trigger, count);
  } finally {
    agent.destroy();
    kill();
    await exited;
    process.off("exit", kill);
  }
}

function latencySection(ticks: number, service: number[], pipe: number[]): Section {
  const q = (xs: number[], p: number) => quantile(xs, p);
  const row = (name: string, xs: number[]) => [
    name,
    String(xs.length),
    fixed(q(xs, 0.5)),
    fixed(q(xs, 0.95)),
    fixed(q(xs, 0.99)),
    fixed(Math.max(...xs)),
    `${fixed(q(xs, 0.5) / q(pipe, 0.5), 1)} (+${fixed(q(xs, 0.5) - q(pipe, 0.5))} ms)`,
  ];
  const p50 = q(service, 0.5);
  return {
    title: "Console-log latency: agent print → log-stream client",
    table: {
      header: ["path", "lines", "p50 ms", "p95 ms", "p99 ms", "max ms", "p50 ÷ pipe (added)"],
      rows: [
        row("service: sandbox stdout → SSE over HTTPS (official client)", service),
        row("baseline: plain `python3 main.py`, stdout pipe to the benchmark", pipe),
      ],
    },
    notes: [
      `log-ticker prints \`tick <i> <time.time_ns()>\` (flushed) every 2 ms on a fixed schedule, ${ticks} lines per request, after an untimed run of ${warmupTicks}. Latency = the client's wall clock when the chunk carrying the frame arrives (performance.now() anchored to Date.now() at a millisecond edge just before the run) minus the agent's time_ns; one host, one clock.`,
      "Service: the official client's getSessionLogStream on a session whose agent answered once, then POST …/endpoint/protocols/openai/responses with the number of lines; frames parsed as they arrive. Baseline: the same main.py run by the benchmark as a plain process (no sandbox), its stdout read through a pipe, triggered over plain HTTP.",
      `Target: p50 < ${targets.p50Ms} ms — ${verdict(p50 < targets.p50Ms)} (${fixed(p50)} ms).`,
    ],
  };
}

/* ---- 3. Many log-stream clients on one session ---- */

interface StreamClient {
  /** The tick numbers received, in order, and each one's latency (receipt − print, ms). */
  ticks: number[];
  latencies: number[];
  /** The last line of the run: when the agent printed it, and when this client got it. */
  last?: { printedMs: number; receivedMs: number };
  close(): void;
}

/** Opens one raw log-stream connection; resolves once the service has greeted it. */
async function openClient(
  service: Service,
  sessionId: string,
  agent: https.Agent,
  clock: () => number,
): Promise<StreamClient> {
  const { server, version } = service;
  const url = `${server.endpoint}/agents/${agentName}/versions/${version}/sessions/${sessionId}:logstream?api-version=v1`;
  const req = https.request(url, {
    agent,
    headers: { authorization: `Bearer ${server.adminKey}`, accept: "text/event-stream" },
  });
  const client: StreamClient = { ticks: [], latencies: [], close: () => req.destroy() };
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    req.on("response", resolve);
    req.on("error", reject);
    req.end();
  });
  if (res.statusCode !== 200) throw new Error(`log stream answered ${res.statusCode}`);
  const feed: TickFeed = {
    onTick: (tick, receivedMs) => {
      client.ticks.push(tick.i);
      client.latencies.push(receivedMs - tick.printedMs);
      if (tick.i === linesForClients - 1) client.last = { printedMs: tick.printedMs, receivedMs };
    },
  };
  await followStream(res, feed, clock);
  return client;
}

interface CrowdResult {
  clients: number;
  /** Until every client was greeted. */
  openMs: number;
  rss: { before: number; open: number; lines: number; closed: number };
  /** Clients that got exactly ticks 0…49, in order. */
  complete: number;
  /** From sending the request to the last client getting the last line. */
  allMs: number;
  /** From the agent printing the last line to the first and to the last client getting it. */
  lastLine: { firstMs: number; allMs: number };
  /** CPU seconds used from the request until every client had every line. */
  cpu: { server: number; clients: number };
  /** Latency of every line at every client, and of the first line at the first client. */
  frames: number[];
  firstFrameMs: number;
}

/** `count` clients on one fresh session, then the agent prints `linesForClients` lines. */
function crowd(count: number): Promise<CrowdResult> {
  return withService(async (service) => {
    const sessionId = await readySession(service);
    const { pid } = service;
    const { caPem } = service.server;
    const agent = new https.Agent({ keepAlive: true, maxSockets: count + 10, ca: caPem });
    const clients: StreamClient[] = [];
    try {
      await sleep(500);
      const before = rss(pid);
      const clock = wallClock();
      const t0 = performance.now();
      while (clients.length < count) {
        const batch = Math.min(openBatch, count - clients.length);
        const opening = Array.from({ length: batch }, () =>
          openClient(service, sessionId, agent, clock),
        );
        clients.push(...(await Promise.all(opening)));
      }
      const openMs = performance.now() - t0;
      await sleep(500);
      const open = rss(pid);

      const serverCpu = cpuSeconds(pid);
      const clientCpu = process.cpuUsage();
      const sent = clock();
      await askAgent(service, sessionId, String(linesForClients));
      for (let waited = 0; waited < 30_000 && clients.some((c) => !c.last); waited += 10) {
        await sleep(10);
      }
      const { user, system } = process.cpuUsage(clientCpu);
      const cpu = { server: cpuSeconds(pid) - serverCpu, clients: (user + system) / 1e6 };
      const received = clients.map((c) => c.last?.receivedMs ?? NaN);
      const printedMs = clients.find((c) => c.last)?.last?.printedMs ?? NaN;
      const complete = clients.filter(
        (c) => c.ticks.length === linesForClients && c.ticks.every((t, i) => t === i),
      ).length;
      const frames = clients.flatMap((c) => c.latencies);
      const firstFrameMs = clients[0]!.latencies[0] ?? NaN;
      await sleep(500);
      const lines = rss(pid);

      for (const c of clients.splice(0)) c.close();
      agent.destroy();
      await sleep(1000);
      return {
        clients: count,
        openMs,
        rss: { before, open, lines, closed: rss(pid) },
        complete,
        allMs: Math.max(...received) - sent,
        lastLine: {
          firstMs: Math.min(...received) - printedMs,
          allMs: Math.max(...received) - printedMs,
        },
        cpu,
        frames,
        firstFrameMs,
      };
    } finally {
      for (const c of clients) c.close();
      agent.destroy();
    }
  });
}

function crowdSection(r: CrowdResult): Section {
  const perClientKib = (r.rss.open - r.rss.before) / 1024 / r.clients;
  const mb = (bytes: number) => fixed(mib(bytes), 1);
  return {
    title: `${r.clients.toLocaleString("en")} log-stream clients on one session`,
    table: {
      header: ["moment", "server RSS MB", "growth vs before MB", "per client KiB"],
      rows: [
        ["before opening", mb(r.rss.before), "–", "–"],
        [
          `${r.clients} streams open`,
          mb(r.rss.open),
          mb(r.rss.open - r.rss.before),
          fixed(perClientKib, 1),
        ],
        [
          `after ${linesForClients} lines`,
          mb(r.rss.lines),
          mb(r.rss.lines - r.rss.before),
          fixed((r.rss.lines - r.rss.before) / 1024 / r.clients, 1),
        ],
        ["1 s after closing them", mb(r.rss.closed), mb(r.rss.closed - r.rss.before), "–"],
      ],
    },
    notes: [
      `${r.clients} raw HTTPS connections to GET …/versions/{v}/sessions/{id}:logstream (one https.Agent, maxSockets ${r.clients + 10}), opened ${openBatch} at a time, each counted open when the service's "Connected" status frame arrived: ${fixed(r.openMs / 1000, 1)} s for all. A fresh session, so the history each client gets first is a few status lines. RSS read once, 500 ms after each step.`,
      `Then one request has the agent print ${linesForClients} lines (2 ms apart): ${r.complete} of ${r.clients} clients got all ${linesForClients}, in order — ${verdict(r.complete === r.clients)}. The last client had the last line ${fixed(r.allMs)} ms after the request was sent; counted from the agent's print of that line, the first client had it after ${fixed(r.lastLine.firstMs)} ms and the last after ${fixed(r.lastLine.allMs)} ms. Meanwhile the server used ${fixed(r.cpu.server)} s of CPU and the benchmark's clients ${fixed(r.cpu.clients)} s.`,
      `Latency of each line at each client (receipt − print, ${r.frames.length} in all): p50 ${fixed(quantile(r.frames, 0.5), 1)} ms, p95 ${fixed(quantile(r.frames, 0.95), 1)} ms, max ${fixed(Math.max(...r.frames), 1)} ms; the first line reached the first client after ${fixed(r.firstFrameMs, 1)} ms. Lines come every 2 ms: latencies far above that mean that passing one line to every stream took longer than 2 ms, so the following lines queued.`,
      `The clients all run in the benchmark's one Node process, on the same 2 vCPUs as the service: the fan-out time includes the clients' own TLS decryption of ${r.clients} streams.`,
    ],
  };
}

/* ---- The report ---- */

export async function sessionFilesBench(): Promise<Section[]> {
  const mb = envInt("BENCH_FILE_MB", 50);
  const rounds = envInt("BENCH_ROUNDS", 5);
  const ticks = envInt("BENCH_TICKS", 500);
  const clients = envInt("BENCH_LOG_CLIENTS", 1000);
  const files = await fileRounds(mb, rounds);
  const service = await serviceLatencies(ticks);
  const pipe = await pipeLatencies(ticks);
  const many = await crowd(clients);
  return [fileSection(mb, files), latencySection(ticks, service, pipe), crowdSection(many)];
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const { renderSection } = await import("./report.js");
  for (const section of await sessionFilesBench()) process.stdout.write(renderSection(section));
}
