import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { createServer, type Server } from "node:net";
import path from "node:path";
import { it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { VersionRefIndicator } from "@azure/ai-projects";
import { deployFixture } from "../helpers/agents.js";
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
 * A data directory belongs to one service at a time, and the admin key a first start makes is
 * never lost: the real service (`agenthost serve`) started twice, and a first start that fails.
 */

/** `agenthost ARGS` as a user runs it; resolves with its exit status and output. */
function agenthost(args: string[], env: Record<string, string>) {
  return new Promise<{ code: number; stdout: string; stderr: string; ms: number }>((resolve) => {
    const started = Date.now();
    execFile(
      process.execPath,
      ["--import", "tsx", path.join(repoRoot, "src/main.ts"), ...args],
      {
        cwd: repoRoot,
        // A service that started after all is a failure, not a hang.
        timeout: 60_000,
        killSignal: "SIGKILL",
        env: {
          ...process.env,
          AGENTHOST_PORT: "0",
          AGENTHOST_LOG_LEVEL: "warn",
          AGENTHOST_MODEL_DISCOVERY: "off",
          ...env,
        },
      },
      (err, stdout, stderr) =>
        resolve({
          code: err ? ((err as { code?: number }).code ?? 1) : 0,
          stdout,
          stderr,
          ms: Date.now() - started,
        }),
    );
  });
}

/** Processes running in the sandboxes of a data directory (by its service's cgroup). */
function sandboxProcesses(dataDir: string): number[] {
  const group = `agenthost-${createHash("sha256").update(dataDir).digest("hex").slice(0, 12)}/`;
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const zombie = stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z"); // dead already
      if (readFileSync(`/proc/${entry}/cgroup`, "utf8").includes(group) && !zombie)
        pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids.sort((a, b) => a - b);
}

/** One request to a session's agent (the Responses protocol). */
async function ask(server: TestServer, agent: string, input: string, sessionId: string) {
  const r = await httpsJson(
    server,
    "POST",
    `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
    {
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ input, agent_session_id: sessionId }),
    },
  );
  const output = r.body.output as { content: { text: string }[] }[] | undefined;
  return { status: r.status, text: output?.[0]?.content[0]?.text };
}

const oneLine = /^agenthost: [^\n]+\n$/;

it("a second serve on a held data directory exits 2 at once, and the first one's live session stays active and answers", async () => {
  const server = await startServer({
    env: { AGENTHOST_WARM_POOL_SIZE: "1", AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1" },
  });
  try {
    const client = sdk(server, server.adminKey);
    const agent = `held-${process.pid}`;
    await deployFixture(client, agent, "echo-python");
    const v: VersionRefIndicator = { type: "version_ref", agent_version: "1" };
    const session = await client.agents.createSession(agent, v);
    const id = session.agent_session_id;
    assert.deepEqual(await ask(server, agent, "before", id), { status: 200, text: "echo: before" });
    const sandboxes = sandboxProcesses(server.dataDir);
    assert.ok(sandboxes.length > 0, "the session (and the warm pool) run in sandboxes");

    const second = await agenthost(["serve"], { AGENTHOST_DATA_DIR: server.dataDir });
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, oneLine);
    assert.equal(
      second.stderr,
      `agenthost: the data directory ${server.dataDir} is in use by another agenthost service (pid ${server.pid}); stop it first, or choose another with --data-dir DIR (or AGENTHOST_DATA_DIR)\n`,
    );
    assert.equal(second.stdout, "", "it printed nothing else: it started nothing");
    assert.ok(second.ms < 15_000, `it exited at once (${second.ms} ms)`);

    await sleep(500);
    // (The warm pool may have refilled meanwhile: more processes, never fewer.)
    const now = new Set(sandboxProcesses(server.dataDir));
    assert.deepEqual(
      sandboxes.filter((pid) => !now.has(pid)),
      [],
      "no sandbox was killed",
    );
    assert.equal((await client.agents.getSession(agent, id)).status, "active");
    assert.deepEqual(await ask(server, agent, "after", id), { status: 200, text: "echo: after" });
    assert.equal(
      readFileSync(path.join(server.dataDir, "agenthost.lock"), "utf8"),
      `${server.pid}\n`,
    );

    // The offline commands work beside it.
    const listed = await agenthost(["keys", "list"], { AGENTHOST_DATA_DIR: server.dataDir });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^ID\tPROJECT\tNAME\tROLE\n/);
    assert.deepEqual(await ask(server, agent, "again", id), { status: 200, text: "echo: again" });
  } finally {
    await server.stop();
    removeDir(server.dataDir);
  }
});

it("a kill -9 leaves no lock behind: the next serve on the directory starts", async () => {
  const first = await startServer();
  await first.kill();
  const next = await startServer({ dataDir: first.dataDir });
  try {
    assert.equal(readFileSync(path.join(next.dataDir, "agenthost.lock"), "utf8"), `${next.pid}\n`);
  } finally {
    await next.stop();
    removeDir(first.dataDir);
  }
});

it("a first start that fails (port in use, a missing certificate) leaves the admin key to the first start that listens", async () => {
  const dataDir = tempDir();
  const squatter: Server = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
  const port = (squatter.address() as { port: number }).port;
  let server: TestServer | undefined;
  try {
    const env = { AGENTHOST_DATA_DIR: dataDir, AGENTHOST_ADMIN_KEY: "" };
    const busy = await agenthost(["serve", "--port", String(port)], env);
    assert.equal(busy.code, 1, busy.stderr);
    assert.equal(
      busy.stderr,
      `agenthost: port ${port} is in use by another process (127.0.0.1:${port}); stop it, or choose another port with --port PORT (or AGENTHOST_PORT)\n`,
    );
    assert.ok(existsSync(path.join(dataDir, "agenthost.db")), "the database was created");
    assert.doesNotMatch(busy.stdout, /Admin key/);

    const badCert = await agenthost(
      ["serve", "--tls-cert", path.join(dataDir, "nope.pem"), "--tls-key", "/nope.key"],
      env,
    );
    assert.equal(badCert.code, 2, badCert.stderr);
    assert.match(badCert.stderr, oneLine);
    assert.match(badCert.stderr, /cannot read the TLS certificate .*nope\.pem: no such file/);

    server = await startServer({ dataDir, env: { AGENTHOST_ADMIN_KEY: "" } });
    const key = /Admin key \(shown once, keep it safe\): (ahk_\S{40,})/.exec(server.output())?.[1];
    assert.ok(key, `the good start shows the key:\n${server.output()}`);
    const client = sdk(server, key);
    const agent = await client.agents.create("after-a-failed-start", {
      kind: "prompt",
      model: "gpt-4o",
    });
    assert.equal(agent.versions.latest.version, "1");

    // The documented way back to a lost admin key: offline, beside the running service.
    const made = await agenthost(["keys", "create", "--admin"], { AGENTHOST_DATA_DIR: dataDir });
    assert.equal(made.code, 0, made.stderr);
    const [secret, info] = made.stdout.split("\n");
    assert.match(info!, /^# id key_\S+, admin key \(every project\)$/);
    const created = await httpsJson(server, "POST", `${server.origin}/admin/projects`, {
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "team-b" }),
    });
    assert.equal(created.status, 201);
  } finally {
    squatter.close();
    await server?.stop();
    removeDir(dataDir);
  }
});
