import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type {
  AIProjectClient,
  HostedAgentDefinition,
  VersionRefIndicator,
} from "@azure/ai-projects";
import { deployFixture, fixtureDir } from "../helpers/agents.js";
import { makeZip, sha256 } from "../helpers/zip.js";
import { removeTree, usageOfPath, visitTree } from "../../src/trees/agentTree.js";
import { httpsJson, sdk, tempDir, startServer, type TestServer } from "../helpers/server.js";

/*
 * The deep-tree agent leaves a 2,100-level d/d/d… chain (longer than PATH_MAX as a path) in
 * /run/agent and in its home. Whatever it leaves, the service stays up, deletes answer 204,
 * the expiry sweep goes on for everyone, and a restart over the leftovers starts.
 */

const skip = process.getuid?.() === 0 ? false : "needs root (real sandboxes)";
const v = (n: string): VersionRefIndicator => ({ type: "version_ref", agent_version: n });

async function rawSession(server: TestServer, agent: string, id: string) {
  const r = await httpsJson(
    server,
    "GET",
    `${server.endpoint}/agents/${agent}/endpoint/sessions/${id}?api-version=v1`,
    { headers: { authorization: `Bearer ${server.adminKey}` } },
  );
  return { http: r.status, ...r.body } as Record<string, unknown>;
}

async function waitFor(server: TestServer, agent: string, id: string, status: string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s = await rawSession(server, agent, id);
    if (s.status === status) return s;
    if (Date.now() > deadline) assert.fail(`session ${id} stayed ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

/** A request to the session's agent; starts it and waits until it answers. */
async function ask(server: TestServer, agent: string, id: string) {
  return httpsJson(
    server,
    "POST",
    `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
    {
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ input: "hi", agent_session_id: id }),
    },
  );
}

const del = (server: TestServer, route: string) =>
  httpsJson(server, "DELETE", `${server.endpoint}${route}`, {
    headers: { authorization: `Bearer ${server.adminKey}` },
  });

async function gone(dir: string): Promise<boolean> {
  for (const end = Date.now() + 30_000; Date.now() < end; await sleep(100))
    if (!existsSync(dir)) return true;
  return false;
}

const sessionDir = (server: TestServer, agent: string, id: string) =>
  path.join(server.dataDir, "sessions", "default", agent, id);

/** An active session of the deep-tree agent: both chains are on disk. */
async function deepSession(server: TestServer, client: AIProjectClient, agent: string) {
  const s = await client.agents.createSession(agent, v("1"));
  const answer = await ask(server, agent, s.agent_session_id);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.ok(existsSync(path.join(sessionDir(server, agent, s.agent_session_id), "home", "deep")));
  return s.agent_session_id;
}

/** A chain of `depth` directories `d` below `dir`, with one file at the bottom. */
function makeChain(dir: string, depth: number): void {
  let fd = openSync(dir, "r");
  for (let i = 0; i < depth; i++) {
    mkdirSync(`/proc/self/fd/${fd}/d`);
    const next = openSync(`/proc/self/fd/${fd}/d`, "r");
    closeSync(fd);
    fd = next;
  }
  writeFileSync(`/proc/self/fd/${fd}/bottom.txt`, "12345");
  symlinkSync("/etc/passwd", `/proc/self/fd/${fd}/passwd`);
  closeSync(fd);
}

/** The stat of the file at the bottom of a chain made by `makeChain`. */
function bottomOf(dir: string, depth: number) {
  let fd = openSync(dir, "r");
  for (let i = 0; i < depth; i++) {
    const next = openSync(`/proc/self/fd/${fd}/d`, "r");
    closeSync(fd);
    fd = next;
  }
  try {
    return lstatSync(`/proc/self/fd/${fd}/bottom.txt`);
  } finally {
    closeSync(fd);
  }
}

describe("the tree walks", () => {
  it("come back up a deep chain to the siblings they left (descriptors reopened through ..)", async () => {
    const dir = tempDir("agenthost-branches-");
    try {
      // 60 levels: the chain goes on in `a`, and `z` beside it holds a file; whichever a
      // directory lists first, the walk must come back up for the other.
      let at = dir;
      for (let i = 0; i < 60; i++) {
        mkdirSync(path.join(at, "z"));
        writeFileSync(path.join(at, "z", "f"), "1234");
        mkdirSync(path.join(at, "a"));
        at = path.join(at, "a");
      }
      assert.deepEqual(await usageOfPath(dir), { bytes: 60 * 4, entries: 60 * 3 });
      await removeTree(path.join(dir, "a"));
      assert.deepEqual(readdirSync(dir).sort(), ["z"]);
    } finally {
      execFileSync("rm", ["-rf", dir]);
    }
  });

  it("count, re-own and delete a 2,100-level chain, links not followed", async () => {
    const dir = tempDir("agenthost-chain-");
    try {
      makeChain(dir, 2100);
      writeFileSync(path.join(dir, "top.txt"), "abc");
      assert.deepEqual(await usageOfPath(dir), { bytes: 8, entries: 2100 + 3 });
      // Owner changes reach the bottom; the link is changed itself, /etc/passwd is not.
      let visited = 0;
      await visitTree(dir, async (e) => {
        visited++;
        await e.chown(65534, 65534);
      });
      assert.equal(visited, 1 + 2100 + 3);
      assert.equal(statSync("/etc/passwd").uid, 0);
      assert.equal(bottomOf(dir, 2100).uid, 65534);
      await removeTree(path.join(dir, "d"));
      assert.deepEqual(readdirSync(dir), ["top.txt"]);
      assert.ok(existsSync("/etc/passwd"));
    } finally {
      execFileSync("rm", ["-rf", dir]);
    }
  });
});

