import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, it } from "node:test";
import { promisify } from "node:util";
import { repoRoot, removeDir, startServer, tempDir, type TestServer } from "../helpers/server.js";

/* The CLI and the startup output, end to end, as a user would run them. */

const run = promisify(execFile);
const cli = (args: string[], env: Record<string, string>) =>
  run(process.execPath, ["--import", "tsx", path.join(repoRoot, "src/main.ts"), ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
  });

let server: TestServer;

before(async () => {
  server = await startServer({ env: { AGENTHOST_ADMIN_KEY: "" } });
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
});

it("startup prints the endpoint, the data dir, how to trust the CA, and a new admin key once", async () => {
  const out = server.output();
  assert.match(out, /Project endpoint: +https:\/\/localhost:\d+\/api\/projects\/default/);
  assert.match(out, /Console: +https:\/\/localhost:\d+\/ \(sign in with an API key\)/);
  assert.ok(out.includes(`Data directory:    ${server.dataDir}`));
  assert.ok(out.includes(`NODE_EXTRA_CA_CERTS=${path.join(server.dataDir, "tls/ca.pem")}`));
  assert.match(out, /Admin key \(shown once, keep it safe\): ahk_\S{40,}/);
});

it("`keys create` prints a key that works through the official client, trusted via NODE_EXTRA_CA_CERTS", async () => {
  const { stdout } = await cli(["keys", "create", "--project", "default", "--name", "e2e"], {
    AGENTHOST_DATA_DIR: server.dataDir,
  });
  const key = stdout.split("\n")[0]!;
  assert.match(key, /^ahk_/);

  // A separate Node process that trusts the CA only through the environment, as printed.
  const script = path.join(tempDir(), "client.mjs");
  writeFileSync(
    script,
    `import { AIProjectClient } from "${path.join(repoRoot, "node_modules/@azure/ai-projects/dist/esm/index.js")}";
     const credential = { getToken: async () => ({ token: process.env.KEY, expiresOnTimestamp: Date.now() + 3600000 }) };
     const client = new AIProjectClient(process.env.ENDPOINT, credential);
     const agent = await client.agents.create("from-cli-key", { kind: "prompt", model: "gpt-4o" });
     console.log(agent.versions.latest.id);`,
  );
  const result = await run(process.execPath, [script], {
    env: {
      ...process.env,
      NODE_EXTRA_CA_CERTS: path.join(server.dataDir, "tls/ca.pem"),
      KEY: key,
      ENDPOINT: server.endpoint,
    },
  });
  assert.equal(result.stdout.trim(), "from-cli-key:1");

  const listed = await cli(["keys", "list"], { AGENTHOST_DATA_DIR: server.dataDir });
  assert.match(listed.stdout, /^ID\tPROJECT\tNAME\tROLE\n/);
  assert.match(listed.stdout, /\nkey_\S+\tdefault\te2e\tproject\n/);
});

it("a revoked key is refused", async () => {
  const { stdout } = await cli(["keys", "create"], { AGENTHOST_DATA_DIR: server.dataDir });
  const [key, info] = stdout.split("\n");
  const id = /# id (\S+),/.exec(info!)![1]!;
  await cli(["keys", "revoke", "--id", id], { AGENTHOST_DATA_DIR: server.dataDir });
  const { request } = await import("node:https");
  const status = await new Promise<number>((resolve, reject) => {
    request(
      `${server.endpoint}/agents?api-version=v1`,
      { ca: server.caPem, headers: { authorization: `Bearer ${key}` } },
      (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      },
    )
      .on("error", reject)
      .end();
  });
  assert.equal(status, 401);
});

it("bad settings fail fast with a clear message and exit code 2", async () => {
  const err = await cli(["serve", "--port", "99999"], { AGENTHOST_DATA_DIR: tempDir() }).then(
    () => assert.fail("expected a failure"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(err.code, 2);
  assert.match(err.stderr, /Invalid setting port/);
});
