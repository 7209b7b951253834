import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AIProjectClient, HostedAgentDefinition } from "@azure/ai-projects";
import {
  expectRestError as refused,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";
import { makeZip, sha256 } from "../helpers/zip.js";

/*
 * Caps on unpacked code: a version's zip may unpack to AGENTHOST_MAX_UNPACKED_BYTES, and all
 * the code-based versions of a project together to AGENTHOST_MAX_PROJECT_CODE_BYTES; past
 * either, the upload is refused at once with a 4xx naming `code`.
 */

const KiB = 1024;
const definition = {
  kind: "hosted",
  cpu: "1",
  memory: "256Mi",
  code_configuration: { runtime: "python_3_11", entry_point: ["python", "main.py"] },
  protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
} as unknown as HostedAgentDefinition;

/** A zip unpacking to `bytes` (plus main.py), different for each `tag`. */
const zipOf = (bytes: number, tag: string) =>
  makeZip([
    { name: "main.py", data: `print(${JSON.stringify(tag)})\n` },
    { name: "data.bin", data: Buffer.alloc(bytes, tag), deflate: true },
  ]);

describe("caps on unpacked code", () => {
  let server: TestServer;
  let client: AIProjectClient;
  const upload = (name: string, zip: Buffer) =>
    client.agents.createVersionFromCode(name, sha256(zip), { metadata: { definition }, code: zip });

  before(async () => {
    server = await startServer({
      env: {
        AGENTHOST_MAX_UNPACKED_BYTES: String(300 * KiB),
        AGENTHOST_MAX_PROJECT_CODE_BYTES: String(500 * KiB),
        AGENTHOST_WARM_POOL_SIZE: "0",
      },
    });
    client = sdk(server, server.adminKey);
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(server.dataDir);
  });

  it("refuses a zip that unpacks past the per-version cap", async () => {
    const err = await refused(
      upload("big", zipOf(301 * KiB, "a")),
      400,
      "invalid_parameter",
      "code",
    );
    assert.match(err.message, /unpacks to more than 307200 bytes/);
  });

  it("refuses a version past the project's total, and accepts it once space is freed", async () => {
    await upload("one", zipOf(200 * KiB, "b"));
    await upload("two", zipOf(200 * KiB, "c"));
    const err = await refused(
      upload("three", zipOf(200 * KiB, "d")),
      413,
      "project_code_quota_exceeded",
      "code",
    );
    assert.match(err.message, /most allowed is 512000/);
    await client.agents.delete("one");
    const made = await upload("three", zipOf(200 * KiB, "d"));
    assert.equal(made.version, "1");
  });
});
