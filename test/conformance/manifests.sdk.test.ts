import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import type {
  AIProjectClient,
  HostedAgentDefinition,
  PromptAgentDefinition,
} from "@azure/ai-projects";
import {
  expectRestError as refused,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";
import { makeZip, sha256 } from "../helpers/zip.js";

/* Manifests: the official client's import operations, with valid and invalid parameter values. */

let server: TestServer;
let client: AIProjectClient;

before(async () => {
  server = await startServer();
  client = sdk(server, server.adminKey);
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
});

function call(method: string, route: string, body?: unknown) {
  return httpsJson(
    server,
    method,
    `${server.endpoint}${route}${route.includes("?") ? "&" : "?"}api-version=v1`,
    {
      headers: {
        authorization: `Bearer ${server.adminKey}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    },
  );
}

it("imports the built-in prompt manifest with defaults and given values", async () => {
  const agent = await client.agents.create("from-manifest", "prompt-agent", { model: "gpt-4o" });
  const d = agent.versions.latest.definition as PromptAgentDefinition;
  assert.equal(d.model, "gpt-4o");
  assert.equal(d.instructions, "You are a helpful assistant.");
  assert.equal(d.temperature, 1, "a number parameter stays a number");
  const v2 = await client.agents.createVersion("from-manifest", "prompt-agent@1", {
    model: "m2",
    temperature: 0.2,
  });
  assert.equal(v2.version, "2");
  assert.equal((v2.definition as PromptAgentDefinition).temperature, 0.2);
  const same = await client.agents.update("from-manifest", "prompt-agent", {
    model: "m2",
    temperature: 0.2,
  });
  assert.equal(
    same.versions.latest.version,
    "2",
    "update from a manifest: new version only on change",
  );
});

it("refuses invalid parameter values with 400 naming the parameter", async () => {
  await refused(
    client.agents.create("bad-manifest", "prompt-agent", { model: "m", temperature: 7 }),
    400,
    "invalid_parameter",
    "parameter_values.temperature",
  );
  await refused(
    client.agents.create("bad-manifest", "prompt-agent", {}),
    400,
    "missing_parameter",
    "parameter_values.model",
  );
  await refused(
    client.agents.create("bad-manifest", "prompt-agent", { model: "m", colour: "red" }),
    400,
    "invalid_parameter",
    "parameter_values.colour",
  );
  await refused(
    client.agents.create("bad-manifest", "no-such-manifest", {}),
    404,
    "not_found",
    "manifest_id",
  );
  await refused(
    client.agents.update("missing-agent", "prompt-agent", { model: "m" }),
    404,
    "not_found",
    "agent_name",
  );
});

it("registers, lists, renders and deletes a project manifest", async () => {
  const registered = await call("POST", "/manifests", {
    name: "support-bot",
    description: "Support agent for one product",
    parameters: {
      product: { type: "string", minLength: 2 },
      model: { type: "string", default: "gpt-4o-mini" },
    },
    definition: {
      kind: "prompt",
      model: "{{model}}",
      instructions: "You support {{product}} users.",
    },
  });
  assert.equal(registered.status, 201, JSON.stringify(registered.body));
  assert.equal(registered.body.id, "support-bot@1");
  const listed = await call("GET", "/manifests");
  const ids = (listed.body.data as { id: string }[]).map((m) => m.id);
  assert.deepEqual(ids, ["prompt-agent@1", "python-hosted-agent@1", "support-bot@1"]);

  const agent = await client.agents.create("support-widgets", "support-bot", {
    product: "Widgets",
  });
  assert.equal(
    (agent.versions.latest.definition as PromptAgentDefinition).instructions,
    "You support Widgets users.",
  );
  await refused(
    client.agents.create("support-x", "support-bot", { product: "X" }),
    400,
    "invalid_parameter",
    "parameter_values.product",
  );

  const undeclared = await call("POST", "/manifests", {
    name: "broken",
    parameters: {},
    definition: { kind: "prompt", model: "{{model}}" },
  });
  assert.equal(undeclared.status, 400);
  assert.equal((undeclared.body.error as { param: string }).param, "definition");

  assert.equal((await call("DELETE", "/manifests/support-bot")).status, 204);
  assert.equal((await call("GET", "/manifests/support-bot")).status, 404);
  assert.equal((await call("DELETE", "/manifests/prompt-agent")).status, 409);
});

it("the hosted skeleton keeps the uploaded code of the agent it is imported onto", async () => {
  const zip = makeZip([{ name: "main.py", data: "print('hi')\n" }]);
  await client.agents.createVersionFromCode("py-skeleton", sha256(zip), {
    metadata: {
      definition: {
        kind: "hosted",
        cpu: "0.5",
        memory: "512Mi",
        code_configuration: {
          runtime: "python_3_11",
          entry_point: ["python", "main.py"],
          dependency_resolution: "bundled",
        },
      } as unknown as HostedAgentDefinition,
    },
    code: zip,
  });
  const agent = await client.agents.update("py-skeleton", "python-hosted-agent", {
    runtime: "python_3_11",
    environment_variables: { MODE: "prod" },
  });
  const d = agent.versions.latest.definition as HostedAgentDefinition;
  assert.equal(agent.versions.latest.version, "2");
  assert.equal(d.code_configuration?.content_hash, sha256(zip));
  assert.deepEqual(d.environment_variables, { MODE: "prod" });
  await refused(
    client.agents.create("py-new", "python-hosted-agent", {}),
    400,
    "invalid_parameter",
    "definition.code_configuration",
  );
});
