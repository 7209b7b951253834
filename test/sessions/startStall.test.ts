import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, VersionRefIndicator } from "@azure/ai-projects";
import { deployFixture } from "../helpers/agents.js";
import {
  httpsJson,
  removeDir,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";

/*
 * A session start whose step stalls, against the real service: the first mount of a session's
 * home is held for 6 s by a `mount` earlier on the service's PATH (a real process that then
 * mounts), with a start timeout of 3 s. The start fails while the mount still runs, naming the
 * step; other sessions start meanwhile; once the mount ends, the sandbox the late start made is
 * stopped and the home unmounted; the session deletes.
 */

const skip = process.getuid?.() === 0 ? false : "needs root (real sandboxes)";
const v = (n: string): VersionRefIndicator => ({ type: "version_ref", agent_version: n });
const stallSeconds = 6;

describe("a session start that stalls", { skip }, () => {
  let server: TestServer;
  let client: AIProjectClient;
  const bin = tempDir();
  const agent = "stalls";

  before(async () => {
    const mount = execFileSync("sh", ["-c", "command -v mount"], { encoding: "utf8" }).trim();
    writeFileSync(
      path.join(bin, "mount"),
      [
        "#!/bin/sh",
        // Only a session's home (not the service's probe at start), and only once.
        `case "$*" in *"/sessions/"*) if mkdir "${bin}/held" 2>/dev/null; then`,
        `  echo $$ > "${bin}/held/pid"; sleep ${stallSeconds}; fi ;; esac`,
        `exec ${mount} "$@"`,
        "",
      ].join("\n"),
    );
    chmodSync(path.join(bin, "mount"), 0o755);
    server = await startServer({
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        AGENTHOST_WARM_POOL_SIZE: "0",
        AGENTHOST_SESSION_START_TIMEOUT_SECONDS: "3",
      },
    });
    client = sdk(server, server.adminKey);
    await deployFixture(client, agent, "echo-python");
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(server.dataDir);
    removeDir(bin);
  });

  const sessionUrl = (id: string) =>
    `${server.endpoint}/agents/${agent}/endpoint/sessions/${id}?api-version=v1`;
  const auth = () => ({ authorization: `Bearer ${server.adminKey}` });
  const session = async (id: string) =>
    (await httpsJson(server, "GET", sessionUrl(id), { headers: auth() })).body;
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  /** The service's sandboxes: its bwrap children. */
  const sandboxes = () =>
    execFileSync("ps", ["-o", "comm=", "--ppid", String(server.pid)], { encoding: "utf8" })
      .split("\n")
      .filter((c) => c === "bwrap").length;
  const mounted = (id: string) =>
    readFileSync("/proc/self/mountinfo", "utf8").includes(`/${id}/home`);
  async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 30_000) {
    const deadline = Date.now() + ms;
    while (!(await ok())) {
      if (Date.now() > deadline) assert.fail(`still not ${what}`);
      await sleep(100);
    }
  }

  it("fails within the start timeout naming the step, undoes the late start, and deletes", async () => {
    const stalled = (await client.agents.createSession(agent, v("1"))).agent_session_id;
    await until("held", () => existsSync(path.join(bin, "held", "pid")));
    const holder = Number(readFileSync(path.join(bin, "held", "pid"), "utf8"));
    let failed: Record<string, unknown> = {};
    await until("failed", async () => (failed = await session(stalled)).status === "failed");
    assert.ok(alive(holder), "the start failed only once the mount had ended");
    assert.equal(failed.termination_reason, "start_failed");
    assert.match(
      String(failed.termination_message),
      /not created within 3 s \(stalled mounting its home\)/,
    );

    // Meanwhile another session starts and answers.
    const other = (await client.agents.createSession(agent, v("1"))).agent_session_id;
    const answer = await httpsJson(
      server,
      "POST",
      `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
      {
        headers: { ...auth(), "content-type": "application/json" },
        body: JSON.stringify({ input: "still here", agent_session_id: other }),
      },
    );
    assert.equal(answer.status, 200, JSON.stringify(answer.body));

    // The mount ends: the sandbox started late for the failed session is stopped, its home let
    // go; the other session's sandbox is the only one.
    await until("the mount ended", () => !alive(holder));
    await until("the late sandbox stopped", () => sandboxes() === 1);
    await until("the failed session's home unmounted", () => !mounted(stalled));
    assert.ok(mounted(other));

    const deleted = await httpsJson(server, "DELETE", sessionUrl(stalled), { headers: auth() });
    assert.equal(deleted.status, 204);
    const gone = await httpsJson(server, "GET", sessionUrl(stalled), { headers: auth() });
    assert.equal(gone.status, 404);
    assert.ok(!existsSync(path.join(server.dataDir, "sessions", "default", agent, stalled)));
  });
});
