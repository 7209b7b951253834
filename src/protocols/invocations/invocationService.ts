import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex, Readable } from "node:stream";
import { WebSocket, WebSocketServer } from "ws";
import { sessionIdPattern } from "../../contract/requests.js";
import { AppError, notFound } from "../../domain/errors.js";
import type { Caller } from "../../domain/keyService.js";
import { closeWith, relay, type RelayOptions } from "./wsRelay.js";
import type {
  AttachedSession,
  ForwardedAnswer,
  SessionForwarder,
} from "../../forwarder/sessionForwarder.js";

/*
 * The `invocations` protocol of hosted agents: raw bytes to the agent's `POST /invocations`
 * and its answer back, both streamed; each invocation remembered (its id → the session that
 * made it, the caller who asked) so that `GET /invocations/{id}` and its cancel go to the same
 * session, for the same caller only.
 */

/** An invocation id the service accepts from an agent (and makes itself). */
const invocationIdPattern = /^(?!\.+$)[A-Za-z0-9_.:-]{1,128}$/;

export interface InvocationOptions {
  /** The largest request body passed to an agent (it is streamed, never held). */
  maxBodyBytes: number;
  /** Invocations remembered for `GET`/cancel, per identity of a project; its oldest forgotten. */
  recordsPerCaller: number;
  /** Invocations remembered in all; past it the least recently active identity's oldest goes. */
  maxRecords: number;
  /**
   * `invocations_ws`: the largest message either way, the agent's handshake's deadline, the
   * whole start's (session start and the agent's handshake), the relay's.
   */
  socket: RelayOptions & {
    maxMessageBytes: number;
    handshakeTimeoutMs: number;
    acceptTimeoutMs: number;
  };
}

/** A caller's WebSocket, connected to the agent's `/invocations_ws` and its session held. */
export interface AgentSocket {
  attached: AttachedSession;
  upstream: WebSocket;
  /** The subprotocol the agent chose, if any. */
  protocol: string;
}

export interface InvokeRequest {
  /** The session to use; a new one of the endpoint's version otherwise. */
  sessionId?: string;
  body: Readable;
  contentType?: string;
  contentLength?: number;
  /** The query passed on to the agent (without `api-version` and `agent_session_id`). */
  query: string;
  clientHeaders: Record<string, string>;
  signal: AbortSignal;
}

export interface InvocationAnswer {
  invocationId: string;
  answer: ForwardedAnswer;
}

interface Recorded {
  sessionId: string;
}

/** The caller's WebSocket handshake: its request, connection and first bytes. */
export interface Upgrade {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
}

export interface SocketRequest {
  /** The session to use; a new one of the endpoint's version otherwise. */
  sessionId?: string;
  /** The query passed on to the agent (without `api-version` and `agent_session_id`). */
  query: string;
  /** The caller's subprotocols (valid tokens, no repeats), offered to the agent. */
  protocols: string[];
  clientHeaders: Record<string, string>;
  connection: Upgrade;
  /** Called once the agent has accepted: the connection is the service's from then on. */
  take: () => void;
}

export class InvocationService {
  /** Per project and identity (least recently used first), its invocations (oldest first). */
  private readonly records = new Map<string, Map<string, Recorded>>();
  private recorded = 0;

  constructor(
    private readonly forwarder: SessionForwarder | undefined,
    private readonly options: InvocationOptions,
  ) {}

  /** `POST …/invocations`: the body piped to the agent as it comes, the answer as it comes. */
  async invoke(
    caller: Caller,
    project: string,
    agentName: string,
    request: InvokeRequest,
  ): Promise<InvocationAnswer> {
    const forwarder = this.usable(caller, request.sessionId);
    const max = this.options.maxBodyBytes;
    if (request.contentLength !== undefined && request.contentLength > max) throw tooLarge(max);
    const proposed = `inv_${randomBytes(12).toString("hex")}`;
    // Refused before (or while) the agent was reached: sendError drops the rest of the body.
    const answer = await forwarder.forward({
      caller,
      project,
      agentName,
      sessionId: request.sessionId,
      path: `/invocations${request.query}`,
      body: request.body,
      bodyLimit: { bytes: max, error: () => tooLarge(max) },
      contentLength: request.contentLength,
      contentType: request.contentType ?? "application/octet-stream",
      clientHeaders: request.clientHeaders,
      extraHeaders: { "x-agent-invocation-id": proposed },
      signal: request.signal,
    });
    const theirs = answer.agentHeaders["x-agent-invocation-id"];
    const invocationId = theirs && invocationIdPattern.test(theirs) ? theirs : proposed;
    delete answer.agentHeaders["x-agent-invocation-id"];
    if (answer.status < 400) this.record(project, agentName, caller, invocationId, answer);
    return { invocationId, answer };
  }

