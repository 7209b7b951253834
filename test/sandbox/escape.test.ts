import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { chown, mkdir, stat } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { BwrapDriver, probeBwrap } from "../../src/sandbox/bwrapDriver.js";
import { detectCgroups, type CgroupHost, type Limits } from "../../src/sandbox/cgroups.js";
import type { Exit, Sandbox, SandboxDriver, SandboxOptions } from "../../src/sandbox/driver.js";
import { ProcessDriver } from "../../src/sandbox/processDriver.js";
import { HostLayout } from "../../src/sandbox/sandboxProcess.js";
import { waitUntilReady } from "../../src/sessions/agentSocket.js";
import { fixtureDir } from "../helpers/agents.js";
import { removeDir, tempDir } from "../helpers/server.js";

/*
 * Escape attempts: the fixture agents try to read, write, connect, allocate and fork their way
 * out of their sandbox, and each attempt must fail where the bwrap driver promises isolation.
 * The process driver gets the few checks it promises too (uid, clean environment, stop).
 */

const sandboxUid = 65534;
const defaultLimits: Limits = { cpu: 1, memoryBytes: 128 * 2 ** 20, pids: 64 };
/** A secret in the host's environment that no sandbox may see. */
const canary = `canary-${randomBytes(8).toString("hex")}`;
process.env.AGENTHOST_ESCAPE_CANARY = canary;
/** The environment the loader gives every agent, before the launch's own keys. */
const baseEnvKeys = ["HOME", "PATH", "LANG", "TZ", "PYTHONUNBUFFERED", "PORT"];

const dataDir = tempDir("agenthost-escape-");
const skip =
  process.getuid?.() !== 0
    ? "sandbox escape tests need root (to run sandboxes as uid 65534 and create cgroups)"
    : probeBwrap(sandboxUid, dataDir);
if (skip) removeDir(dataDir);

interface Attempt {
  ok: boolean;
  error: string | null;
}
interface EnvReport {
  env: Record<string, string>;
  uid: number;
  gid: number;
  cwd: string;
  home: string;
}

interface Agent {
  sb: Sandbox;
  homeDir: string;
  appDir: string;
  /** What the agent wrote so far, on one stream or both. */
  output(stream?: "stdout" | "stderr"): string;
}

interface StartOptions {
  driver?: "bwrap" | "process";
  network?: SandboxOptions["network"];
  limits?: Limits;
  env?: Record<string, string>;
  /** Wait until the agent answers /readiness (default true). */
  ready?: boolean;
}

