import assert from "node:assert/strict";
import { after, it } from "node:test";
import { openaiClient } from "../helpers/openaiClient.js";
import { httpsJson, removeDir, startServer, tempDir, type TestServer } from "../helpers/server.js";
import { startStandInModel } from "../helpers/standInModel.js";

/*
 * A background response running when the service is killed (kill -9) is `failed` with
 * `service_stopped` after the next start, never left `in_progress`. The model server is a
 * TEST DOUBLE (test/helpers/standInModel.ts) that never answers.
 */

const dataDir = tempDir();
let server: TestServer | undefined;

after(async () => {
  await server?.stop();
  removeDir(dataDir);
});

it("fails the background responses a kill interrupted", async () => {
  const model = await startStandInModel();
  model.answer(() => ({ silent: true }));
  try {
    server = await startServer({ dataDir });
    const put = await httpsJson(
      server,
      "PUT",
      `${server.origin}/admin/projects/default/deployments/chat`,
      {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "m", base_url: model.baseUrl }),
      },
    );
    assert.equal(put.status, 201);
    const openai = openaiClient(server, server.adminKey);
    const r = await openai.responses.create({ model: "chat", input: "x", background: true });
    assert.equal(r.status, "queued");
    assert.equal((await openai.responses.retrieve(r.id)).status, "in_progress");
    await server.kill();
    server = await startServer({ dataDir });
    const after = await openaiClient(server, server.adminKey).responses.retrieve(r.id);
    assert.equal(after.status, "failed");
    assert.equal(after.error?.code, "service_stopped" as never);
  } finally {
    await model.close();
  }
});
