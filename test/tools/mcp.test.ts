import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { AppError } from "../../src/domain/errors.js";
import { McpTools, parseMcpTool, type McpToolConfig } from "../../src/tools/mcp.js";
import {
  startFloodServer,
  startMcpServer,
  startNonMcpServer,
  startSilentServer,
  type TestMcpServer,
  type TestServer,
} from "../helpers/mcpServer.js";

/*
 * The MCP tool client against real MCP servers (the MCP SDK's own server classes on
 * 127.0.0.1, Streamable HTTP and legacy HTTP+SSE) and against hostile ones: silent, flooding,
 * speaking no MCP, unreachable. Servers on 127.0.0.1 need allowPrivateNetworks; without it
 * (the default) such destinations are refused.
 */

const tool = (url: string, extra: Partial<McpToolConfig> = {}): McpToolConfig => ({
  type: "mcp",
  server_label: "calc",
  server_url: url,
  ...extra,
});

/** Waits until `check` holds (a server notices a closed socket a moment after the client). */
async function eventually(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail("the condition did not hold in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => assert.fail("expected a rejection"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof AppError, `an AppError, not ${String(err)}`);
  return err;
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("parseMcpTool", () => {
  const base = { type: "mcp", server_label: "docs_1", server_url: "https://mcp.example.com/mcp" };

  it("keeps the fields it knows, drops nulls and foreign fields", () => {
    const parsed = parseMcpTool(
      {
        ...base,
        headers: { Authorization: "Bearer k" },
        allowed_tools: null,
        require_approval: { never: { tool_names: ["add"] } },
        connector_id: null,
      },
      "tools[0]",
    );
    assert.deepEqual(parsed, {
      ...base,
      headers: { Authorization: "Bearer k" },
      require_approval: { never: { tool_names: ["add"] } },
    });
  });

  const bad: [string, unknown, string, string][] = [
    [
      "a non-http URL",
      { ...base, server_url: "file:///etc/passwd" },
      "tools[0].server_url",
      "invalid_parameter",
    ],
    [
      "a URL with credentials",
      { ...base, server_url: "https://u:p@x.example/mcp" },
      "tools[0].server_url",
      "invalid_parameter",
    ],
    ["no URL", { type: "mcp", server_label: "a" }, "tools[0].server_url", "missing_parameter"],
    [
      "a label with a space",
      { ...base, server_label: "my docs" },
      "tools[0].server_label",
      "invalid_parameter",
    ],
    [
      "a label of 65 characters",
      { ...base, server_label: "a".repeat(65) },
      "tools[0].server_label",
      "invalid_parameter",
    ],
    [
      "a header value that is a number",
      { ...base, headers: { "X-N": 1 } },
      "tools[0].headers.X-N",
      "invalid_parameter",
    ],
    [
      "a header value with CR LF",
      { ...base, headers: { "X-A": "a\r\nX-B: b" } },
      "tools[0].headers.X-A",
      "invalid_parameter",
    ],
    [
      "a header the transport sets",
      { ...base, headers: { "Mcp-Session-Id": "x" } },
      "tools[0].headers.Mcp-Session-Id",
      "invalid_parameter",
    ],
    [
      "allowed_tools of numbers",
      { ...base, allowed_tools: [1] },
      "tools[0].allowed_tools",
      "invalid_parameter",
    ],
    [
      "an unknown approval mode",
      { ...base, require_approval: "sometimes" },
      "tools[0].require_approval",
      "invalid_parameter",
    ],
  ];
  for (const [what, value, param, code] of bad)
    it(`refuses ${what}, naming ${param}`, () => {
      assert.throws(
        () => parseMcpTool(value, "tools[0]"),
        (err: unknown) => err instanceof AppError && err.code === code && err.param === param,
      );
    });
});

describe("needsApproval", () => {
  const mcp = new McpTools({ timeoutMs: 1000, maxOutputBytes: 1000 });
  const url = "http://127.0.0.1:1/mcp";

  it('is "always" when require_approval is absent', () => {
    assert.equal(mcp.needsApproval(tool(url), "add"), true);
  });
  it("follows always and never", () => {
    assert.equal(mcp.needsApproval(tool(url, { require_approval: "always" }), "add"), true);
    assert.equal(mcp.needsApproval(tool(url, { require_approval: "never" }), "add"), false);
  });
  it("follows per-tool lists; an unlisted tool needs approval; always wins over never", () => {
    const config = tool(url, {
      require_approval: {
        never: { tool_names: ["add", "echo"] },
        always: { tool_names: ["echo"] },
      },
    });
    assert.equal(mcp.needsApproval(config, "add"), false);
    assert.equal(mcp.needsApproval(config, "echo"), true);
    assert.equal(mcp.needsApproval(config, "fail"), true);
  });
});

describe("McpTools against a Streamable HTTP server", () => {
  let server: TestMcpServer;
  let mcp: McpTools;
  const logLines: string[] = [];

  before(async () => {
    server = await startMcpServer();
    mcp = new McpTools({
      timeoutMs: 3000,
      maxOutputBytes: 1000,
      allowPrivateNetworks: true,
      log: pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) }),
    });
  });
  after(async () => {
    await mcp.close();
    await server.close();
  });

  it("lists the server's tools with their schemas", async () => {
    const tools = await mcp.listTools(tool(server.url));
    assert.deepEqual(tools.map((t) => t.name).sort(), [
      "add",
      "big",
      "echo",
      "fail",
      "hang",
      "structured",
    ]);
    const add = tools.find((t) => t.name === "add")!;
    assert.equal(add.description, "Adds two numbers.");
    assert.deepEqual(Object.keys(add.input_schema.properties as object).sort(), ["a", "b"]);
    assert.equal(add.annotations?.readOnlyHint, true);
  });

  it("filters by allowed_tools: a list, tool_names, read_only", async () => {
    const names = async (allowed_tools: McpToolConfig["allowed_tools"]) =>
      (await mcp.listTools(tool(server.url, { allowed_tools }))).map((t) => t.name).sort();
    assert.deepEqual(await names(["echo", "add", "absent"]), ["add", "echo"]);
    assert.deepEqual(await names({ tool_names: ["fail"] }), ["fail"]);
    assert.deepEqual(await names({ read_only: true }), ["add"]);
  });

  it("reuses one connection and a briefly cached tool list", async () => {
    const sessions = server.sessions();
    const lists = server.methods.filter((m) => m === "tools/list").length;
    await mcp.listTools(tool(server.url));
    await mcp.listTools(tool(server.url, { allowed_tools: ["add"] }));
    assert.equal(server.sessions(), sessions, "no new session");
    assert.equal(server.methods.filter((m) => m === "tools/list").length, lists, "no new list");
  });

  it("calls a tool and answers its text", async () => {
    assert.deepEqual(await mcp.callTool(tool(server.url), "add", '{"a":2,"b":3}'), { output: "5" });
    assert.deepEqual(await mcp.callTool(tool(server.url), "echo", '{"text":"héllo"}'), {
      output: "héllo",
    });
    assert.deepEqual(server.calls.at(-2), { name: "add", arguments: { a: 2, b: 3 } });
  });

  it("answers structuredContent as JSON text", async () => {
    const result = await mcp.callTool(tool(server.url), "structured", "");
    assert.ok("output" in result);
    assert.deepEqual(JSON.parse(result.output), { total: 2, items: ["a", "b"] });
  });

  it("answers { error } when the tool reports isError", async () => {
    assert.deepEqual(await mcp.callTool(tool(server.url), "fail", "{}"), {
      error: "the tool failed on purpose",
    });
  });

  it("answers { error } for arguments that are not a JSON object, without calling", async () => {
    const calls = server.calls.length;
    for (const args of ["{not json", "[1,2]", "null", '"text"'])
      assert.ok("error" in (await mcp.callTool(tool(server.url), "add", args)), args);
    assert.equal(server.calls.length, calls);
  });

  it("answers { error } for arguments the tool refuses and for a tool the server lacks", async () => {
    assert.ok("error" in (await mcp.callTool(tool(server.url), "add", '{"a":"two","b":3}')));
    assert.ok("error" in (await mcp.callTool(tool(server.url), "nosuch", "{}")));
  });

  it("answers { error } for a tool allowed_tools leaves out, without calling", async () => {
    const calls = server.calls.length;
    const result = await mcp.callTool(
      tool(server.url, { allowed_tools: ["echo"] }),
      "add",
      '{"a":1,"b":1}',
    );
    assert.match((result as { error: string }).error, /not allowed/);
    assert.equal(server.calls.length, calls);
  });

  it("cuts a large output to maxOutputBytes and says so", async () => {
    const result = await mcp.callTool(tool(server.url), "big", '{"bytes":50000}');
    assert.ok("output" in result);
    assert.ok(
      Buffer.byteLength(result.output) <= 1000,
      `${Buffer.byteLength(result.output)} bytes`,
    );
    assert.match(result.output, /^x+\n\[truncated: 50000 bytes, limit 1000\]$/);
  });

  it("sends the configured headers on every request and never logs their values", async () => {
    const secret = "Bearer sk-very-secret-value";
    const config = tool(server.url, { headers: { Authorization: secret, "X-Team": "blue-team" } });
    const from = server.requests.length;
    await mcp.listTools(config);
    await mcp.callTool(config, "add", '{"a":1,"b":1}');
    const seen = server.requests.slice(from);
    assert.ok(seen.length >= 3, "initialize, list, call");
    for (const r of seen) {
      assert.equal(r.headers.authorization, secret, `${r.method} ${r.path}`);
      assert.equal(r.headers["x-team"], "blue-team");
    }
    assert.ok(logLines.length > 0, "the client logged");
    assert.ok(!logLines.join("").includes("very-secret"), "no header value in the log");
  });

  it("opens a second connection for other headers", async () => {
    const sessions = server.sessions();
    await mcp.listTools(tool(server.url, { headers: { "X-Team": "red-team" } }));
    assert.equal(server.sessions(), sessions + 1);
  });

  it("starts a new session when the server forgot the old one", async () => {
    await mcp.listTools(tool(server.url));
    await server.forgetSessions();
    const sessions = server.sessions();
    assert.deepEqual(await mcp.callTool(tool(server.url), "add", '{"a":1,"b":2}'), { output: "3" });
    assert.equal(server.sessions(), sessions + 1);
  });

  it("close() leaves no socket open", async () => {
    await mcp.listTools(tool(server.url));
    assert.ok(server.openConnections() > 0);
    await mcp.close();
    await eventually(() => server.openConnections() === 0);
    // Usable again afterwards, on a new connection.
    assert.deepEqual(await mcp.callTool(tool(server.url), "add", '{"a":4,"b":4}'), { output: "8" });
  });
});