  /** `GET …/invocations/{id}` and `POST …/invocations/{id}/cancel`: to the session that made it. */
  async operate(
    caller: Caller,
    project: string,
    agentName: string,
    id: string,
    operation: { op: "get" | "cancel"; query: string; clientHeaders: Record<string, string> },
    signal: AbortSignal,
  ): Promise<ForwardedAnswer> {
    const forwarder = this.usable(caller, undefined);
    // Another caller's invocation (or another agent's) is as unknown as one never made.
    const stored = invocationIdPattern.test(id)
      ? this.records.get(ownerKey(project, caller))?.get(recordKey(agentName, id))
      : undefined;
    if (!stored) throw notFound(`Invocation '${id}'`, "invocation_id");
    const path = `/invocations/${encodeURIComponent(id)}${operation.op === "cancel" ? "/cancel" : ""}`;
    try {
      return await forwarder.forward({
        caller,
        project,
        agentName,
        sessionId: stored.sessionId,
        method: operation.op === "get" ? "GET" : "POST",
        path: `${path}${operation.query}`,
        clientHeaders: operation.clientHeaders,
        signal,
      });
    } catch (err) {
      if (err instanceof AppError && err.code === "not_found")
        throw new AppError(
          "not_found",
          `Invocation '${id}' was made by session '${stored.sessionId}', which no longer exists.`,
          "invocation_id",
        );
      throw err;
    }
  }

  /** The agent's `GET /invocations/docs/openapi.json`, from the named session or a new one. */
  async openapi(
    caller: Caller,
    project: string,
    agentName: string,
    request: { sessionId?: string; clientHeaders: Record<string, string>; signal: AbortSignal },
  ): Promise<ForwardedAnswer> {
    const forwarder = this.usable(caller, request.sessionId);
    return forwarder.forward({
      caller,
      project,
      agentName,
      sessionId: request.sessionId,
      method: "GET",
      path: "/invocations/docs/openapi.json",
      clientHeaders: request.clientHeaders,
      signal: request.signal,
    });
  }

  private readonly live = new Set<WebSocket>();
  private server: WebSocketServer | undefined;
  private readonly chosen = new WeakMap<object, string>();
  private readonly answerHeaders = new WeakMap<object, string[]>();

  /**
   * `invocations_ws`: a session held (named or new) and a WebSocket to its agent's
   * `/invocations_ws` opened with the container protocol's headers, then the caller's handshake
   * answered and both relayed until they close; the session is freed then. A refused or failed
   * start is thrown (an HTTP error to the caller, `take` not called). A caller who leaves at any
   * point frees the session at once; the whole start takes at most `acceptTimeoutMs`.
   */
  async accept(
    caller: Caller,
    project: string,
    agentName: string,
    request: SocketRequest,
  ): Promise<void> {
    const { connection } = request;
    const gone = new AbortController();
    const leave = () => gone.abort(callerLeft());
    connection.socket.once("close", leave);
    if (connection.socket.destroyed) leave();
    const { acceptTimeoutMs } = this.options.socket;
    const deadline = setTimeout(
      () =>
        gone.abort(
          new AppError(
            "upstream_timeout",
            `The session and its agent's WebSocket were not ready within ${acceptTimeoutMs / 1000} s.`,
          ),
        ),
      acceptTimeoutMs,
    );
    let agent: AgentSocket;
    try {
      agent = await this.connect(caller, project, agentName, request, gone.signal);
    } finally {
      clearTimeout(deadline);
      connection.socket.off("close", leave);
    }
    if (connection.socket.destroyed) {
      agent.upstream.terminate();
      agent.attached.release();
      return;
    }
    const sockets = this.sockets();
    request.take();
    if (agent.protocol) this.chosen.set(connection.req, agent.protocol);
    this.answerHeaders.set(connection.req, [
      `x-agent-session-id: ${agent.attached.sessionId}`,
      `x-agent-foundry-call-id: ${agent.attached.callId}`,
    ]);
    let accepted = false;
    connection.socket.once("close", () => {
      if (accepted) return;
      agent.upstream.terminate();
      agent.attached.release();
    });
    sockets.handleUpgrade(connection.req, connection.socket, connection.head, (client) => {
      accepted = true;
      void this.relay(client, agent);
    });
  }

  /** The caller's side of every `invocations_ws`: answers handshakes, with the agent's choice. */
  private sockets(): WebSocketServer {
    if (this.server) return this.server;
    this.server = new WebSocketServer({
      noServer: true,
      maxPayload: this.options.socket.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (_offered, request) => this.chosen.get(request) || false,
    });
    this.server.on("headers", (headers, request) =>
      headers.push(...(this.answerHeaders.get(request) ?? [])),
    );
    return this.server;
  }

