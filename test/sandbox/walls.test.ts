import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { chown, mkdir } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { BwrapDriver, probeBwrap } from "../../src/sandbox/bwrapDriver.js";
import { detectCgroups, type CgroupHost, type Limits } from "../../src/sandbox/cgroups.js";
import type { Sandbox } from "../../src/sandbox/driver.js";
import { HostLayout } from "../../src/sandbox/sandboxProcess.js";
import { deniedFamilies, seccompFilter } from "../../src/sandbox/seccomp.js";
import { visitTree } from "../../src/trees/agentTree.js";
import { waitUntilReady } from "../../src/sessions/agentSocket.js";
import { deployFixture, fixtureDir } from "../helpers/agents.js";
import {
  httpsJson,
  removeDir,
  repoRoot,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";

/*
 * The walls around a sandbox: the socket the host connects to, the descriptors a sandbox
 * inherits, the seccomp filter, and what /proc inside shows of the host.
 */

const sandboxUid = 65534;
const limits: Limits = { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 64 };
const dataDir = tempDir("agenthost-walls-");
const skip =
  process.getuid?.() !== 0
    ? "sandbox tests need root (to run sandboxes as uid 65534 and create cgroups)"
    : probeBwrap(sandboxUid, dataDir);
if (skip) removeDir(dataDir);

function get(socketPath: string, urlPath: string, method = "GET"): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: urlPath, method, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += String(c)));
      res.on("end", () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`${res.statusCode}: ${body}`)),
      );
    });
    req.setTimeout(20_000, () => req.destroy(new Error(`${urlPath} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

async function getJson<T>(sb: Sandbox, urlPath: string, method = "GET"): Promise<T> {
  return JSON.parse(await get(sb.socketPath, urlPath, method)) as T;
}

/** Runs `command` in bash (so that it can open extra descriptors) and collects its stdout. */
function bash(command: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", command], { cwd: repoRoot });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += String(c)));
    child.stderr.on("data", (c: Buffer) => (stderr += String(c)));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a classic BPF seccomp program on one call, as the kernel would. */
function runFilter(program: Buffer, data: { nr: number; arch: number; args?: number[] }): number {
  const mem = Buffer.alloc(64);
  mem.writeInt32LE(data.nr, 0);
  mem.writeUInt32LE(data.arch, 4);
  (data.args ?? []).forEach((a, i) => mem.writeBigUInt64LE(BigInt(a), 16 + 8 * i));
  let acc = 0;
  for (let pc = 0; pc * 8 < program.length;) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    pc++;
    if (code === 0x20) acc = mem.readUInt32LE(k);
    else if (code === 0x06) return k;
    else if (code === 0x15) pc += acc === k ? jt : jf;
    else if (code === 0x35) pc += acc >= k ? jt : jf;
    else if (code === 0x45) pc += (acc & k) !== 0 ? jt : jf;
    else throw new Error(`unknown BPF opcode ${code}`);
  }
  throw new Error("the program ran off its end");
}

describe("sandbox walls", { skip }, () => {
  const group = `agenthost-test-walls-${process.pid}`;
  let host: HostLayout;
  let cgroups: CgroupHost;
  let driver: BwrapDriver;
  const running = new Set<Sandbox>();

  before(async () => {
    host = await HostLayout.prepare(path.join(dataDir, "sandbox"), sandboxUid);
    const detected = detectCgroups(group);
    if ("unavailable" in detected) throw new Error(`cgroups: ${detected.unavailable}`);
    cgroups = detected;
    driver = new BwrapDriver(host, cgroups);
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

  async function start(fixture: string): Promise<Sandbox> {
    const id = randomBytes(8).toString("hex");
    const homeDir = path.join(dataDir, "homes", id);
    await mkdir(homeDir, { mode: 0o700 });
    await chown(homeDir, sandboxUid, sandboxUid);
    const node = fixture.endsWith("-node");
    const sb = await driver.start({
      id,
      language: node ? "node" : "python",
      interpreter: node ? "/usr/bin/node" : "/usr/bin/python3",
      homeDir,
      appDir: fixtureDir(fixture),
      limits,
      network: "none",
    });
    running.add(sb);
    let output = "";
    sb.onOutput((_, chunk) => (output += String(chunk)));
    await sb.launch({ argv: [node ? "index.js" : "main.py"], env: { PORT: "8088" }, limits });
    await waitUntilReady(sb.socketPath, Date.now() + 20_000, sb.exited).catch((err: Error) => {
      throw new Error(`${fixture} did not get ready: ${err.message}\n${output}`);
    });
    return sb;
  }

  describe("the agent's socket", () => {
    it("is never reached through a symlink the agent planted", async () => {
      // A root-only Unix socket elsewhere on the host, as a privileged service would have.
      const privateDir = path.join(dataDir, "private");
      mkdirSync(privateDir, { mode: 0o700 });
      const other = path.join(privateDir, "other.sock");
      let reached = 0;
      const server = http.createServer((_, res) => {
        reached++;
        res.end(JSON.stringify({ agent: "other" }));
      });
      await new Promise<void>((resolve) => server.listen(other, resolve));
      chmodSync(other, 0o600);
      try {
        const sb = await start("walls");
        const done = await getJson<string[]>(
          sb,
          `/hijack?target=${encodeURIComponent(other)}`,
          "POST",
        );
        assert.ok(
          done.some((step) => step.startsWith("linked")),
          JSON.stringify(done),
        );
        for (let i = 0; i < 3; i++) {
          const who = await getJson<{ agent: string }>(sb, "/whoami");
          assert.equal(who.agent, "walls", "the host still talks to the agent");
        }
        assert.equal(reached, 0, "the host never connected to the other socket");
        const dir = statSync(path.dirname(sb.socketPath));
        assert.equal(dir.uid, 0, "the socket's directory belongs to root");
        assert.equal(dir.mode & 0o077, 0, "and only root may enter it");
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    });
  });

  describe("the exec helper", () => {
    for (const fixture of ["exec-probe", "exec-probe-node"]) {
      it(`is out of the agent's reach from the agent's first instruction (${fixture})`, async () => {
        const probeDir = tempDir("agenthost-exec-probe-");
        chmodSync(probeDir, 0o711);
        try {
          // A cold sandbox: the agent starts right after the helper, and races it.
          const run = await bash(
            `exec node --import tsx test/helpers/sandboxProbe.ts ${probeDir} ${sandboxUid} ${fixture} /probe`,
          );
          assert.equal(run.code, 0, run.stderr);
          const report = JSON.parse(run.stdout) as {
            tries: number;
            opened: boolean;
            control: string;
            error?: string;
          };
          assert.equal(report.control, "opened", "the agent may open its own child's memory");
          assert.ok(report.tries > 0, `the agent saw the helper: ${run.stdout}`);
          assert.equal(report.opened, false, `the agent opened the helper's memory: ${run.stdout}`);
          assert.match(String(report.error), /^(EACCES|Permission denied)$/);
        } finally {
          removeDir(probeDir);
        }
      });
    }
  });

  describe("descriptors", () => {
    for (const fixture of ["walls", "walls-node"]) {
      it(`leaves nothing the service inherited open in a sandbox (${fixture})`, async () => {
        const secret = `secret-${randomBytes(8).toString("hex")}`;
        const secretFile = path.join(dataDir, `secret-${fixture}`);
        writeFileSync(secretFile, secret, { mode: 0o600 });
        const probeDir = tempDir("agenthost-walls-probe-");
        chmodSync(probeDir, 0o711);
        try {
          // The shell that starts the service leaves fd 300 open on a root-only file.
          const run = await bash(
            `exec node --import tsx test/helpers/sandboxProbe.ts ${probeDir} ${sandboxUid} ${fixture} /fds?fd=300 300<${secretFile}`,
          );
          assert.equal(run.code, 0, run.stderr);
          assert.ok(!run.stdout.includes(secret), `the secret leaked: ${run.stdout}`);
          const report = JSON.parse(run.stdout) as {
            self: Record<string, string>;
            init: { ok: boolean; value: Record<string, string> | null };
            read_self: { ok: boolean };
            read_init: { ok: boolean };
            read_direct: { ok: boolean };
          };
          assert.equal(report.read_direct.ok, false, "fd 300 is not open in the agent");
          assert.equal(report.read_self.ok, false);
          assert.equal(report.read_init.ok, false, "nor in the sandbox's init");
          const targets = [
            ...Object.values(report.self),
            ...Object.values(report.init.value ?? {}),
          ];
          assert.ok(
            !targets.some((t) => t.includes(secretFile)),
            `no descriptor points at the file: ${JSON.stringify(report)}`,
          );
        } finally {
          removeDir(probeDir);
        }
      });
    }
  });

  describe("seccomp", () => {
    let results: Record<string, Record<string, string>>;
    const expected = (family: string) => (family === "clone3" ? "ENOSYS" : "EPERM");

    before(async () => {
      const sb = await start("walls");
      results = await getJson(sb, "/syscalls");
    });

    const families = [
      "io_uring",
      "keyring",
      "ptrace",
      "perf",
      "bpf",
      "kexec",
      "modules",
      "mount",
      "personality",
      "userfaultfd",
      "namespaces",
      "clone3",
    ];
    for (const family of families) {
      it(`refuses the ${family} calls`, () => {
        const calls = results[family];
        assert.ok(calls && Object.keys(calls).length > 0, `probed ${family}`);
        for (const [name, result] of Object.entries(calls))
          assert.equal(result, expected(family), `${name}: ${result}`);
      });
    }

    it("refuses them even to a caller with every capability", async () => {
      // Real root with all capabilities (no user namespace) under the same filter: the kernel
      // would answer these calls otherwise (their arguments are harmless), so EPERM is the
      // filter's, on any kernel.
      const probe = spawn(
        "bwrap",
        [
          ...["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"],
          ...["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"],
          // The fixture bound where it is found whatever the checkout's path (/tmp included).
          ...["--ro-bind", fixtureDir("walls"), "/tmp/walls"],
          ...["--cap-add", "ALL", "--seccomp", "3", "--"],
          ...["/usr/bin/python3", "/tmp/walls/syscalls.py"],
        ],
        { stdio: ["ignore", "pipe", "inherit", "pipe"] },
      );
      (probe.stdio[3] as NodeJS.WritableStream).end(seccompFilter());
      let out = "";
      probe.stdout!.on("data", (c: Buffer) => (out += String(c)));
      await new Promise((resolve) => probe.once("close", resolve));
      const asRoot = JSON.parse(out) as Record<string, Record<string, string>>;
      for (const family of families)
        for (const [name, result] of Object.entries(asRoot[family] ?? {}))
          assert.equal(result, expected(family), `as root, ${name}: ${result}`);
      assert.ok(Object.keys(asRoot).length >= families.length, out);
    });

    it("still runs child processes (Python and Node)", async () => {
      const py = await start("walls");
      assert.deepEqual(await getJson(py, "/children"), { sh: "sh-ok\n", python: "py-ok\n" });
      const node = await start("walls-node");
      assert.deepEqual(await getJson(node, "/children"), { node: "node-ok\n", sh: "sh-ok\n" });
    });

    it("decides by architecture, ABI and argument", () => {
      const filter = seccompFilter();
      const allow = 0x7fff0000;
      const eperm = 0x00050001;
      const x86 = 0xc000003e;
      const arm = 0xc00000b7;
      assert.equal(runFilter(filter, { nr: 0, arch: x86 }), allow, "read");
      assert.equal(runFilter(filter, { nr: 425, arch: x86 }), eperm, "io_uring_setup");
      assert.equal(runFilter(filter, { nr: 0x40000000, arch: x86 }), eperm, "x32 read");
      assert.equal(runFilter(filter, { nr: 435, arch: x86 }), 0x00050026, "clone3: ENOSYS");
      // clone: a plain fork or thread passes, a new namespace does not.
      assert.equal(runFilter(filter, { nr: 56, arch: x86, args: [0x3d0f00] }), allow);
      assert.equal(runFilter(filter, { nr: 56, arch: x86, args: [0x10000011] }), eperm);
      assert.equal(runFilter(filter, { nr: 220, arch: arm, args: [0x40000011] }), eperm);
      // personality: the query and PER_LINUX pass, ADDR_NO_RANDOMIZE does not.
      assert.equal(runFilter(filter, { nr: 135, arch: x86, args: [0xffffffff] }), allow);
      assert.equal(runFilter(filter, { nr: 135, arch: x86, args: [0] }), allow);
      assert.equal(runFilter(filter, { nr: 92, arch: arm, args: [0x0040000] }), eperm);
      // aarch64 numbers: ptrace is 117, keyctl 219; 101 (x86_64's ptrace) is nanosleep there.
      assert.equal(runFilter(filter, { nr: 117, arch: arm }), eperm);
      assert.equal(runFilter(filter, { nr: 219, arch: arm }), eperm);
      assert.equal(runFilter(filter, { nr: 101, arch: arm }), allow);
      assert.equal(runFilter(filter, { nr: 0, arch: 0x40000003 }), 0x80000000, "i386: killed");
      assert.ok(Object.values(deniedFamilies).flat().length >= 40);
    });
  });

  describe("/proc", () => {
    it("shows no host path on the sandbox's init command line", async () => {
      const sb = await start("walls");
      const proc = await getJson<{ cmdline: string; mountinfo: string }>(sb, "/proc");
      assert.match(proc.cmdline, /^bwrap --args \d+ -- /, proc.cmdline);
      assert.ok(!proc.cmdline.includes(dataDir), proc.cmdline);
    });
  });
});