describe("McpTools against a legacy HTTP+SSE server", () => {
  let server: TestMcpServer;
  const mcp = new McpTools({ timeoutMs: 3000, maxOutputBytes: 1000, allowPrivateNetworks: true });

  before(async () => {
    server = await startMcpServer({ legacySse: true });
  });
  after(async () => {
    await mcp.close();
    await server.close();
  });

  it("falls back to HTTP+SSE: lists, calls, sends the headers", async () => {
    const config = tool(server.url, { headers: { "X-Key": "legacy-secret" } });
    const tools = await mcp.listTools(config);
    assert.ok(tools.some((t) => t.name === "add"));
    assert.deepEqual(await mcp.callTool(config, "add", '{"a":20,"b":22}'), { output: "42" });
    assert.deepEqual(await mcp.callTool(config, "fail", "{}"), {
      error: "the tool failed on purpose",
    });
    const [first, ...rest] = server.requests;
    assert.equal(first!.method, "POST", "Streamable HTTP was tried first");
    assert.ok(rest.some((r) => r.method === "GET" && r.path === "/sse"));
    for (const r of server.requests) assert.equal(r.headers["x-key"], "legacy-secret");
  });

  it("close() leaves no socket open (the event stream included)", async () => {
    await mcp.listTools(tool(server.url));
    assert.ok(server.openConnections() > 0);
    await mcp.close();
    await eventually(() => server.openConnections() === 0);
  });
});

