import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, HostedAgentDefinition } from "@azure/ai-projects";
import { probeBwrap } from "../../src/sandbox/bwrapDriver.js";
import { fixtureDir } from "../helpers/agents.js";
import {
  httpsJson,
  removeDir,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";
import { makeZip, sha256, type ZipEntry } from "../helpers/zip.js";

/*
 * Hostile uploads against `remote_build`: the installer (npm, pip and the package code pip
 * runs) is sandboxed like a session. A config file in the zip is never honoured, the build
 * code sees no host secret and writes nowhere but its code directory, its limits hold, and
 * nothing of it survives a timeout or a kill -9 of the service.
 */

const sandboxUid = 65534;
/** A secret in the service's environment that no build may see. */
const canary = `canary-${randomBytes(8).toString("hex")}`;

const probeDir = tempDir("agenthost-build-probe-");
const skip =
  process.getuid?.() !== 0
    ? "build sandbox tests need root (to run installs as uid 65534 and create cgroups)"
    : probeBwrap(sandboxUid, probeDir);
removeDir(probeDir);

const serverEnv = {
  AGENTHOST_ESCAPE_CANARY: canary,
  AGENTHOST_BUILD_MEMORY_BYTES: String(256 * 1024 * 1024),
  AGENTHOST_BUILD_DISK_BYTES: String(64 * 1024 * 1024),
  AGENTHOST_BUILD_TIMEOUT_SECONDS: "20",
};

let server: TestServer;
let client: AIProjectClient;
let unique = 0;
const newName = () => `build-${process.pid}-${++unique}`;
const newMarker = () => `agenthost-marker-${randomBytes(6).toString("hex")}`;

/** A fixture directory as zip entries (executable bits kept), plus extra entries. */
function zipOf(fixture: string, extra: ZipEntry[] = []): Buffer {
  const dir = fixtureDir(fixture);
  const entries = readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const file = path.join(e.parentPath, e.name);
      const executable = (statSync(file).mode & 0o111) !== 0;
      return {
        name: path.relative(dir, file),
        data: readFileSync(file),
        mode: executable ? 0o100755 : 0o100644,
      };
    });
  return makeZip([...entries, ...extra]);
}

const definition = (runtime: string, entry: string[]) =>
  ({
    kind: "hosted",
    cpu: "0.5",
    memory: "512Mi",
    code_configuration: { runtime, entry_point: entry, dependency_resolution: "remote_build" },
    protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
  }) as unknown as HostedAgentDefinition;

async function upload(on: AIProjectClient, name: string, zip: Buffer, language: "python" | "node") {
  await on.agents.createVersionFromCode(name, sha256(zip), {
    metadata: {
      definition:
        language === "python"
          ? definition("python_3_11", ["python", "main.py"])
          : definition("node_20", ["node", "index.js"]),
    },
    code: zip,
  });
}

/** Uploads the hostile pip package told to do `action`. */
function uploadPip(on: AIProjectClient, name: string, action: string, marker = newMarker()) {
  const behaviour = JSON.stringify({ action, marker });
  return upload(
    on,
    name,
    zipOf("build-pip-hostile", [{ name: "behaviour.json", data: behaviour }]),
    "python",
  );
}

interface Status {
  status: string;
  status_reason?: { code: string; message: string } | null;
}

/** The version once built, as the wire has it (the client drops `status_reason`). */
async function settled(on: TestServer, name: string, timeoutMs = 120_000): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const url = `${on.endpoint}/agents/${name}/versions/1?api-version=v1`;
    const res = await httpsJson(on, "GET", url, {
      headers: { authorization: `Bearer ${on.adminKey}` },
    });
    const v = res.body as unknown as Status;
    if (v.status !== "creating") return v;
    if (Date.now() > deadline) assert.fail(`version ${name}:1 still creating`);
    await sleep(200);
  }
}

const appDirOf = (s: TestServer, name: string) =>
  path.join(s.dataDir, "builds/default", name, "1/app");
/** The messages of a version's build log (JSON lines, as a session's console), one a line. */
const buildLog = (s: TestServer, name: string) =>
  readFileSync(path.join(s.dataDir, "builds", "default", name, "1", "build.log"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { message: string }).message)
    .join("\n");

