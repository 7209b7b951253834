import { spawn, type SpawnOptions } from "node:child_process";
import { once } from "node:events";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from "node:fs";
import http from "node:http";
import https from "node:https";
import { createServer, type AddressInfo } from "node:net";
import { loadavg } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import type { AIProjectClient } from "@azure/ai-projects";
import { deployFixture, fixtureDir, type DeployOptions } from "../test/helpers/agents.js";
import { sdk, startServer, type TestServer } from "../test/helpers/server.js";
import { removeDir, tempDir } from "./processes.js";
import { envInt, fixed, quantile, verdict, type Section } from "./report.js";

/*
 * Session start on the real service over HTTPS, with the echo-python fixture: from
 * createSession (official client) to the agent's answer on the responses endpoint, warm (from
 * the pool) and cold (no pool). Baselines in the same run: the same agent spawned by hand in
 * bwrap with the service's profile, and as a plain python3 process. Then 200 sessions running
 * at once (started 20 at a time): time until all answer, and memory per session.
 *
 *   node --import tsx bench/sessionStart.ts      (BENCH_STARTS, BENCH_SESSIONS)
 */

const targets = { coldToBare: 1.5, warmMs: 50 };
const agentName = "echo";
const fixture = "echo-python";
/** The service's default sandbox uid (AGENTHOST_SANDBOX_UID); the baselines run as it too. */
const sandboxUid = 65534;
const python = "/usr/bin/python3";
/** Between warm starts, so that the pool has its sandbox back. */
const refillMs = 300;
const batchSize = 20;
/** The definition used for the 200 sessions. */
const denseLimits: DeployOptions = { cpu: "0.25", memory: "128Mi" };

// Servers left running by a failed run: SIGKILL (their sandboxes die with them).
const liveServers = new Set<TestServer>();
process.once("exit", () => liveServers.forEach((s) => void s.kill()));

interface Answer {
  status: number;
  body: string;
}

