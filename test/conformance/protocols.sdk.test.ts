import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AIProjectClient, AgentDefinitionUnion } from "@azure/ai-projects";
import type { APIError } from "openai";
import { projectOpenAI } from "../helpers/openaiClient.js";
import { httpsJson, removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";

/*
 * An agent's endpoint serves only the protocols its `protocol_configuration` lists (`responses`
 * alone when it lists none): through the official clients where they reach the route, raw HTTPS
 * for the protocol paths no client here sends.
 */

let server: TestServer;
let project: AIProjectClient;
let unique = 0;
const newName = () => `proto-${process.pid}-${++unique}`;
const prompt = { kind: "prompt", model: "no-such-deployment" } as AgentDefinitionUnion;

before(async () => {
  server = await startServer();
  project = sdk(server, server.adminKey);
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
});

const raw = (method: string, agent: string, route: string) =>
  httpsJson(
    server,
    method,
    `${server.endpoint}/agents/${agent}/endpoint/protocols/${route}?api-version=v1`,
    {
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: method === "GET" ? undefined : "{}",
    },
  );

/** The error code of a failed `openai` client call. */
async function codeOf(call: Promise<unknown>): Promise<{ status: number; code: unknown }> {
  try {
    await call;
  } catch (err) {
    const e = err as APIError;
    return { status: e.status ?? 0, code: e.code ?? (e.error as { code?: unknown })?.code };
  }
  assert.fail("the call succeeded");
}

/** What a prompt agent whose model is no deployment answers: it was reached. */
let unknownModel: { status: number; code: unknown };

describe("agent endpoint protocols", () => {
  before(async () => {
    const openai = projectOpenAI(project, server);
    unknownModel = await codeOf(
      openai.responses.create({ model: "no-such-deployment", input: "hi" }),
    );
    assert.notEqual(unknownModel.code, "protocol_not_enabled");
    assert.ok(
      unknownModel.status >= 400 && unknownModel.status < 500,
      JSON.stringify(unknownModel),
    );
  });

  it("an endpoint without protocol_configuration serves responses (and only that)", async () => {
    const name = newName();
    await project.agents.create(name, prompt);
    const openai = projectOpenAI(project, server, name);
    // The agent is reached (its model is what is missing), not refused for its protocol.
    assert.deepEqual(await codeOf(openai.responses.create({ input: "hi" })), unknownModel);
    const invocations = await raw("POST", name, "invocations");
    assert.equal(invocations.status, 404, JSON.stringify(invocations.body));
    const error = invocations.body.error as { code: string; param: string; message: string };
    assert.equal(error.code, "protocol_not_enabled");
    assert.equal(error.param, "protocol");
    assert.match(error.message, /'invocations'/);
  });

  it("a protocol the endpoint does not list answers 404 naming it, through the official client too", async () => {
    const name = newName();
    await project.agents.create(name, prompt);
    await project.agents.updateAgent(name, {
      agentEndpoint: { protocol_configuration: { a2a: {}, mcp: {} } },
    });
    const openai = projectOpenAI(project, server, name);
    assert.deepEqual(await codeOf(openai.responses.create({ input: "hi" })), {
      status: 404,
      code: "protocol_not_enabled",
    });
    assert.deepEqual(await codeOf(openai.conversations.create({})), {
      status: 404,
      code: "protocol_not_enabled",
    });
    for (const route of ["invocations", "invocations_ws", "activity/messages", "voice"]) {
      const r = await raw("POST", name, route);
      assert.equal(r.status, 404, `${route}: ${JSON.stringify(r.body)}`);
      const error = r.body.error as { code: string; message: string };
      assert.equal(error.code, "protocol_not_enabled", route);
      assert.ok(error.message.includes(`'${route.split("/")[0]}'`), error.message);
    }

    // Listing responses again (a merge patch) opens the route once more.
    await project.agents.updateAgent(name, {
      agentEndpoint: { protocol_configuration: { responses: {} } },
    });
    assert.deepEqual(await codeOf(openai.responses.create({ input: "hi" })), unknownModel);
    // Listing none (every key removed) is the default again: responses alone.
    await project.agents.updateAgent(name, {
      agentEndpoint: { protocol_configuration: { a2a: null, mcp: null, responses: null } },
    } as never);
    assert.deepEqual(await codeOf(openai.responses.create({ input: "hi" })), unknownModel);
    assert.equal((await raw("GET", name, "a2a")).status, 404);
  });

  it("refuses an unlisted protocol before reading the body", async () => {
    const name = newName();
    await project.agents.create(name, prompt);
    const r = await httpsJson(
      server,
      "POST",
      `${server.endpoint}/agents/${name}/endpoint/protocols/invocations?api-version=v1`,
      {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "text/plain" },
        body: "not json at all",
      },
    );
    assert.equal(r.status, 404, JSON.stringify(r.body));
    assert.equal((r.body.error as { code: string }).code, "protocol_not_enabled");
  });

  it("an unknown agent is 404 not_found on every protocol path", async () => {
    for (const route of ["openai/responses", "invocations", "a2a"]) {
      const r = await raw("POST", "no-such-agent", route);
      assert.equal(r.status, 404, route);
      assert.equal((r.body.error as { code: string }).code, "not_found", route);
    }
  });
});
