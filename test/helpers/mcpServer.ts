import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

/*
 * A real MCP server (the MCP SDK's McpServer) on 127.0.0.1 and a free port, speaking Streamable
 * HTTP at `/mcp` or, as a legacy server, only the HTTP+SSE transport (`GET /sse`, `POST
 * /messages`). It records every HTTP request (method, path, headers) and every tool call.
 * Beside it: a server that accepts connections and never answers, and one that speaks no MCP.
 */

export interface RecordedHttpRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
}

export interface RecordedCall {
  name: string;
  arguments: Record<string, unknown>;
}

export interface TestServer {
  /** The URL to configure as `server_url`. */
  url: string;
  /** Every HTTP request, in order of arrival. */
  requests: RecordedHttpRequest[];
  /** TCP connections open right now. */
  openConnections: () => number;
  close(): Promise<void>;
}

export interface TestMcpServer extends TestServer {
  /** Every tool call, in order of arrival. */
  calls: RecordedCall[];
  /** The JSON-RPC method of every message posted, in order of arrival. */
  methods: string[];
  /** MCP sessions opened so far (one per client connection). */
  sessions: () => number;
  /** Ends every session, as a restarted server would have (their ids then get 404). */
  forgetSessions(): Promise<void>;
}

const text = (value: string) => ({ content: [{ type: "text" as const, text: value }] });

/** One McpServer with the test tools; a new one per session (an McpServer has one transport). */
function buildServer(calls: RecordedCall[]): McpServer {
  const server = new McpServer({ name: "test-mcp", version: "1.0.0" });
  const record = (name: string, args: Record<string, unknown>) =>
    calls.push({ name, arguments: args });
  server.registerTool(
    "add",
    {
      description: "Adds two numbers.",
      inputSchema: { a: z.number(), b: z.number() },
      annotations: { readOnlyHint: true },
    },
    (args) => {
      record("add", args);
      return text(String(args.a + args.b));
    },
  );
  server.registerTool(
    "echo",
    { description: "Echoes its text.", inputSchema: { text: z.string() } },
    (args) => {
      record("echo", args);
      return text(args.text);
    },
  );
  server.registerTool("fail", { description: "Always fails." }, () => {
    record("fail", {});
    return { ...text("the tool failed on purpose"), isError: true };
  });
  server.registerTool(
    "big",
    { description: "Answers `bytes` bytes of text.", inputSchema: { bytes: z.number().int() } },
    (args) => {
      record("big", args);
      return text("x".repeat(args.bytes));
    },
  );
  server.registerTool(
    "structured",
    {
      description: "Answers structured content only.",
      outputSchema: { total: z.number(), items: z.array(z.string()) },
    },
    () => {
      record("structured", {});
      return { content: [], structuredContent: { total: 2, items: ["a", "b"] } };
    },
  );
  server.registerTool(
    "hang",
    { description: "Never answers." },
    () =>
      new Promise<never>(() => {
        record("hang", {});
      }),
  );
  return server;
}

async function readBody(req: http.IncomingMessage, methods: string[]): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks).toString("utf8");
  const body = raw ? (JSON.parse(raw) as unknown) : undefined;
  for (const m of Array.isArray(body) ? body : [body])
    if (typeof (m as { method?: unknown })?.method === "string")
      methods.push((m as { method: string }).method);
  return body;
}

/** Listens on 127.0.0.1:0, tracking sockets so close() never waits on a client. */
async function listen(
  handler: http.RequestListener,
  requests: RecordedHttpRequest[],
  path: string,
  onClose: () => Promise<void> = async () => {},
): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers });
    handler(req, res);
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    requests,
    openConnections: () => sockets.size,
    async close() {
      await onClose();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A Streamable HTTP MCP server (stateful: one session per client; answers as event streams,
 * or with `jsonResponse` as JSON bodies), or with `legacySse` an HTTP+SSE-only one.
 */
export async function startMcpServer(
  options: { legacySse?: boolean; jsonResponse?: boolean } = {},
): Promise<TestMcpServer> {
  const calls: RecordedCall[] = [];
  const methods: string[] = [];
  const requests: RecordedHttpRequest[] = [];
  const streamable = new Map<string, StreamableHTTPServerTransport>();
  const legacy = new Map<string, SSEServerTransport>();
  let sessions = 0;

  const fail = (res: http.ServerResponse, status: number, message: string) => {
    if (!res.headersSent) res.writeHead(status, { "content-type": "text/plain" });
    res.end(message);
  };

  const onStreamable = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const id = req.headers["mcp-session-id"];
    const existing = typeof id === "string" ? streamable.get(id) : undefined;
    if (existing) return existing.handleRequest(req, res, await bodyOf(req));
    if (req.method !== "POST") return fail(res, id ? 404 : 400, "no session");
    if (id) return fail(res, 404, "unknown session");
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: options.jsonResponse ?? false,
      onsessioninitialized: (sid) => {
        sessions++;
        streamable.set(sid, transport);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) streamable.delete(transport.sessionId);
    };
    await buildServer(calls).connect(transport);
    await transport.handleRequest(req, res, await readBody(req, methods));
  };
  const bodyOf = (req: http.IncomingMessage) =>
    req.method === "POST" ? readBody(req, methods) : Promise.resolve(undefined);

  const onLegacy = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method === "GET" && url.pathname === "/sse") {
      const transport = new SSEServerTransport("/messages", res);
      legacy.set(transport.sessionId, transport);
      sessions++;
      res.on("close", () => legacy.delete(transport.sessionId));
      await buildServer(calls).connect(transport);
      return;
    }
    if (req.method === "POST" && url.pathname === "/messages") {
      const transport = legacy.get(url.searchParams.get("sessionId") ?? "");
      if (!transport) return fail(res, 404, "unknown session");
      return transport.handlePostMessage(req, res, await readBody(req, methods));
    }
    // Like a legacy server: Streamable HTTP requests at its URL find nothing.
    fail(res, 404, "not found");
  };

  const handle = options.legacySse ? onLegacy : onStreamable;
  const base = await listen(
    (req, res) => void handle(req, res).catch((err: Error) => fail(res, 500, err.message)),
    requests,
    options.legacySse ? "/sse" : "/mcp",
    async () => {
      for (const t of [...streamable.values(), ...legacy.values()]) await t.close();
    },
  );
  return {
    ...base,
    calls,
    methods,
    sessions: () => sessions,
    async forgetSessions() {
      for (const t of [...streamable.values(), ...legacy.values()]) await t.close();
    },
  };
}

/** A server that reads each request and never answers (nor closes). */
export async function startSilentServer(): Promise<TestServer> {
  return listen(() => {}, [], "/mcp");
}

/** An HTTP server that speaks no MCP: every request gets `answer` (default: an HTML page). */
export async function startNonMcpServer(
  answer: (req: http.IncomingMessage) => { status: number; type: string; body: string } = () => ({
    status: 200,
    type: "text/html",
    body: "<html><body>Welcome to a plain web site.</body></html>",
  }),
): Promise<TestServer> {
  return listen(
    (req, res) => {
      req.resume();
      const { status, type, body } = answer(req);
      res.writeHead(status, { "content-type": type });
      res.end(body);
    },
    [],
    "/mcp",
  );
}

/** An HTTP server whose every answer is an event stream with one event that never ends. */
export async function startFloodServer(): Promise<TestServer> {
  return listen(
    (req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = `data: ${"y".repeat(64 * 1024)}`;
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", pump);
      };
      pump();
    },
    [],
    "/mcp",
  );
}
