import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { AIProjectClient } from "@azure/ai-projects";
import { ensureConsoleBuilt } from "../helpers/console.js";
import { openConsoleBrowser, signIn, type ConsoleBrowser } from "../helpers/browser.js";
import { deployFixture } from "../helpers/agents.js";
import { startMcpServer, type TestMcpServer } from "../helpers/mcpServer.js";
import {
  deployStandInModel,
  startStandInModel,
  type StandInModel,
} from "../helpers/standInModel.js";
import { removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";
import { projectOpenAI } from "../helpers/openaiClient.js";

/*
 * The console's playground in Chromium against the real service over HTTPS: a hosted fixture
 * agent in a real sandbox, and prompt agents whose model is a TEST DOUBLE (the stand-in model
 * server, test/helpers/standInModel.ts, with scripted streamed answers), with a real MCP server.
 */

let server: TestServer;
let model: StandInModel;
let mcp: TestMcpServer;
let client: AIProjectClient;
let ui: ConsoleBrowser;

before(async () => {
  ensureConsoleBuilt();
  model = await startStandInModel();
  mcp = await startMcpServer();
  server = await startServer();
  await deployStandInModel(server, model);
  client = sdk(server, server.adminKey);
  ui = await openConsoleBrowser(server);
  await signIn(ui.page, server.origin, server.adminKey);
});

after(async () => {
  await ui?.browser.close();
  await server?.stop();
  removeDir(server.dataDir);
  await model?.close();
  await mcp?.close();
});

const lastTurn = () => ui.page.getByTestId("turn").last();

describe("the playground", () => {
  it("streams a prompt agent's answer in pieces, with usage and the version that answered", async () => {
    const { page } = ui;
    await client.agents.createVersion("helper", { kind: "prompt", model: "chat" } as never);
    await client.agents.createVersion("helper", {
      kind: "prompt",
      model: "chat",
      instructions: "Be brief.",
    } as never);
    model.answer(() => ({
      chunks: ["Hel", "lo ", "from ", "the ", "model"],
      delayMs: 250,
      usage: { prompt_tokens: 9, completion_tokens: 5 },
    }));
    // From the agent's page, by its link.
    await page.goto(`${server.origin}/agents/helper`);
    await page.getByRole("link", { name: "Chat with helper in the playground" }).click();
    await page.getByRole("heading", { name: "Playground" }).waitFor();
    await page.getByText("No conversations with helper yet").waitFor();
    await page.getByLabel("Version").selectOption("1");
    await page.getByLabel("Message").fill("Hi there");
    await page.getByRole("button", { name: "Send" }).click();
    const answer = lastTurn().getByTestId("answer");
    // The text is read while it streams: some reading is a strict prefix of the whole.
    const seen = new Set<string>();
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const text = (await answer.count()) ? await answer.innerText() : "";
      if (text) seen.add(text);
      if (text === "Hello from the model") break;
      await page.waitForTimeout(40);
    }
    const partial = [...seen].filter((t) => t !== "Hello from the model");
    assert.ok(partial.length >= 1, `pieces seen: ${JSON.stringify([...seen])}`);
    assert.ok(partial.every((t) => "Hello from the model".startsWith(t)));
    await lastTurn().getByText("completed · version 1 · 9 in, 5 out, 14 tokens").waitFor();
    // The stand-in got version 1's definition (no instructions of version 2).
    assert.ok(
      !JSON.stringify(model.requests.at(-1)!.body.messages).includes("Be brief."),
      "version 1 answered",
    );
    // The conversation is listed, under the first message.
    const listed = page.getByRole("button", { name: "Hi there" });
    await listed.waitFor();
    // A second turn in the same conversation sees the first.
    model.answer(() => ({ text: "Again." }));
    await page.getByLabel("Message").fill("And again");
    await page.getByRole("button", { name: "Send" }).click();
    await lastTurn().getByText("Again.").waitFor();
    const messages = JSON.stringify(model.requests.at(-1)!.body.messages);
    assert.ok(messages.includes("Hi there") && messages.includes("Hello from the model"));
    // Opening it again shows its items from the Conversations API.
    await page.getByRole("button", { name: "New chat" }).click();
    await listed.click();
    await page.getByLabel("Earlier in this conversation").getByText("Again.").waitFor();
  });

  it("pages the conversation list 20 at a time, newest first", async () => {
    const { page } = ui;
    await client.agents.createVersion("chatty", { kind: "prompt", model: "chat" } as never);
    const openai = projectOpenAI(client, server);
    model.answer(() => ({ text: "ok" }));
    for (let i = 0; i < 21; i++) {
      const c = await openai.conversations.create({ metadata: { title: `topic ${i}` } });
      await openai.responses.create({ input: "hi", conversation: c.id }, {
        body: { agent: { name: "chatty", type: "agent_reference" } },
      } as never);
    }
    await page.goto(`${server.origin}/playground?agent=chatty`);
    const conversations = page.getByRole("complementary", { name: "Conversations" });
    await conversations.getByRole("button", { name: "topic 20" }).waitFor();
    assert.equal(await conversations.getByRole("listitem").count(), 20);
    assert.equal(await conversations.getByRole("button", { name: "topic 0" }).count(), 0);
    await conversations.getByRole("button", { name: "Older" }).click();
    await conversations.getByRole("button", { name: "topic 0" }).waitFor();
    assert.equal(await conversations.getByRole("listitem").count(), 1);
    assert.ok(await conversations.getByRole("button", { name: "Older" }).isDisabled());
    await conversations.getByRole("button", { name: "Newer" }).click();
    await conversations.getByRole("button", { name: "topic 20" }).waitFor();
  });

  it("shows a function call and sends the output the user types as function_call_output", async () => {
    const { page } = ui;
    await client.agents.createVersion("weather", {
      kind: "prompt",
      model: "chat",
      tools: [
        {
          type: "function",
          name: "get_weather",
          parameters: { type: "object", properties: { city: { type: "string" } } },
        },
      ],
    } as never);
    model.answer((request) => {
      const last = request.body.messages.at(-1) as { role: string; content: string };
      return last.role === "tool"
        ? { text: `In Paris it is ${last.content}.` }
        : { toolCalls: [{ id: "call_w1", name: "get_weather", arguments: '{"city":"Paris"}' }] };
    });
    await page.goto(`${server.origin}/playground?agent=weather`);
    await page.getByLabel("Message").fill("Weather in Paris?");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByText("Function call get_weather").waitFor();
    assert.match(await page.getByLabel("Arguments of get_weather").innerText(), /"city": "Paris"/);
    await page.getByLabel("Output of get_weather").fill("sunny");
    await ui.check("playground with a function call", "playground");
    await page.getByRole("button", { name: "Send output" }).click();
    await lastTurn().getByText("In Paris it is sunny.").waitFor();
    assert.equal(await page.getByRole("button", { name: "Send output" }).count(), 0);
    await page.getByText("Output sent.").waitFor();
    const tool = (model.requests.at(-1)!.body.messages as { role: string; content: string }[]).find(
      (m) => m.role === "tool",
    );
    assert.equal(tool?.content, "sunny");
  });

  it("asks for an MCP call's approval; Approve sends mcp_approval_response and the call runs", async () => {
    const { page } = ui;
    await client.agents.createVersion("calc", {
      kind: "prompt",
      model: "chat",
      tools: [
        {
          type: "mcp",
          server_label: "calc",
          server_url: mcp.url,
          allowed_tools: ["echo"],
          require_approval: "always",
        },
      ],
    } as never);
    model.answer((request) =>
      (request.body.messages.at(-1) as { role: string }).role === "tool"
        ? { text: "Echoed it." }
        : { toolCalls: [{ id: "c9", name: "mcp__calc__echo", arguments: '{"text":"hi"}' }] },
    );
    await page.goto(`${server.origin}/playground?agent=calc`);
    await page.getByLabel("Message").fill("Echo hi");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByText("Approval asked: echo on calc").waitFor();
    const before = mcp.calls.length;
    await page.getByRole("button", { name: "Approve" }).click();
    await lastTurn().getByText("Echoed it.").waitFor();
    assert.deepEqual(mcp.calls.slice(before), [{ name: "echo", arguments: { text: "hi" } }]);
    await lastTurn().getByText("MCP call echo on calc").waitFor();
    assert.equal(await page.getByRole("button", { name: "Approve" }).count(), 0, "answered once");
    // Denied, nothing runs and the model is told.
    model.answer((request) => {
      const last = request.body.messages.at(-1) as { role: string; content: string };
      return last.role === "tool"
        ? { text: `Told: ${last.content}` }
        : { toolCalls: [{ id: "c10", name: "mcp__calc__echo", arguments: '{"text":"no"}' }] };
    });
    await page.getByLabel("Message").fill("Echo no");
    await page.getByRole("button", { name: "Send" }).click();
    await lastTurn().getByText("Approval asked: echo on calc").waitFor();
    await lastTurn().getByRole("button", { name: "Deny" }).click();
    await lastTurn().getByText("Told: The user denied this tool call.").waitFor();
    assert.equal(mcp.calls.length, before + 1, "a denied call does not run");
  });

  it("chats with a hosted agent running in a sandbox, in one session", async () => {
    const { page } = ui;
    await deployFixture(client, "echo-hosted", "echo-python");
    await page.goto(`${server.origin}/playground?agent=echo-hosted`);
    await page.getByText("A hosted agent keeps its state in its session").waitFor();
    await page.getByLabel("Message").fill("hello sandbox");
    await page.getByRole("button", { name: "Send" }).click();
    await lastTurn().getByText("echo: hello sandbox").waitFor({ timeout: 30_000 });
    await lastTurn().getByText("version 1").waitFor();
    const sessionText = await page.getByText(/this chat stays in one session/).innerText();
    const sessionId = /\(([^)]+)\)/.exec(sessionText)?.[1];
    assert.ok(sessionId, sessionText);
    await page.getByLabel("Message").fill("second");
    await page.getByRole("button", { name: "Send" }).click();
    await lastTurn().getByText("echo: second").waitFor({ timeout: 30_000 });
    // Both turns went to one session.
    const ids: string[] = [];
    for await (const s of client.agents.listSessions("echo-hosted")) ids.push(s.agent_session_id);
    assert.deepEqual(ids, [sessionId]);
    await ui.check("playground with a hosted agent");
  });
});