/** Processes whose command line carries the marker, with their host uid. */
function processesWith(marker: string): { pid: number; uid: number }[] {
  const found: { pid: number; uid: number }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(marker)) continue;
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${entry}/status`, "utf8"))![1]!;
      found.push({ pid: Number(entry), uid: Number(uid) });
    } catch {
      // ended meanwhile
    }
  }
  return found;
}

async function eventually(check: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (check()) return true;
  return check();
}

describe("build sandbox", { skip }, () => {
  before(async () => {
    server = await startServer({ env: serverEnv });
    client = sdk(server, server.adminKey);
  });

  after(async () => {
    await server?.stop();
    if (server) removeDir(server.dataDir);
  });

  it("an .npmrc in the zip naming a script as `git` never runs it", async () => {
    const name = newName();
    const marker = newMarker();
    await upload(
      client,
      name,
      zipOf("build-npmrc-git", [{ name: "marker", data: marker }]),
      "node",
    );
    const v = await settled(server, name);
    const log = buildLog(server, name);
    assert.equal(existsSync(`/tmp/${marker}`), false, `the script ran on the host:\n${log}`);
    assert.equal(
      existsSync(path.join(appDirOf(server, name), "pwned")),
      false,
      `the script ran:\n${log}`,
    );
    assert.match(log, /removed \.npmrc from the code/);
    // npm used the real git, in the sandbox, which found no such repository.
    assert.equal(v.status, "failed", log);
    assert.equal(v.status_reason?.code, "dependency_install_failed");
    assert.doesNotMatch(log, /evil\.sh/);
  });

  it("a setup.py reads no host secret and writes nowhere outside the code directory", async () => {
    const name = newName();
    const marker = newMarker();
    await uploadPip(client, name, "snoop", marker);
    const v = await settled(server, name);
    const app = appDirOf(server, name);
    const log = buildLog(server, name);
    const reportFile = path.join(app, "report.json");
    assert.ok(existsSync(reportFile), `setup.py ran and reported:\n${log}`);
    const report = JSON.parse(readFileSync(reportFile, "utf8")) as {
      uid: number;
      shadow: { ok: boolean };
      parent_environ: { ok: boolean; value?: string };
      secrets: string[];
      env: Record<string, string>;
    };
    assert.notEqual(report.uid, 0, "not root");
    assert.equal(report.shadow.ok, false, "/etc/shadow is not readable");
    assert.ok(
      !report.parent_environ.ok || !report.parent_environ.value!.includes(canary),
      "the service's environment is not readable",
    );
    assert.deepEqual(report.secrets, [], "no readable process environment holds a setting");
    assert.ok(!JSON.stringify(report).includes(canary), "the canary appears nowhere");
    assert.deepEqual(
      Object.keys(report.env).filter((k) => /AGENTHOST|KEY|TOKEN|SECRET/.test(k)),
      [],
      "a minimal environment",
    );
    assert.equal(report.env.PIP_CONFIG_FILE, "/dev/null");
    // Nothing was left on the host outside the code directory.
    const outside = ["/tmp", "/var/tmp", "/etc", "/usr", "/root"];
    for (let d = path.dirname(app); ; d = path.dirname(d)) {
      outside.push(d);
      if (d === "/") break;
    }
    for (const d of outside)
      assert.equal(existsSync(path.join(d, marker)), false, `wrote ${path.join(d, marker)}`);
    assert.equal(v.status, "active", log);
  });

  it("a memory hog in setup.py fails the build cleanly at the build memory limit", async () => {
    const name = newName();
    await uploadPip(client, name, "hog");
    const v = await settled(server, name);
    const log = buildLog(server, name);
    assert.equal(v.status, "failed", log);
    assert.equal(v.status_reason?.code, "dependency_install_failed", log);
    assert.match(v.status_reason!.message, /ran out of memory \(limit 256 MiB\)/);
  });

  it("an install writing past the build disk limit is stopped", async () => {
    const name = newName();
    await uploadPip(client, name, "disk");
    const v = await settled(server, name);
    const log = buildLog(server, name);
    assert.equal(v.status, "failed", log);
    assert.match(v.status_reason!.message, /grew past its limit of 64 MiB/, log);
  });

  it("a flood of install output stops at the build log's cap, with a count", async () => {
    const name = newName();
    await uploadPip(client, name, "flood");
    await settled(server, name);
    const log = path.join(server.dataDir, "builds/default", name, "1/build.log");
    assert.ok(statSync(log).size < 9 * 1024 * 1024, `build.log is ${statSync(log).size} bytes`);
    assert.match(buildLog(server, name), /\d+ bytes of install output dropped/);
  });

  it("an install making a 300-level tree is sealed like any other tree, never crashing the service", async () => {
    const name = newName();
    await uploadPip(client, name, "deep");
    const v = await settled(server, name);
    assert.equal(v.status, "active", buildLog(server, name));
    let deepest = path.join(server.dataDir, "builds/default", name, "1/app/deep");
    for (let i = 1; i < 300; i++) deepest = path.join(deepest, "d");
    const st = statSync(deepest);
    assert.equal(st.uid, 0, "sealed: root's");
    assert.equal(st.mode & 0o777, 0o750, "sealed: no write for the sandboxes");
    const again = await client.agents.get(name);
    assert.equal(again.name, name, "the service still answers");
  });

  it("an install past the timeout is killed with everything it started", async () => {
    const name = newName();
    const marker = newMarker();
    await uploadPip(client, name, "hang", marker);
    assert.ok(
      await eventually(() => processesWith(marker).length > 0, 60_000),
      "the hanging install started",
    );
    assert.ok(
      processesWith(marker).every((p) => p.uid === sandboxUid),
      `the installer runs as the sandbox uid: ${JSON.stringify(processesWith(marker))}`,
    );
    const v = await settled(server, name);
    assert.equal(v.status, "failed");
    assert.equal(v.status_reason?.code, "build_timeout");
    assert.deepEqual(processesWith(marker), [], "no process of the build is left");
  });

  it("an install reaches the registry but no server on the host's loopback", async () => {
    const hits: string[] = [];
    const local = http.createServer((req, res) => {
      hits.push(req.url ?? "");
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => local.listen(0, "127.0.0.1", resolve));
    const { port } = local.address() as AddressInfo;
    try {
      const name = newName();
      const zip = makeZip([
        { name: "index.js", data: "1;\n" },
        {
          name: "package.json",
          data: JSON.stringify({
            name,
            version: "1.0.0",
            dependencies: {
              // The host's loopback as the sandbox's own, and as slirp4netns's host address.
              a: `http://127.0.0.1:${port}/a.tgz`,
              b: `http://10.0.2.2:${port}/b.tgz`,
            },
          }),
        },
      ]);
      await upload(client, name, zip, "node");
      const v = await settled(server, name);
      assert.equal(v.status, "failed", buildLog(server, name));
      assert.deepEqual(hits, [], "no request reached the host's loopback");
    } finally {
      local.close();
    }
  });

  it("built code is read-only for the sandbox uid and private to it", async () => {
    const name = newName();
    const zip = makeZip([
      { name: "index.js", data: "require('is-number');\n" },
      {
        name: "package.json",
        data: JSON.stringify({ name, version: "1.0.0", dependencies: { "is-number": "7.0.0" } }),
      },
    ]);
    await upload(client, name, zip, "node");
    const v = await settled(server, name);
    const app = appDirOf(server, name);
    assert.equal(v.status, "active", buildLog(server, name));
    const installed = path.join(app, "node_modules/is-number/package.json");
    for (const file of [app, path.join(app, "index.js"), installed]) {
      const st = statSync(file);
      assert.equal(st.uid, 0, `${file} is root's`);
      assert.equal(st.gid, sandboxUid, `${file} is the sandbox group's`);
      assert.equal(st.mode & 0o027, 0, `${file}: no group write, nothing for others`);
    }
    const asSandbox = (script: string) =>
      spawnSync("/bin/sh", ["-c", script], { uid: sandboxUid, gid: sandboxUid, env: {} });
    assert.equal(asSandbox(`cat '${installed}'`).status, 0, "the sandbox uid reads it");
    assert.notEqual(asSandbox(`echo x >> '${installed}'`).status, 0, "and cannot change it");
    assert.notEqual(asSandbox(`touch '${app}/new'`).status, 0, "nor add to it");
    const other = spawnSync("/bin/cat", [installed], { uid: 12345, gid: 12345, env: {} });
    assert.notEqual(other.status, 0, "another host user cannot read it");
    const versionDir = path.dirname(app);
    assert.equal(
      statSync(path.join(versionDir, "build.log")).mode & 0o077,
      0,
      "build.log is private",
    );
    assert.equal(statSync(versionDir).mode & 0o066, 0, "the version's directory is not listable");
    const list = spawnSync("/bin/ls", [versionDir], { uid: 12345, gid: 12345, env: {} });
    assert.notEqual(list.status, 0, "another host user cannot list it");
  });
});

