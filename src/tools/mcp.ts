import { createHash } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import type { jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import type { Logger } from "pino";
import { AppError } from "../domain/errors.js";
import { nonPublicAddress } from "../lib/addressPolicy.js";
import { AddressRefused, AnswerTooLarge, nodeFetch, type NodeFetch } from "../lib/nodeFetch.js";
import { allowedByName, needsApproval, type McpToolConfig } from "./mcpTool.js";
import { capBytes, message, redact, render } from "./mcpText.js";

export { parseMcpTool, type McpToolConfig } from "./mcpTool.js";

/*
 * The client for a prompt agent's `mcp` tools: lists a server's tools and calls them over
 * Streamable HTTP, or the older HTTP+SSE transport when the server speaks only that.
 * Everything a server sends is untrusted: each connect, list and call has a deadline, every
 * answer a byte limit (nodeFetch), and a server that misbehaves loses its connection. Where
 * to connect is untrusted too (a project key or a hosted agent names the URL): unless
 * private networks are allowed, a server whose address (as resolved, at each connect) is
 * loopback, link-local, private, multicast or the host's own is refused.
 * Header values are secrets: they are sent, never logged, and cut out of error messages.
 */

export interface McpToolInfo {
  name: string;
  description?: string;
  input_schema: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

export interface McpToolsOptions {
  /** Deadline of each connect, list and call. */
  timeoutMs: number;
  /** A call's output (or error text) is cut to this many UTF-8 bytes. */
  maxOutputBytes: number;
  log?: Logger;
  /** Largest answer read from a server (a JSON body, or one event of a stream); default max(1 MiB, 8 × maxOutputBytes). */
  maxAnswerBytes?: number;
  /** An unused connection is closed after this long; default 30 s. */
  idleMs?: number;
  /** A connection's tool list is reused this long; default 30 s. */
  toolListTtlMs?: number;
  /** Connect to servers on loopback, link-local, private or the host's own addresses too. */
  allowPrivateNetworks?: boolean;
}

type Transport = StreamableHTTPClientTransport | SSEClientTransport;

interface Connection {
  key: string;
  /** Where it goes, for logs: scheme, host and port only (paths and queries may hold keys). */
  origin: string;
  kind: "streamable-http" | "sse";
  http: NodeFetch;
  client: Client;
  transport: Transport;
  busy: number;
  idle?: NodeJS.Timeout;
  tools?: { at: number; list: McpToolInfo[] };
  tooLarge?: AnswerTooLarge;
  refused?: AddressRefused;
  closed: boolean;
}

class TimedOut extends Error {}

const clientInfo = { name: "agenthost", version: "0.1.0" };
/** Tool names a server may offer (the MCP spec's recommendation); others are left out. */
const toolName = /^[A-Za-z0-9_.-]{1,128}$/;
const maxPages = 20;
const maxTools = 1000;
const maxDescription = 8192;

/**
 * A server's output schema is not enforced: its output reaches the model as text either way,
 * and compiling a hostile server's schema would run its regular expressions in the service.
 */
const acceptAll: jsonSchemaValidator = {
  getValidator: () => (input) => ({ valid: true, data: input as never, errorMessage: undefined }),
};

/** Errors the SDK raises itself (not a server's JSON-RPC error answer). */
const localCodes = new Set<number>([ErrorCode.ConnectionClosed, ErrorCode.RequestTimeout]);
const isServerError = (err: unknown) => err instanceof McpError && !localCodes.has(err.code);

export class McpTools {
  private readonly timeoutMs: number;
  private readonly maxOutputBytes: number;
  private readonly maxAnswerBytes: number;
  private readonly idleMs: number;
  private readonly toolListTtlMs: number;
  private readonly allowPrivateNetworks: boolean;
  private readonly log?: Logger;
  private readonly open = new Map<string, Connection>();
  private readonly pending = new Map<string, Promise<Connection>>();
  /** Every connection made and not yet closed, connecting ones included. */
  private readonly live = new Set<Connection>();
  /** Moves on at each close(), so a connect under way then is closed when it completes. */
  private generation = 0;

  constructor(options: McpToolsOptions) {
    this.timeoutMs = options.timeoutMs;
    this.maxOutputBytes = options.maxOutputBytes;
    this.maxAnswerBytes =
      options.maxAnswerBytes ?? Math.max(1024 * 1024, 8 * options.maxOutputBytes);
    this.idleMs = options.idleMs ?? 30_000;
    this.toolListTtlMs = options.toolListTtlMs ?? 30_000;
    this.allowPrivateNetworks = options.allowPrivateNetworks ?? false;
    this.log = options.log;
  }

  /**
   * The server's tools, filtered by allowed_tools. Fails with AppError `upstream_error`
   * (param `tools`) naming the server_label when the server cannot be reached or listed,
   * `upstream_timeout` when it is silent past the deadline; rejects with the signal's reason
   * when `signal` aborts.
   */
  async listTools(config: McpToolConfig, signal?: AbortSignal): Promise<McpToolInfo[]> {
    const tools = await this.run(config, signal, "listing its tools", async (conn) => {
      if (conn.tools && Date.now() - conn.tools.at < this.toolListTtlMs) return conn.tools.list;
      const list = await this.fetchTools(conn, signal);
      conn.tools = { at: Date.now(), list };
      return list;
    });
    const filter = config.allowed_tools;
    const readOnly = !Array.isArray(filter) && filter?.read_only === true;
    return tools.filter(
      (t) => allowedByName(config, t.name) && (!readOnly || t.annotations?.readOnlyHint === true),
    );
  }

  /**
   * Calls one tool with JSON-text arguments. Resolves `{ output }` (text contents joined by
   * newlines, else structuredContent as JSON text; cut to maxOutputBytes) or `{ error }` when
   * the tool reports isError, the server answers with an error, the answer is too large, the
   * arguments are not a JSON object or the tool is not allowed. Rejects only for transport
   * failures and timeouts (AppError as listTools) or the signal's abort.
   */
  async callTool(
    config: McpToolConfig,
    name: string,
    argumentsJson: string,
    signal?: AbortSignal,
  ): Promise<{ output: string } | { error: string }> {
    let args: unknown;
    try {
      args = argumentsJson.trim() === "" ? {} : JSON.parse(argumentsJson);
    } catch {
      return { error: "The tool's arguments are not valid JSON." };
    }
    if (typeof args !== "object" || args === null || Array.isArray(args))
      return { error: "The tool's arguments must be a JSON object." };
    const filter = config.allowed_tools;
    const allowed =
      !Array.isArray(filter) && filter?.read_only
        ? (await this.listTools(config, signal)).some((t) => t.name === name)
        : allowedByName(config, name);
    if (!allowed)
      return { error: `Tool '${name}' is not allowed on MCP server '${config.server_label}'.` };

    return this.run(config, signal, `calling '${name}'`, async (conn) => {
      try {
        const result = (await conn.client.callTool(
          { name, arguments: args as Record<string, unknown> },
          undefined,
          { signal, timeout: this.timeoutMs, maxTotalTimeout: this.timeoutMs },
        )) as { content?: unknown[]; structuredContent?: unknown; isError?: boolean };
        const text = render(result);
        return result.isError
          ? { error: this.cap(text || "The tool reported an error.") }
          : { output: this.cap(text) };
      } catch (err) {
        if (conn.tooLarge || err instanceof AnswerTooLarge) return { error: this.tooLarge() };
        if (isServerError(err)) return { error: this.cap(redact(config, err)) };
        throw err;
      }
    });
  }

  /** Whether calling `name` on this server needs an mcp_approval_request first (absent: "always"). */
  needsApproval(config: McpToolConfig, name: string): boolean {
    return needsApproval(config, name);
  }

  /** Closes every open connection (connects under way included). */
  async close(): Promise<void> {
    this.generation++;
    const pending = [...this.pending.values()];
    await Promise.all([...this.live].map((c) => this.drop(c, "closing", true)));
    await Promise.allSettled(pending);
  }

  // ---- connections --------------------------------------------------------------------------

  /** Runs `op` on a connection, reopening once a session the server forgot; maps failures. */
  private async run<T>(
    config: McpToolConfig,
    signal: AbortSignal | undefined,
    action: string,
    op: (conn: Connection) => Promise<T>,
  ): Promise<T> {
    signal?.throwIfAborted();
    for (let first = true; ; first = false) {
      let acquired: { conn: Connection; reused: boolean };
      try {
        acquired = await this.acquire(config, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        throw this.failure(config, undefined, err, "connecting");
      }
      const { conn, reused } = acquired;
      try {
        return await op(conn);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (!isServerError(err)) void this.drop(conn, "request failed");
        // A Streamable HTTP server answers 404 to a session it ended: start a new one.
        if (first && reused && err instanceof StreamableHTTPError && err.code === 404) continue;
        throw this.failure(config, conn, err, action);
      } finally {
        this.release(conn);
      }
    }
  }

  private async acquire(
    config: McpToolConfig,
    signal?: AbortSignal,
  ): Promise<{ conn: Connection; reused: boolean }> {
    const key = keyOf(config);
    const cached = this.open.get(key);
    if (cached) return { conn: this.hold(cached), reused: true };
    let pending = this.pending.get(key);
    if (!pending) {
      pending = this.connect(config, key).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return { conn: this.hold(await abortable(pending, signal)), reused: false };
  }

  private hold(conn: Connection): Connection {
    conn.busy++;
    clearTimeout(conn.idle);
    return conn;
  }

  private release(conn: Connection): void {
    if (--conn.busy === 0) this.armIdle(conn);
  }

  private armIdle(conn: Connection): void {
    clearTimeout(conn.idle);
    if (conn.closed) return;
    conn.idle = setTimeout(() => void this.drop(conn, "idle", true), this.idleMs);
    conn.idle.unref();
  }

  /** Streamable HTTP first, then HTTP+SSE, both within one deadline. */
  private async connect(config: McpToolConfig, key: string): Promise<Connection> {
    const deadline = Date.now() + this.timeoutMs;
    const generation = this.generation;
    let conn: Connection;
    try {
      conn = await this.attempt(config, key, "streamable-http", deadline, generation);
    } catch (first) {
      if (final(first)) throw first;
      try {
        conn = await this.attempt(config, key, "sse", deadline, generation);
      } catch (second) {
        if (final(second)) throw second;
        throw new Error(`Streamable HTTP: ${message(first)}; HTTP+SSE: ${message(second)}`, {
          cause: second,
        });
      }
    }
    if (generation !== this.generation) {
      await this.drop(conn, "closing");
      throw new Error("The MCP client was closed.");
    }
    this.open.set(key, conn);
    this.armIdle(conn);
    this.log?.debug({ server: conn.origin, transport: conn.kind }, "MCP connection opened");
    return conn;
  }

  private async attempt(
    config: McpToolConfig,
    key: string,
    kind: Connection["kind"],
    deadline: number,
    generation: number,
  ): Promise<Connection> {
    if (generation !== this.generation) throw new Error("The MCP client was closed.");
    if (deadline <= Date.now()) throw new TimedOut();
    const url = new URL(config.server_url);
    const conn = { key, origin: url.origin, kind, busy: 0, closed: false } as Connection;
    conn.http = nodeFetch({
      maxBodyBytes: this.maxAnswerBytes,
      maxSockets: 8,
      addressPolicy: this.allowPrivateNetworks ? undefined : nonPublicAddress,
      onRefused: (err) => {
        if (err instanceof AddressRefused) {
          conn.refused = err;
          return;
        }
        conn.tooLarge = err;
        this.log?.warn({ server: conn.origin, limit: err.limit }, "MCP server's answer too large");
        void this.drop(conn, "answer too large");
      },
    });
    const fetch = conn.http.fetch;
    const requestInit = { headers: { ...config.headers } };
    conn.transport =
      kind === "streamable-http"
        ? new StreamableHTTPClientTransport(url, {
            fetch,
            requestInit,
            reconnectionOptions: {
              initialReconnectionDelay: 1000,
              maxReconnectionDelay: 5000,
              reconnectionDelayGrowFactor: 2,
              maxRetries: 2,
            },
          })
        : new SSEClientTransport(url, { fetch, requestInit });
    conn.client = new Client(clientInfo, { capabilities: {}, jsonSchemaValidator: acceptAll });
    let connected = false;
    conn.client.onerror = (err) => {
      this.log?.debug({ server: conn.origin, err: redact(config, err) }, "MCP transport error");
      // A legacy event stream that broke would reconnect into a session nobody initialized.
      if (connected && kind === "sse") void this.drop(conn, "event stream failed");
    };
    conn.client.onclose = () => void this.drop(conn, "closed");
    this.live.add(conn);
    try {
      const left = deadline - Date.now();
      await within(conn.client.connect(conn.transport, { timeout: Math.max(left, 1) }), left);
      connected = true;
      return conn;
    } catch (err) {
      await this.drop(conn, "connect failed");
      throw conn.refused ?? conn.tooLarge ?? err;
    }
  }

  /** Closes a connection once: its transport (aborting its requests) and every socket. */
  private async drop(conn: Connection, why: string, polite = false): Promise<void> {
    if (conn.closed) return;
    conn.closed = true;
    clearTimeout(conn.idle);
    this.live.delete(conn);
    if (this.open.get(conn.key) === conn) this.open.delete(conn.key);
    this.log?.debug({ server: conn.origin, transport: conn.kind, why }, "MCP connection closed");
    const transport = conn.transport;
    if (polite && transport instanceof StreamableHTTPClientTransport && transport.sessionId)
      await within(transport.terminateSession(), Math.min(1000, this.timeoutMs)).catch(() => {});
    await transport.close().catch(() => {});
    conn.http.destroy();
  }

  // ---- answers ------------------------------------------------------------------------------

  private async fetchTools(conn: Connection, signal?: AbortSignal): Promise<McpToolInfo[]> {
    const deadline = Date.now() + this.timeoutMs;
    const list: McpToolInfo[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < maxPages && list.length < maxTools; page++) {
      const left = deadline - Date.now();
      if (left <= 0) throw new TimedOut();
      const answer = await conn.client.listTools(cursor === undefined ? undefined : { cursor }, {
        signal,
        timeout: left,
        maxTotalTimeout: left,
      });
      for (const tool of answer.tools) {
        if (!toolName.test(tool.name) || list.length >= maxTools) continue;
        list.push({
          name: tool.name,
          ...(tool.description !== undefined && {
            description: tool.description.slice(0, maxDescription),
          }),
          input_schema: tool.inputSchema as Record<string, unknown>,
          ...(tool.annotations !== undefined && {
            annotations: tool.annotations as Record<string, unknown>,
          }),
        });
      }
      cursor = answer.nextCursor;
      if (cursor === undefined) break;
    }
    return list;
  }

  private failure(
    config: McpToolConfig,
    conn: Connection | undefined,
    err: unknown,
    action: string,
  ): AppError {
    const label = config.server_label;
    if (
      err instanceof TimedOut ||
      (err instanceof McpError && err.code === ErrorCode.RequestTimeout)
    )
      return new AppError(
        "upstream_timeout",
        `MCP server '${label}' did not answer within ${this.timeoutMs} ms (${action}).`,
        "tools",
      );
    const refused = err instanceof AddressRefused ? err : conn?.refused;
    const reason = refused
      ? `${redact(config, refused)}, and MCP servers must be on public addresses (AGENTHOST_MCP_ALLOW_PRIVATE_NETWORKS)`
      : conn?.tooLarge || err instanceof AnswerTooLarge
        ? this.tooLarge()
        : redact(config, err);
    this.log?.warn({ server_label: label, action, reason }, "MCP server failed");
    return new AppError(
      "upstream_error",
      `MCP server '${label}' failed ${action}: ${reason}`,
      "tools",
    );
  }

  private tooLarge(): string {
    return `The MCP server's answer was larger than ${this.maxAnswerBytes} bytes.`;
  }

  private cap(text: string): string {
    return capBytes(text, this.maxOutputBytes);
  }
}

/** A connect failure that trying the other transport cannot mend. */
const final = (err: unknown) =>
  err instanceof TimedOut || err instanceof AnswerTooLarge || err instanceof AddressRefused;

/** The cache key: the URL and the headers (their values hashed, never kept as a key). */
function keyOf(config: McpToolConfig): string {
  const headers = Object.entries(config.headers ?? {})
    .map(([k, v]) => [k.toLowerCase(), v])
    .sort(([a], [b]) => (a! < b! ? -1 : a! > b! ? 1 : 0));
  return createHash("sha256")
    .update(JSON.stringify([config.server_url, headers]))
    .digest("hex");
}

/** `promise`, or TimedOut after `ms` (its own later failure then goes nowhere). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  promise.catch(() => {});
  if (ms <= 0) throw new TimedOut();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new TimedOut()), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** `promise`, or the signal's reason once it aborts. */
function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
