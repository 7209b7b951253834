import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AIProjectClient } from "@azure/ai-projects";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ErrorCode, McpError, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { parseConfig } from "../../src/config/config.js";
import { AgentFailure, answerText } from "../../src/protocols/agentAnswer.js";
import { deployFixture } from "../helpers/agents.js";
import { trustingFetch } from "../helpers/openaiClient.js";
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
 * Each agent whose endpoint lists `mcp` is an MCP server, reached here with the MCP SDK's own
 * client (Streamable HTTP) over the real HTTPS server: its one tool is the agent. A prompt
 * agent answers through its model — a TEST DOUBLE (test/helpers/standInModel.ts); a hosted
 * agent (echo-python) through its session, a real bwrap sandbox.
 */

let server: TestServer;
let model: StandInModel;
let project: AIProjectClient;
let otherKey: string;
let elsewhereKey: string;
let unique = 0;
const newName = () => `mcp-${process.pid}-${++unique}`;

before(async () => {
  model = await startStandInModel();
  server = await startServer({
    env: { AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1", AGENTHOST_WARM_POOL_SIZE: "1" },
  });
  await deployStandInModel(server, model);
  project = sdk(server, server.adminKey);
  const other = await adminRequest(server, "POST", "/keys", { project: "default", name: "b" });
  otherKey = other.body.key as string;
  assert.equal(
    (await adminRequest(server, "POST", "/projects", { name: "elsewhere" })).status,
    201,
  );
  const far = await adminRequest(server, "POST", "/keys", { project: "elsewhere", name: "c" });
  elsewhereKey = far.body.key as string;
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
  await model?.close();
});

const mcpUrl = (agent: string, projectName = "default") =>
  `${server.origin}/api/projects/${projectName}/agents/${agent}/endpoint/protocols/mcp?api-version=v1`;

/** The MCP SDK's client, connected to an agent's endpoint with a key. */
async function connect(agent: string, key = server.adminKey, projectName = "default") {
  const client = new Client({ name: "mcp-conformance", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl(agent, projectName)), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
    fetch: trustingFetch(server.caPem),
  });
  await client.connect(transport);
  return client;
}

async function enable(name: string, protocols: Record<string, object>) {
  await project.agents.updateAgent(name, {
    agentEndpoint: { protocol_configuration: protocols },
  });
}

async function promptAgent(description = "Answers questions about tests.") {
  const name = newName();
  await project.agents.createVersion(
    name,
    { kind: "prompt", model: "chat", instructions: "You are a test agent." } as never,
    { description },
  );
  await enable(name, { mcp: {} });
  return name;
}

const textOf = (r: CallToolResult) =>
  r.content.map((c) => (c.type === "text" ? c.text : "")).join("");

