import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import type { APIError } from "openai";
import { openaiClient } from "../helpers/openaiClient.js";
import { startMcpServer, type TestMcpServer } from "../helpers/mcpServer.js";
import { httpsJson, removeDir, startServer, type TestServer } from "../helpers/server.js";
import { startStandInModel, type StandInModel } from "../helpers/standInModel.js";

/*
 * The running service's default address policy for `mcp` tools, through the stock `openai`
 * client: a request naming an MCP server on 127.0.0.1 is refused before any connection. The
 * model server is a TEST DOUBLE (test/helpers/standInModel.ts); the MCP server is real.
 */

let server: TestServer;
let model: StandInModel;
let mcp: TestMcpServer;

before(async () => {
  model = await startStandInModel();
  mcp = await startMcpServer();
  // The test helper allows private networks for the other tests; this one checks the default.
  server = await startServer({ env: { AGENTHOST_MCP_ALLOW_PRIVATE_NETWORKS: "off" } });
  const put = await httpsJson(
    server,
    "PUT",
    `${server.origin}/admin/projects/default/deployments/chat`,
    {
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "stand-in-model", base_url: model.baseUrl }),
    },
  );
  assert.equal(put.status, 201, JSON.stringify(put.body));
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
  await mcp?.close();
  await model?.close();
});

it("an mcp tool on 127.0.0.1 (or localhost) is refused by default: 502 naming the label, no request made", async () => {
  const openai = openaiClient(server, server.adminKey);
  const port = new URL(mcp.url).port;
  for (const host of ["127.0.0.1", "localhost"]) {
    const err = await openai.responses
      .create({
        model: "chat",
        input: "add 2 and 2",
        tools: [
          {
            type: "mcp",
            server_label: "calc",
            server_url: `http://${host}:${port}/mcp`,
            headers: { "X-Test-Token": "policy-t0ken" },
            require_approval: "never",
          },
        ],
      })
      .then(
        () => assert.fail("expected a refusal"),
        (e: APIError) => e,
      );
    assert.equal(err.status, 502, String(err));
    const error = err.error as { code: string; message: string; param: string };
    assert.equal(error.code, "upstream_error");
    assert.equal(error.param, "tools");
    assert.match(error.message, /MCP server 'calc'.* a loopback address/);
    assert.ok(!error.message.includes("policy-t0ken"));
  }
  assert.equal(mcp.requests.length, 0, "the MCP server saw nothing");
});
