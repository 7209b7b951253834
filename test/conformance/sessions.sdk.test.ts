import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type {
  AIProjectClient,
  AgentSessionResource,
  VersionRefIndicator,
} from "@azure/ai-projects";
import type { APIError } from "openai";
import { deployFixture } from "../helpers/agents.js";
import { agentserverPackage } from "../helpers/agentserver.js";
import { projectOpenAI } from "../helpers/openaiClient.js";
import {
  expectRestError as refused,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";

/*
 * Sessions of hosted agents through the official client, each a real bwrap sandbox: create,
 * get, list, stop, delete, ownership across keys and end users, limits, force delete, idle →
 * resume with the home intact, and a restart of the service (kill -9) in the middle.
 */

const v = (n: string): VersionRefIndicator => ({ type: "version_ref", agent_version: n });

let server: TestServer;
let client: AIProjectClient;
let unique = 0;
const newName = () => `sess-${process.pid}-${++unique}`;

const serverEnv = {
  AGENTHOST_SESSION_MAX_IDLE_SECONDS: "2",
  AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1",
  AGENTHOST_WARM_POOL_SIZE: "1",
  AGENTHOST_MAX_SESSIONS_PER_IDENTITY: "6",
};

before(async () => {
  server = await startServer({ env: serverEnv });
  client = sdk(server, server.adminKey);
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
});

/** The raw session as the service answers it (with the fields the client drops). */
async function rawSession(agent: string, id: string, key = server.adminKey) {
  const r = await httpsJson(
    server,
    "GET",
    `${server.endpoint}/agents/${agent}/endpoint/sessions/${id}?api-version=v1`,
    { headers: { authorization: `Bearer ${key}` } },
  );
  return r.body as Record<string, unknown>;
}

/** One request to the session's agent (the Responses protocol), as the OpenAI client sends it. */
async function ask(agent: string, input: string, sessionId?: string, key = server.adminKey) {
  const r = await httpsJson(
    server,
    "POST",
    `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
    {
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ input, ...(sessionId ? { agent_session_id: sessionId } : {}) }),
    },
  );
  const output = (r.body.output as { content: { text: string }[] }[] | undefined)?.[0];
  return { status: r.status, text: output?.content[0]?.text, body: r.body };
}

async function waitFor(agent: string, id: string, status: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await rawSession(agent, id);
    if (s.status === status) return s;
    if (Date.now() > deadline) assert.fail(`session ${id} stayed ${String(s.status)}`);
    await sleep(50);
  }
}

/** A session's console.log once it holds `line` (it is written in batches), or as it is after 5 s. */
async function sessionLog(agent: string, sessionId: string, line: string): Promise<string> {
  const file = path.join(server.dataDir, "sessions/default", agent, sessionId, "console.log");
  for (let i = 0; ; i++) {
    const log = readFileSync(file, "utf8");
    if (log.includes(line) || i === 200) return log;
    await sleep(25);
  }
}

/** Processes running in the sandboxes of a data directory (their cgroups, by the service's group). */
function sandboxProcesses(dataDir: string): number[] {
  const group = `agenthost-${createHash("sha256").update(dataDir).digest("hex").slice(0, 12)}/s-`;
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // A sandbox's command line shows no host path; its cgroup names the service's group.
      const cgroups = readFileSync(`/proc/${entry}/cgroup`, "utf8");
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const zombie = stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z"); // dead already
      if (cgroups.includes(group) && !zombie) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** A suite's agent goes with its sessions, so the next suite starts under the identity's limit. */
const deleteWithSessions = (agent: string) => client.agents.delete(agent, { force: true });

describe("sessions", () => {
  let agent: string;
  before(async () => {
    agent = newName();
    await deployFixture(client, agent, "echo-python");
  });
  after(() => deleteWithSessions(agent));

  it("creates, gets, lists, stops and deletes a session whose agent answers", async () => {
    const created = await client.agents.createSession(agent, v("1"));
    assert.equal(created.status, "creating");
    assert.match(created.agent_session_id, /^[A-Za-z0-9_-]{8,128}$/);
    assert.equal((created.version_indicator as VersionRefIndicator).agent_version, "1");
    assert.ok(created.expires_at.getTime() - created.created_at.getTime() >= 29 * 86400_000);

    const answer = await ask(agent, "hello", created.agent_session_id);
    assert.equal(answer.status, 200);
    assert.equal(answer.text, "echo: hello");
    const got = await client.agents.getSession(agent, created.agent_session_id);
    assert.equal(got.status, "active");

    const listed: AgentSessionResource[] = [];
    for await (const s of client.agents.listSessions(agent)) listed.push(s);
    assert.ok(listed.some((s) => s.agent_session_id === created.agent_session_id));

    await client.agents.stopSession(agent, created.agent_session_id);
    const stopped = await rawSession(agent, created.agent_session_id);
    assert.equal(stopped.status, "idle");
    assert.equal(stopped.termination_reason, "user_stop");
    assert.equal(typeof stopped.stopped_at, "number");

    await client.agents.deleteSession(agent, created.agent_session_id);
    await refused(client.agents.getSession(agent, created.agent_session_id), 404, "not_found");
    await client.agents.deleteSession(agent, created.agent_session_id); // 204 again
    assert.equal(
      existsSync(path.join(server.dataDir, "sessions/default", agent, created.agent_session_id)),
      false,
      "the session's files are gone",
    );
  });

  it("takes a caller's session id once, and refuses bad ids, versions and agents", async () => {
    const id = `mine-${process.pid}-${unique}`;
    const s = await client.agents.createSession(agent, v("1"), { agentSessionId: id });
    assert.equal(s.agent_session_id, id);
    await refused(
      client.agents.createSession(agent, v("1"), { agentSessionId: id }),
      409,
      "session_exists",
      "agent_session_id",
    );
    await refused(
      client.agents.createSession(agent, v("1"), { agentSessionId: "no/slash" }),
      400,
      "invalid_parameter",
      "agent_session_id",
    );
    await refused(
      client.agents.createSession(agent, v("9")),
      404,
      "not_found",
      "version_indicator.agent_version",
    );
    await refused(client.agents.createSession(`${agent}-none`, v("1")), 404, "not_found");
    const prompt = newName();
    await client.agents.create(prompt, { kind: "prompt", model: "gpt-4o" });
    await refused(client.agents.createSession(prompt, v("1")), 400, "agent_not_hosted");
    await client.agents.deleteSession(agent, id);
  });

  it("refuses new sessions of a disabled agent, with a clear code", async () => {
    const name = newName();
    await deployFixture(client, name, "echo-python");
    await httpsJson(server, "POST", `${server.endpoint}/agents/${name}:disable?api-version=v1`, {
      headers: { authorization: `Bearer ${server.adminKey}` },
    });
    await refused(client.agents.createSession(name, v("1")), 409, "agent_disabled");
  });

  it("pages through sessions with the client's pager, in both orders", async () => {
    const name = newName();
    await deployFixture(client, name, "echo-python");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(
        (await client.agents.createSession(name, v("1"), { agentSessionId: `page-${i}-${name}` }))
          .agent_session_id,
      );
      await client.agents.stopSession(name, ids.at(-1)!); // stay under the live-session limit
    }
    const asc: string[] = [];
    for await (const s of client.agents.listSessions(name, { limit: 2, order: "asc" }))
      asc.push(s.agent_session_id);
    assert.deepEqual(asc, ids);
    const desc: string[] = [];
    for await (const s of client.agents.listSessions(name, { limit: 3 }))
      desc.push(s.agent_session_id);
    assert.deepEqual(desc, [...ids].reverse());
    // A cursor naming a deleted session still pages on.
    await client.agents.deleteSession(name, ids[1]!);
    const page = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/${name}/endpoint/sessions?api-version=v1&order=asc&after=${ids[1]}`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.deepEqual(
      (page.body.data as { agent_session_id: string }[]).map((s) => s.agent_session_id),
      ids.slice(2),
    );
  });

  it("keeps sessions to their owner: 403 across keys and end users, admins see all", async () => {
    const key = async (name: string) => {
      const r = await httpsJson(server, "POST", `${server.origin}/admin/keys`, {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ project: "default", name }),
      });
      return (r.body as { key: string }).key;
    };
    const alice = sdk(server, await key("alice"));
    const bob = sdk(server, await key("bob"));
    const mine = await alice.agents.createSession(agent, v("1"));
    await refused(
      bob.agents.getSession(agent, mine.agent_session_id),
      403,
      "session_not_accessible",
    );
    await refused(
      bob.agents.stopSession(agent, mine.agent_session_id),
      403,
      "session_not_accessible",
    );
    await refused(
      bob.agents.deleteSession(agent, mine.agent_session_id),
      403,
      "session_not_accessible",
    );
    const bobs: string[] = [];
    for await (const s of bob.agents.listSessions(agent)) bobs.push(s.agent_session_id);
    assert.ok(!bobs.includes(mine.agent_session_id), "another's session is not listed");
    assert.equal(
      (await client.agents.getSession(agent, mine.agent_session_id)).agent_session_id,
      mine.agent_session_id,
    );

    // The admin key acting for an end user sees only that user's sessions.
    const asUser = (user: string) => ({
      requestOptions: { headers: { "x-ms-user-identity": user } },
    });
    const carol = await client.agents.createSession(agent, v("1"), asUser("carol@example.com"));
    await refused(
      client.agents.getSession(agent, carol.agent_session_id, asUser("dave@example.com")),
      403,
      "session_not_accessible",
    );
    const daves: string[] = [];
    for await (const s of client.agents.listSessions(agent, asUser("dave@example.com")))
      daves.push(s.agent_session_id);
    assert.deepEqual(daves, []);
    const own = await client.agents.getSession(
      agent,
      carol.agent_session_id,
      asUser("carol@example.com"),
    );
    assert.equal(own.agent_session_id, carol.agent_session_id, "the user sees their own");
    for (const id of [mine.agent_session_id, carol.agent_session_id])
      await client.agents.deleteSession(agent, id);
  });

  it("takes an empty JSON body on the body-less operations, as clients may send it", async () => {
    const name = newName();
    await deployFixture(client, name, "echo-python");
    const send = (method: string, route: string, body = "") =>
      httpsJson(server, method, `${server.endpoint}${route}?api-version=v1`, {
        headers: {
          authorization: `Bearer ${server.adminKey}`,
          "content-type": "application/json",
          "content-length": String(body.length),
        },
        body,
      });
    const session = await client.agents.createSession(name, v("1"));
    const id = session.agent_session_id;
    await waitFor(name, id, "active");
    const sessionPath = `/agents/${name}/endpoint/sessions/${id}`;
    assert.equal((await send("POST", `${sessionPath}:stop`)).status, 204);
    assert.equal((await send("POST", `/agents/${name}:disable`)).status, 204);
    assert.equal((await client.agents.get(name)).state, "disabled");
    assert.equal((await send("POST", `/agents/${name}:enable`)).status, 204);
    assert.equal((await client.agents.get(name)).state, "enabled");
    assert.equal((await send("DELETE", sessionPath)).status, 204);
    // Where a body is needed, an empty one is still a clear 400.
    const update = await send("POST", `/agents/${name}`);
    assert.equal(update.status, 400);
    assert.equal((update.body.error as { code: string }).code, "invalid_json");
    assert.equal((await send("DELETE", `/agents/${name}`)).status, 200);
    assert.equal((await send("GET", `/agents/${name}`)).status, 404);
  });

  it("answers 429 past the per-identity limit of running sessions", async () => {
    const name = newName();
    await deployFixture(client, name, "echo-python");
    const userOpts = { requestOptions: { headers: { "x-ms-user-identity": `limit-${name}` } } };
    const made: string[] = [];
    for (let i = 0; i < 6; i++)
      made.push((await client.agents.createSession(name, v("1"), userOpts)).agent_session_id);
    await refused(client.agents.createSession(name, v("1"), userOpts), 429, "too_many_sessions");
    for (const id of made) await client.agents.deleteSession(name, id, userOpts);
  });

  it("deletes an agent with running sessions only with force, stopping them first", async () => {
    const name = newName();
    await deployFixture(client, name, "echo-python");
    const s = await client.agents.createSession(name, v("1"));
    assert.equal((await ask(name, "hi", s.agent_session_id)).text, "echo: hi");
    await refused(client.agents.delete(name), 409, "agent_has_live_sessions", "force");
    await client.agents.delete(name, { force: true });
    assert.equal(
      existsSync(path.join(server.dataDir, "sessions/default", name, s.agent_session_id)),
      false,
    );
    await refused(client.agents.getSession(name, s.agent_session_id), 404, "not_found");
  });

  it("goes idle after its idle timeout with files kept, and resumes on the next use", async () => {
    const s = await client.agents.createSession(agent, v("1"));
    assert.equal((await ask(agent, "remember the blue door", s.agent_session_id)).status, 200);
    const home = path.join(server.dataDir, "sessions/default", agent, s.agent_session_id, "home");
    const uid = statSync(home).uid;
    assert.ok(uid >= 1879048192, `the home belongs to the session's own uid (${uid})`);
    assert.equal(statSync(path.join(home, "notes.txt")).uid, uid, "written as the sandbox uid");
    const idle = await waitFor(agent, s.agent_session_id, "idle", 10_000);
    assert.equal(idle.termination_reason, "idle_timeout");
    assert.equal(typeof idle.stopped_at, "number");
    const again = await ask(agent, "recall", s.agent_session_id);
    assert.equal(again.text, "echo: the blue door");
    assert.equal((await rawSession(agent, s.agent_session_id)).status, "active");
    await client.agents.deleteSession(agent, s.agent_session_id);
  });

  it("gives a request without a session a new one, of the version the traffic split picks", async () => {
    const name = newName();
    await deployFixture(client, name, "echo-python");
    await deployFixture(client, name, "echo-python", { env: { FLAVOUR: "two" } });
    await client.agents.updateAgent(name, {
      agentEndpoint: {
        version_selector: {
          version_selection_rules: [
            { type: "FixedRatio", agent_version: "1", traffic_percentage: 100 },
            { type: "FixedRatio", agent_version: "2", traffic_percentage: 0 },
          ],
        },
        protocol_configuration: { responses: {} },
      },
    });
    const r = await ask(name, "who");
    assert.equal(r.status, 200);
    assert.equal(r.text, "echo: who");
    const sessions = [];
    for await (const s of client.agents.listSessions(name)) sessions.push(s);
    assert.equal(sessions.length, 1);
    assert.equal((sessions[0]!.version_indicator as VersionRefIndicator).agent_version, "1");
  });

  it("records a start failure with the agent's own output", async () => {
    const name = newName();
    await deployFixture(client, name, "crash-on-start");
    const s = await client.agents.createSession(name, v("1"));
    const r = await ask(name, "hi", s.agent_session_id);
    assert.equal(r.status, 424);
    assert.equal((r.body.error as { code: string }).code, "session_not_ready");
    const failed = await rawSession(name, s.agent_session_id);
    assert.equal(failed.status, "failed");
    assert.equal(failed.termination_reason, "start_failed");
    assert.match(String(failed.termination_message), /RuntimeError: boom/);
  });

  it("records an out-of-memory kill as oom", async () => {
    const name = newName();
    await deployFixture(client, name, "memory-hog", { memory: "64Mi" });
    const s = await client.agents.createSession(name, v("1"));
    const r = await ask(name, "eat", s.agent_session_id);
    assert.notEqual(r.status, 200);
    const dead = await waitFor(name, s.agent_session_id, "failed");
    assert.equal(dead.termination_reason, "oom");
  });
});