describe("deep trees an agent leaves behind", { skip }, () => {
  let server: TestServer;
  let client: AIProjectClient;

  before(async () => {
    server = await startServer({
      env: { AGENTHOST_WARM_POOL_SIZE: "1", AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1" },
    });
    client = sdk(server, server.adminKey);
    await deployFixture(client, "deep", "deep-tree");
    await deployFixture(client, "deep-exit", "deep-tree", { env: { DEEP_TREE_EXIT: "1" } });
  });
  after(async () => {
    await server?.stop();
    // GNU rm walks by descriptors (the helper's rmSync overflows its stack on the chains).
    if (server) execFileSync("rm", ["-rf", server.dataDir]);
  });

  it("an agent that exits after making them leaves the service up and its run directory gone", async () => {
    const s = await client.agents.createSession("deep-exit", v("1"));
    const failed = await waitFor(server, "deep-exit", s.agent_session_id, "failed");
    assert.equal(failed.termination_reason, "start_failed");
    assert.equal((await client.agents.get("deep-exit")).name, "deep-exit", "the service answers");
    const run = path.join(server.dataDir, "sandbox", "run");
    assert.deepEqual(
      readdirSync(run).filter((id) => existsSync(path.join(run, id, "deep"))),
      [],
      "a run directory with the chain is left",
    );
    assert.equal(
      (
        await del(
          server,
          `/agents/deep-exit/endpoint/sessions/${s.agent_session_id}?api-version=v1`,
        )
      ).status,
      204,
    );
    assert.equal(existsSync(sessionDir(server, "deep-exit", s.agent_session_id)), false);
  });

  it("DELETE of a session with a deep home answers 204 and removes it all", async () => {
    const id = await deepSession(server, client, "deep");
    const r = await del(server, `/agents/deep/endpoint/sessions/${id}?api-version=v1`);
    assert.equal(r.status, 204, JSON.stringify(r.body));
    assert.equal(existsSync(sessionDir(server, "deep", id)), false);
    assert.equal((await rawSession(server, "deep", id)).http, 404);
  });

  it("DELETE agent?force=true with such a session works", async () => {
    await deployFixture(client, "deep-force", "deep-tree");
    const id = await deepSession(server, client, "deep-force");
    const r = await del(server, "/agents/deep-force?api-version=v1&force=true");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(existsSync(sessionDir(server, "deep-force", id)), false);
  });

  it("code nested past the warm copy's depth starts cold instead of failing", async () => {
    const zip = makeZip([
      ...readdirSync(fixtureDir("echo-python")).map((name) => ({
        name,
        data: readFileSync(path.join(fixtureDir("echo-python"), name)),
      })),
      { name: `${"n/".repeat(300)}deep.txt`, data: "deep" },
    ]);
    const made = await client.agents.createVersionFromCode("nested", sha256(zip), {
      metadata: {
        definition: {
          kind: "hosted",
          cpu: "1",
          memory: "256Mi",
          code_configuration: { runtime: "python_3_11", entry_point: ["python", "main.py"] },
          protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
        } as unknown as HostedAgentDefinition,
      },
      code: zip,
    });
    for (
      let i = 0;
      i < 600 && (await client.agents.getVersion("nested", made.version)).status === "creating";
      i++
    )
      await sleep(50);
    assert.equal((await client.agents.getVersion("nested", "1")).status, "active");
    const s = await client.agents.createSession("nested", v("1"));
    const answer = await ask(server, "nested", s.agent_session_id);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.match(server.output(), /warm start refused the code tree/);
  });

  it("a restart over the leftovers of a killed service starts, and the session deletes", async () => {
    const id = await deepSession(server, client, "deep");
    await server.kill();
    server = await startServer({ dataDir: server.dataDir, env: { AGENTHOST_WARM_POOL_SIZE: "1" } });
    client = sdk(server, server.adminKey);
    assert.equal((await rawSession(server, "deep", id)).status, "idle");
    const r = await del(server, `/agents/deep/endpoint/sessions/${id}?api-version=v1`);
    assert.equal(r.status, 204, JSON.stringify(r.body));
    assert.equal(existsSync(sessionDir(server, "deep", id)), false);
  });
});

describe("the expiry sweep with a deep home among the sessions", { skip }, () => {
  let server: TestServer;
  let client: AIProjectClient;

  before(async () => {
    server = await startServer({
      env: {
        AGENTHOST_WARM_POOL_SIZE: "0",
        AGENTHOST_SESSION_TTL_SECONDS: "6",
        AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1",
      },
    });
    client = sdk(server, server.adminKey);
    await deployFixture(client, "deep", "deep-tree");
    await deployFixture(client, "echo", "echo-python");
  });
  after(async () => {
    await server?.stop();
    // GNU rm walks by descriptors (the helper's rmSync overflows its stack on the chains).
    if (server) execFileSync("rm", ["-rf", server.dataDir]);
  });

  it("expires the others too", async () => {
    const deep = await deepSession(server, client, "deep");
    const echo = await client.agents.createSession("echo", v("1"));
    assert.equal((await ask(server, "echo", echo.agent_session_id)).status, 200);
    await waitFor(server, "deep", deep, "expired");
    await waitFor(server, "echo", echo.agent_session_id, "expired");
    // The status reads `expired` once the sandbox ended; the files go right after.
    assert.ok(await gone(sessionDir(server, "deep", deep)), "the deep home is left");
    assert.ok(
      await gone(sessionDir(server, "echo", echo.agent_session_id)),
      "the echo home is left",
    );
  });
});
