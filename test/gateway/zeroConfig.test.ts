import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, it } from "node:test";
import { openaiClient } from "../helpers/openaiClient.js";
import { adminRequest, removeDir, startServer, type TestServer } from "../helpers/server.js";
import { startStandInModel, type StandInModel } from "../helpers/standInModel.js";

/*
 * Zero-config models: OPENAI_API_KEY / OPENAI_BASE_URL and an Ollama server found at start-up
 * are offered in every project. Both upstreams are TEST DOUBLES (test/helpers/standInModel.ts)
 * standing in for OpenAI and for Ollama.
 */

const openaiKey = "sk-zero-config-PLAINTEXT-0b7e";

let server: TestServer;
let openaiStandIn: StandInModel;
let ollamaStandIn: StandInModel;
let projectKey: string;

const admin = (method: string, route: string, body?: unknown) =>
  adminRequest(server, method, route, body);

async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address() as { port: number };
  await new Promise((r) => probe.close(r));
  return port;
}

before(async () => {
  openaiStandIn = await startStandInModel({ apiKey: openaiKey, models: ["gpt-a", "gpt-b"] });
  ollamaStandIn = await startStandInModel({ models: ["llama3.2:latest", "gpt-b"] });
  server = await startServer({
    env: {
      AGENTHOST_MODEL_DISCOVERY: "on",
      OPENAI_API_KEY: openaiKey,
      OPENAI_BASE_URL: openaiStandIn.baseUrl,
      AGENTHOST_OLLAMA_URL: ollamaStandIn.baseUrl,
      AGENTHOST_LOG_LEVEL: "info",
    },
  });
  const key = await admin("POST", "/keys", { project: "default" });
  projectKey = key.body.key as string;
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
  await openaiStandIn.close();
  await ollamaStandIn.close();
});

it("the banner lists the models found and where they come from", () => {
  const out = server.output();
  assert.ok(
    out.includes(`Models:            OPENAI_API_KEY at ${openaiStandIn.baseUrl}: gpt-a, gpt-b`),
    out,
  );
  assert.ok(
    out.includes(`Models:            Ollama at ${ollamaStandIn.baseUrl}: gpt-b, llama3.2:latest`),
    out,
  );
});

it("every project offers them without set-up; a name both offer goes to OpenAI", async () => {
  await admin("POST", "/projects", { name: "second" });
  const key = await admin("POST", "/keys", { project: "second" });
  const openai = openaiClient(server, key.body.key as string, { project: "second" });
  const ids: string[] = [];
  for await (const m of openai.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ["gpt-a", "gpt-b", "llama3.2:latest"]);

  const viaOpenai = await openai.chat.completions.create({
    model: "gpt-b",
    messages: [{ role: "user", content: "who?" }],
  });
  assert.equal(viaOpenai.choices[0]!.message.content, "You said: who?");
  const seen = openaiStandIn.requests.at(-1)!;
  assert.equal(seen.body.model, "gpt-b");
  assert.equal(seen.headers.authorization, `Bearer ${openaiKey}`, "the key comes from the env");

  const viaOllama = await openai.chat.completions.create({
    model: "llama3.2:latest",
    messages: [{ role: "user", content: "local" }],
    stream: true,
  });
  let text = "";
  for await (const c of viaOllama) text += c.choices[0]?.delta.content ?? "";
  assert.equal(text, "You said: local");
  assert.equal(ollamaStandIn.requests.at(-1)!.headers.authorization, undefined, "Ollama: no key");
});

it("a stored deployment of the same name wins; removing it brings the discovered one back", async () => {
  const put = await admin("PUT", "/projects/default/deployments/gpt-a", {
    model: "llama3.2:latest",
    base_url: ollamaStandIn.baseUrl,
  });
  assert.equal(put.status, 201);
  const openai = openaiClient(server, projectKey);
  const before = ollamaStandIn.requests.length;
  await openai.chat.completions.create({
    model: "gpt-a",
    messages: [{ role: "user", content: "x" }],
  });
  assert.equal(ollamaStandIn.requests.length, before + 1);
  assert.equal(ollamaStandIn.requests.at(-1)!.body.model, "llama3.2:latest");

  const listed = await admin("GET", "/projects/default/deployments");
  const sources = Object.fromEntries(
    (listed.body.data as { name: string; source: string }[]).map((d) => [d.name, d.source]),
  );
  assert.deepEqual(sources, {
    "gpt-a": "stored",
    "gpt-b": `OPENAI_API_KEY at ${openaiStandIn.baseUrl}`,
    "llama3.2:latest": `Ollama at ${ollamaStandIn.baseUrl}`,
  });
  const discovered = (
    listed.body.data as { name: string; api_key: unknown; api_key_env: unknown }[]
  ).find((d) => d.name === "gpt-b")!;
  assert.equal(discovered.api_key, null);
  assert.equal(discovered.api_key_env, "OPENAI_API_KEY");

  assert.equal((await admin("DELETE", "/projects/default/deployments/gpt-a")).status, 204);
  await openai.chat.completions.create({
    model: "gpt-a",
    messages: [{ role: "user", content: "y" }],
  });
  assert.equal(openaiStandIn.requests.at(-1)!.body.model, "gpt-a");

  const notStored = await admin("DELETE", "/projects/default/deployments/gpt-b");
  assert.equal(notStored.status, 404);
  assert.match((notStored.body.error as { message: string }).message, /discovered at start-up/);
});

it("the OpenAI key never appears in the server's output", () => {
  assert.ok(!server.output().includes(openaiKey));
});

it("with nothing found, the banner says how to add a model", async () => {
  const bare = await startServer({
    env: {
      AGENTHOST_MODEL_DISCOVERY: "on",
      OPENAI_API_KEY: "",
      AGENTHOST_OLLAMA_URL: `http://127.0.0.1:${await closedPort()}/v1`,
    },
  });
  try {
    assert.match(bare.output(), /Models: +none found \(no OPENAI_API_KEY, no Ollama\); add one:/);
    assert.match(bare.output(), /agenthost deployments add NAME --model MODEL --base-url URL/);
  } finally {
    await bare.stop();
    removeDir(bare.dataDir);
  }
});
