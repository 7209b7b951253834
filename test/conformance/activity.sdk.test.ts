import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AIProjectClient } from "@azure/ai-projects";
import { deployFixture } from "../helpers/agents.js";
import {
  adminRequest,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";
import {
  deployStandInModel,
  startStandInModel,
  type StandInModel,
} from "../helpers/standInModel.js";

/*
 * The `activity` protocol: Bot Framework activities posted to an agent's
 * `…/endpoint/protocols/activity/messages` with a project key, in the shape a channel gives
 * them (a key holder or a relay posts them; no client library here sends them: raw HTTPS
 * against the real server). A prompt agent answers through its model —
 * a TEST DOUBLE (test/helpers/standInModel.ts); a hosted agent (the activity-python fixture)
 * answers itself from a real bwrap sandbox.
 */

let server: TestServer;
let model: StandInModel;
let project: AIProjectClient;
let elsewhereKey: string;
let otherKey: string;
let unique = 0;
const newName = () => `act-${process.pid}-${++unique}`;

before(async () => {
  model = await startStandInModel();
  server = await startServer({
    env: { AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1", AGENTHOST_WARM_POOL_SIZE: "1" },
  });
  await deployStandInModel(server, model);
  project = sdk(server, server.adminKey);
  assert.equal(
    (await adminRequest(server, "POST", "/projects", { name: "elsewhere" })).status,
    201,
  );
  const far = await adminRequest(server, "POST", "/keys", { project: "elsewhere", name: "c" });
  elsewhereKey = far.body.key as string;
  const other = await adminRequest(server, "POST", "/keys", { project: "default", name: "b" });
  otherKey = other.body.key as string;
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
  await model?.close();
});

const post = (agent: string, body: unknown, options: { key?: string; query?: string } = {}) =>
  httpsJson(
    server,
    "POST",
    `${server.endpoint}/agents/${agent}/endpoint/protocols/activity/messages?api-version=v1${options.query ?? ""}`,
    {
      headers: {
        authorization: `Bearer ${options.key ?? server.adminKey}`,
        "content-type": "application/json",
      },
      body: typeof body === "string" ? body : JSON.stringify(body),
    },
  );

const message = (text: string) => ({
  type: "message",
  id: "1234567890",
  timestamp: "2026-12-02T17:00:00.000Z",
  channelId: "msteams",
  serviceUrl: "https://smba.example.test/emea/",
  from: { id: "29:user-aad-id", name: "A User", role: "user" },
  recipient: { id: "28:bot-app-id", name: "The Bot", role: "bot" },
  conversation: { id: "a:conversation-1", conversationType: "personal" },
  locale: "en-US",
  text,
});

async function promptAgent(protocols: Record<string, object> = { activity: {} }) {
  const name = newName();
  await project.agents.createVersion(name, {
    kind: "prompt",
    model: "chat",
    instructions: "You are a test agent.",
  } as never);
  await project.agents.updateAgent(name, { agentEndpoint: { protocol_configuration: protocols } });
  return name;
}

describe("the activity protocol", () => {
  it("a prompt agent answers a message activity with its reply: conversation kept, from and recipient swapped", async () => {
    const name = await promptAgent();
    model.answer(() => ({ text: "Hello from the agent" }));
    const before = model.requests.length;
    const sent = message("hi there");
    const r = await post(name, sent);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.type, "message");
    assert.equal(r.body.text, "Hello from the agent");
    assert.equal(r.body.replyToId, sent.id);
    assert.deepEqual(r.body.conversation, sent.conversation);
    assert.deepEqual(r.body.from, sent.recipient);
    assert.deepEqual(r.body.recipient, sent.from);
    assert.equal(r.body.channelId, "msteams");
    assert.equal(r.body.serviceUrl, sent.serviceUrl);
    assert.equal(typeof r.body.id, "string");
    assert.notEqual(r.body.id, sent.id);
    assert.ok(!Number.isNaN(Date.parse(String(r.body.timestamp))));
    assert.equal(model.requests.length, before + 1);
    assert.deepEqual(model.requests.at(-1)!.body.messages.at(-1), {
      role: "user",
      content: "hi there",
    });
  });

  it("a malformed activity is 400 naming the field, and the model is not called", async () => {
    const name = await promptAgent();
    const before = model.requests.length;
    const cases: [unknown, number, string, string][] = [
      [{ ...message("x"), type: undefined }, 400, "missing_parameter", "type"],
      [{ ...message("x"), conversation: { id: 7 } }, 400, "invalid_parameter", "conversation.id"],
      [{ ...message("x"), from: { name: "no id" } }, 400, "missing_parameter", "from.id"],
      [{ ...message("x"), text: undefined }, 400, "missing_parameter", "text"],
      [{ ...message("x"), conversation: undefined }, 400, "missing_parameter", "conversation"],
      [[message("x")], 400, "invalid_parameter", ""],
    ];
    for (const [body, status, code, param] of cases) {
      const r = await post(name, body);
      const error = r.body.error as { code: string; param: string | null };
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(error.code, code, JSON.stringify(r.body));
      assert.equal(error.param ?? "", param, JSON.stringify(r.body));
    }
    const notJson = await post(name, "{not json");
    assert.equal(notJson.status, 400);
    assert.equal((notJson.body.error as { code: string }).code, "invalid_json");
    assert.equal(model.requests.length, before);
  });

  it("an agent that cannot answer is 502 agent_failed; a model that refuses is upstream_error", async () => {
    const name = await promptAgent();
    model.answer(() => ({ toolCalls: [{ name: "lookup", arguments: "{}" }] }));
    await project.agents.createVersion(name, {
      kind: "prompt",
      model: "chat",
      tools: [{ type: "function", name: "lookup", parameters: { type: "object" } }],
    } as never);
    const asks = await post(name, message("look it up"));
    assert.equal(asks.status, 502, JSON.stringify(asks.body));
    assert.equal((asks.body.error as { code: string }).code, "agent_failed");
    assert.match((asks.body.error as { message: string }).message, /function/);

    model.answer(() => ({ status: 400, errorMessage: "no thanks" }));
    const refused = await post(name, message("hi"));
    assert.equal((refused.body.error as { code: string }).code, "upstream_error");
  });

  it("answers 404 protocol_not_enabled when the endpoint does not list activity, and refuses another project's key", async () => {
    const name = await promptAgent({ responses: {} });
    const r = await post(name, message("hi"));
    assert.equal(r.status, 404);
    const error = r.body.error as { code: string; param: string };
    assert.deepEqual([error.code, error.param], ["protocol_not_enabled", "protocol"]);

    const listed = await promptAgent();
    const before = model.requests.length;
    const far = await post(listed, message("hi"), { key: elsewhereKey });
    assert.equal(far.status, 403);
    assert.equal((far.body.error as { code: string }).code, "forbidden");
    // Other paths under the protocol find nothing.
    const other = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/${listed}/endpoint/protocols/activity/messages?api-version=v1`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.equal(other.status, 404);
    assert.equal((other.body.error as { code: string }).code, "not_found");
    assert.equal(model.requests.length, before);
  });

  it("a hosted agent's activity is forwarded to its /activity/messages; agent_session_id continues its session", async () => {
    const name = newName();
    await deployFixture(project, name, "activity-python");
    await project.agents.updateAgent(name, {
      agentEndpoint: { protocol_configuration: { activity: {} } },
    });
    const sent = message("ping");
    const r = await post(name, sent);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.text, "activity: ping");
    assert.equal(r.body.replyToId, sent.id);
    assert.deepEqual(r.body.conversation, sent.conversation);
    const session = r.headers["x-agent-session-id"];
    assert.equal(typeof session, "string");
    assert.match(String(r.headers["x-agent-foundry-call-id"]), /^call_/);
    // The agent saw the service's session header.
    assert.equal((r.body.channelData as { session: string }).session, session);
    assert.equal(r.headers["x-agent-activity-count"], "1");

    // Other activity types reach the agent too (it answers them its own way).
    const update = await post(
      name,
      { ...message("ignored"), type: "conversationUpdate", text: undefined },
      { query: `&agent_session_id=${String(session)}` },
    );
    assert.equal(update.status, 200, JSON.stringify(update.body));
    assert.deepEqual(update.body, {});
    assert.equal(update.headers["x-agent-session-id"], session);
    assert.equal(update.headers["x-agent-activity-count"], "2");

    const malformed = await post(name, { ...sent, conversation: "not an object" });
    assert.equal(malformed.status, 400);
    assert.equal((malformed.body.error as { param: string }).param, "conversation");
    const badSession = await post(name, sent, { query: "&agent_session_id=../x" });
    assert.equal(badSession.status, 400);
    assert.equal((badSession.body.error as { param: string }).param, "agent_session_id");
  });

  it("a prompt agent answers other activity types with no reply (200 {}), and expectReplies in a list", async () => {
    const name = await promptAgent();
    const before = model.requests.length;
    for (const type of ["conversationUpdate", "typing", "installationUpdate"]) {
      const r = await post(name, { ...message("x"), type, text: undefined });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, {});
    }
    const none = await post(name, {
      ...message("x"),
      type: "typing",
      deliveryMode: "expectReplies",
    });
    assert.deepEqual(none.body, { activities: [] });
    assert.equal(model.requests.length, before, "the model is not asked");

    model.answer(() => ({ text: "a reply" }));
    const replies = await post(name, { ...message("hello"), deliveryMode: "expectReplies" });
    assert.equal(replies.status, 200, JSON.stringify(replies.body));
    const list = replies.body.activities as { type: string; replyToId: string; text: string }[];
    assert.equal(list.length, 1);
    assert.equal(list[0]!.type, "message");
    assert.equal(list[0]!.replyToId, "1234567890");
    assert.equal(list[0]!.text, "a reply");
  });

  it("agent_session_id for a prompt agent is 400 naming it", async () => {
    const name = await promptAgent();
    const r = await post(name, message("hi"), { query: "&agent_session_id=sess_12345678" });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    const error = r.body.error as { code: string; param: string };
    assert.deepEqual([error.code, error.param], ["invalid_parameter", "agent_session_id"]);
  });

  it("a hosted agent keeps one session per conversation and identity; another identity is refused the session", async () => {
    const name = newName();
    await deployFixture(project, name, "activity-python");
    await project.agents.updateAgent(name, {
      agentEndpoint: { protocol_configuration: { activity: {} } },
    });
    const inConversation = (id: string, text: string) => ({
      ...message(text),
      conversation: { id },
    });
    const first = await post(name, inConversation("conv-a", "one"));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const session = first.headers["x-agent-session-id"];
    const again = await post(name, inConversation("conv-a", "two"));
    assert.equal(again.headers["x-agent-session-id"], session, "the conversation's session");
    assert.equal(again.headers["x-agent-activity-count"], "2");

    const elsewhere = await post(name, inConversation("conv-b", "three"));
    assert.notEqual(elsewhere.headers["x-agent-session-id"], session, "another conversation");
    // Another identity in the same conversation id gets its own session...
    const theirs = await post(name, inConversation("conv-a", "four"), { key: otherKey });
    assert.equal(theirs.status, 200, JSON.stringify(theirs.body));
    assert.notEqual(theirs.headers["x-agent-session-id"], session);
    // ...and is refused the first one's by agent_session_id.
    const taken = await post(name, inConversation("conv-a", "five"), {
      key: otherKey,
      query: `&agent_session_id=${String(session)}`,
    });
    assert.ok(taken.status === 403 || taken.status === 404, JSON.stringify(taken.body));
    assert.equal(
      (taken.body.error as { code: string; param: string }).param,
      "agent_session_id",
      JSON.stringify(taken.body),
    );

    // The conversation's session deleted: the conversation goes on in a new one.
    const deleted = await httpsJson(
      server,
      "DELETE",
      `${server.endpoint}/agents/${name}/endpoint/sessions/${String(session)}?api-version=v1`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
    const anew = await post(name, inConversation("conv-a", "six"));
    assert.equal(anew.status, 200, JSON.stringify(anew.body));
    const next = anew.headers["x-agent-session-id"];
    assert.notEqual(next, session);
    const kept = await post(name, inConversation("conv-a", "seven"));
    assert.equal(kept.headers["x-agent-session-id"], next);
  });

  it("the version the traffic split picks answers, hosted or prompt (not the latest's kind)", async () => {
    const name = newName();
    await deployFixture(project, name, "activity-python");
    // The latest version is a prompt agent; every activity goes to version 1, the hosted one.
    await project.agents.createVersion(name, { kind: "prompt", model: "chat" } as never);
    await project.agents.updateAgent(name, {
      agentEndpoint: {
        version_selector: {
          version_selection_rules: [
            { type: "FixedRatio", agent_version: "1", traffic_percentage: 100 },
          ],
        },
        protocol_configuration: { activity: {} },
      },
    });
    const before = model.requests.length;
    const r = await post(name, message("split"));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.text, "activity: split");
    assert.equal(model.requests.length, before);
  });
});
