import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, it } from "node:test";
import { parseConfig } from "../../src/config/config.js";
import { AppError } from "../../src/domain/errors.js";
import { DeploymentService } from "../../src/gateway/deploymentService.js";
import { SecretBox } from "../../src/gateway/secretBox.js";
import { openStore } from "../../src/service.js";
import { openaiClient } from "../helpers/openaiClient.js";
import {
  adminRequest,
  httpsJson,
  removeDir,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";
import { startStandInModel, type StandInModel } from "../helpers/standInModel.js";

/*
 * Deployment management on the real server over HTTPS: admin CRUD, bad input, and the API key
 * (never echoed, encrypted at rest, read from the environment when named by a variable). The
 * model server is a TEST DOUBLE (test/helpers/standInModel.ts).
 */

const secret = "sk-test-PLAINTEXT-deadbeef-5f2c9a";
const envSecret = "sk-from-env-PLAINTEXT-77aa";

let server: TestServer;
let model: StandInModel;
let envModel: StandInModel;

const admin = (method: string, route: string, body?: unknown, key = server.adminKey) =>
  adminRequest(server, method, route, body, key);

/** Every answer body seen by this test, to check none carries a key. */
const answers: string[] = [];
const seen = async (p: ReturnType<typeof admin>) => {
  const r = await p;
  answers.push(JSON.stringify(r.body));
  return r;
};

before(async () => {
  model = await startStandInModel({ apiKey: secret });
  envModel = await startStandInModel({ apiKey: envSecret, models: ["env-model"] });
  server = await startServer({
    env: { AGENTHOST_LOG_LEVEL: "debug", TEST_UPSTREAM_API_KEY: envSecret },
  });
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
  await model.close();
  await envModel.close();
});

it("PUT creates (201) then replaces (200); GET, list and DELETE; answers show only that a key is set", async () => {
  const created = await seen(
    admin("PUT", "/projects/default/deployments/gpt", {
      model: "stand-in-model",
      base_url: model.baseUrl,
      api_key: secret,
    }),
  );
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(
    { ...created.body, created_at: 0, updated_at: 0 },
    {
      object: "deployment",
      name: "gpt",
      model: "stand-in-model",
      base_url: model.baseUrl,
      api_key: "set",
      api_key_env: null,
      source: "stored",
      created_at: 0,
      updated_at: 0,
    },
  );
  const replaced = await seen(
    admin("PUT", "/projects/default/deployments/gpt", {
      model: "stand-in-model",
      base_url: `${model.baseUrl}/`,
      api_key: secret,
    }),
  );
  assert.equal(replaced.status, 200);
  assert.equal(replaced.body.base_url, model.baseUrl, "a trailing slash is dropped");
  assert.equal(replaced.body.created_at, created.body.created_at);

  const local = await seen(
    admin("PUT", "/projects/default/deployments/llama3.2:latest", {
      model: "llama3.2:latest",
      base_url: "http://127.0.0.1:11434/v1",
    }),
  );
  assert.equal(local.status, 201);
  assert.equal(local.body.api_key, null);

  const one = await seen(admin("GET", "/projects/default/deployments/gpt"));
  assert.equal(one.status, 200);
  assert.equal(one.body.api_key, "set");
  const list = await seen(admin("GET", "/projects/default/deployments"));
  assert.deepEqual(
    (list.body.data as { name: string }[]).map((d) => d.name),
    ["gpt", "llama3.2:latest"],
  );

  assert.equal(
    (await admin("DELETE", "/projects/default/deployments/llama3.2:latest")).status,
    204,
  );
  const gone = await seen(admin("DELETE", "/projects/default/deployments/llama3.2:latest"));
  assert.equal(gone.status, 404);
  assert.equal((await admin("GET", "/projects/default/deployments/llama3.2:latest")).status, 404);
});

it("the stored key is what the upstream receives, and it is never echoed", async () => {
  const key = await admin("POST", "/keys", { project: "default" });
  const openai = openaiClient(server, key.body.key as string);
  const done = await openai.chat.completions.create({
    model: "gpt",
    messages: [{ role: "user", content: "ping" }],
  });
  assert.equal(done.choices[0]!.message.content, "You said: ping");
  assert.equal(model.requests.at(-1)!.headers.authorization, `Bearer ${secret}`);
  answers.push(JSON.stringify(done));
});

it("a key named by api_key_env is read from the service's environment at call time", async () => {
  const put = await seen(
    admin("PUT", "/projects/default/deployments/from-env", {
      model: "env-model",
      base_url: envModel.baseUrl,
      api_key_env: "TEST_UPSTREAM_API_KEY",
    }),
  );
  assert.equal(put.status, 201);
  assert.equal(put.body.api_key, null);
  assert.equal(put.body.api_key_env, "TEST_UPSTREAM_API_KEY");
  const key = await admin("POST", "/keys", { project: "default" });
  const openai = openaiClient(server, key.body.key as string);
  const done = await openai.chat.completions.create({
    model: "from-env",
    messages: [{ role: "user", content: "env" }],
  });
  assert.equal(done.choices[0]!.message.content, "You said: env");
  assert.equal(envModel.requests.at(-1)!.headers.authorization, `Bearer ${envSecret}`);

  // A variable the service does not have: a 502 that names the variable, not a value.
  await admin("PUT", "/projects/default/deployments/unset-env", {
    model: "env-model",
    base_url: envModel.baseUrl,
    api_key_env: "NOT_SET_ANYWHERE_42_API_KEY",
  });
  const err = await openai.chat.completions
    .create({ model: "unset-env", messages: [{ role: "user", content: "x" }] })
    .then(
      () => assert.fail("expected 502"),
      (e: { status: number; message: string }) => e,
    );
  assert.equal(err.status, 502);
  assert.match(err.message, /NOT_SET_ANYWHERE_42_API_KEY is not set/);
});

it("api_key_env may name variables ending in _API_KEY or _API_TOKEN, no other secret", async () => {
  for (const name of ["SOME_API_KEY", "SOME_API_TOKEN"]) {
    const r = await admin("PUT", `/projects/default/deployments/var-${name.toLowerCase()}`, {
      model: "m",
      base_url: "http://127.0.0.1:11434/v1",
      api_key_env: name,
    });
    assert.equal(r.status, 201, `${name}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.api_key_env, name);
  }
  for (const name of ["PATH", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"]) {
    const refused = await admin("PUT", "/projects/default/deployments/var-other", {
      model: "m",
      base_url: "http://127.0.0.1:11434/v1",
      api_key_env: name,
    });
    assert.equal(refused.status, 400, name);
    const error = refused.body.error as { param: string; message: string };
    assert.equal(error.param, "api_key_env");
    assert.match(error.message, /ending in _API_KEY or _API_TOKEN/);
  }
});

it("a stored deployment naming another variable (stored before the rule) is not read", async () => {
  const dataDir = tempDir();
  const store = await openStore(parseConfig({ dataDir }));
  try {
    const now = Date.now();
    await store.deployments.put({
      project: "default",
      name: "old",
      model: "m",
      baseUrl: "http://127.0.0.1:11434/v1",
      apiKeyCiphertext: null,
      apiKeyEnv: "PATH",
      createdAt: now,
      updatedAt: now,
    });
    const deployments = new DeploymentService({
      deployments: store.deployments,
      projects: store.projects,
      secrets: SecretBox.open(dataDir),
      discovered: [],
      env: { PATH: "/usr/bin" },
      clock: () => now,
    });
    await assert.rejects(deployments.resolve("default", "old"), (err: unknown) => {
      assert.ok(err instanceof AppError);
      assert.equal(err.code, "upstream_error");
      assert.match(err.message, /PATH is not one a deployment may name/);
      assert.ok(!err.message.includes("/usr/bin"));
      return true;
    });
  } finally {
    await store.close();
    removeDir(dataDir);
  }
});

it("an upstream's refusal is a 502 carrying its status and message", async () => {
  await admin("PUT", "/projects/default/deployments/wrong-key", {
    model: "stand-in-model",
    base_url: model.baseUrl,
    api_key: "sk-wrong-key-000",
  });
  const key = await admin("POST", "/keys", { project: "default" });
  const r = await httpsJson(server, "POST", `${server.endpoint}/openai/v1/chat/completions`, {
    headers: { authorization: `Bearer ${key.body.key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "wrong-key", messages: [{ role: "user", content: "x" }] }),
  });
  assert.equal(r.status, 502);
  const error = r.body.error as { code: string; message: string };
  assert.equal(error.code, "upstream_error");
  assert.match(error.message, /answered 401: Incorrect API key provided/);
  answers.push(JSON.stringify(r.body));
});

