import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import type { AIProjectClient, AgentDefinitionUnion } from "@azure/ai-projects";
import { RestError } from "@azure/core-rest-pipeline";
import { removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";

/* Strict mode answers 403 preview_feature_required exactly as Foundry does (contract §1.6). */

let server: TestServer;
let client: AIProjectClient;

before(async () => {
  server = await startServer({ args: ["--foundry-features", "strict"] });
  client = sdk(server, server.adminKey);
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
});

const workflow = { kind: "workflow", workflow: "kind: Workflow" } as AgentDefinitionUnion;

it("refuses a workflow agent without the opt-in, with the contract's error shape", async () => {
  const err = await client.agents.createVersion("wf-strict", workflow).then(
    () => assert.fail("expected 403"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RestError);
  assert.equal(err.statusCode, 403);
  assert.equal(err.code, "preview_feature_required");
  const { error } = err.details as { error: Record<string, unknown> };
  assert.equal(error.param, "Foundry-Features");
  assert.equal(error.type, "invalid_request_error");
  assert.deepEqual(error.details, []);
  assert.equal(typeof (error.additionalInfo as { request_id: unknown }).request_id, "string");
});

it("accepts it with the header the client sends", async () => {
  const v = await client.agents.createVersion("wf-strict", workflow, {
    foundryFeatures: "WorkflowAgents=V1Preview",
  });
  assert.equal(v.version, "1");
});

it("gates drafts on create and on listing", async () => {
  await client.agents.createVersion("draft-strict", {
    kind: "prompt",
    model: "m",
  } as AgentDefinitionUnion);
  await assert.rejects(
    client.agents.createVersion(
      "draft-strict",
      { kind: "prompt", model: "m" } as AgentDefinitionUnion,
      { draft: true },
    ),
    (e: RestError) => e.statusCode === 403 && e.code === "preview_feature_required",
  );
  await assert.rejects(
    client.agents.listVersions("draft-strict", { includeDrafts: true }).next(),
    (e: RestError) => e.statusCode === 403,
  );
  const page = await client.agents
    .listVersions("draft-strict", { includeDrafts: true, foundryFeatures: "DraftAgents=V1Preview" })
    .next();
  assert.equal(page.value?.version, "1");
});

it("never gates what the 2.x client sends without options (prompt, hosted)", async () => {
  const p = await client.agents.create("plain-strict", {
    kind: "prompt",
    model: "m",
  } as AgentDefinitionUnion);
  assert.equal(p.name, "plain-strict");
});