/** The same responses tests over a Python agent and a Node agent on @agenthost/agentserver. */
const responseFixtures = ["echo-python", "echo-agentserver"] as const;

for (const fixture of responseFixtures) {
  describe(`a hosted agent's responses (${fixture})`, () => {
    const onPackage = fixture === "echo-agentserver";
    let agent: string;
    before(async () => {
      agent = newName();
      await deployFixture(
        client,
        agent,
        fixture,
        onPackage ? { extraDirs: [await agentserverPackage()] } : {},
      );
    });
    after(() => deleteWithSessions(agent));

    it("keeps a hosted agent's responses to their identity: another's previous_response_id never reaches a sandbox", async () => {
      const r = await httpsJson(server, "POST", `${server.origin}/admin/keys`, {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ project: "default", name: `carol-${fixture}` }),
      });
      const carol = (r.body as { key: string }).key;
      const first = await ask(agent, "first");
      assert.equal(first.status, 200);
      const responseId = first.body.id as string;
      assert.match(responseId, /^resp_/);
      const session = first.body.agent_session_id as string | undefined;
      const chained = (key: string, extra: Record<string, unknown> = {}) =>
        httpsJson(
          server,
          "POST",
          `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
          {
            headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
            body: JSON.stringify({ input: "next", previous_response_id: responseId, ...extra }),
          },
        );
      const theirs = await chained(carol);
      assert.equal(theirs.status, 404, JSON.stringify(theirs.body));
      assert.equal((theirs.body.error as { param: string }).param, "previous_response_id");
      const mine = await chained(server.adminKey, session ? { agent_session_id: session } : {});
      assert.equal(mine.status, 200, JSON.stringify(mine.body));
    });

    it("forwards with the container protocol's headers: a fresh call id (returned and logged), x-client-* in, x-agent-* out", async () => {
      const call = (id?: string) =>
        httpsJson(
          server,
          "POST",
          `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
          {
            headers: {
              authorization: `Bearer ${server.adminKey}`,
              "content-type": "application/json",
              "x-client-request-trace": "abc 123",
              "x-agent-user-id": "posing-as-someone",
              "x-agent-foundry-call-id": "call_forged",
              "x-other-header": "kept-back",
            },
            body: JSON.stringify({ input: "headers", ...(id ? { agent_session_id: id } : {}) }),
          },
        );
      const first = await call();
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const sessionId = first.headers["x-agent-session-id"] as string;
      const callId = first.headers["x-agent-foundry-call-id"] as string;
      assert.match(callId, /^call_[0-9a-f]{24}$/);
      const text = (first.body.output as { content: { text: string }[] }[])[0]!.content[0]!.text;
      const seen = JSON.parse(text.replace(/^echo: /, "")) as Record<string, string>;
      assert.equal(seen["x-client-request-trace"], "abc 123");
      assert.equal(seen["x-agent-session-id"], sessionId);
      assert.equal(seen["x-agent-foundry-call-id"], callId);
      // Who asks is the service's word (the admin key's id), not the caller's header.
      assert.match(seen["x-agent-user-id"]!, /^key_/);
      assert.equal(seen["x-other-header"], undefined);
      // The agent's own x-agent-* header comes back; its forged session id and others do not.
      assert.equal(first.headers["x-agent-trace"], "from-the-agent");
      assert.equal(first.headers["x-agent-session-id"], sessionId);
      assert.equal(first.headers["x-other"], undefined);
      // Each call has its own id, and each is written in the session's log.
      const second = await call(sessionId);
      const secondId = second.headers["x-agent-foundry-call-id"] as string;
      assert.match(secondId, /^call_[0-9a-f]{24}$/);
      assert.notEqual(secondId, callId);
      const log = await sessionLog(agent, sessionId, `call ${secondId}: POST /responses`);
      for (const id of [callId, secondId])
        assert.ok(log.includes(`call ${id}: POST /responses`), `${id} not in the log:\n${log}`);
    });

    it("forwards a hosted response's retrieve, replay, input items, cancel and delete to the session that answered it", async () => {
      const openai = projectOpenAI(client, server, agent);
      const { data: created, response: createdHttp } = await openai.responses
        .create({ input: "keep me" })
        .withResponse();
      const sessionId = createdHttp.headers.get("x-agent-session-id")!;
      const text = (r: { output: unknown[] }) =>
        (r.output[0] as { content: { text: string }[] }).content[0]!.text;
      assert.equal(text(created), "echo: keep me");
      // Through the agent's endpoint and the project's, the agent's own record comes back.
      for (const via of [openai, projectOpenAI(client, server)]) {
        const got = await via.responses.retrieve(created.id);
        assert.equal(got.id, created.id);
        assert.equal(text(got), "echo: keep me");
      }
      // Replayed after the event before the last (echo-python sends 2, the package 9).
      const replay = await openai.responses.retrieve(created.id, {
        stream: true,
        starting_after: onPackage ? 7 : 0,
      });
      const events: string[] = [];
      for await (const e of replay) events.push(e.type);
      assert.deepEqual(events, ["response.completed"]);
      const items = await openai.responses.inputItems.list(created.id, { limit: 5, order: "asc" });
      const item = items.data[0] as { content: { text: string }[] };
      assert.equal(item.content[0]!.text, "keep me");
      const rawItems = await httpsJson(
        server,
        "GET",
        `${server.endpoint}/openai/v1/responses/${created.id}/input_items?limit=5&order=asc&after=msg_x`,
        { headers: { authorization: `Bearer ${server.adminKey}` } },
      );
      if (onPackage) {
        // The package pages for itself: an unknown `after` starts from the first item.
        assert.equal(rawItems.body.object, "list");
        assert.equal(rawItems.body.first_id, (items.data[0] as { id: string }).id);
        assert.equal(rawItems.body.has_more, false);
      } else assert.deepEqual(rawItems.body.query, { limit: "5", order: "asc", after: "msg_x" });

      // Another identity gets 404 and the agent is never asked.
      const other = await httpsJson(server, "POST", `${server.origin}/admin/keys`, {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ project: "default", name: `dave-${fixture}` }),
      });
      const daveClient = projectOpenAI(sdk(server, (other.body as { key: string }).key), server);
      const calls = () =>
        readFileSync(
          path.join(server.dataDir, "sessions/default", agent, sessionId, "console.log"),
          "utf8",
        ).split("call call_").length;
      // The log is written in batches: the last call's line is in before counting.
      const lastCall = rawItems.headers["x-agent-foundry-call-id"] as string;
      await sessionLog(agent, sessionId, `call ${lastCall}: GET`);
      const before = calls();
      await assert.rejects(daveClient.responses.retrieve(created.id), (e: APIError) => {
        assert.equal(e.status, 404);
        return true;
      });
      assert.equal(calls(), before, "another identity's call reached the agent");

      if (onPackage) {
        // As OpenAI does, the package cancels only background responses: its 400 comes back.
        await assert.rejects(openai.responses.cancel(created.id), (e: APIError) => {
          assert.equal(e.status, 400);
          assert.equal(e.param, "response_id");
          return true;
        });
        const running = await openai.responses.create({ input: "slow 50", background: true });
        assert.equal(running.status, "queued");
        assert.equal((await openai.responses.cancel(running.id)).status, "cancelled");
        assert.equal((await openai.responses.retrieve(running.id)).status, "cancelled");
      } else assert.equal((await openai.responses.cancel(created.id)).status, "cancelled");
      const { response: deleteHttp } = await openai.responses.delete(created.id).withResponse();
      const deleteCall = deleteHttp.headers.get("x-agent-foundry-call-id")!;
      await sessionLog(agent, sessionId, `call ${deleteCall}: DELETE`);
      // The service's record is gone: the agent is not asked again.
      const afterDelete = calls();
      await assert.rejects(openai.responses.retrieve(created.id), (e: APIError) => {
        assert.equal(e.status, 404);
        assert.equal(e.param, "response_id");
        return true;
      });
      assert.equal(calls(), afterDelete);

      // A response whose session was deleted can still be deleted (and not read).
      const { data: orphan, response: orphanHttp } = await openai.responses
        .create({ input: "orphan" })
        .withResponse();
      await client.agents.deleteSession(agent, orphanHttp.headers.get("x-agent-session-id")!);
      await assert.rejects(openai.responses.retrieve(orphan.id), (e: APIError) => {
        assert.equal(e.status, 404);
        assert.match(e.message, /no longer exists/);
        return true;
      });
      await openai.responses.delete(orphan.id);
      await assert.rejects(openai.responses.delete(orphan.id), (e: APIError) => e.status === 404);
    });

    if (onPackage) {
      it("streams the Responses events and runs in the background through the service", async () => {
        const openai = projectOpenAI(client, server, agent);
        // One session for both calls: the suite's identity is near its running-sessions limit.
        const { agent_session_id } = await client.agents.createSession(agent, v("1"));
        const inSession = { query: { agent_session_id } };
        const events: string[] = [];
        let text = "";
        const stream = await openai.responses.create({ input: "slow 3", stream: true }, inSession);
        for await (const e of stream) {
          events.push(e.type);
          if (e.type === "response.output_text.delta") text += e.delta;
        }
        assert.deepEqual(events, [
          "response.created",
          "response.in_progress",
          "response.output_item.added",
          "response.content_part.added",
          "response.output_text.delta",
          "response.output_text.delta",
          "response.output_text.delta",
          "response.output_text.done",
          "response.content_part.done",
          "response.output_item.done",
          "response.completed",
        ]);
        assert.equal(text, "0 1 2 ");
        const queued = await openai.responses.create(
          { input: "slow 3", background: true },
          inSession,
        );
        assert.equal(queued.status, "queued");
        let polled = queued;
        for (let i = 0; i < 200 && polled.status !== "completed"; i++) {
          await sleep(25);
          polled = await openai.responses.retrieve(queued.id);
        }
        assert.equal(polled.status, "completed");
        const message = polled.output[0] as { content: { text: string }[] };
        assert.equal(message.content[0]!.text, "0 1 2 ");
        await client.agents.deleteSession(agent, agent_session_id);
      });

      it("builds with the package as a file: dependency (remote_build) and answers", async () => {
        const name = newName();
        await deployFixture(client, name, fixture, {
          dependencyResolution: "remote_build",
          extraDirs: [await agentserverPackage("vendor/agentserver")],
        });
        const answer = await ask(name, "built");
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(answer.text, "echo: built");
      });
    }
  });
}