describe("McpTools against hostile and absent servers", () => {
  const servers: TestServer[] = [];
  const mcp = new McpTools({
    timeoutMs: 600,
    maxOutputBytes: 1000,
    maxAnswerBytes: 100_000,
    allowPrivateNetworks: true,
  });
  after(async () => {
    await mcp.close();
    for (const s of servers) await s.close();
  });
  const started = async <S extends TestServer>(s: Promise<S>): Promise<S> => {
    const server = await s;
    servers.push(server);
    return server;
  };

  it("a silent server: upstream_timeout within the deadline, nothing left open", async () => {
    const silent = await started(startSilentServer());
    const t0 = Date.now();
    const err = await rejection(mcp.listTools(tool(silent.url, { server_label: "quiet" })));
    const took = Date.now() - t0;
    assert.equal(err.code, "upstream_timeout");
    assert.match(err.message, /'quiet'/);
    assert.ok(took >= 550 && took < 1500, `${took} ms`);
    await eventually(() => silent.openConnections() === 0);
    const err2 = await rejection(mcp.callTool(tool(silent.url), "add", "{}"));
    assert.equal(err2.code, "upstream_timeout");
  });

  it("a tool that never answers: upstream_timeout, and its connection is closed", async () => {
    const server = await started(startMcpServer());
    const err = await rejection(mcp.callTool(tool(server.url), "hang", "{}"));
    assert.equal(err.code, "upstream_timeout");
    assert.equal(server.calls.at(-1)?.name, "hang");
    await eventually(() => server.openConnections() === 0);
    assert.deepEqual(await mcp.callTool(tool(server.url), "add", '{"a":1,"b":1}'), { output: "2" });
  });

  it("an abort ends a call at once with the signal's reason", async () => {
    const server = await started(startMcpServer());
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("caller gone")), 100);
    const t0 = Date.now();
    await assert.rejects(
      mcp.callTool(tool(server.url), "hang", "{}", controller.signal),
      /caller gone/,
    );
    assert.ok(Date.now() - t0 < 500);
  });

  for (const jsonResponse of [false, true])
    it(`an answer past maxAnswerBytes (${jsonResponse ? "JSON body" : "event stream"}): { error }, then a new connection`, async () => {
      const server = await started(startMcpServer({ jsonResponse }));
      const result = await mcp.callTool(tool(server.url), "big", '{"bytes":500000}');
      assert.deepEqual(result, { error: "The MCP server's answer was larger than 100000 bytes." });
      assert.deepEqual(await mcp.callTool(tool(server.url), "add", '{"a":1,"b":1}'), {
        output: "2",
      });
      assert.equal(server.sessions(), 2);
    });

  it("an endless event: upstream_error once maxAnswerBytes are read, nothing left open", async () => {
    const flood = await started(startFloodServer());
    const t0 = Date.now();
    const err = await rejection(mcp.listTools(tool(flood.url, { server_label: "flood" })));
    assert.equal(err.code, "upstream_error");
    assert.match(err.message, /'flood'.*larger than 100000 bytes/);
    assert.ok(Date.now() - t0 < 550, "before the deadline");
    await eventually(() => flood.openConnections() === 0);
  });

  it("a server that speaks neither protocol: upstream_error naming the label", async () => {
    const web = await started(startNonMcpServer());
    const err = await rejection(mcp.listTools(tool(web.url, { server_label: "website" })));
    assert.equal(err.code, "upstream_error");
    assert.equal(err.param, "tools");
    assert.match(
      err.message,
      /MCP server 'website' failed connecting: Streamable HTTP: .*HTTP\+SSE: /,
    );
    await eventually(() => web.openConnections() === 0);
  });

  it("a server that echoes the secret header in its error: the message leaves it out", async () => {
    const echo = await started(
      startNonMcpServer((req) => ({
        status: 401,
        type: "text/plain",
        body: `bad key ${req.headers["x-key"]}`,
      })),
    );
    const err = await rejection(
      mcp.listTools(tool(echo.url, { headers: { "X-Key": "echoed-secret" } })),
    );
    assert.equal(err.code, "upstream_error");
    assert.match(err.message, /bad key \[redacted\]/);
    assert.ok(!err.message.includes("echoed-secret"));
  });

  it("an unreachable server: upstream_error naming the label, fast", async () => {
    const url = `http://127.0.0.1:${await deadPort()}/mcp`;
    const t0 = Date.now();
    const err = await rejection(mcp.listTools(tool(url, { server_label: "gone" })));
    assert.equal(err.code, "upstream_error");
    assert.equal(err.param, "tools");
    assert.match(err.message, /MCP server 'gone'/);
    assert.ok(Date.now() - t0 < 550);
    const err2 = await rejection(mcp.callTool(tool(url, { server_label: "gone" }), "add", "{}"));
    assert.equal(err2.code, "upstream_error");
  });
});