describe("a build killed with the service", { skip }, () => {
  it("leaves no installer behind, and builds again after the restart", async () => {
    const own = await startServer({ env: serverEnv });
    const marker = newMarker();
    let again: TestServer | undefined;
    try {
      await uploadPip(sdk(own, own.adminKey), "killed", "hang", marker);
      assert.ok(
        await eventually(() => processesWith(marker).length > 0, 60_000),
        "the hanging install started",
      );
      await own.kill();
      assert.ok(
        await eventually(() => processesWith(marker).length === 0, 5000),
        `no installer outlives kill -9: ${JSON.stringify(processesWith(marker))}`,
      );
      again = await startServer({
        dataDir: own.dataDir,
        env: { ...serverEnv, AGENTHOST_BUILD_TIMEOUT_SECONDS: "5" },
      });
      // The version builds again (the same hanging install, now timed out).
      assert.ok(
        await eventually(() => processesWith(marker).length > 0, 60_000),
        "the build ran again after the restart",
      );
      const v = await settled(again, "killed");
      assert.equal(v.status_reason?.code, "build_timeout");
      assert.deepEqual(processesWith(marker), []);
    } finally {
      await again?.stop();
      await own.kill();
      removeDir(own.dataDir);
    }
  });

  it("a shutdown (SIGTERM) kills the install with everything it started", async () => {
    const own = await startServer({ env: serverEnv });
    const marker = newMarker();
    try {
      await uploadPip(sdk(own, own.adminKey), "stopped", "hang", marker);
      assert.ok(
        await eventually(() => processesWith(marker).length > 0, 60_000),
        "the hanging install started",
      );
      assert.equal(await own.stop(), 0, "a clean exit");
      assert.deepEqual(processesWith(marker), [], "no installer outlives the shutdown");
    } finally {
      await own.kill();
      removeDir(own.dataDir);
    }
  });
});

