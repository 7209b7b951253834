import assert from "node:assert/strict";
import path from "node:path";
import { after, before, it } from "node:test";
import { pino } from "pino";
import { CodeRuntime } from "../../src/build/codeRuntime.js";
import { defaultZipLimits } from "../../src/build/zipArchive.js";
import { AgentService } from "../../src/domain/agentService.js";
import { LocalBlobStore } from "../../src/storage/blobs/localBlobStore.js";
import { AppError } from "../../src/domain/errors.js";
import type { LiveSessions } from "../../src/domain/ports.js";
import { validateEndpoint } from "../../src/http/routes/agentRoutes.js";
import { SqliteStore } from "../../src/storage/sqlite/sqliteStore.js";
import { removeDir, tempDir } from "../helpers/server.js";

/*
 * Force-delete policy against the LiveSessions port. The port's real implementation is the
 * session runtime; here a recording stand-in reports live sessions so the policy can be seen.
 */

class RecordingSessions implements LiveSessions {
  live = new Map<string, number>();
  terminated: string[] = [];
  async count(project: string, agent: string, version?: number) {
    return this.live.get(`${agent}:${version ?? "*"}`) ?? 0;
  }
  async terminate(project: string, agent: string, version?: number) {
    this.terminated.push(`${agent}:${version ?? "*"}`);
    this.live.delete(`${agent}:${version ?? "*"}`);
  }
}

let dir: string;
let store: SqliteStore;
let sessions: RecordingSessions;
let agents: AgentService;

before(async () => {
  dir = tempDir();
  store = new SqliteStore(path.join(dir, "db.sqlite"));
  await store.migrate();
  sessions = new RecordingSessions();
  agents = new AgentService({
    agents: store.agents,
    sessions,
    code: new CodeRuntime(store.agents, new LocalBlobStore(path.join(dir, "blobs")), {
      buildsDir: path.join(dir, "builds"),
      runtimePolicy: "nearest",
      zipLimits: defaultZipLimits,
      buildTimeoutMs: 60_000,
      log: pino({ level: "silent" }),
    }),
    validateEndpoint,
    clock: () => 1_760_000_000,
    limits: { maxCpu: 2, maxMemoryBytes: 4 * 2 ** 30 },
  });
});

after(async () => {
  await store.close();
  removeDir(dir);
});

const hosted = {
  kind: "hosted",
  cpu: "1",
  memory: "1Gi",
  container_configuration: { image: "x" },
};

it("deleting an agent with live sessions needs force, which terminates them first", async () => {
  await agents.createVersion("default", "busy", { definition: hosted });
  sessions.live.set("busy:*", 2);
  await assert.rejects(
    agents.delete("default", "busy", false),
    (e: AppError) => e.code === "agent_has_live_sessions" && e.param === "force",
  );
  assert.ok(await store.agents.get("default", "busy"), "nothing deleted without force");
  await agents.delete("default", "busy", true);
  assert.deepEqual(sessions.terminated, ["busy:*"]);
  assert.equal(await store.agents.get("default", "busy"), undefined);
});

it("deleting a version asks about that version only", async () => {
  await agents.createVersion("default", "busy2", { definition: hosted });
  await agents.createVersion("default", "busy2", { definition: hosted });
  sessions.live.set("busy2:1", 1);
  await agents.deleteVersion("default", "busy2", "2", false);
  await assert.rejects(agents.deleteVersion("default", "busy2", "1", false), AppError);
  sessions.terminated = [];
  await agents.deleteVersion("default", "busy2", "1", true);
  assert.deepEqual(sessions.terminated, ["busy2:1"]);
});

it("the clock stamps versions", async () => {
  const v = await agents.createVersion("default", "clocked", {
    definition: { kind: "prompt", model: "m" },
  });
  assert.equal(v.createdAt, 1_760_000_000);
});