/** POST /responses with {"input": input, ...extra}, over HTTP or HTTPS. */
function postResponses(
  url: string,
  input: string,
  options: { agent?: http.Agent | false; bearer?: string; extra?: object } = {},
): Promise<Answer> {
  const payload = JSON.stringify({ input, ...options.extra });
  const request = url.startsWith("https:") ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        agent: options.agent ?? false,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
          ...(options.bearer ? { authorization: `Bearer ${options.bearer}` } : {}),
        },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`POST ${url} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** Throws unless this is the echo agent's 200 answer to `input`. */
function expectEcho(answer: Answer, input: string): void {
  const text = (() => {
    try {
      const body = JSON.parse(answer.body) as {
        output?: { content?: { text?: string }[] }[];
      };
      return body.output?.[0]?.content?.[0]?.text;
    } catch {
      return undefined;
    }
  })();
  if (answer.status !== 200 || text !== `echo: ${input}`)
    throw new Error(`unexpected answer ${answer.status}: ${answer.body.slice(0, 500)}`);
}

/* ---- Processes, from /proc ---- */

function procPids(): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/** A /proc file of a process, or undefined when the process is gone. */
function procFile(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8");
  } catch {
    return undefined;
  }
}

/** Every process below `root` (children, grandchildren, …). */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const pid of procPids()) {
    const stat = procFile(pid, "stat");
    if (stat === undefined) continue;
    // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
    const ppid = Number(stat.slice(stat.lastIndexOf(") ") + 2).split(" ")[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function killTree(root: number): void {
  for (const pid of [root, ...descendants(root)]) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
}

/** A number (kB) from a /proc key-value file such as status or smaps_rollup, else 0. */
function procKb(pid: number, file: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(procFile(pid, file) ?? "");
  return m ? Number(m[1]) : 0;
}

const mib = (kb: number) => kb / 1024;

/** The service process of a test server: the child of this process with its data dir. */
function serverPid(server: TestServer): number {
  const marker = `AGENTHOST_DATA_DIR=${server.dataDir}`;
  const pid = descendants(process.pid).find((p) =>
    (procFile(p, "environ") ?? "").split("\0").includes(marker),
  );
  if (pid === undefined) throw new Error("cannot find the server process");
  return pid;
}

/**
 * Summed PSS of the service's sandboxes: its descendants running as the sandbox uid (bwrap,
 * the sandbox's init and the agent). Descendants, not all uid-65534 processes, so that other
 * work on the machine does not count.
 */
function sandboxMemory(pid: number): { pssKb: number; processes: number } {
  const sandboxed = descendants(pid).filter((p) => {
    const m = /^Uid:\s+(\d+)/m.exec(procFile(p, "status") ?? "");
    return m !== null && Number(m[1]) === sandboxUid;
  });
  return {
    pssKb: sandboxed.reduce((sum, p) => sum + procKb(p, "smaps_rollup", "Pss"), 0),
    processes: sandboxed.length,
  };
}

/* ---- The service ---- */

/** A temp dir the sandbox uid can traverse (the service checks its data dir for that). */
function reachableTempDir(prefix: string): string {
  const dir = tempDir(prefix);
  chmodSync(dir, 0o711);
  return dir;
}

interface Service {
  server: TestServer;
  client: AIProjectClient;
  /** Kept-alive HTTPS connections to the server, trusting its CA. */
  agent: https.Agent;
  version: string;
}

/** Starts the service with these settings, deploys the echo agent, runs `work`, cleans up. */
async function withService<T>(
  env: Record<string, string>,
  deploy: DeployOptions,
  work: (service: Service) => Promise<T>,
): Promise<T> {
  const dataDir = reachableTempDir("agenthost-bench-sessions-");
  const server = await startServer({ dataDir, env });
  liveServers.add(server);
  const agent = new https.Agent({ keepAlive: true, ca: server.caPem });
  try {
    const client = sdk(server, server.adminKey);
    const { version } = await deployFixture(client, agentName, fixture, deploy);
    return await work({ server, client, agent, version });
  } finally {
    agent.destroy();
    await server.stop();
    liveServers.delete(server);
    removeDir(dataDir);
  }
}

/**
 * How the session's sandbox started, from the service's status lines in its console log:
 * from the pool or not, and the time from "starting sandbox" to "agent is ready".
 */
function startRecord(server: TestServer, sessionId: string): { warm: boolean; bootMs: number } {
  const file = path.join(server.dataDir, "sessions/default", agentName, sessionId, "console.log");
  const lines = readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { timestamp: string; stream: string; message: string });
  const status = (prefix: string) => {
    const line = lines.find((l) => l.stream === "status" && l.message.startsWith(prefix));
    if (!line) throw new Error(`no '${prefix}' line in ${file}`);
    return line;
  };
  const starting = status("starting sandbox");
  const ready = status("agent is ready");
  return {
    warm: /, warm\)/.test(starting.message),
    bootMs: Date.parse(ready.timestamp) - Date.parse(starting.timestamp),
  };
}

interface Start {
  sessionId: string;
  /** From before createSession to the echo answer. */
  ms: number;
  createMs: number;
  warm: boolean;
  /** From the service's "starting sandbox" to its "agent is ready" (ms resolution). */
  bootMs: number;
}

/** createSession, then one request to the new session's agent until it answers. */
async function startSession(service: Service, input: string): Promise<Start> {
  const { server, client, agent, version } = service;
  const t0 = performance.now();
  const session = await client.agents.createSession(agentName, {
    type: "version_ref",
    agent_version: version,
  });
  const createMs = performance.now() - t0;
  const answer = await postResponses(
    `${server.endpoint}/agents/${agentName}/endpoint/protocols/openai/responses?api-version=v1`,
    input,
    { agent, bearer: server.adminKey, extra: { agent_session_id: session.agent_session_id } },
  );
  const ms = performance.now() - t0;
  expectEcho(answer, input);
  const sessionId = session.agent_session_id;
  return { sessionId, ms, createMs, ...startRecord(server, sessionId) };
}

/** `count` sequential starts (after one untimed), each session deleted before the next. */
function sequentialStarts(poolSize: number, count: number): Promise<Start[]> {
  const env = { AGENTHOST_WARM_POOL_SIZE: String(poolSize) };
  return withService(env, {}, async (service) => {
    const starts: Start[] = [];
    for (let i = 0; i <= count; i++) {
      const start = await startSession(service, "hi");
      await service.client.agents.deleteSession(agentName, start.sessionId);
      if (i > 0) starts.push(start);
      await sleep(refillMs);
    }
    return starts;
  });
}

interface Crowd {
  starts: Start[];
  /** From the first createSession until all sessions have answered. */
  allAnsweredMs: number;
  deleteMs: number;
  /** Sandbox memory with only the warm pool, with all sessions too, and after deleting them. */
  before: { pssKb: number; processes: number };
  during: { pssKb: number; processes: number };
  after: { pssKb: number; processes: number };
  serverRssGrowthKb: number;
}

/** `count` sessions, started `batchSize` at a time, all kept running, then deleted. */
function crowd(count: number): Promise<Crowd> {
  const env = {
    AGENTHOST_WARM_POOL_SIZE: "2",
    AGENTHOST_MAX_SESSIONS_PER_IDENTITY: "500",
    AGENTHOST_MAX_SESSIONS_PER_AGENT: "500",
  };
  return withService(env, denseLimits, async (service) => {
    const pid = serverPid(service.server);
    await sleep(1000); // the pool finishes booting
    const before = sandboxMemory(pid);
    const serverRss = procKb(pid, "status", "VmRSS");
    const starts: Start[] = [];
    const t0 = performance.now();
    for (let first = 0; first < count; first += batchSize) {
      const batch = Array.from({ length: Math.min(batchSize, count - first) }, (_, i) =>
        startSession(service, `hi ${first + i}`),
      );
      starts.push(...(await Promise.all(batch)));
    }
    const allAnsweredMs = performance.now() - t0;
    await sleep(1000); // the pool refills, as before
    const during = sandboxMemory(pid);
    const serverRssGrowthKb = procKb(pid, "status", "VmRSS") - serverRss;
    const t1 = performance.now();
    for (let first = 0; first < count; first += batchSize) {
      const batch = starts.slice(first, first + batchSize);
      await Promise.all(
        batch.map((s) => service.client.agents.deleteSession(agentName, s.sessionId)),
      );
    }
    const deleteMs = performance.now() - t1;
    const after = sandboxMemory(pid);
    return { starts, allAnsweredMs, deleteMs, before, during, after, serverRssGrowthKb };
  });
}

/* ---- Baselines: the agent started by hand ---- */

interface Layout {
  app: string;
  home: string;
  passwd: string;
  group: string;
}

/** The agent's code, a home owned by the sandbox uid, and the sandbox's /etc/passwd and group. */
function bareLayout(dir: string): Layout {
  const layout = {
    app: path.join(dir, "app"),
    home: path.join(dir, "home"),
    passwd: path.join(dir, "passwd"),
    group: path.join(dir, "group"),
  };
  mkdirSync(layout.app, { mode: 0o755 });
  copyFileSync(path.join(fixtureDir(fixture), "main.py"), path.join(layout.app, "main.py"));
  mkdirSync(layout.home, { mode: 0o700 });
  chownSync(layout.home, sandboxUid, sandboxUid);
  writeFileSync(layout.passwd, "agent:x:1000:1000:agent:/home/agent:/bin/sh\n");
  writeFileSync(layout.group, "agent:x:1000:\n");
  return layout;
}

/** The environment the service's loader gives an agent (sandbox/loader.py, sandboxProcess.ts). */
const agentEnv = (port: number, home: string): Record<string, string> => ({
  HOME: home,
  PATH: "/usr/local/bin:/usr/bin:/bin",
  LANG: "C.UTF-8",
  TZ: "UTC",
  PYTHONUNBUFFERED: "1",
  PORT: String(port),
});

/** The read-only system of every sandbox, as in src/sandbox/bwrapDriver.ts. */
const systemBinds = ["/usr", "/etc/alternatives", "/etc/ssl", "/etc/ld.so.cache", "/etc/localtime"];

/**
 * bwrap with the service's profile (src/sandbox/bwrapDriver.ts) but running the agent itself:
 * no loader (nor its /opt/agenthost and /run/agent binds), no info/block fds, no cgroup. And
 * `--share-net`: the agent keeps the host's network so that it can be reached over TCP on its
 * PORT.
 */
function bwrapArgs(layout: Layout, port: number): string[] {
  return [
    ...["--unshare-all", "--share-net", "--unshare-user", "--disable-userns"],
    ...["--die-with-parent", "--new-session", "--hostname", "sandbox"],
    ...systemBinds.flatMap((p) => ["--ro-bind-try", p, p]),
    ...["--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin"],
    ...["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"],
    ...["--ro-bind", layout.passwd, "/etc/passwd", "--ro-bind", layout.group, "/etc/group"],
    ...["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"],
    ...["--ro-bind", layout.app, "/app", "--bind", layout.home, "/home/agent"],
    ...["--remount-ro", "/"],
    ...["--chdir", "/app", "--clearenv", "--uid", "1000", "--gid", "1000"],
    ...Object.entries(agentEnv(port, "/home/agent")).flatMap(([k, v]) => ["--setenv", k, v]),
    ...["--", python, "main.py"],
  ];
}

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, "close");
  return port;
}

/** Spawns the agent as the sandbox uid; ms until its first echo answer on `port`. */
async function bareStart(
  command: string,
  args: string[],
  options: SpawnOptions,
  port: number,
): Promise<number> {
  const t0 = performance.now();
  const child = spawn(command, args, {
    ...options,
    uid: sandboxUid,
    gid: sandboxUid,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = once(child, "exit");
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${command} exited: ${stderr}`);
      const answer = await postResponses(`http://127.0.0.1:${port}/responses`, "hi").catch(
        () => undefined,
      );
      const ms = performance.now() - t0;
      if (answer) {
        expectEcho(answer, "hi");
        return ms;
      }
      if (ms > 10_000) throw new Error(`${command} did not answer in 10 s: ${stderr}`);
      await sleep(1);
    }
  } finally {
    killTree(child.pid!);
    await exited;
  }
}

