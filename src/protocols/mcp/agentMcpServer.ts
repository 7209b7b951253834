import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
} from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "pino";
import { z } from "zod";
import { sessionIdPattern } from "../../contract/requests.js";
import { AppError } from "../../domain/errors.js";
import type { Caller } from "../../domain/keyService.js";
import type { Agent } from "../../domain/model.js";
import { isObject } from "../../lib/isObject.js";
import type { ResponseService } from "../../responses/responseService.js";
import {
  AgentFailure,
  answeringVersion,
  askAgent,
  defaultAnswerOptions,
  untilAborted,
  type AgentAnswerOptions,
} from "../agentAnswer.js";

/*
 * Every agent whose endpoint lists `mcp` is an MCP server (Streamable HTTP, stateless: each
 * POST is a fresh server and transport, answered as one JSON body) with one tool, the agent:
 * named after it, described by its latest version's description, taking `input` and
 * answering the agent's text. A failure of the agent is the tool's `isError` result, never an
 * HTTP error; the transport's own faults (bad JSON-RPC, headers) are its JSON-RPC errors.
 */

/** One HTTP request to the MCP endpoint, as the transport read it (the body already parsed). */
export interface McpHttpRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

/** What to answer it with. */
export interface McpHttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface McpCall {
  caller: Caller;
  project: string;
  agent: Agent;
  request: McpHttpRequest;
  clientHeaders?: Record<string, string>;
  /** The client is gone. */
  signal?: AbortSignal;
}

/** The longest `input` the tool takes, in characters. */
export const maxInputChars = 256 * 1024;

/** The tool's arguments (checked here: the low-level server leaves them to the tool). */
const toolInput = z.object({
  input: z.string().max(maxInputChars).describe("What to ask the agent."),
  agent_session_id: z
    .string()
    .regex(sessionIdPattern)
    .optional()
    .describe(
      "A hosted agent's session to continue (its id comes back in the result's _meta); a new session when absent.",
    ),
});

/** Computed once: converting a schema per request costs more than the rest of a list. */
const inputJsonSchema = z.toJSONSchema(toolInput, { target: "draft-7" }) as {
  type: "object";
  [key: string]: unknown;
};

/** `_meta` key of a result naming the hosted agent's session that answered. */
export const sessionMetaKey = "agenthost/agent_session_id";

const serverInfo = { name: "agenthost", version: "0.1.0" };

export class AgentMcpServer {
  private readonly answers: AgentAnswerOptions;

  constructor(
    private readonly deps: {
      responses: ResponseService;
      log: Logger;
      answers?: AgentAnswerOptions;
    },
  ) {
    this.answers = deps.answers ?? defaultAnswerOptions;
  }

  async handle(call: McpCall): Promise<McpHttpAnswer> {
    // Stateless: no stream to open (GET) and no session to end (DELETE).
    if (call.request.method !== "POST")
      return jsonRpcError(405, -32000, "Method not allowed: this MCP server is stateless; POST.", {
        allow: "POST",
      });
    const body = call.request.body;
    if (Array.isArray(body) && batchesDropped(call.request.headers["mcp-protocol-version"]))
      return jsonRpcError(
        400,
        -32600,
        "Invalid Request: protocol version 2025-06-18 and later send one message per POST, not a batch.",
      );
    const invalid = invalidToolCall(body);
    if (invalid) return invalid;
    const server = this.serverFor(call);
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    // Past the answer deadline (or once the client left), the POST is answered whatever the
    // SDK still waits for, and the server closed: nothing waits forever.
    const deadline = AbortSignal.timeout(this.answers.timeoutMs + answerGraceMs);
    const signal = call.signal ? AbortSignal.any([call.signal, deadline]) : deadline;
    try {
      await server.connect(transport);
      const answer = await untilAborted(
        transport.handleRequest(toRequest(call.request), { parsedBody: withoutCancels(body) }),
        signal,
        () => {},
      );
      const headers: Record<string, string> = {};
      answer.headers.forEach((value, name) => (headers[name] = value));
      return { status: answer.status, headers, body: await answer.text() };
    } catch (err) {
      if (!signal.aborted) throw err;
      return jsonRpcError(
        504,
        -32603,
        `Internal error: no answer within ${Math.round(this.answers.timeoutMs / 1000)} s.`,
      );
    } finally {
      await server.close();
    }
  }