describe("McpTools idle connections", () => {
  it("closes a connection left unused for idleMs", async () => {
    const server = await startMcpServer();
    const mcp = new McpTools({
      timeoutMs: 3000,
      maxOutputBytes: 1000,
      idleMs: 150,
      allowPrivateNetworks: true,
    });
    try {
      await mcp.listTools(tool(server.url));
      assert.ok(server.openConnections() > 0);
      await eventually(() => server.openConnections() === 0);
      assert.deepEqual(await mcp.callTool(tool(server.url), "add", '{"a":1,"b":1}'), {
        output: "2",
      });
      assert.equal(server.sessions(), 2, "a new session after the idle close");
    } finally {
      await mcp.close();
      await server.close();
    }
  });
});

describe("McpTools address policy (the default: public addresses only)", () => {
  let server: TestMcpServer;
  const mcp = new McpTools({ timeoutMs: 2000, maxOutputBytes: 1000 });
  before(async () => {
    server = await startMcpServer();
  });
  after(async () => {
    await mcp.close();
    await server.close();
  });

  const port = () => new URL(server.url).port;
  const refusals: [string, () => string, RegExp][] = [
    ["127.0.0.1", () => `http://127.0.0.1:${port()}/mcp`, /127\.0\.0\.1 is a loopback address/],
    ["::1", () => `http://[::1]:${port()}/mcp`, /::1 is a loopback address/],
    ["an IPv4-mapped 127.0.0.1", () => `http://[::ffff:127.0.0.1]:${port()}/mcp`, /loopback/],
    ["10.0.0.1", () => "http://10.0.0.1/mcp", /10\.0\.0\.1 is a private address/],
    ["169.254.169.254", () => "http://169.254.169.254/mcp", /is a link-local address/],
    ["0.0.0.0", () => `http://0.0.0.0:${port()}/mcp`, /0\.0\.0\.0 is an unspecified address/],
    [
      "a name resolving to 127.0.0.1 (localhost)",
      () => `http://localhost:${port()}/mcp`,
      /localhost resolves to a loopback address/,
    ],
  ];
  for (const [what, url, reason] of refusals)
    it(`refuses ${what}: upstream_error naming the label and why, no request made`, async () => {
      const from = server.requests.length;
      const secret = "Bearer sk-policy-secret";
      const config = tool(url(), { server_label: "inside", headers: { Authorization: secret } });
      const t0 = Date.now();
      for (const attempt of [mcp.listTools(config), mcp.callTool(config, "add", "{}")]) {
        const err = await rejection(attempt);
        assert.equal(err.code, "upstream_error");
        assert.equal(err.param, "tools");
        assert.match(err.message, /^MCP server 'inside' failed connecting: /);
        assert.match(err.message, reason);
        assert.match(err.message, /AGENTHOST_MCP_ALLOW_PRIVATE_NETWORKS/);
        assert.ok(!err.message.includes("policy-secret"), "no header value");
      }
      assert.ok(Date.now() - t0 < 1000, "refused at once, not timed out");
      assert.equal(server.requests.length, from, "the server saw nothing");
    });

  it("the same server is reached with allowPrivateNetworks", async () => {
    const open = new McpTools({
      timeoutMs: 2000,
      maxOutputBytes: 1000,
      allowPrivateNetworks: true,
    });
    try {
      assert.deepEqual(
        await open.callTool(tool(`http://localhost:${port()}/mcp`), "add", '{"a":1,"b":2}'),
        {
          output: "3",
        },
      );
    } finally {
      await open.close();
    }
  });
});