  private async connect(
    caller: Caller,
    project: string,
    agentName: string,
    request: SocketRequest,
    signal: AbortSignal,
  ): Promise<AgentSocket> {
    const forwarder = this.usable(caller, request.sessionId);
    const attached = await forwarder.attach(
      { caller, project, agentName, sessionId: request.sessionId },
      request.clientHeaders,
    );
    let upstream: WebSocket | undefined;
    try {
      if (signal.aborted) throw reasonOf(signal);
      attached.note(`call ${attached.callId}: WebSocket /invocations_ws`);
      const { maxMessageBytes, handshakeTimeoutMs } = this.options.socket;
      const socket = new WebSocket(
        `ws+unix://${attached.socketPath}:/invocations_ws${request.query}`,
        request.protocols,
        {
          headers: attached.headers,
          maxPayload: maxMessageBytes,
          handshakeTimeout: handshakeTimeoutMs,
          perMessageDeflate: false,
          followRedirects: false,
        },
      );
      upstream = socket;
      await new Promise<void>((resolve, reject) => {
        const abort = () => reject(reasonOf(signal));
        signal.addEventListener("abort", abort, { once: true });
        if (signal.aborted) abort();
        socket.once("open", () => {
          signal.removeEventListener("abort", abort);
          if (signal.aborted) reject(reasonOf(signal));
          else resolve();
        });
        socket.once("unexpected-response", (req, res) => {
          req.destroy();
          res.destroy();
          reject(
            new AppError(
              "upstream_error",
              `The session's agent refused the WebSocket with status ${res.statusCode}.`,
            ),
          );
        });
        socket.once("error", (err) =>
          reject(
            new AppError(
              "session_not_ready",
              `The session's agent did not take the WebSocket: ${err.message}`,
              "agent_session_id",
            ),
          ),
        );
      });
    } catch (err) {
      upstream?.terminate();
      attached.release();
      throw err;
    }
    upstream.on("error", () => {});
    return { attached, upstream, protocol: upstream.protocol };
  }

  /** Relays the caller's accepted WebSocket and the agent's until both close; frees the session. */
  private async relay(caller: WebSocket, agent: AgentSocket): Promise<void> {
    this.live.add(caller);
    try {
      await relay(caller, agent.upstream, this.options.socket);
    } finally {
      this.live.delete(caller);
      agent.attached.release();
    }
  }

  /** Shutting down: every relayed WebSocket is told (1001) and its agent's side closed with it. */
  closeSockets() {
    for (const socket of this.live) closeWith(socket, 1001, "the service is shutting down");
  }

  private usable(caller: Caller, sessionId: string | undefined): SessionForwarder {
    if (!this.forwarder)
      throw new AppError("sandbox_unavailable", "This host cannot run hosted agents' sessions.");
    // A session's token never starts sessions: no sandbox can multiply itself.
    if (caller.session)
      throw new AppError(
        "forbidden",
        "A hosted agent's session may call models and prompt agents, not hosted agents.",
      );
    if (sessionId !== undefined && !sessionIdPattern.test(sessionId))
      throw new AppError(
        "invalid_parameter",
        "agent_session_id must be 8-128 of [A-Za-z0-9_-].",
        "agent_session_id",
      );
    return this.forwarder;
  }

  /**
   * Remembers an invocation for the identity that made it (of its project and agent; the same
   * id of another identity or agent is another invocation). Each identity keeps its newest
   * `recordsPerCaller`; past `maxRecords` in all, the least recently active identity's oldest
   * goes first.
   */
  private record(
    project: string,
    agentName: string,
    caller: Caller,
    id: string,
    answer: ForwardedAnswer,
  ) {
    const owner = ownerKey(project, caller);
    const mine = this.records.get(owner) ?? new Map<string, Recorded>();
    this.records.delete(owner);
    this.records.set(owner, mine);
    const key = recordKey(agentName, id);
    if (mine.delete(key)) this.recorded--;
    mine.set(key, { sessionId: answer.sessionId });
    this.recorded++;
    if (mine.size > this.options.recordsPerCaller) this.forgetOldest(owner, mine);
    while (this.recorded > this.options.maxRecords) {
      const [oldestOwner, theirs] = this.records.entries().next().value!;
      this.forgetOldest(oldestOwner, theirs);
    }
  }

  private forgetOldest(owner: string, records: Map<string, Recorded>) {
    const oldest = records.keys().next().value;
    if (oldest !== undefined && records.delete(oldest)) this.recorded--;
    if (records.size === 0) this.records.delete(owner);
  }
}

const ownerKey = (project: string, caller: Caller) => `${project}\n${caller.subject}`;
const recordKey = (agentName: string, id: string) => `${agentName}\n${id}`;

const reasonOf = (signal: AbortSignal): AppError =>
  signal.reason instanceof AppError ? signal.reason : callerLeft();
const callerLeft = () => new AppError("invalid_parameter", "The caller closed the connection.");

const tooLarge = (max: number) =>
  new AppError("payload_too_large", `An invocation's body may be at most ${max} bytes.`, "body");
