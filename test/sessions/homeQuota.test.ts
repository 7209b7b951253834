import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  statfsSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, VersionRefIndicator } from "@azure/ai-projects";
import { pino } from "pino";
import { HomeVolumes, mountPoints } from "../../src/sessions/homeVolume.js";
import { deployFixture } from "../helpers/agents.js";
import {
  expectRestError as refused,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";

/*
 * The disk quota of a session's home, enforced by the kernel (each home is a loop-mounted ext4
 * image the size of the quota): the disk-filler agent writes and creates files past it and
 * gets ENOSPC at the quota while the host's free space stays put; the files survive idle,
 * resume and restarts; a delete leaves no image, mount or loop device; neither does a kill -9.
 * Then HomeVolumes directly: a home from before images stays a plain directory.
 */

const mib = 1024 * 1024;
const quota = 64 * mib;
const inodes = 2000;
const serverEnv = {
  AGENTHOST_SESSION_DISK_QUOTA_BYTES: String(quota),
  AGENTHOST_SESSION_INODE_QUOTA: String(inodes),
  AGENTHOST_SESSION_MAX_IDLE_SECONDS: "1",
  AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1",
  AGENTHOST_WARM_POOL_SIZE: "1",
};
const v = (n: string): VersionRefIndicator => ({ type: "version_ref", agent_version: n });

let server: TestServer;
let client: AIProjectClient;
let agent: string;

before(async () => {
  server = await startServer({ env: serverEnv });
  client = sdk(server, server.adminKey);
  agent = `quota-${process.pid}`;
  await deployFixture(client, agent, "disk-filler");
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
});

/** One command to the disk-filler agent of the session; its JSON answer. */
async function tell(id: string, input: string): Promise<Record<string, unknown>> {
  const r = await httpsJson(
    server,
    "POST",
    `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
    {
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ input, agent_session_id: id }),
    },
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const text = (r.body.output as { content: { text: string }[] }[])[0]!.content[0]!.text;
  return JSON.parse(text) as Record<string, unknown>;
}

async function status(id: string): Promise<string> {
  const r = await httpsJson(
    server,
    "GET",
    `${server.endpoint}/agents/${agent}/endpoint/sessions/${id}?api-version=v1`,
    { headers: { authorization: `Bearer ${server.adminKey}` } },
  );
  return String(r.body.status);
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const sessionDir = (id: string) => path.join(server.dataDir, "sessions/default", agent, id);

/** Mount points below the data directory. */
function mounts(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(`${server.dataDir}/`));
}

/** Loop devices whose backing file is (or was, before a rename or delete) below the data dir. */
function loops(): string[] {
  return readdirSync("/sys/block")
    .filter((d) => d.startsWith("loop"))
    .filter((d) => {
      try {
        return readFileSync(`/sys/block/${d}/loop/backing_file`, "utf8").startsWith(
          `${server.dataDir}/`,
        );
      } catch {
        return false; // not attached
      }
    });
}

/** Mounts and loop devices agree: every attached loop device backs a current mount. */
const consistent = () => loops().length === mounts().length;

const hostFree = () => {
  const s = statfsSync(server.dataDir);
  return s.bavail * s.bsize;
};

describe("a session's home quota", () => {
  it("stops the agent's writes with ENOSPC at the quota; the host's disk is untouched", async () => {
    const id = (await client.agents.createSession(agent, v("1"))).agent_session_id;
    const free = hostFree();
    const filled = await tell(id, `fill ${8 * quota}`);
    assert.equal(filled.error, "ENOSPC", JSON.stringify(filled));
    const bytes = filled.bytes as number;
    assert.ok(bytes > 0.85 * quota && bytes <= quota, `stopped at ${bytes} bytes`);
    // The image can never hold more than the quota; the host lost at most that (plus noise
    // from other work on this machine, far below the 8× quota the agent tried).
    const image = statSync(path.join(sessionDir(id), "home.img"));
    assert.ok(image.blocks * 512 <= quota, `image uses ${image.blocks * 512} bytes`);
    const lost = free - hostFree();
    assert.ok(lost < quota + 32 * mib, `host free space dropped by ${lost} bytes`);

    // Uploads see the same full home (statfs), and answer the quota's 413.
    await refused(
      client.agents.uploadSessionFile(agent, id, "more.bin", Buffer.alloc(mib)),
      413,
      "session_disk_quota_exceeded",
    );
    // Deleting frees the space again, for the agent and for uploads.
    assert.deepEqual(await tell(id, "delete"), { deleted: true });
    const again = await client.agents.uploadSessionFile(agent, id, "more.bin", Buffer.alloc(mib));
    assert.equal(again.bytes_written, mib);
    await client.agents.deleteSession(agent, id);
  });

  it("stops the agent's file creation with ENOSPC at the inode cap", async () => {
    const id = (await client.agents.createSession(agent, v("1"))).agent_session_id;
    const made = await tell(id, `files ${5 * inodes}`);
    assert.equal(made.error, "ENOSPC", JSON.stringify(made));
    const files = made.files as number;
    assert.ok(files > 0.9 * inodes && files <= inodes, `stopped at ${files} files`);
    await refused(
      client.agents.uploadSessionFile(agent, id, "one-more.txt", Buffer.from("x")),
      413,
      "session_disk_quota_exceeded",
    );
    await client.agents.deleteSession(agent, id);
  });

  it("keeps the files through idle, resume and a restart; a delete leaves nothing mounted", async () => {
    const id = (await client.agents.createSession(agent, v("1"))).agent_session_id;
    await tell(id, `fill ${3 * mib}`);
    await tell(id, "files 10");
    const home = path.join(sessionDir(id), "home");
    assert.ok(mounts().includes(home), "the running session's home is mounted");

    await until("idle", async () => (await status(id)) === "idle");
    await until("the home unmounted", () => !mounts().includes(home) && consistent());
    assert.equal(existsSync(home), false, "no mount point left to write beneath");
    assert.deepEqual(await tell(id, "count"), { files: 10, bytes: 3 * mib }, "after resume");

    assert.equal(await server.stop(), 0);
    assert.deepEqual(mounts(), [], "a graceful stop unmounts every home and pool slot");
    assert.deepEqual(loops(), [], "and lets go of every loop device");
    server = await startServer({ dataDir: server.dataDir, env: serverEnv });
    client = sdk(server, server.adminKey);
    assert.deepEqual(await tell(id, "count"), { files: 10, bytes: 3 * mib }, "after restart");

    await client.agents.deleteSession(agent, id);
    assert.equal(existsSync(sessionDir(id)), false, "the image went with the session");
    assert.ok(!mounts().some((p) => p.startsWith(sessionDir(id))), "nothing of it mounted");
    await until("no loop device of it", consistent);
    assert.ok(
      mounts().every((p) => p.startsWith(path.join(server.dataDir, "sandbox/pool/"))),
      `only warm pool slots stay mounted: ${mounts().join(", ")}`,
    );
  });

  it("leaves no stale mount or loop device after a kill -9 and a restart", async () => {
    const id = (await client.agents.createSession(agent, v("1"))).agent_session_id;
    await tell(id, `fill ${2 * mib}`);
    await until("the pool refilled", () => mounts().length >= 2);
    await tell(id, "count"); // activity: the session is not stopped for idleness meanwhile
    const before = mounts();
    assert.ok(before.includes(path.join(sessionDir(id), "home")));

    await server.kill();
    const left = mounts();
    assert.ok(
      before.every((p) => left.includes(p)),
      `a killed service leaves its mounts (the kernel keeps them): ${before} → ${left}`,
    );
    server = await startServer({ dataDir: server.dataDir, env: serverEnv });
    client = sdk(server, server.adminKey);
    assert.deepEqual(
      mounts().filter((p) => left.includes(p)),
      [],
      "every mount of the killed run is gone",
    );
    await until("loop devices only for the new pool", consistent);
    assert.deepEqual(await tell(id, "count"), { files: 0, bytes: 2 * mib }, "files kept");
    await client.agents.deleteSession(agent, id);
  });
});

describe("without loop mounts", () => {
  it("says at start that homes are plain directories (the process driver)", async () => {
    const plain = await startServer({ env: { AGENTHOST_SANDBOX_DRIVER: "process" } });
    try {
      assert.match(plain.output(), /session homes are plain directories/);
    } finally {
      await plain.stop();
      removeDir(plain.dataDir);
    }
  });
});

describe("home volumes", () => {
  const log = pino({ level: "silent" });

  it("keeps a home made before images existed as it is, files and all", async () => {
    const dir = tempDir("agenthost-legacy-home-");
    try {
      const volumes = await HomeVolumes.open(dir, {
        images: true,
        quotaBytes: 4 * mib,
        inodes: 64,
        log,
      });
      assert.equal(volumes.kind, "image");
      const home = path.join(dir, "s", "home");
      mkdirSync(home, { recursive: true });
      writeFileSync(path.join(home, "old.txt"), "kept");
      await volumes.prepare(home, 65534);
      assert.equal(readFileSync(path.join(home, "old.txt"), "utf8"), "kept");
      assert.equal(existsSync(path.join(dir, "s", "home.img")), false);

      // A new home next to it is an image, and the mount goes with release.
      const fresh = path.join(dir, "t", "home");
      await volumes.prepare(fresh, 65534);
      assert.notEqual(statSync(fresh).dev, statSync(dir).dev, "its own filesystem");
      assert.deepEqual(readdirSync(fresh), [], "empty (no lost+found)");
      assert.equal(statSync(fresh).uid, 65534);
      await volumes.releaseAll();
      assert.equal(existsSync(fresh), false);
      assert.ok(existsSync(path.join(dir, "t", "home.img")));
    } finally {
      removeDir(dir);
    }
  });

  it("reads mount points from mountinfo, escapes undone", () => {
    const line = (point: string) => `36 35 98:0 / ${point} rw,noatime master:1 - ext3 /dev/root rw`;
    assert.deepEqual(mountPoints(`${line("/data/a\\040b/home")}\n${line("/mnt")}\n`), [
      "/data/a b/home",
      "/mnt",
    ]);
  });
});
