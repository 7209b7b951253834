import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, it } from "node:test";
import { promisify } from "node:util";
import type { AIProjectClient, ModelDeployment } from "@azure/ai-projects";
import { APIError } from "openai";
import { openaiClient } from "../helpers/openaiClient.js";
import {
  expectRestError,
  httpsJson,
  removeDir,
  repoRoot,
  sdk,
  startServer,
  tempDir,
  type TestServer,
  adminRequest,
} from "../helpers/server.js";
import { startStandInModel, type StandInModel } from "../helpers/standInModel.js";

/*
 * Deployments through the official clients: `project.deployments.list()/get()` and the stock
 * `openai` client's chat completions on `{project}/openai/v1`, streamed and not. The model
 * server behind the deployments is a TEST DOUBLE (test/helpers/standInModel.ts): no real
 * model server runs here.
 */

let server: TestServer;
let model: StandInModel;
let client: AIProjectClient;
let projectKey: string;

const admin = (method: string, route: string, body?: unknown) =>
  adminRequest(server, method, route, body);

before(async () => {
  model = await startStandInModel({ apiKey: "sk-stand-in-0123456789" });
  server = await startServer();
  client = sdk(server, server.adminKey);
  for (const [name, upstreamModel] of [
    ["chat", "stand-in-model"],
    ["other", "stand-in-other"],
  ] as const) {
    const put = await admin("PUT", `/projects/default/deployments/${name}`, {
      model: upstreamModel,
      base_url: model.baseUrl,
      api_key: "sk-stand-in-0123456789",
    });
    assert.equal(put.status, 201, JSON.stringify(put.body));
  }
  const key = await admin("POST", "/keys", { project: "default", name: "app" });
  projectKey = key.body.key as string;
  assert.match(projectKey, /^ahk_/);
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
  await model.close();
});

it("deployments.list() pages every deployment as ModelDeployment; get(name) reads one", async () => {
  const listed: ModelDeployment[] = [];
  for await (const d of client.deployments.list()) listed.push(d as ModelDeployment);
  assert.deepEqual(
    listed.map((d) => [d.type, d.name, d.modelName]),
    [
      ["ModelDeployment", "chat", "stand-in-model"],
      ["ModelDeployment", "other", "stand-in-other"],
    ],
  );
  const one = (await client.deployments.get("chat")) as ModelDeployment;
  assert.equal(one.type, "ModelDeployment");
  assert.equal(one.name, "chat");
  assert.equal(one.modelName, "stand-in-model");
  assert.equal(one.modelPublisher, new URL(model.baseUrl).host);
  assert.deepEqual(one.capabilities, { chat_completion: "true" });
  assert.equal(typeof one.sku.name, "string");
  const filtered: string[] = [];
  for await (const d of client.deployments.list({ modelName: "stand-in-other" }))
    filtered.push(d.name);
  assert.deepEqual(filtered, ["other"]);
  const missing = await expectRestError(client.deployments.get("missing"), 404, "not_found");
  assert.match(missing.message, /Deployment 'missing' was not found/);
  // The Foundry routes keep their api-version rule.
  const bare = await httpsJson(server, "GET", `${server.endpoint}/deployments`, {
    headers: { authorization: `Bearer ${projectKey}` },
  });
  assert.equal(bare.status, 400);
});

it("a project key's openai client lists the deployments as models", async () => {
  const openai = openaiClient(server, projectKey);
  const ids: string[] = [];
  for await (const m of openai.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ["chat", "other"]);
});

it("chat.completions.create without stream: one accumulated ChatCompletion with usage", async () => {
  model.answer(() => ({
    text: "Hello from the stand-in",
    usage: { prompt_tokens: 7, completion_tokens: 4 },
  }));
  const openai = openaiClient(server, projectKey);
  const done = await openai.chat.completions.create({
    model: "chat",
    messages: [{ role: "user", content: "hi" }],
    temperature: 0.3,
  });
  assert.equal(done.object, "chat.completion");
  assert.equal(done.choices[0]!.message.role, "assistant");
  assert.equal(done.choices[0]!.message.content, "Hello from the stand-in");
  assert.equal(done.choices[0]!.finish_reason, "stop");
  assert.deepEqual(done.usage, { prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 });
  // What the upstream saw: the deployment's model, always streamed with usage, the key.
  const seen = model.requests.at(-1)!;
  assert.equal(seen.body.model, "stand-in-model");
  assert.equal(seen.body.stream, true);
  assert.deepEqual(seen.body.stream_options, { include_usage: true });
  assert.equal(seen.body.temperature, 0.3);
  assert.equal(seen.headers.authorization, "Bearer sk-stand-in-0123456789");
});

