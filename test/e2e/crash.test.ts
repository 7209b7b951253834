import assert from "node:assert/strict";
import { it } from "node:test";
import type { AgentDefinitionUnion } from "@azure/ai-projects";
import { removeDir, sdk, startServer } from "../helpers/server.js";

/*
 * Durability: every version the server acknowledged before a kill -9 is there after a restart,
 * and the numbering goes on without reuse.
 */
it("acknowledged versions survive kill -9 of the server", async () => {
  const server = await startServer();
  const client = sdk(server, server.adminKey);
  const acknowledged: string[] = [];
  const writers = Array.from({ length: 4 }, async (_, w) => {
    for (;;) {
      try {
        const v = await client.agents.createVersion("durable", {
          kind: "prompt",
          model: `writer-${w}`,
        } as AgentDefinitionUnion);
        acknowledged.push(v.version);
      } catch {
        return; // the server is gone
      }
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await server.kill();
  await Promise.all(writers);
  assert.ok(acknowledged.length > 20, `wrote ${acknowledged.length} versions before the kill`);

  const restarted = await startServer({ dataDir: server.dataDir });
  try {
    const again = sdk(restarted, restarted.adminKey);
    const stored = new Set<string>();
    for await (const v of again.agents.listVersions("durable", { limit: 100 }))
      stored.add(v.version);
    const lost = acknowledged.filter((v) => !stored.has(v));
    assert.deepEqual(lost, [], "no acknowledged version is lost");
    const next = await again.agents.createVersion("durable", {
      kind: "prompt",
      model: "after",
    } as AgentDefinitionUnion);
    assert.equal(
      Number(next.version),
      Math.max(...[...stored].map(Number)) + 1,
      "numbering continues",
    );
  } finally {
    await restarted.stop();
    removeDir(server.dataDir);
  }
});