describe("an agent as an MCP server", () => {
  it("a prompt agent lists itself as one tool and answers a call with its model's text", async () => {
    const name = await promptAgent();
    const client = await connect(name);
    try {
      const { tools } = await client.listTools();
      assert.equal(tools.length, 1);
      const tool = tools[0]!;
      assert.equal(tool.name, name);
      assert.equal(tool.description, "Answers questions about tests.");
      assert.equal(
        (tool.inputSchema.properties as Record<string, { type: string }>).input?.type,
        "string",
      );
      assert.deepEqual(tool.inputSchema.required, ["input"]);

      model.answer(() => ({ text: "forty-two" }));
      const before = model.requests.length;
      const r = (await client.callTool({
        name,
        arguments: { input: "what is the answer?" },
      })) as CallToolResult;
      assert.equal(r.isError, undefined, JSON.stringify(r));
      assert.equal(textOf(r), "forty-two");
      const seen = model.requests.at(-1)!.body;
      assert.equal(model.requests.length, before + 1);
      assert.deepEqual(seen.messages.at(-1), { role: "user", content: "what is the answer?" });
      assert.equal(seen.messages[0].content, "You are a test agent.");
    } finally {
      await client.close();
    }
  });

  it("an agent's failure is the tool's isError result; a bad call is an MCP error", async () => {
    const name = await promptAgent();
    const client = await connect(name);
    try {
      model.answer(() => ({ status: 400, errorMessage: "the model refuses" }));
      const r = (await client.callTool({ name, arguments: { input: "hi" } })) as CallToolResult;
      assert.equal(r.isError, true);
      assert.match(textOf(r), /^upstream_error: .*the model refuses/);

      const missing = (await client.callTool({ name, arguments: {} })) as CallToolResult;
      assert.equal(missing.isError, true);
      assert.match(textOf(missing), /^invalid_parameter: .*'input'/);
      const badSession = (await client.callTool({
        name,
        arguments: { input: "x", agent_session_id: "../etc" },
      })) as CallToolResult;
      assert.equal(badSession.isError, true);
      assert.match(textOf(badSession), /'agent_session_id'/);
      // An unknown tool is a JSON-RPC error (invalid params), as the MCP spec has it.
      await assert.rejects(
        client.callTool({ name: "no-such-tool", arguments: { input: "x" } }),
        (err: unknown) => {
          assert.ok(err instanceof McpError, String(err));
          assert.equal(err.code, ErrorCode.InvalidParams);
          assert.match(err.message, /no-such-tool/);
          return true;
        },
      );
    } finally {
      await client.close();
    }
  });

  it("a hosted agent answers through its session; the session continues by agent_session_id, for its owner only", async () => {
    const name = newName();
    await deployFixture(project, name, "echo-python");
    await enable(name, { mcp: {} });
    const client = await connect(name);
    const stranger = await connect(name, otherKey);
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(
        tools.map((t) => t.name),
        [name],
      );
      const first = (await client.callTool({
        name,
        arguments: { input: "remember cobalt" },
      })) as CallToolResult;
      assert.equal(first.isError, undefined, JSON.stringify(first));
      assert.equal(textOf(first), "echo: remember cobalt");
      const session = first._meta?.["agenthost/agent_session_id"];
      assert.equal(typeof session, "string");

      const again = (await client.callTool({
        name,
        arguments: { input: "recall", agent_session_id: session },
      })) as CallToolResult;
      assert.equal(textOf(again), "echo: cobalt");
      assert.equal(again._meta?.["agenthost/agent_session_id"], session);

      // Another identity of the same project reaches the agent, not the first one's session.
      const theirs = (await stranger.callTool({
        name,
        arguments: { input: "recall", agent_session_id: session },
      })) as CallToolResult;
      assert.equal(theirs.isError, true);
      assert.match(textOf(theirs), /^session_not_accessible: /);
      const own = (await stranger.callTool({ name, arguments: { input: "hi" } })) as CallToolResult;
      assert.equal(textOf(own), "echo: hi");
      assert.notEqual(own._meta?.["agenthost/agent_session_id"], session);
    } finally {
      await client.close();
      await stranger.close();
    }
  });

  it("answers 404 protocol_not_enabled when the endpoint does not list mcp", async () => {
    const name = newName();
    await project.agents.createVersion(name, { kind: "prompt", model: "chat" } as never);
    await assert.rejects(connect(name), (err: unknown) => {
      assert.ok(err instanceof StreamableHTTPError, String(err));
      assert.equal(err.code, 404);
      assert.match(err.message, /protocol_not_enabled/);
      return true;
    });
    const raw = await post(name, server.adminKey, initialize);
    assert.equal(raw.status, 404);
    assert.deepEqual(
      [(raw.body.error as { code: string }).code, (raw.body.error as { param: string }).param],
      ["protocol_not_enabled", "protocol"],
    );
  });

  it("refuses a key of another project (403) and no key (401), before the agent is asked", async () => {
    const name = await promptAgent();
    const before = model.requests.length;
    await assert.rejects(connect(name, elsewhereKey), (err: unknown) => {
      assert.ok(err instanceof StreamableHTTPError, String(err));
      assert.equal(err.code, 403);
      return true;
    });
    // The other project's own path does not find this project's agent either.
    const there = await post(name, elsewhereKey, initialize, "elsewhere");
    assert.equal(there.status, 404);
    assert.equal((there.body.error as { code: string }).code, "not_found");
    const anonymous = await post(name, "", initialize);
    assert.equal(anonymous.status, 401);
    assert.equal(model.requests.length, before, "the model was not called");
  });

  it("is stateless: GET and DELETE answer 405; a body over the JSON limit is 413", async () => {
    const name = await promptAgent();
    for (const method of ["GET", "DELETE"]) {
      const r = await httpsJson(server, method, mcpUrl(name), {
        headers: { authorization: `Bearer ${server.adminKey}`, accept: "text/event-stream" },
      });
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.allow, "POST");
      assert.equal((r.body.error as { code: number }).code, -32000);
    }
    const big = {
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name, arguments: { input: "x".repeat(1024 * 1024 + 1) } },
    };
    const r = await post(name, server.adminKey, big);
    assert.equal(r.status, 413);
    assert.equal((r.body.error as { code: string }).code, "payload_too_large");
  });
});