/** `count` starts of each baseline (after one untimed), interleaved so noise hits both alike. */
async function bareStarts(count: number): Promise<{ bwrap: number[]; plain: number[] }> {
  const dir = reachableTempDir("agenthost-bench-bare-");
  try {
    const layout = bareLayout(dir);
    const bwrap: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i <= count; i++) {
      let port = await freePort();
      // Like the service, bwrap itself (the sandbox's pid 1) gets no environment.
      const inBwrap = await bareStart("bwrap", bwrapArgs(layout, port), { env: {} }, port);
      port = await freePort();
      const env = agentEnv(port, layout.home);
      const asProcess = await bareStart(python, ["main.py"], { cwd: layout.app, env }, port);
      if (i > 0) {
        bwrap.push(inBwrap);
        plain.push(asProcess);
      }
    }
    return { bwrap, plain };
  } finally {
    removeDir(dir);
  }
}

/* ---- The report ---- */

export async function sessionStartBench(): Promise<Section> {
  const loadBefore = loadavg()[0]!;
  const count = envInt("BENCH_STARTS", 50);
  const sessions = envInt("BENCH_SESSIONS", 200);
  const warm = await sequentialStarts(2, count);
  const cold = await sequentialStarts(0, count);
  const bare = await bareStarts(count);
  const dense = await crowd(sessions);

  const p50 = (xs: number[]) => quantile(xs, 0.5);
  const p95 = (xs: number[]) => quantile(xs, 0.95);
  const bwrapP50 = p50(bare.bwrap);
  const ofService = (starts: Start[]) => ({
    ms: starts.map((s) => s.ms),
    createMs: starts.map((s) => s.createMs),
    bootMs: starts.map((s) => s.bootMs),
  });
  const row = (name: string, t: { ms: number[]; createMs?: number[]; bootMs?: number[] }) => [
    name,
    String(t.ms.length),
    fixed(p50(t.ms), 1),
    fixed(p95(t.ms), 1),
    t.createMs ? fixed(p50(t.createMs), 1) : "–",
    t.bootMs ? fixed(p50(t.bootMs), 0) : "–",
    fixed(p50(t.ms) / bwrapP50),
  ];
  const fromPool = (starts: Start[]) => starts.filter((s) => s.warm).length;
  const coldRatio = p50(cold.map((s) => s.ms)) / bwrapP50;
  const warmP50 = p50(warm.map((s) => s.ms));
  const perSessionKb = (dense.during.pssKb - dense.before.pssKb) / sessions;
  const perSessionProcs = (dense.during.processes - dense.before.processes) / sessions;

  return {
    title: "Session start (echo-python) vs the agent started by hand",
    table: {
      header: [
        "case",
        "starts",
        "p50 ms",
        "p95 ms",
        "createSession p50 ms",
        "sandbox → ready p50 ms",
        "p50 ÷ bare bwrap",
      ],
      rows: [
        row("warm: pool of 2, createSession → answer", ofService(warm)),
        row("cold: no pool, createSession → answer", ofService(cold)),
        row("bare bwrap, same profile + `--share-net`, spawn → answer", { ms: bare.bwrap }),
        row("plain `python3 main.py`, spawn → answer", { ms: bare.plain }),
        row(
          `${sessions} sessions, ${batchSize} at a time, createSession → answer`,
          ofService(dense.starts),
        ),
      ],
    },
    notes: [
      `Service: the official client's createSession, then POST …/endpoint/protocols/openai/responses?api-version=v1 with {"input":"hi","agent_session_id":…} over HTTPS (kept-alive), until the echo answer; the session is deleted after each start, then ${refillMs} ms pause. One untimed start first in each case.`,
      `From the session's console log: whether its sandbox came from the pool (${fromPool(warm)} of ${warm.length} warm starts did, ${fromPool(cold)} of ${cold.length} cold ones), and "sandbox → ready", the service's time from "starting sandbox" to "agent is ready" (the sandbox already starts while createSession answers).`,
      `Baselines: /usr/bin/python3 main.py as uid ${sandboxUid}, spawned by the benchmark and polled every 1 ms with POST /responses over TCP until the first 200; bwrap and plain runs interleaved. The bwrap baseline uses the service's arguments without the loader and the cgroup, and with \`--share-net\` (a new port each start): the service's sandboxes get their own network namespace and are reached through the loader's Unix socket, which TCP from the host cannot reach.`,
      `Target: cold p50 ≤ ${targets.coldToBare}× bare bwrap p50 — ${verdict(coldRatio <= targets.coldToBare)} (${fixed(coldRatio)}).`,
      `Target: warm p50 ≤ ${targets.warmMs} ms — ${verdict(warmP50 <= targets.warmMs)} (${fixed(warmP50, 1)} ms).`,
      `${sessions} concurrent sessions (cpu "${denseLimits.cpu}", memory "${denseLimits.memory}", pool of 2): all answered after ${fixed(dense.allAnsweredMs / 1000, 1)} s (${fromPool(dense.starts)} from the pool); deleting them took ${fixed(dense.deleteMs / 1000, 1)} s.`,
      `Memory per session: ${fixed(mib(perSessionKb), 1)} MiB PSS in ${fixed(perSessionProcs, 1)} processes — sum of PSS (smaps_rollup) of the service's descendants running as uid ${sandboxUid}: ${fixed(mib(dense.before.pssKb), 1)} MiB in ${dense.before.processes} processes with only the pool, ${fixed(mib(dense.during.pssKb), 1)} MiB in ${dense.during.processes} with all sessions, ${fixed(mib(dense.after.pssKb), 1)} MiB in ${dense.after.processes} after deleting them. The service's own RSS grew by ${fixed(mib(dense.serverRssGrowthKb), 1)} MiB.`,
      `Shared 2-vCPU machine, nothing pinned: load average (1 min) ${fixed(loadBefore)} at the start, ${fixed(loadavg()[0]!)} at the end.`,
    ],
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const { renderSection } = await import("./report.js");
  process.stdout.write(renderSection(await sessionStartBench()));
}