describe("a restart of the service", () => {
  it("leaves no sandbox behind after kill -9, and resumes sessions with their files", async () => {
    const dataDir = server.dataDir;
    const name = newName();
    await deployFixture(client, name, "echo-python");
    const s = await client.agents.createSession(name, v("1"));
    assert.equal((await ask(name, "remember 42", s.agent_session_id)).status, 200);
    assert.ok(sandboxProcesses(dataDir).length > 0, "sandboxes run");

    await server.kill();
    for (let i = 0; i < 100 && sandboxProcesses(dataDir).length > 0; i++) await sleep(50);
    assert.deepEqual(sandboxProcesses(dataDir), [], "every sandbox died with the service");

    server = await startServer({ dataDir, env: serverEnv });
    client = sdk(server, server.adminKey);
    const after = await rawSession(name, s.agent_session_id);
    assert.equal(after.status, "idle");
    assert.equal(after.termination_reason, "service_stopped");
    assert.equal((await ask(name, "recall", s.agent_session_id)).text, "echo: 42");
  });

  it("stops every sandbox on a graceful shutdown", async () => {
    const dataDir = server.dataDir;
    assert.equal(await server.stop(), 0);
    assert.deepEqual(sandboxProcesses(dataDir), []);
    server = await startServer({ dataDir, env: serverEnv });
  });
});