it("chat.completions.create with stream: chunks arrive as the upstream sends them", async () => {
  model.answer(() => ({ chunks: ["one ", "two ", "three ", "four"], delayMs: 250 }));
  const openai = openaiClient(server, projectKey);
  const start = Date.now();
  const stream = await openai.chat.completions.create({
    model: "chat",
    messages: [{ role: "user", content: "count" }],
    stream: true,
  });
  const arrivals: { at: number; text: string }[] = [];
  let usageChunks = 0;
  for await (const chunk of stream) {
    if (chunk.usage) usageChunks++;
    const text = chunk.choices[0]?.delta.content;
    if (text) arrivals.push({ at: Date.now() - start, text });
  }
  assert.equal(arrivals.map((a) => a.text).join(""), "one two three four");
  // Not buffered: the first word arrived long before the last (four waits of 250 ms between).
  assert.ok(arrivals.at(-1)!.at - arrivals[0]!.at >= 500, `arrivals ${JSON.stringify(arrivals)}`);
  assert.equal(usageChunks, 0, "no usage chunk unless stream_options.include_usage is asked");

  const withUsage = await openai.chat.completions.create({
    model: "chat",
    messages: [{ role: "user", content: "count" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let usage;
  for await (const chunk of withUsage) usage = chunk.usage ?? usage;
  assert.ok(usage && usage.total_tokens > 0);
});

it("tool calls stream through and accumulate into message.tool_calls", async () => {
  model.answer(() => ({
    toolCalls: [{ id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' }],
  }));
  const openai = openaiClient(server, projectKey);
  const tools = [
    {
      type: "function" as const,
      function: { name: "get_weather", parameters: { type: "object", properties: {} } },
    },
  ];
  const done = await openai.chat.completions.create({
    model: "chat",
    messages: [{ role: "user", content: "weather?" }],
    tools,
  });
  assert.equal(done.choices[0]!.finish_reason, "tool_calls");
  assert.deepEqual(done.choices[0]!.message.tool_calls, [
    {
      id: "call_1",
      type: "function",
      function: { name: "get_weather", arguments: '{"city":"Paris"}' },
    },
  ]);
  assert.deepEqual(model.requests.at(-1)!.body.tools, tools);
});

it("an unknown model is 404 naming `model`; a bad body is 400 naming the field", async () => {
  const openai = openaiClient(server, projectKey);
  const unknown = await openai.chat.completions
    .create({ model: "nope", messages: [{ role: "user", content: "x" }] })
    .then(
      () => assert.fail("expected 404"),
      (e: unknown) => e,
    );
  assert.ok(unknown instanceof APIError);
  assert.equal(unknown.status, 404);
  assert.equal((unknown.error as { param?: string }).param, "model");

  const noMessages = await httpsJson(
    server,
    "POST",
    `${server.endpoint}/openai/v1/chat/completions`,
    {
      headers: { authorization: `Bearer ${projectKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "chat" }),
    },
  );
  assert.equal(noMessages.status, 400);
  assert.equal((noMessages.body.error as { param: string }).param, "messages");
});

it("a key of another project cannot use this project's deployments", async () => {
  await admin("POST", "/projects", { name: "elsewhere" });
  const key = await admin("POST", "/keys", { project: "elsewhere" });
  const openai = openaiClient(server, key.body.key as string);
  const err = await openai.chat.completions
    .create({ model: "chat", messages: [{ role: "user", content: "x" }] })
    .then(
      () => assert.fail("expected 403"),
      (e: unknown) => e,
    );
  assert.equal((err as APIError).status, 403);
  const own = openaiClient(server, key.body.key as string, { project: "elsewhere" });
  const ids: string[] = [];
  for await (const m of own.models.list()) ids.push(m.id);
  assert.deepEqual(ids, [], "deployments belong to their project");
});

it("a stock openai client in its own process, trusting the CA only via NODE_EXTRA_CA_CERTS, streams", async () => {
  model.answer(() => ({ text: "streamed across processes" }));
  const script = path.join(tempDir(), "client.mjs");
  writeFileSync(
    script,
    `import OpenAI from "${path.join(repoRoot, "node_modules/openai/index.mjs")}";
     const openai = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.KEY, maxRetries: 0 });
     const stream = await openai.chat.completions.create({ model: "chat", messages: [{ role: "user", content: "hi" }], stream: true });
     let text = "";
     for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
     console.log(text);`,
  );
  const { stdout } = await promisify(execFile)(process.execPath, [script], {
    env: {
      PATH: process.env.PATH,
      NODE_EXTRA_CA_CERTS: path.join(server.dataDir, "tls/ca.pem"),
      BASE_URL: `${server.endpoint}/openai/v1`,
      KEY: projectKey,
    },
  });
  assert.equal(stdout.trim(), "streamed across processes");
});
