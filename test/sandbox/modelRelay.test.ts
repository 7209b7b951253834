import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { probeBwrap, relayPort } from "../../src/sandbox/bwrapDriver.js";
import { deployFixture, openaiPackage } from "../helpers/agents.js";
import { startStandInModel, type StandInModel } from "../helpers/standInModel.js";
import {
  httpsJson,
  removeDir,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";

/*
 * Hosted agents call models through their sandbox's relay: a `network: none` sandbox, the
 * stock `openai` client configured from the environment alone, the real service. The token
 * works on the OpenAI data plane only, for its own sandbox only, and only while the sandbox
 * runs; the host's TCP ports stay out of reach.
 */

const probeDir = tempDir("agenthost-relay-probe-");
const skip =
  process.getuid?.() !== 0
    ? "sandbox tests need root (to run sandboxes as their own uids and create cgroups)"
    : probeBwrap(65534, probeDir);
removeDir(probeDir);

interface Env {
  OPENAI_BASE_URL: string;
  OPENAI_API_KEY: string;
  FOUNDRY_PROJECT_ENDPOINT: string;
}
type Outcome =
  | { ok: true; result: unknown }
  | { ok: false; status: number | null; error: { code?: string } | null; message: string };
interface Raw {
  status: number;
  body: { error?: { code: string; message: string } };
}

describe("hosted agents call models through their sandbox's relay", { skip }, () => {
  let server: TestServer;
  let model: StandInModel;
  let client: ReturnType<typeof sdk>;
  const agent = `caller-${process.pid}`;
  const v1 = { type: "version_ref" as const, agent_version: "1" };
  const relayOrigin = `http://127.0.0.1:${relayPort}`;

  before(async () => {
    server = await startServer({
      env: {
        AGENTHOST_WARM_POOL_SIZE: "1",
        AGENTHOST_SESSION_STOP_GRACE_SECONDS: "1",
        AGENTHOST_SANDBOX_NETWORK: "none",
      },
    });
    client = sdk(server, server.adminKey);
    // TEST DOUBLE: the model server behind the deployment (no real one runs here).
    model = await startStandInModel();
    const put = await httpsJson(
      server,
      "PUT",
      `${server.origin}/admin/projects/default/deployments/chat`,
      {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "stand-in-model", base_url: model.baseUrl }),
      },
    );
    assert.equal(put.status, 201, JSON.stringify(put.body));
    await deployFixture(client, agent, "model-caller-node", { extraDirs: [openaiPackage] });
    const made = await httpsJson(server, "POST", `${server.origin}/admin/projects`, {
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "other" }),
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
  });

  after(async () => {
    await server?.stop();
    if (server) removeDir(server.dataDir);
    await model?.close();
  });

  /** One command to the session's agent; what the agent saw, as JSON. */
  async function ask<T>(
    session: string,
    command: Record<string, unknown>,
    agentName = agent,
  ): Promise<T> {
    const r = await httpsJson(
      server,
      "POST",
      `${server.endpoint}/agents/${agentName}/endpoint/protocols/openai/responses?api-version=v1`,
      {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ input: JSON.stringify(command), agent_session_id: session }),
      },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const output = r.body.output as { content: { text: string }[] }[];
    return JSON.parse(output[0]!.content[0]!.text) as T;
  }

  let a: string;
  let envA: Env;

  it("gives the sandbox a stock openai client's settings, pointing at its relay", async () => {
    a = (await client.agents.createSession(agent, v1)).agent_session_id;
    envA = await ask<Env>(a, { op: "env" });
    assert.equal(envA.OPENAI_BASE_URL, `${relayOrigin}/api/projects/default/openai/v1`);
    assert.equal(envA.FOUNDRY_PROJECT_ENDPOINT, `${relayOrigin}/api/projects/default`);
    assert.match(envA.OPENAI_API_KEY, /^ahs_[A-Za-z0-9_-]{43}$/);
    assert.ok(!server.output().includes(envA.OPENAI_API_KEY), "the token is in no log line");
    assert.match(consoleOf(a), /starting sandbox \(bwrap, warm\)/, "a warm pool sandbox");
  });

  const consoleOf = (id: string) =>
    readFileSync(path.join(server.dataDir, "sessions/default", agent, id, "console.log"), "utf8");

  it("serves each sandbox on a socket of its own that only its uid may connect to", () => {
    const dir = path.join(server.dataDir, "sandbox/relay");
    const info = statSync(dir);
    assert.equal(info.uid, 0, "the relay directory is root's");
    assert.equal(info.mode & 0o777, 0o711, "and only root may write it");
    const home = statSync(path.join(server.dataDir, "sessions/default", agent, a, "home"));
    const sockets = readdirSync(dir).map((name) => statSync(path.join(dir, name)));
    assert.ok(sockets.length >= 1, "one socket per running sandbox");
    assert.ok(
      sockets.some((s) => s.uid === home.uid),
      "the session's socket belongs to its uid",
    );
    for (const s of sockets) {
      assert.ok(s.isSocket());
      assert.equal(s.mode & 0o777, 0o600, "connectable by its sandbox's uid alone");
      assert.ok(s.uid >= 1879048192, `a sandbox uid, never root: ${s.uid}`);
    }
  });

  it("lists the project's models through the relay (new OpenAI(), env only)", async () => {
    const models = await ask<Outcome>(a, { op: "models" });
    assert.equal(models.ok, true, JSON.stringify(models));
    assert.ok(Array.isArray((models as { result: unknown }).result), JSON.stringify(models));
  });

  it("gets the deployment's answer with a stock client; the usage lands on its session", async () => {
    model.answer(() => ({
      text: "Hello from the stand-in",
      usage: { prompt_tokens: 7, completion_tokens: 3 },
    }));
    const chat = await ask<Outcome>(a, { op: "chat", model: "chat" });
    assert.equal(chat.ok, true, JSON.stringify(chat));
    const completion = (chat as { result: { choices: { message: { content: string } }[] } }).result;
    assert.equal(completion.choices[0]!.message.content, "Hello from the stand-in");
    assert.equal(model.requests.at(-1)!.body.model, "stand-in-model");
    const session = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/${agent}/endpoint/sessions/${a}?api-version=v1`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.deepEqual(session.body.usage, {
      input_tokens: 7,
      output_tokens: 3,
      total_tokens: 10,
      calls: 1,
    });
    const grouped = await httpsJson(
      server,
      "GET",
      `${server.origin}/admin/usage?group_by=agent,session`,
      {
        headers: { authorization: `Bearer ${server.adminKey}` },
      },
    );
    const row = (
      grouped.body.data as { agent: string; session: string; total_tokens: number }[]
    ).find((r) => r.session === a);
    assert.equal(row?.agent, agent);
    assert.equal(row?.total_tokens, 10);
  });

  it("ends a hosted session that used its budget: 429 budget_exceeded, termination_reason budget", async () => {
    const budgeted = `${agent}-budget`;
    await deployFixture(client, budgeted, "model-caller-node", {
      extraDirs: [openaiPackage],
      metadata: { budget_tokens: "10" },
    });
    const id = (await client.agents.createSession(budgeted, v1)).agent_session_id;
    model.answer(() => ({ text: "spent", usage: { prompt_tokens: 8, completion_tokens: 4 } }));
    const first = await ask<Outcome>(id, { op: "chat", model: "chat" }, budgeted);
    assert.equal(first.ok, true, JSON.stringify(first));
    const second = await ask<Outcome>(id, { op: "chat", model: "chat" }, budgeted).catch(
      (e: unknown) => ({ ok: false, status: null, error: null, message: String(e) }) as Outcome,
    );
    assert.equal(second.ok, false);
    if (!second.ok && second.status !== null) {
      assert.equal(second.status, 429, JSON.stringify(second));
      assert.equal(second.error?.code, "budget_exceeded");
    }
    let ended: { status?: string; termination_reason?: string } = {};
    for (let i = 0; i < 100 && ended.termination_reason !== "budget"; i++) {
      await sleep(100);
      ended = (
        await httpsJson(
          server,
          "GET",
          `${server.endpoint}/agents/${budgeted}/endpoint/sessions/${id}?api-version=v1`,
          { headers: { authorization: `Bearer ${server.adminKey}` } },
        )
      ).body as typeof ended;
    }
    assert.equal(ended.termination_reason, "budget");
    assert.equal(ended.status, "failed");
    const again = await httpsJson(
      server,
      "POST",
      `${server.endpoint}/agents/${budgeted}/endpoint/protocols/openai/responses?api-version=v1`,
      {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ input: "{}", agent_session_id: id }),
      },
    );
    assert.equal(again.status, 429);
  });

  it("refuses the token on the control plane, the admin routes and another project", async () => {
    const agents = await ask<Raw>(a, {
      op: "raw",
      url: `${envA.FOUNDRY_PROJECT_ENDPOINT}/agents?api-version=v1`,
    });
    assert.equal(agents.status, 401, JSON.stringify(agents));
    assert.equal(agents.body.error?.code, "unauthorized");
    const admin = await ask<Raw>(a, { op: "raw", url: `${relayOrigin}/admin/projects` });
    assert.equal(admin.status, 401, JSON.stringify(admin));
    const other = await ask<Raw>(a, {
      op: "raw",
      url: `${relayOrigin}/api/projects/other/openai/v1/models`,
    });
    assert.equal(other.status, 403, JSON.stringify(other));
    assert.equal(other.body.error?.code, "forbidden");
    const own = await ask<Raw>(a, { op: "raw", url: `${envA.OPENAI_BASE_URL}/models` });
    assert.equal(own.status, 200, JSON.stringify(own));
  });

  it("takes no API key through the relay, and the token nowhere but through it", async () => {
    const none = await ask<Raw>(a, { op: "raw", url: `${envA.OPENAI_BASE_URL}/models`, token: "" });
    assert.equal(none.status, 401, JSON.stringify(none));
    const key = await ask<Raw>(a, {
      op: "raw",
      url: `${envA.OPENAI_BASE_URL}/models`,
      token: server.adminKey,
    });
    assert.equal(key.status, 401, `an API key is refused from a sandbox: ${JSON.stringify(key)}`);
    const overHttps = await httpsJson(server, "GET", `${server.endpoint}/openai/v1/models`, {
      headers: { authorization: `Bearer ${envA.OPENAI_API_KEY}` },
    });
    assert.equal(overHttps.status, 401, "the token does not work on the service's TCP port");
  });

  it("keeps the host's TCP ports out of reach", async () => {
    const port = new URL(server.origin).port;
    const results = await ask<Record<string, string>>(a, {
      op: "connect",
      targets: [`127.0.0.1:${port}`, `[::1]:${port}`, `127.0.0.1:${relayPort}`],
    });
    assert.notEqual(results[`127.0.0.1:${port}`], "connected", JSON.stringify(results));
    assert.notEqual(results[`[::1]:${port}`], "connected", JSON.stringify(results));
    assert.equal(results[`127.0.0.1:${relayPort}`], "connected", "only the relay's own port");
  });

  it("gives each session its own token, usable by its own sandbox only", async () => {
    const b = (await client.agents.createSession(agent, v1)).agent_session_id;
    const envB = await ask<Env>(b, { op: "env" });
    assert.match(envB.OPENAI_API_KEY, /^ahs_/);
    assert.notEqual(envB.OPENAI_API_KEY, envA.OPENAI_API_KEY);
    const models = await ask<Outcome>(b, { op: "models" });
    assert.equal(models.ok, true, JSON.stringify(models));
    // A's token, presented from B's sandbox, is refused: the relay says whose sandbox it is.
    const stolen = await ask<Raw>(b, {
      op: "raw",
      url: `${envB.OPENAI_BASE_URL}/models`,
      token: envA.OPENAI_API_KEY,
    });
    assert.equal(stolen.status, 401, JSON.stringify(stolen));

    // After A's sandbox stops, its token is gone; A's next start (cold) gets a new one.
    await client.agents.stopSession(agent, a);
    const resumed = await ask<Env>(a, { op: "env" });
    assert.match(consoleOf(a), /starting sandbox \(bwrap\) for/, "a cold start");
    assert.notEqual(resumed.OPENAI_API_KEY, envA.OPENAI_API_KEY, "a new sandbox, a new token");
    const old = await ask<Raw>(a, {
      op: "raw",
      url: `${resumed.OPENAI_BASE_URL}/models`,
      token: envA.OPENAI_API_KEY,
    });
    assert.equal(old.status, 401, `the stopped sandbox's token: ${JSON.stringify(old)}`);
    const fresh = await ask<Outcome>(a, { op: "models" });
    assert.equal(fresh.ok, true, JSON.stringify(fresh));
  });

  it("relays a Python agent's calls too (loader.py)", async () => {
    const py = `${agent}-py`;
    await deployFixture(client, py, "model-caller");
    const session = (await client.agents.createSession(py, v1)).agent_session_id;
    const got = await ask<{ status: number; body: { object: string } }>(session, {}, py);
    assert.equal(got.status, 200, JSON.stringify(got));
    assert.equal(got.body.object, "list");
  });

  it("fails a start whose PORT is the relay's, saying so", async () => {
    const clash = `${agent}-port`;
    await deployFixture(client, clash, "echo-node", { env: { PORT: String(relayPort) } });
    const session = (await client.agents.createSession(clash, v1)).agent_session_id;
    let raw: { status: number; body: Record<string, unknown> } | undefined;
    for (let i = 0; i < 200; i++) {
      raw = await httpsJson(
        server,
        "GET",
        `${server.endpoint}/agents/${clash}/endpoint/sessions/${session}?api-version=v1`,
        { headers: { authorization: `Bearer ${server.adminKey}` } },
      );
      if (raw.body.status !== "creating") break;
      await sleep(50);
    }
    assert.equal(raw?.body.status, "failed", JSON.stringify(raw?.body));
    assert.match(String(raw?.body.termination_message), /relay/, JSON.stringify(raw?.body));
  });
});

