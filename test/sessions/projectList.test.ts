import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AIProjectClient, VersionRefIndicator } from "@azure/ai-projects";
import { deployFixture } from "../helpers/agents.js";
import { httpsJson, removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";

/*
 * GET {project}/sessions: a project's sessions across its agents (real service, real sandboxes
 * for the echo-python fixture): paging by `<agent>/<id>` cursors, filters, and what a project
 * key sees (its own sessions only, no admin filters).
 */

const v = (n: string): VersionRefIndicator => ({ type: "version_ref", agent_version: n });

let server: TestServer;
let client: AIProjectClient;
let aliceKey: string;
const agents = [`plist-a-${process.pid}`, `plist-b-${process.pid}`];
const made: { agent: string; id: string; owner: "admin" | "alice" }[] = [];

interface Listed {
  agent_name: string;
  agent_session_id: string;
  status: string;
  owner?: string;
  version_indicator: { agent_version: string };
}
interface ListPage {
  object: string;
  data: Listed[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

async function list(query: Record<string, string>, key = server.adminKey) {
  const qs = new URLSearchParams({ "api-version": "v1", ...query });
  const r = await httpsJson(server, "GET", `${server.endpoint}/sessions?${qs}`, {
    headers: { authorization: `Bearer ${key}` },
  });
  return {
    status: r.status,
    body: r.body as unknown as ListPage & { error?: { code: string; param?: string } },
  };
}

before(async () => {
  server = await startServer({ env: { AGENTHOST_WARM_POOL_SIZE: "0" } });
  client = sdk(server, server.adminKey);
  for (const name of agents) await deployFixture(client, name, "echo-python");
  const key = await httpsJson(server, "POST", `${server.origin}/admin/keys`, {
    headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
    body: JSON.stringify({ project: "default", name: "alice" }),
  });
  aliceKey = (key.body as { key: string }).key;
  const alice = sdk(server, aliceKey);
  for (const [agent, who] of [
    [agents[0]!, "admin"],
    [agents[1]!, "admin"],
    [agents[0]!, "alice"],
    [agents[1]!, "admin"],
  ] as const) {
    const s = await (who === "alice" ? alice : client).agents.createSession(agent, v("1"));
    made.push({ agent, id: s.agent_session_id, owner: who });
  }
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
});

describe("GET {project}/sessions", () => {
  it("lists every session of the project, newest first, paged by <agent>/<id> cursors", async () => {
    const seen: Listed[] = [];
    let after: string | undefined;
    for (let i = 0; i < 10; i++) {
      const page = await list({ limit: "3", ...(after ? { after } : {}) });
      assert.equal(page.status, 200, JSON.stringify(page.body));
      assert.equal(page.body.object, "list");
      seen.push(...page.body.data);
      const last = page.body.data.at(-1);
      assert.equal(page.body.last_id, last ? `${last.agent_name}/${last.agent_session_id}` : null);
      if (!page.body.has_more) break;
      after = page.body.last_id!;
    }
    assert.deepEqual(
      seen.map((s) => `${s.agent_name}/${s.agent_session_id}`),
      [...made].reverse().map((m) => `${m.agent}/${m.id}`),
    );
    for (const s of seen) {
      assert.ok(s.owner, "an admin key sees each session's owner");
      assert.equal(s.version_indicator.agent_version, "1");
    }
    const asc = await list({ order: "asc", limit: "1" });
    assert.equal(asc.body.data[0]!.agent_session_id, made[0]!.id);
    assert.equal(asc.body.has_more, true);
  });

  it("filters by agent, owner and status for an admin key", async () => {
    const byAgent = await list({ agent_name: agents[1]! });
    assert.deepEqual(
      byAgent.body.data.map((s) => s.agent_session_id).sort(),
      made
        .filter((m) => m.agent === agents[1])
        .map((m) => m.id)
        .sort(),
    );
    const all = await list({});
    const aliceOwner = all.body.data.find((s) => s.agent_session_id === made[2]!.id)!.owner!;
    const byOwner = await list({ owner: aliceOwner });
    assert.deepEqual(
      byOwner.body.data.map((s) => s.agent_session_id),
      [made[2]!.id],
    );
    await client.agents.stopSession(made[0]!.agent, made[0]!.id);
    const stopped = await list({ status: "idle" });
    assert.ok(
      stopped.body.data.some((s) => s.agent_session_id === made[0]!.id),
      JSON.stringify(stopped.body),
    );
    assert.ok(stopped.body.data.every((s) => s.status === "idle"));
  });

  it("shows a project key only its own sessions, without owners, and refuses admin filters", async () => {
    const mine = await list({}, aliceKey);
    assert.equal(mine.status, 200);
    assert.deepEqual(
      mine.body.data.map((s) => s.agent_session_id),
      [made[2]!.id],
    );
    assert.equal(mine.body.data[0]!.owner, undefined);
    for (const [param, value] of [
      ["status", "idle"],
      ["agent_version", "1"],
      ["owner", "someone"],
    ]) {
      const refused = await list({ [param!]: value! }, aliceKey);
      assert.equal(refused.status, 403, param);
      assert.equal(refused.body.error?.code, "forbidden");
      assert.equal(refused.body.error?.param, param);
    }
  });

  it("answers 400 naming the field for a malformed cursor", async () => {
    const bad = await list({ after: "no-slash" });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error?.param, "after");
  });
});
