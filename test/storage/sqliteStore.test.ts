import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { it } from "node:test";
import { promisify } from "node:util";
import { SqliteStore } from "../../src/storage/sqlite/sqliteStore.js";
import { removeDir, repoRoot, tempDir } from "../helpers/server.js";
import { storeSuite } from "./storeSuite.js";

storeSuite("sqlite", async () => {
  const dir = tempDir();
  const store = new SqliteStore(path.join(dir, "agenthost.db"));
  return {
    store,
    dispose: async () => {
      await store.close();
      removeDir(dir);
    },
  };
});

it("two processes appending versions to one agent never share a number", async () => {
  const dir = tempDir();
  const file = path.join(dir, "agenthost.db");
  const seed = new SqliteStore(file);
  await seed.migrate();
  await seed.close();
  const writer = path.join(repoRoot, "test/fixtures/appendVersions.ts");
  const run = promisify(execFile);
  await Promise.all(
    ["a", "b"].map((tag) =>
      run(process.execPath, ["--import", "tsx", writer, file, "shared", tag, "100"], {
        cwd: repoRoot,
      }),
    ),
  );
  const store = new SqliteStore(file);
  const page = await store.agents.listVersions("default", "shared", {
    limit: 100,
    order: "asc",
    includeDrafts: false,
  });
  const second = await store.agents.listVersions("default", "shared", {
    limit: 100,
    order: "asc",
    after: "100",
    includeDrafts: false,
  });
  const numbers = [...page!.items, ...second!.items].map((v) => v.version);
  assert.deepEqual(
    numbers,
    Array.from({ length: 200 }, (_, i) => i + 1),
  );
  const tags = new Set(
    [...page!.items, ...second!.items].map((v) => String(v.definition.model).slice(0, 1)),
  );
  assert.deepEqual([...tags].sort(), ["a", "b"], "both writers got through");
  await store.close();
  removeDir(dir);
});
