import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import type { AIProjectClient, AgentDefinitionUnion } from "@azure/ai-projects";
import { RestError } from "@azure/core-rest-pipeline";
import { httpsJson, removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";
import { makeZip, multipartForm, sha256 } from "../helpers/zip.js";

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

it("gates a draft uploaded from code the same way as a JSON draft", async () => {
  // The JS client's createVersionFromCode sends no `draft`; the Python client's metadata can.
  const zip = makeZip([{ name: "main.py", data: "print('draft')\n" }]);
  const metadata = JSON.stringify({
    definition: {
      kind: "hosted",
      cpu: "0.5",
      memory: "512Mi",
      code_configuration: {
        runtime: "python_3_11",
        entry_point: ["python", "main.py"],
        dependency_resolution: "bundled",
      },
    },
    draft: true,
  });
  const upload = (headers: Record<string, string> = {}) => {
    const form = multipartForm([
      { name: "metadata", body: metadata, type: "application/json" },
      { name: "code", body: zip, filename: "agent.zip", type: "application/zip" },
    ]);
    return httpsJson(
      server,
      "POST",
      `${server.endpoint}/agents/code-draft-strict/versions?api-version=v1`,
      {
        headers: {
          authorization: `Bearer ${server.adminKey}`,
          "content-type": form.contentType,
          "x-ms-code-zip-sha256": sha256(zip),
          ...headers,
        },
        body: form.body,
      },
    );
  };
  // The first version cannot be a draft: publish one through the official client.
  await client.agents.createVersionFromCode("code-draft-strict", sha256(zip), {
    metadata: { definition: JSON.parse(metadata).definition },
    code: zip,
  });
  const refused = await upload();
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.equal((refused.body.error as { code: string }).code, "preview_feature_required");
  const accepted = await upload({ "foundry-features": "DraftAgents=V1Preview" });
  assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
});

it("never gates what the 2.x client sends without options (prompt, hosted)", async () => {
  const p = await client.agents.create("plain-strict", {
    kind: "prompt",
    model: "m",
  } as AgentDefinitionUnion);
  assert.equal(p.name, "plain-strict");
});