/** One HTTP request to an agent through its socket. */
function request(
  sb: Sandbox,
  method: string,
  urlPath: string,
  body?: string,
  timeoutMs = 15_000,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> =
      body === undefined
        ? {}
        : { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
    const req = http.request(
      { socketPath: sb.socketPath, path: urlPath, method, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}

async function getJson<T>(sb: Sandbox, urlPath: string, timeoutMs?: number): Promise<T> {
  const res = await request(sb, "GET", urlPath, undefined, timeoutMs);
  assert.equal(res.status, 200, `GET ${urlPath}: ${res.text}`);
  return JSON.parse(res.text) as T;
}

/** Resolves with the value, or rejects once `ms` have passed. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls until `check` holds; output may still be in flight when a process has exited. */
async function eventually(check: () => boolean, ms = 2000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) if (check()) return true;
  return check();
}

/** The sandbox's pids cgroup directory (its process list), v1 or v2. */
function pidsGroupDir(cgroups: CgroupHost, group: string, id: string): string {
  const own = new Map<string, string>();
  for (const line of readFileSync("/proc/self/cgroup", "utf8").trim().split("\n")) {
    const [, controllers = "", where = "/"] = line.split(":");
    for (const c of controllers.split(",")) own.set(c, where);
  }
  return cgroups.layout === "v2"
    ? path.join("/sys/fs/cgroup", own.get("") ?? "/", group, `s-${id}`)
    : path.join("/sys/fs/cgroup/pids", own.get("pids") ?? "/", group, `s-${id}`);
}

/** A process's start time (in clock ticks since boot), to tell it from a later one with its pid. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The fields after the command name (which may hold spaces) start with the state (field 3).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[0] === "Z" ? undefined : fields[19]; // a zombie has exited already
  } catch {
    return undefined; // gone
  }
}

function hostIPv4(): string | undefined {
  for (const addresses of Object.values(os.networkInterfaces()))
    for (const a of addresses ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  return undefined;
}

/** A TCP server on the host that counts the connections it accepts. */
async function listen(
  host: string,
): Promise<{ port: number; accepted: () => number; close(): Promise<void> }> {
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    accepted: () => accepted,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe("sandbox escape attempts", { skip }, () => {
  const group = `agenthost-test-escape-${process.pid}`;
  let host: HostLayout;
  let cgroups: CgroupHost;
  let drivers: Record<"bwrap" | "process", SandboxDriver>;
  const running = new Set<Sandbox>();

  before(async () => {
    host = await HostLayout.prepare(path.join(dataDir, "sandbox"), sandboxUid);
    const detected = detectCgroups(group);
    if ("unavailable" in detected) throw new Error(`cgroups: ${detected.unavailable}`);
    cgroups = detected;
    drivers = { bwrap: new BwrapDriver(host, cgroups), process: new ProcessDriver(host, cgroups) };
    await mkdir(path.join(dataDir, "homes"), { mode: 0o711 });
  });

  afterEach(async () => {
    await Promise.all([...running].map((sb) => sb.stop(0)));
    running.clear();
  });

  after(async () => {
    await Promise.all([...running].map((sb) => sb.stop(0)));
    await cgroups?.dispose();
    removeDir(dataDir);
  });

  async function start(fixture: string, options: StartOptions = {}): Promise<Agent> {
    const id = randomBytes(8).toString("hex");
    const homeDir = path.join(dataDir, "homes", id);
    await mkdir(homeDir, { mode: 0o700 });
    await chown(homeDir, sandboxUid, sandboxUid);
    const appDir = fixtureDir(fixture);
    const node = fixture.endsWith("-node");
    const limits = options.limits ?? defaultLimits;
    const sb = await drivers[options.driver ?? "bwrap"].start({
      id,
      language: node ? "node" : "python",
      interpreter: node ? "/usr/bin/node" : "/usr/bin/python3",
      homeDir,
      appDir,
      limits,
      network: options.network ?? "none",
    });
    running.add(sb);
    const streams = { stdout: "", stderr: "" };
    sb.onOutput((stream, chunk) => (streams[stream] += chunk.toString()));
    const output = (stream?: "stdout" | "stderr") =>
      stream ? streams[stream] : streams.stdout + streams.stderr;
    await sb.launch({
      argv: [node ? "index.js" : "main.py"],
      env: { PORT: "8088", ...options.env },
      limits,
    });
    if (options.ready ?? true) {
      await waitUntilReady(sb.socketPath, Date.now() + 10_000, sb.exited).catch((err: Error) => {
        throw new Error(`${fixture} did not get ready: ${err.message}\n${output()}`);
      });
    }
    return { sb, homeDir, appDir, output };
  }

  /** The identity and view checks that hold for both drivers. */
  async function checkIdentity(driver: "bwrap" | "process"): Promise<void> {
    const agent = await start("echo-python", { driver, env: { AGENT_SETTING: "on" } });
    const report = await getJson<EnvReport>(agent.sb, "/env");
    const isolated = driver === "bwrap";
    assert.equal(report.uid, isolated ? 1000 : sandboxUid);
    assert.equal(report.cwd, isolated ? "/app" : agent.appDir);
    assert.equal(report.env.HOME, isolated ? "/home/agent" : agent.homeDir);
    assert.equal(report.home, report.env.HOME);
    assert.deepEqual(
      Object.keys(report.env).sort(),
      [...baseEnvKeys, "AGENT_SETTING"].sort(),
      "the agent's environment holds only what the loader and the launch set",
    );
    assert.equal(report.env.AGENT_SETTING, "on");
    if (isolated) {
      assert.equal(report.env.PORT, "8088");
    } else {
      assert.match(report.env.PORT ?? "", /^\d+$/);
      assert.notEqual(report.env.PORT, "8088", "the process driver picks a free port");
    }
    assert.ok(!JSON.stringify(report).includes(canary), "no host environment value leaks");

    const written = await request(agent.sb, "POST", "/files?path=x.txt", "hello");
    assert.equal(written.status, 200, written.text);
    const file = await stat(path.join(agent.homeDir, "x.txt"));
    assert.equal(file.uid, sandboxUid, "files the agent writes belong to the sandbox uid");
    assert.equal(file.gid, sandboxUid);
  }

  async function checkCrash(driver: "bwrap" | "process"): Promise<void> {
    const agent = await start("crash-on-start", { driver, ready: false });
    await assert.rejects(
      waitUntilReady(agent.sb.socketPath, Date.now() + 10_000, agent.sb.exited),
      /exited/,
    );
    const exit = await within(agent.sb.exited, 10_000, "crash exit");
    assert.equal(exit.code, 1, JSON.stringify(exit));
    assert.ok(
      await eventually(() => agent.output("stderr").includes("RuntimeError: boom")),
      `stderr: ${agent.output("stderr")}`,
    );
  }

  async function checkGraceful(driver: "bwrap" | "process"): Promise<void> {
    const agent = await start("graceful", { driver });
    const began = Date.now();
    const exit = await agent.sb.stop(5000);
    const took = Date.now() - began;
    assert.ok(took < 3000, `graceful stop took ${took} ms`);
    assert.equal(exit.code, 0, JSON.stringify(exit));
    assert.ok(agent.output("stdout").includes("got SIGTERM"), agent.output());
  }

  describe("bwrap driver", () => {
    it("runs the agent as uid 1000 in /app with a clean environment; files belong to 65534", () =>
      checkIdentity("bwrap"));

    it("hides the host's secrets, processes and capabilities", async () => {
      const agent = await start("read-secrets");
      const probe = await getJson<Record<string, Attempt & { value: string | null }>>(
        agent.sb,
        "/probe",
      );
      for (const target of ["/etc/shadow", "/root"]) {
        assert.equal(probe[target]?.ok, false, `${target}: ${JSON.stringify(probe[target])}`);
      }
      // The sandbox's pid 1 is bwrap's init, run as the same uid: reading it may succeed, but
      // it must not hold the host's environment.
      const init = probe["/proc/1/environ"];
      assert.ok(
        init?.ok === false || init?.value === "",
        `/proc/1/environ: ${JSON.stringify(init)}`,
      );
      assert.equal(probe.CapEff?.value, "0000000000000000", "no effective capabilities");
      assert.equal(probe["/home"]?.value, "agent", "/home holds only the agent's home");
      assert.ok(!JSON.stringify(probe).includes(canary), "no host environment value leaks");
    });

    it("lets the agent write only to /tmp and its home", async () => {
      const before = readdirSync(fixtureDir("write-outside")).sort();
      const agent = await start("write-outside");
      const probe = await getJson<Record<string, Attempt & { path: string }>>(agent.sb, "/probe");
      const writable = Object.keys(probe).filter((label) => probe[label]?.ok);
      assert.deepEqual(writable.sort(), ["$HOME", "/tmp"], JSON.stringify(probe));
      assert.ok(Object.keys(probe).length >= 9, "every target was tried");
      await agent.sb.stop(0);
      assert.deepEqual(readdirSync(fixtureDir("write-outside")).sort(), before);
    });

    it("has no network with network none", async () => {
      const loopback = await listen("127.0.0.1");
      const ip = hostIPv4();
      const external = ip ? await listen(ip) : undefined;
      try {
        const agent = await start("connect-out");
        const targets = [`127.0.0.1:${loopback.port}`];
        if (ip && external) targets.push(`${ip}:${external.port}`);
        const probe = await getJson<Record<string, Attempt>>(
          agent.sb,
          `/probe?targets=${encodeURIComponent(targets.join(","))}`,
          30_000,
        );
        for (const target of targets)
          assert.equal(probe[target]?.ok, false, `${target}: ${JSON.stringify(probe[target])}`);
        assert.equal(probe["dns:registry.npmjs.org"]?.ok, false, "DNS fails");
        assert.equal(loopback.accepted() + (external?.accepted() ?? 0), 0, "no connection arrived");
      } finally {
        await loopback.close();
        await external?.close();
      }
    });

    it("reaches other hosts but not the host's loopback with network egress", async (t) => {
      const ip = hostIPv4();
      if (!ip) return t.skip("the host has no non-loopback IPv4 address");
      const loopback = await listen("127.0.0.1");
      const external = await listen(ip);
      try {
        const agent = await start("connect-out", { network: "egress" });
        const outside = `${ip}:${external.port}`;
        const hostLoopback = `10.0.2.2:${loopback.port}`;
        const probe = await getJson<Record<string, Attempt>>(
          agent.sb,
          `/probe?targets=${encodeURIComponent(`${outside},${hostLoopback}`)}`,
          30_000,
        );
        assert.equal(probe[outside]?.ok, true, `${outside}: ${JSON.stringify(probe[outside])}`);
        assert.equal(probe[hostLoopback]?.ok, false, JSON.stringify(probe[hostLoopback]));
        assert.equal(loopback.accepted(), 0, "nothing reached the host's loopback");
        assert.ok(external.accepted() >= 1, "the outside connection arrived");
      } finally {
        await loopback.close();
        await external.close();
      }
    });

    it("kills an agent that exceeds its memory limit, and only it", async () => {
      const limits = { ...defaultLimits, memoryBytes: 64 * 2 ** 20 };
      const agent = await start("memory-hog", { limits });
      request(agent.sb, "POST", "/responses", "{}", 30_000).catch(() => {}); // never answers
      const exit = await within(agent.sb.exited, 20_000, "the OOM kill");
      assert.equal(exit.oomKilled, true, `${JSON.stringify(exit)}\n${agent.output()}`);
      assert.match(agent.output(), /allocated \d+ MiB/, "the agent did allocate");
      assert.ok(exit.code === 128 + 9 || exit.signal === "SIGKILL", "the agent was killed");
    });

    it("stops a fork bomb at its pids limit and kills every fork", async () => {
      const agent = await start("fork-bomb", { limits: { ...defaultLimits, pids: 32 } });
      const groupDir = pidsGroupDir(cgroups, group, agent.sb.id);
      const probe = await getJson<{ forked: number; error: string | null }>(agent.sb, "/probe");
      assert.equal(probe.error, "EAGAIN", JSON.stringify(probe));
      assert.ok(probe.forked > 0 && probe.forked < 32, `forked ${probe.forked}`);
      const pids = readFileSync(path.join(groupDir, "cgroup.procs"), "utf8")
        .split("\n")
        .filter(Boolean)
        .map(Number);
      assert.ok(pids.length > probe.forked, `${pids.length} processes in ${groupDir}`);
      const started = new Map(pids.map((pid) => [pid, startTime(pid)]));

      await within(agent.sb.stop(0), 10_000, "stopping the fork bomb");
      await within(agent.sb.exited, 1000, "exited after stop");
      assert.equal(existsSync(groupDir), false, `${groupDir} is removed`);
      const left = pids.filter((pid) => started.get(pid) && startTime(pid) === started.get(pid));
      assert.deepEqual(left, [], "no process of the sandbox is left");
    });

    it("kills an agent that ignores SIGTERM once the grace period is over", async () => {
      const agent = await start("ignore-sigterm");
      const began = Date.now();
      const exit: Exit = await agent.sb.stop(1000);
      const took = Date.now() - began;
      assert.ok(took >= 1000 && took < 5000, `stop took ${took} ms`);
      assert.ok(exit.signal === "SIGKILL" || exit.code === 128 + 9, JSON.stringify(exit));
      assert.equal(exit.oomKilled, false);
    });

    it("gives a graceful agent its SIGTERM and lets it exit", () => checkGraceful("bwrap"));

    it("reports an agent that crashes on start", () => checkCrash("bwrap"));

    it("keeps one sandbox answering while a fork bomb runs in another", async () => {
      const echo = await start("echo-python");
      const bomb = await start("fork-bomb", { limits: { ...defaultLimits, pids: 32 } });
      const probe = await getJson<{ forked: number; error: string | null }>(bomb.sb, "/probe");
      assert.equal(probe.error, "EAGAIN");
      assert.equal((await request(echo.sb, "GET", "/readiness")).status, 200, "during the bomb");
      await bomb.sb.stop(0);
      assert.equal((await request(echo.sb, "GET", "/readiness")).status, 200, "after the bomb");
      const reply = await request(echo.sb, "POST", "/responses", JSON.stringify({ input: "hi" }));
      assert.match(reply.text, /echo: hi/);
    });

    it("runs a Node agent", async () => {
      const agent = await start("echo-node");
      const reply = await request(agent.sb, "POST", "/responses", JSON.stringify({ input: "hi" }));
      assert.equal(reply.status, 200, reply.text);
      const body = JSON.parse(reply.text) as { output: { content: { text: string }[] }[] };
      assert.equal(body.output[0]?.content[0]?.text, "echo: hi");
      const report = await getJson<EnvReport>(agent.sb, "/env");
      assert.equal(report.uid, 1000);
      assert.equal(report.cwd, "/app");
    });
  });

  describe("process driver (no isolation)", () => {
    it("runs the agent as uid 65534 with a clean environment and its own port", () =>
      checkIdentity("process"));

    it("gives a graceful agent its SIGTERM and lets it exit", () => checkGraceful("process"));

    it("reports an agent that crashes on start", () => checkCrash("process"));
  });
});