describe("the relay with the process driver (unisolated)", { skip }, () => {
  let server: TestServer;

  after(async () => {
    await server?.stop();
    if (server) removeDir(server.dataDir);
  });

  it("relays through a free port of the host's loopback, with the same token rules", async () => {
    server = await startServer({
      env: { AGENTHOST_SANDBOX_DRIVER: "process", AGENTHOST_WARM_POOL_SIZE: "0" },
    });
    const client = sdk(server, server.adminKey);
    const agent = `caller-process-${process.pid}`;
    await deployFixture(client, agent, "model-caller-node", { extraDirs: [openaiPackage] });
    const session = (
      await client.agents.createSession(agent, { type: "version_ref", agent_version: "1" })
    ).agent_session_id;
    const ask = async <T>(command: Record<string, unknown>): Promise<T> => {
      const r = await httpsJson(
        server,
        "POST",
        `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
        {
          headers: {
            authorization: `Bearer ${server.adminKey}`,
            "content-type": "application/json",
          },
          body: JSON.stringify({ input: JSON.stringify(command), agent_session_id: session }),
        },
      );
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const output = r.body.output as { content: { text: string }[] }[];
      return JSON.parse(output[0]!.content[0]!.text) as T;
    };
    const env = await ask<Env>({ op: "env" });
    const port = new URL(env.OPENAI_BASE_URL).port;
    assert.notEqual(port, new URL(server.origin).port);
    assert.match(
      env.OPENAI_BASE_URL,
      /^http:\/\/127\.0\.0\.1:\d+\/api\/projects\/default\/openai\/v1$/,
    );
    const models = await ask<Outcome>({ op: "models" });
    assert.equal(models.ok, true, JSON.stringify(models));
    const control = await ask<Raw>({
      op: "raw",
      url: `${env.FOUNDRY_PROJECT_ENDPOINT}/agents?api-version=v1`,
    });
    assert.equal(control.status, 401, JSON.stringify(control));
  });
});
