import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, it } from "node:test";
import { openaiClient } from "../helpers/openaiClient.js";
import { httpsJson, removeDir, repoRoot, startServer, type TestServer } from "../helpers/server.js";
import { startStandInModel, type StandInModel } from "../helpers/standInModel.js";

/*
 * `agenthost deployments add|list|remove`, run as a user would while the service runs; the
 * service uses a deployment the CLI added at its next call. The model server is a TEST DOUBLE
 * (test/helpers/standInModel.ts).
 */

const secret = "sk-cli-PLAINTEXT-4c1d9e";
const header = "NAME\tMODEL\tBASE URL\tKEY\tSOURCE\n";

let server: TestServer;
let model: StandInModel;

function cli(args: string[], stdin?: string) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(
      process.execPath,
      ["--import", "tsx", path.join(repoRoot, "src/main.ts"), "deployments", ...args],
      { cwd: repoRoot, env: { ...process.env, AGENTHOST_DATA_DIR: server.dataDir } },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin);
  });
}

before(async () => {
  model = await startStandInModel({ apiKey: secret });
  server = await startServer();
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
  await model.close();
});

it("add (key from stdin), list, use through the running service, remove", async () => {
  const added = await cli(
    [
      "add",
      "cli-chat",
      "--model",
      "stand-in-model",
      "--base-url",
      model.baseUrl,
      "--api-key-stdin",
    ],
    `${secret}\n`,
  );
  assert.equal(added.code, 0, added.stderr);
  assert.equal(added.stdout.trim(), "added cli-chat in project default");

  const listed = await cli(["list"]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.equal(
    listed.stdout,
    `${header}cli-chat\tstand-in-model\t${model.baseUrl}\tkey set\tstored\n`,
  );
  assert.ok(!listed.stdout.includes(secret));

  const key = await httpsJson(server, "POST", `${server.origin}/admin/keys`, {
    headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
    body: JSON.stringify({ project: "default" }),
  });
  const openai = openaiClient(server, key.body.key as string);
  const done = await openai.chat.completions.create({
    model: "cli-chat",
    messages: [{ role: "user", content: "from the cli" }],
  });
  assert.equal(done.choices[0]!.message.content, "You said: from the cli");
  assert.equal(model.requests.at(-1)!.headers.authorization, `Bearer ${secret}`);
  assert.equal(readFileSync(path.join(server.dataDir, "agenthost.db")).indexOf(secret), -1);

  const removed = await cli(["remove", "cli-chat"]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal((await cli(["list"])).stdout, header);
  const gone = await openai.chat.completions
    .create({ model: "cli-chat", messages: [{ role: "user", content: "x" }] })
    .then(
      () => assert.fail("expected 404"),
      (e: { status: number }) => e,
    );
  assert.equal(gone.status, 404);
});

it("--create-project creates the project; --api-key-env stores the variable's name", async () => {
  const refused = await cli([
    "add",
    "env-chat",
    "--project",
    "team-a",
    "--model",
    "m",
    "--base-url",
    "https://api.openai.com/v1",
  ]);
  assert.equal(refused.code, 2);
  assert.equal(
    refused.stderr,
    "agenthost: project team-a was not found (projects: default); give --create-project to create it\n",
  );
  const added = await cli([
    "add",
    "env-chat",
    "--project",
    "team-a",
    "--create-project",
    "--model",
    "m",
    "--base-url",
    "https://api.openai.com/v1",
    "--api-key-env",
    "OPENAI_API_KEY",
  ]);
  assert.equal(added.code, 0, added.stderr);
  assert.equal(
    (await cli(["list", "--project", "team-a"])).stdout,
    `${header}env-chat\tm\thttps://api.openai.com/v1\tkey from $OPENAI_API_KEY\tstored\n`,
  );
  assert.equal((await cli(["list"])).stdout, header, "other projects do not see it");
});

it("bad input fails with exit code 2 and a message naming what is wrong", async () => {
  const noModel = await cli(["add", "x", "--base-url", model.baseUrl]);
  assert.equal(noModel.code, 2);
  assert.match(noModel.stderr, /--model/);
  const badUrl = await cli(["add", "x", "--model", "m", "--base-url", "http://127.0.0.1:1"]);
  assert.equal(badUrl.code, 2);
  assert.match(badUrl.stderr, /base_url': must end in \/v1/);
  const missing = await cli(["remove", "never-added"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /Deployment 'never-added' was not found/);
  const unknown = await cli(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(
    unknown.stderr,
    /unknown command deployments frobnicate; the commands are agenthost deployments add\|list\|remove/,
  );
});