describe("builds with the process driver (unisolated)", { skip }, () => {
  it("still run as the sandbox uid, with a clean environment and no config of the upload", async () => {
    const own = await startServer({
      env: { ...serverEnv, AGENTHOST_SANDBOX_DRIVER: "process", AGENTHOST_WARM_POOL_SIZE: "0" },
    });
    const c = sdk(own, own.adminKey);
    const marker = newMarker();
    try {
      await upload(
        c,
        "npmrc",
        zipOf("build-npmrc-git", [{ name: "marker", data: marker }]),
        "node",
      );
      await settled(own, "npmrc");
      assert.equal(existsSync(`/tmp/${marker}`), false, buildLog(own, "npmrc"));
      await uploadPip(c, "snoop", "snoop", marker);
      await settled(own, "snoop");
      const report = JSON.parse(
        readFileSync(path.join(appDirOf(own, "snoop"), "report.json"), "utf8"),
      ) as { uid: number; shadow: { ok: boolean }; secrets: string[]; env: Record<string, string> };
      assert.equal(report.uid, sandboxUid);
      assert.equal(report.shadow.ok, false);
      assert.deepEqual(report.secrets, [], "no readable environment holds a setting");
      assert.ok(!JSON.stringify(report.env).includes(canary));
      assert.equal(report.env.HOME, path.join(own.dataDir, "builds/default/snoop/1/scratch"));
    } finally {
      await own.stop();
      removeDir(own.dataDir);
      // Unisolated, the snooping setup.py could write where anyone may.
      for (const d of ["/tmp", "/var/tmp"]) removeDir(path.join(d, marker));
    }
  });

  it("an installer left by kill -9 (nothing dies with its parent here) is swept at start", async () => {
    const env = {
      ...serverEnv,
      AGENTHOST_SANDBOX_DRIVER: "process",
      AGENTHOST_WARM_POOL_SIZE: "0",
    };
    const own = await startServer({ env });
    const marker = newMarker();
    let again: TestServer | undefined;
    try {
      await uploadPip(sdk(own, own.adminKey), "swept", "hang", marker);
      assert.ok(
        await eventually(() => processesWith(marker).length > 0, 60_000),
        "the hanging install started",
      );
      await own.kill();
      await sleep(500);
      const left = processesWith(marker);
      assert.ok(left.length > 0, "unisolated, the installer outlives the service");
      assert.ok(left.every((p) => p.uid === sandboxUid));
      again = await startServer({ dataDir: own.dataDir, env });
      // (A killed process may linger as a zombie, without a command line.)
      assert.deepEqual(processesWith(marker), [], "the start swept the earlier run's build cgroup");
    } finally {
      await again?.stop();
      await own.kill();
      for (const p of processesWith(marker)) process.kill(p.pid, "SIGKILL");
      removeDir(own.dataDir);
    }
  });
});