describe("a uid per session", { skip }, () => {
  let server: TestServer;
  let client: ReturnType<typeof sdk>;
  const agent = `walls-${process.pid}`;
  const v1 = { type: "version_ref" as const, agent_version: "1" };

  before(async () => {
    server = await startServer({
      env: { AGENTHOST_WARM_POOL_SIZE: "1", AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1" },
    });
    client = sdk(server, server.adminKey);
    await deployFixture(client, agent, "walls");
  });

  after(async () => {
    await server?.stop();
    if (server) removeDir(server.dataDir);
  });

  /** One command to a session's agent (POST /responses), its JSON answer. */
  async function ask<T>(session: string, input: string): Promise<T> {
    const r = await httpsJson(
      server,
      "POST",
      `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
      {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ input, agent_session_id: session }),
      },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const output = r.body.output as { content: { text: string }[] }[];
    return JSON.parse(output[0]!.content[0]!.text) as T;
  }

  const homeOf = (id: string) => path.join(server.dataDir, "sessions/default", agent, id, "home");

  it("gives each running session its own uid: per-uid limits and files are its own", async () => {
    const a = (await client.agents.createSession(agent, v1)).agent_session_id;
    const b = (await client.agents.createSession(agent, v1)).agent_session_id;
    // One session takes every inotify instance its uid may have (a per-uid kernel limit) ...
    const filled = await ask<{ made: number; error: string | null }>(a, "inotify-fill");
    assert.ok(filled.made > 0 && filled.error !== null, JSON.stringify(filled));
    // ... and the other is unaffected.
    const one = await ask<{ made: number; error: string | null }>(b, "inotify-one");
    assert.deepEqual(one, { made: 1, error: null }, "the other session still gets one");

    const [uidA, uidB] = [statSync(homeOf(a)).uid, statSync(homeOf(b)).uid];
    assert.notEqual(uidA, uidB, "two running sessions, two uids");
    for (const uid of [uidA, uidB]) assert.ok(uid >= 1879048192 && uid <= 1879113727, `${uid}`);
    await ask(a, "write secret.txt only-for-a");
    assert.equal(statSync(path.join(homeOf(a), "secret.txt")).uid, uidA);
    const uploaded = await client.agents.uploadSessionFile(agent, a, "up.txt", Buffer.from("x"));
    assert.equal(uploaded.bytes_written, 1);
    assert.equal(statSync(path.join(homeOf(a), "up.txt")).uid, uidA, "uploads are the session's");
    // The other session's uid cannot read them, even given the host path.
    const read = spawnSync("cat", [path.join(homeOf(a), "secret.txt")], { uid: uidB, gid: uidB });
    assert.notEqual(read.status, 0, "uid B cannot read A's file");
    assert.ok(!String(read.stdout).includes("only-for-a"));

    // A resumed session runs as the uid its home belongs to.
    await client.agents.stopSession(agent, a);
    assert.deepEqual(await ask(a, "inotify-one"), { made: 1, error: null }, "limits freed");
    assert.equal(statSync(homeOf(a)).uid, uidA, "the resumed session kept its uid");
    assert.equal(statSync(path.join(homeOf(a), "secret.txt")).uid, uidA);
  });
});

describe("re-owning a home (visitTree)", { skip }, () => {
  it("gives a whole tree to a uid without following a link, however deep", async () => {
    const root = tempDir("agenthost-chown-");
    try {
      const outside = path.join(root, "outside.txt");
      writeFileSync(outside, "root's");
      const home = path.join(root, "home");
      let dir = home;
      for (let i = 0; i < 300; i++) dir = path.join(dir, "d");
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, "deep.txt"), "x");
      symlinkSync(outside, path.join(home, "link-to-file"));
      symlinkSync(root, path.join(home, "link-to-dir"));
      await visitTree(home, (e) => e.chown(1879048200, 1879048200));
      assert.equal(lstatSync(path.join(dir, "deep.txt")).uid, 1879048200, "the deepest file");
      assert.equal(lstatSync(dir).uid, 1879048200);
      assert.equal(lstatSync(path.join(home, "link-to-file")).uid, 1879048200, "the link itself");
      assert.equal(statSync(outside).uid, 0, "not what the link names");
      assert.equal(statSync(root).uid, 0);
      assert.equal(readFileSync(outside, "utf8"), "root's");
    } finally {
      removeDir(root);
    }
  });
});
