import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";

/* Child servers and temp dirs for the benchmarks, cleaned up even when a bench fails. */

export const repoRoot = path.resolve(import.meta.dirname, "..");

/** 32 characters; the service takes it as an admin key that works in every project. */
export const benchAdminKey = "ahk_bench_admin_key_0123456789ab";

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();

// Last resort on Ctrl-C or a crash: no orphaned servers, no temp dirs left behind.
process.once("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => process.exit(130));
}

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/*
 * One CPU for the server, the other for the load. Left to itself, Linux often runs a server and
 * its client on the same CPU (they wake each other up over loopback): on the 2-vCPU bench
 * machine that halved the bare server's throughput, with both processes at 50 % of one core.
 */
const serverCpu = "0";
const loadCpu = "1";
const canPin = cpus().length >= 2 && spawnSync("taskset", ["-V"]).status === 0;

/** Pins this process (all its threads) to the load CPU; says where everything runs. */
export function separateCpus(): string {
  if (!canPin) return "processes not pinned (needs taskset and 2 CPUs)";
  spawnSync("taskset", ["-a", "-p", "-c", loadCpu, String(process.pid)], { stdio: "ignore" });
  return `server pinned to CPU ${serverCpu}, load generator to CPU ${loadCpu} (taskset)`;
}

export interface ChildServer {
  /** e.g. https://127.0.0.1:41234 */
  origin: string;
  /** The CA that signed the server's certificate (empty for a plain-HTTP server). */
  caPem: Buffer;
  pid: number;
  /** CPU seconds the server process has used so far (NaN where /proc is missing). */
  cpuSeconds(): number;
  /** SIGTERM, then SIGKILL if it has not exited within 10 s. */
  stop(): Promise<void>;
}

/**
 * Runs `node --import tsx <script>` (the same loader for every server, so the comparison is
 * fair; tsx only costs at load time) and waits for its "listening on https://…" line (or
 * http:// for a plain server, which has no `caFile`). Servers run on the server CPU; `onLoadCpu`
 * puts one beside the load generator instead (a stand-in upstream).
 */
export async function startChild(
  script: string,
  args: string[],
  env: Record<string, string>,
  caFile: string | null,
  onLoadCpu = false,
): Promise<ChildServer> {
  const node = [process.execPath, "--import", "tsx", path.join(repoRoot, script), ...args];
  // taskset execs node in place, so child.pid is the server's own pid.
  const cpu = onLoadCpu ? loadCpu : serverCpu;
  const [command, ...argv] = canPin ? ["taskset", "-c", cpu, ...node] : node;
  const child = spawn(command!, argv, {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  liveChildren.add(child);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      liveChildren.delete(child);
      resolve();
    }),
  );
  // Keep draining both pipes so a chatty child never blocks; keep the tail for error messages.
  let output = "";
  const collect = (d: Buffer) => (output = (output + d.toString()).slice(-16_384));
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);

  const origin = await new Promise<string>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${script} ${why}:\n${output}`));
    };
    const timer = setTimeout(() => fail("did not start within 30 s"), 30_000);
    const onExit = (code: number | null) => fail(`exited with ${code}`);
    const onData = () => {
      const m = /listening on (https?:\/\/\S+)/.exec(output);
      if (!m) return;
      clearTimeout(timer);
      child.off("exit", onExit);
      child.stdout!.off("data", onData);
      resolve(m[1]!);
    };
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
  });

  return {
    origin,
    caPem: caFile === null ? Buffer.alloc(0) : readFileSync(caFile),
    pid: child.pid!,
    cpuSeconds: () => cpuSeconds(child.pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(force);
    },
  };
}

/** The real service, started the way test/helpers/server.ts does, on 127.0.0.1 only. */
export function startAgenthost(
  dataDir: string,
  env: Record<string, string> = {},
): Promise<ChildServer> {
  return startChild(
    "src/main.ts",
    ["serve"],
    {
      AGENTHOST_DATA_DIR: dataDir,
      AGENTHOST_HOST: "127.0.0.1",
      AGENTHOST_PORT: "0",
      AGENTHOST_ADMIN_KEY: benchAdminKey,
      AGENTHOST_LOG_LEVEL: "warn",
      ...env,
    },
    path.join(dataDir, "tls/ca.pem"),
  );
}

/** A bare Fastify hello-world over HTTPS, with a certificate from the same local CA code. */
export function startBareFastify(tlsDir: string): Promise<ChildServer> {
  return startChild("bench/bareFastify.ts", [tlsDir], {}, path.join(tlsDir, "ca.pem"));
}

/**
 * utime + stime of a process from /proc (Linux), in seconds. Shows whether the server or the
 * load generator was the limit: a server below ~100 % of one core was not saturated.
 */
export function cpuSeconds(pid: number | undefined): number {
  const file = `/proc/${pid}/stat`;
  if (pid === undefined || !existsSync(file)) return NaN;
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const stat = readFileSync(file, "utf8");
  const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
  const ticksPerSecond = 100; // USER_HZ, 100 on every mainstream Linux build
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

/** A process's resident memory now, from /proc/<pid>/status (bytes; NaN once it is gone). */
export function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Runs `work` while sampling the RSS of `pid` every `everyMs`; its duration and the peak. */
export async function measureRss<T>(
  pid: number,
  work: () => Promise<T>,
  everyMs = 10,
): Promise<{ ms: number; peak: number; value: T }> {
  let peak = rss(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rss(pid))), everyMs);
  const t0 = performance.now();
  try {
    const value = await work();
    return { ms: performance.now() - t0, peak: Math.max(peak, rss(pid)), value };
  } finally {
    clearInterval(timer);
  }
}