  private serverFor(call: McpCall): Server {
    const { agent } = call;
    const server = new Server(serverInfo, {
      capabilities: { tools: { listChanged: false } },
      instructions: `Agent '${agent.name}' of project '${agent.project}', as a tool.`,
    });
    server.setRequestHandler(ListToolsRequestSchema, () => ({
      tools: [
        {
          name: agent.name,
          title: agent.name,
          description:
            agent.latest.description || `Asks agent '${agent.name}' and answers its text.`,
          inputSchema: inputJsonSchema,
        },
      ],
    }));
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      if (request.params.name !== agent.name)
        throw new McpError(
          ErrorCode.InvalidParams,
          `Tool '${request.params.name}' not found: this server's one tool is '${agent.name}'.`,
        );
      const args = toolInput.safeParse(request.params.arguments ?? {});
      if (!args.success) {
        const issue = args.error.issues[0]!;
        return errorResult(
          `invalid_parameter: Invalid arguments for tool '${agent.name}': '${issue.path.join(".") || "arguments"}': ${issue.message}.`,
        );
      }
      const signal = call.signal ? AbortSignal.any([call.signal, extra.signal]) : extra.signal;
      try {
        const version = await answeringVersion(
          this.deps.responses,
          call.project,
          agent.name,
          args.data.agent_session_id,
        );
        const answer = await askAgent(
          this.deps.responses,
          {
            caller: call.caller,
            project: call.project,
            agentName: agent.name,
            version: version.version,
            input: args.data.input,
            sessionId: args.data.agent_session_id,
            clientHeaders: call.clientHeaders,
            signal,
          },
          this.answers,
        );
        return {
          content: [{ type: "text", text: answer.text }],
          ...(answer.sessionId ? { _meta: { [sessionMetaKey]: answer.sessionId } } : {}),
        };
      } catch (err) {
        return this.failed(err, agent.name);
      }
    });
    return server;
  }

  private failed(err: unknown, agentName: string): CallToolResult {
    if (err instanceof AgentFailure || err instanceof AppError)
      return errorResult(`${err.code}: ${err.message}`);
    this.deps.log.error({ err, agent: agentName }, "an MCP tool call failed");
    return errorResult("server_error: The agent could not be asked.");
  }
}

const errorResult = (text: string): CallToolResult => ({
  content: [{ type: "text", text }],
  isError: true,
});

/** How long past the answer deadline a POST is still waited for (a tool call's own error). */
const answerGraceMs = 1000;

/** Protocol versions from 2025-06-18 on dropped JSON-RPC batching. */
function batchesDropped(version: string | string[] | undefined): boolean {
  const v = Array.isArray(version) ? version[0] : version;
  return typeof v === "string" && /^\d{4}-\d{2}-\d{2}$/.test(v) && v >= "2025-06-18";
}

/**
 * The body without `notifications/cancelled` when it is a batch with requests: stateless, a
 * cancellation can only name a request of its own POST, which the SDK then never answers —
 * and the JSON answer would wait for it forever. The request is answered instead.
 */
function withoutCancels(body: unknown): unknown {
  if (!Array.isArray(body)) return body;
  const requests = body.some((m) => isObject(m) && "id" in m && typeof m.method === "string");
  if (!requests) return body;
  return body.filter((m) => !(isObject(m) && m.method === "notifications/cancelled"));
}

/**
 * A `tools/call` whose params are not the protocol's (`arguments` not an object, no `name`)
 * answered as -32602 naming the field, before the SDK turns its own parse failure into an
 * internal error: a single message's error carries its id; a batch with one is refused whole.
 */
function invalidToolCall(body: unknown): McpHttpAnswer | undefined {
  const messages = Array.isArray(body) ? body : [body];
  for (const [index, m] of messages.entries()) {
    if (!isObject(m) || m.method !== "tools/call" || !("id" in m)) continue;
    const checked = CallToolRequestSchema.safeParse({ method: m.method, params: m.params });
    if (checked.success) continue;
    const issue = checked.error.issues[0]!;
    const field = ["params", ...issue.path.slice(1).map(String)].join(".");
    const message = `Invalid params: '${field}': ${issue.message}.`;
    if (Array.isArray(body))
      return jsonRpcError(
        400,
        ErrorCode.InvalidParams,
        `Message ${index} of the batch: ${message}`,
      );
    const id = typeof m.id === "string" || typeof m.id === "number" ? m.id : null;
    return {
      status: 200,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id,
        error: { code: ErrorCode.InvalidParams, message },
      }),
    };
  }
  return undefined;
}

/** The headers the transport reads; no other header of the caller's reaches it. */
const transportHeaders = ["accept", "content-type", "mcp-protocol-version", "mcp-session-id"];

function toRequest(r: McpHttpRequest): Request {
  const headers = new Headers();
  for (const name of transportHeaders) {
    const value = r.headers[name];
    for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value])
      headers.append(name, v);
  }
  return new Request(r.url, { method: r.method, headers });
}

function jsonRpcError(
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): McpHttpAnswer {
  return {
    status,
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }),
  };
}