const initialize = {
  jsonrpc: "2.0",
  id: 0,
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "raw", version: "1" },
  },
};

function post(agent: string, key: string, body: unknown, projectName = "default") {
  return httpsJson(server, "POST", mcpUrl(agent, projectName), {
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    },
    body: JSON.stringify(body),
  });
}

describe("the answer deadline (AGENTHOST_ANSWER_TIMEOUT_SECONDS)", () => {
  let quick: TestServer;
  before(async () => {
    quick = await startServer({ env: { AGENTHOST_ANSWER_TIMEOUT_SECONDS: "1" } });
    const put = await adminRequest(quick, "PUT", "/projects/default/deployments/chat", {
      model: "stand-in-model",
      base_url: model.baseUrl,
    });
    assert.equal(put.status, 201, JSON.stringify(put.body));
  });
  after(async () => {
    await quick?.stop();
    removeDir(quick.dataDir);
  });

  it("a silent model ends the call as an isError timeout (MCP) and 502 agent_failed (activity)", async () => {
    const client = sdk(quick, quick.adminKey);
    const name = newName();
    await client.agents.createVersion(name, { kind: "prompt", model: "chat" } as never);
    await client.agents.updateAgent(name, {
      agentEndpoint: { protocol_configuration: { mcp: {}, activity: {} } },
    });
    model.answer(() => ({ silent: true }));
    const mcp = new Client({ name: "mcp-conformance", version: "1.0.0" });
    await mcp.connect(
      new StreamableHTTPClientTransport(
        new URL(`${quick.endpoint}/agents/${name}/endpoint/protocols/mcp?api-version=v1`),
        {
          requestInit: { headers: { authorization: `Bearer ${quick.adminKey}` } },
          fetch: trustingFetch(quick.caPem),
        },
      ),
    );
    try {
      const started = Date.now();
      const r = (await mcp.callTool({ name, arguments: { input: "hello?" } })) as CallToolResult;
      assert.equal(r.isError, true);
      assert.match(textOf(r), /^timeout: The agent did not answer within 1 s/);
      assert.ok(Date.now() - started < 10_000, "answered at the deadline");
    } finally {
      await mcp.close();
    }
    const activity = await httpsJson(
      quick,
      "POST",
      `${quick.endpoint}/agents/${name}/endpoint/protocols/activity/messages?api-version=v1`,
      {
        headers: {
          authorization: `Bearer ${quick.adminKey}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ type: "message", text: "hello?", conversation: { id: "c1" } }),
      },
    );
    assert.equal(activity.status, 502, JSON.stringify(activity.body));
    assert.equal((activity.body.error as { code: string }).code, "agent_failed");
    assert.match((activity.body.error as { message: string }).message, /within 1 s/);
  });
});

describe("bounds", () => {
  it("AGENTHOST_ANSWER_TIMEOUT_SECONDS is at most a day (a longer timer overflows)", () => {
    assert.equal(parseConfig({ answerTimeoutSeconds: 86_400 }).answerTimeoutSeconds, 86_400);
    assert.throws(() => parseConfig({ answerTimeoutSeconds: 86_401 }), /answerTimeoutSeconds/);
  });

  it("an agent's failure code is taken only when it looks like one; its message is clipped", () => {
    const failed = (code: unknown, message: unknown) => {
      try {
        answerText({ status: "failed", error: { code, message } });
      } catch (err) {
        assert.ok(err instanceof AgentFailure);
        return { code: err.code, message: err.message };
      }
      assert.fail("a failed response has no text");
    };
    assert.deepEqual(failed("rate_limited", "slow down"), {
      code: "rate_limited",
      message: "slow down",
    });
    for (const code of ["Bad Code", "x".repeat(65), "a\nb", "", 7, "ünïcode"])
      assert.equal(failed(code, "m").code, "agent_error", String(code));
    assert.ok(failed("x", "y".repeat(100_000)).message.length <= 1001);
  });
});

describe("a hosted agent's answer that is too large or cut short", () => {
  let idle: TestServer;
  before(async () => {
    idle = await startServer({ env: { AGENTHOST_SESSION_MAX_IDLE_SECONDS: "1" } });
  });
  after(async () => {
    await idle?.stop();
    removeDir(idle.dataDir);
  });

  const sessionStatus = async (agent: string, id: string) =>
    (
      await httpsJson(
        idle,
        "GET",
        `${idle.endpoint}/agents/${agent}/endpoint/sessions/${id}?api-version=v1`,
        { headers: { authorization: `Bearer ${idle.adminKey}` } },
      )
    ).body.status;

  it("an answer over 4 MiB fails the call and frees the session (it goes idle); a reset fails at once", async () => {
    const client = sdk(idle, idle.adminKey);
    const name = newName();
    await deployFixture(client, name, "echo-python");
    await client.agents.updateAgent(name, {
      agentEndpoint: { protocol_configuration: { mcp: {} } },
    });
    const mcp = new Client({ name: "mcp-conformance", version: "1.0.0" });
    await mcp.connect(
      new StreamableHTTPClientTransport(
        new URL(`${idle.endpoint}/agents/${name}/endpoint/protocols/mcp?api-version=v1`),
        {
          requestInit: { headers: { authorization: `Bearer ${idle.adminKey}` } },
          fetch: trustingFetch(idle.caPem),
        },
      ),
    );
    try {
      const first = (await mcp.callTool({ name, arguments: { input: "hi" } })) as CallToolResult;
      const session = first._meta?.["agenthost/agent_session_id"] as string;
      assert.equal(typeof session, "string", JSON.stringify(first));

      const big = (await mcp.callTool({
        name,
        arguments: { input: "big 6", agent_session_id: session },
      })) as CallToolResult;
      assert.equal(big.isError, true);
      assert.match(textOf(big), /larger than 4194304 bytes/);
      // Nothing holds the session any more: it idles (stopped after 1 s without calls).
      const deadline = Date.now() + 20_000;
      let status = await sessionStatus(name, session);
      while (status !== "idle" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        status = await sessionStatus(name, session);
      }
      assert.equal(status, "idle", "the over-limit answer still holds the session");

      const started = Date.now();
      const cut = (await mcp.callTool({
        name,
        arguments: { input: "reset", agent_session_id: session },
      })) as CallToolResult;
      assert.equal(cut.isError, true, JSON.stringify(cut));
      assert.match(textOf(cut), /cut short/);
      assert.ok(Date.now() - started < 15_000, "a cut answer fails at once, not at the deadline");
    } finally {
      await mcp.close();
    }
  });

  it("a hosted agent that streams its answer (server-sent events) answers a tool call with its text", async () => {
    const client = sdk(idle, idle.adminKey);
    const name = newName();
    await deployFixture(client, name, "slow-python");
    await client.agents.updateAgent(name, {
      agentEndpoint: { protocol_configuration: { mcp: {} } },
    });
    const mcp = new Client({ name: "mcp-conformance", version: "1.0.0" });
    await mcp.connect(
      new StreamableHTTPClientTransport(
        new URL(`${idle.endpoint}/agents/${name}/endpoint/protocols/mcp?api-version=v1`),
        {
          requestInit: { headers: { authorization: `Bearer ${idle.adminKey}` } },
          fetch: trustingFetch(idle.caPem),
        },
      ),
    );
    try {
      const r = (await mcp.callTool({ name, arguments: { input: "say 3" } })) as CallToolResult;
      assert.equal(r.isError, undefined, JSON.stringify(r));
      assert.equal(textOf(r), "w0 w1 w2 ");
      assert.equal(typeof r._meta?.["agenthost/agent_session_id"], "string");
    } finally {
      await mcp.close();
    }
  });
});