it("bad input is a 400 naming the field", async () => {
  const put = (name: string, body: unknown) =>
    admin("PUT", `/projects/default/deployments/${encodeURIComponent(name)}`, body);
  const good = { model: "m", base_url: "http://127.0.0.1:11434/v1" };
  const cases: [string, unknown, string, string][] = [
    ["-bad", good, "name", "invalid_parameter"],
    ["a".repeat(65), good, "name", "invalid_parameter"],
    ["ok", { base_url: good.base_url }, "model", "missing_parameter"],
    ["ok", { ...good, model: "  " }, "model", "missing_parameter"],
    ["ok", { ...good, model: 5 }, "model", "invalid_parameter"],
    ["ok", { model: "m" }, "base_url", "missing_parameter"],
    ["ok", { ...good, base_url: "not a url" }, "base_url", "invalid_parameter"],
    ["ok", { ...good, base_url: "ftp://h/v1" }, "base_url", "invalid_parameter"],
    ["ok", { ...good, base_url: "http://127.0.0.1:11434" }, "base_url", "invalid_parameter"],
    ["ok", { ...good, base_url: "https://u:p@h/v1" }, "base_url", "invalid_parameter"],
    ["ok", { ...good, base_url: "https://h/v1?x=1" }, "base_url", "invalid_parameter"],
    ["ok", { ...good, api_key: "k", api_key_env: "K" }, "api_key", "invalid_parameter"],
    ["ok", { ...good, api_key: "has space" }, "api_key", "invalid_parameter"],
    ["ok", { ...good, api_key: "" }, "api_key", "invalid_parameter"],
    ["ok", { ...good, api_key_env: "1BAD" }, "api_key_env", "invalid_parameter"],
    ["ok", { ...good, api_key_env: "AGENTHOST_ADMIN_KEY" }, "api_key_env", "invalid_parameter"],
    ["ok", { ...good, api_key_env: "AWS_SECRET_ACCESS" }, "api_key_env", "invalid_parameter"],
    ["ok", { ...good, api_key_env: "DATABASE_URL" }, "api_key_env", "invalid_parameter"],
    ["ok", { ...good, api_key_env: "HOME" }, "api_key_env", "invalid_parameter"],
    ["ok", { ...good, api_key_env: "MY_KEYS" }, "api_key_env", "invalid_parameter"],
    ["ok", { ...good, api_key_env: "openai_api_key" }, "api_key_env", "invalid_parameter"],
  ];
  for (const [name, body, param, code] of cases) {
    const r = await put(name, body);
    const error = r.body.error as { code: string; param: string; message: string };
    assert.equal(r.status, 400, `${name} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    assert.equal(error.param, param, `${name} ${JSON.stringify(body)}: ${error.message}`);
    assert.equal(error.code, code, `${name} ${JSON.stringify(body)}: ${error.message}`);
  }
  const unknownField = await put("ok", { ...good, apikey: "typo" });
  assert.equal(unknownField.status, 400);
  assert.equal((await put("ok", "[]")).status, 400);
  const noProject = await admin("PUT", "/projects/nope/deployments/ok", good);
  assert.equal(noProject.status, 404);
  assert.equal((noProject.body.error as { param: string }).param, "project");
  // Nothing was stored by any of them.
  const list = await admin("GET", "/projects/default/deployments");
  assert.ok(!(list.body.data as { name: string }[]).some((d) => d.name === "ok"));
});

it("only admin keys manage deployments", async () => {
  const key = await admin("POST", "/keys", { project: "default" });
  const r = await admin("GET", "/projects/default/deployments", undefined, key.body.key as string);
  assert.equal(r.status, 403);
});

it("the key appears in no answer, no line of the server's output and no byte of the data files", async () => {
  assert.ok(answers.length >= 8);
  for (const body of answers) {
    assert.ok(!body.includes(secret), body);
    assert.ok(!body.includes(envSecret), body);
  }
  const output = server.output();
  assert.ok(output.length > 0);
  assert.ok(!output.includes(secret), "server output has the key");
  assert.ok(!output.includes(envSecret), "server output has the env key");
  // The database (and its WAL) hold the key only as ciphertext.
  const files = readdirSync(server.dataDir)
    .map((f) => path.join(server.dataDir, f))
    .filter((f) => statSync(f).isFile());
  assert.ok(files.some((f) => f.endsWith("agenthost.db")));
  let scanned = 0;
  for (const file of files) {
    const bytes = readFileSync(file);
    scanned += bytes.length;
    assert.equal(bytes.indexOf(secret), -1, `${file} holds the key`);
    assert.equal(bytes.indexOf(envSecret), -1, `${file} holds the env key`);
  }
  assert.ok(scanned > 4096);
  const keyFile = statSync(path.join(server.dataDir, "secret.key"));
  assert.equal(keyFile.mode & 0o777, 0o600);
  assert.equal(keyFile.size, 32);
});
