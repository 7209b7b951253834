import assert from "node:assert/strict";
import { request as httpsRequest } from "node:https";
import { after, before, describe, it } from "node:test";
import type { Task } from "@a2a-js/sdk";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { AIProjectClient } from "@azure/ai-projects";
import { a2aClient, userText } from "../helpers/a2aClient.js";
import { deployFixture } from "../helpers/agents.js";
import { agentserverPackage } from "../helpers/agentserver.js";
import { projectOpenAI, trustingFetch } from "../helpers/openaiClient.js";
import { removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";

/*
 * A hosted agent written on packages/agentserver (the echo-agentserver fixture, in a real
 * sandbox) behind every endpoint protocol that reaches a container's /responses or
 * /invocations: the Responses API through the official `openai` client, invocations streamed
 * both ways, MCP through the MCP SDK's client and A2A through the A2A SDK's client.
 */

let server: TestServer;
let project: AIProjectClient;
const agent = "agentserver-protocols";

before(async () => {
  server = await startServer({ env: { AGENTHOST_WARM_POOL_SIZE: "0" } });
  project = sdk(server, server.adminKey);
  await deployFixture(project, agent, "echo-agentserver", {
    extraDirs: [await agentserverPackage()],
  });
  await project.agents.updateAgent(agent, {
    agentEndpoint: {
      protocol_configuration: { responses: {}, invocations: {}, mcp: {}, a2a: {} },
    },
  } as never);
});
after(async () => {
  await server?.stop();
  if (server) removeDir(server.dataDir);
});

/** A POST of `pieces` written one by one, 50 ms apart; the answer's chunks with their times. */
function invokeInPieces(pieces: string[]) {
  return new Promise<{ status: number; headers: Record<string, unknown>; chunks: string[] }>(
    (resolve, reject) => {
      const url = `${server.endpoint}/agents/${agent}/endpoint/protocols/invocations?api-version=v1`;
      const req = httpsRequest(
        url,
        {
          method: "POST",
          ca: server.caPem,
          headers: {
            authorization: `Bearer ${server.adminKey}`,
            "content-type": "text/plain",
          },
        },
        (res) => {
          const chunks: string[] = [];
          res.on("data", (d: Buffer) => chunks.push(d.toString()));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks }),
          );
        },
      );
      req.on("error", reject);
      let i = 0;
      const next = () => {
        if (i === pieces.length) return req.end();
        req.write(pieces[i++]);
        setTimeout(next, 50);
      };
      next();
    },
  );
}

describe("a hosted agent on the TypeScript agent server, through each protocol", () => {
  it("answers the Responses API, streamed, through the official openai client", async () => {
    const openai = projectOpenAI(project, server, agent);
    const plain = await openai.responses.create({ input: "hello" });
    assert.equal(plain.output_text, "echo: hello");
    let text = "";
    for await (const e of await openai.responses.create({ input: "slow 3", stream: true }))
      if (e.type === "response.output_text.delta") text += e.delta;
    assert.equal(text, "0 1 2 ");
  });

  it("echoes an invocation's bytes, streamed in and out, with its ids", async () => {
    const pieces = ["alpha ", "beta ", "gamma"];
    const answer = await invokeInPieces(pieces);
    assert.equal(answer.status, 200, answer.chunks.join(""));
    assert.equal(answer.chunks.join(""), pieces.join(""));
    assert.match(String(answer.headers["x-agent-invocation-id"]), /^[A-Za-z0-9_.-]{1,128}$/);
    assert.match(String(answer.headers["x-agent-session-id"]), /^[A-Za-z0-9_-]{8,128}$/);
    assert.match(String(answer.headers["content-type"]), /^text\/plain/);
  });

  it("is an MCP tool for the MCP SDK's client", async () => {
    const client = new Client({ name: "agentserver-protocols", version: "1.0.0" });
    const url = `${server.endpoint}/agents/${agent}/endpoint/protocols/mcp?api-version=v1`;
    await client.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { authorization: `Bearer ${server.adminKey}` } },
        fetch: trustingFetch(server.caPem),
      }),
    );
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(
        tools.map((t) => t.name),
        [agent],
      );
      const result = (await client.callTool({
        name: agent,
        arguments: { input: "over mcp" },
      })) as CallToolResult;
      assert.equal(result.isError, undefined, JSON.stringify(result));
      assert.deepEqual(result.content, [{ type: "text", text: "echo: over mcp" }]);
    } finally {
      await client.close();
    }
  });

  it("answers A2A messages through the A2A SDK's client, one context one session", async () => {
    const client = await a2aClient(server, agent, server.adminKey);
    const first = (await client.sendMessage(userText("remember teal"))) as Task;
    assert.ok(first.contextId, JSON.stringify(first));
    const second = (await client.sendMessage(userText("recall", first.contextId))) as Task;
    const text = second.artifacts
      .flatMap((a) => a.parts)
      .map((p) => (p.content?.$case === "text" ? p.content.value : ""))
      .join("");
    assert.equal(text, "echo: teal");
  });
});
