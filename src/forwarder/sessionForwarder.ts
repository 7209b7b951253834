import { randomBytes } from "node:crypto";
import http from "node:http";
import { Readable, Transform } from "node:stream";
import { AppError } from "../domain/errors.js";
import type { Caller } from "../domain/keyService.js";
import { agentConnections } from "../sessions/agentSocket.js";
import type { SessionService } from "../sessions/sessionService.js";

/*
 * The data plane of hosted agents: a call for an agent is handed to one of its sessions'
 * sandboxes through the agent's socket, and the answer streamed back unbuffered.
 *
 * Headers follow the container protocol: the agent gets `x-agent-session-id`,
 * `x-agent-user-id`, a fresh `x-agent-foundry-call-id` (also written in the session's log and
 * returned to the caller) and the caller's `x-client-*` headers; the caller gets the agent's
 * `x-agent-*` answer headers back, but never in place of the service's own.
 */

/** Headers the service sets itself on both sides: neither caller nor agent supplies them. */
const ownHeaders = new Set(["x-agent-session-id", "x-agent-user-id", "x-agent-foundry-call-id"]);
const maxPassedHeaders = 32;
const maxPassedValue = 4096;

/** The caller's `x-client-*` headers, bounded in number and size, for the agent. */
export function clientHeadersOf(headers: http.IncomingHttpHeaders): Record<string, string> {
  return passed(headers, /^x-client-[a-z0-9-]{1,64}$/);
}

function passed(headers: http.IncomingHttpHeaders, name: RegExp): Record<string, string> {
  const out: Record<string, string> = {};
  let count = 0;
  for (const [key, value] of Object.entries(headers)) {
    if (count === maxPassedHeaders) break;
    if (!name.test(key) || ownHeaders.has(key) || typeof value !== "string") continue;
    if (value.length > maxPassedValue) continue;
    out[key] = value;
    count++;
  }
  return out;
}

/** Which session a call goes to. */
export interface SessionTarget {
  caller: Caller;
  project: string;
  agentName: string;
  /** The session to use; a new one (of `version`, else the split's pick) when absent. */
  sessionId?: string;
  version?: number;
}

export interface ForwardedCall extends SessionTarget {
  /** `POST` unless given. */
  method?: "GET" | "POST" | "DELETE";
  /** The agent's route with its query, e.g. `/responses`. */
  path: string;
  /**
   * With its content type; none for a call without a body. A stream is piped to the agent as
   * it comes (never collected), with `contentLength` when the caller declared one, else chunked.
   */
  body?: Buffer | Readable;
  /**
   * A streamed body past `bytes` fails the call with `error()` (the source is no longer read;
   * its reading starts only once the agent's request is open).
   */
  bodyLimit?: { bytes: number; error: () => AppError };
  contentLength?: number;
  contentType?: string;
  /** The caller's `x-client-*` headers (see `clientHeadersOf`). */
  clientHeaders?: Record<string, string>;
  /** Headers of the protocol's own for the agent (e.g. `x-agent-invocation-id`). */
  extraHeaders?: Record<string, string>;
  /** The caller left: the call to the agent is abandoned (before or after its answer began). */
  signal?: AbortSignal;
}

export interface ForwardedAnswer {
  sessionId: string;
  version: number;
  status: number;
  contentType: string | undefined;
  /** This call's `x-agent-foundry-call-id`. */
  callId: string;
  /** The agent's `x-agent-*` answer headers (the service's own left out). */
  agentHeaders: Record<string, string>;
  /** The agent's answer body; reading it to the end (or destroying it) frees the session. */
  body: http.IncomingMessage;
}

/** A session held open for a connection of its own (a WebSocket): its socket and headers. */
export interface AttachedSession {
  sessionId: string;
  version: number;
  socketPath: string;
  callId: string;
  /** The container protocol's request headers for the agent. */
  headers: Record<string, string>;
  note: (message: string) => void;
  /** Frees the session (its idle timer runs again); call once, when the connection ends. */
  release: () => void;
}

export interface ForwarderOptions {
  /** Longest wait for the agent's answer headers once the request is sent. */
  answerTimeoutMs: number;
}

export class SessionForwarder {
  constructor(
    private readonly sessions: SessionService,
    private readonly options: ForwarderOptions = { answerTimeoutMs: 120_000 },
  ) {}

  /** The target session, created when none is named, opened (its sandbox running) for a call. */
  private async open(target: SessionTarget) {
    let id = target.sessionId;
    if (id === undefined) {
      const version =
        target.version ??
        Number(await this.sessions.defaultVersion(target.project, target.agentName));
      const created = await this.sessions.create(target.caller, target.project, target.agentName, {
        version_indicator: { type: "version_ref", agent_version: String(version) },
      });
      id = created.id;
    }
    const opened = await this.sessions.open(target.caller, target.project, target.agentName, id);
    const callId = `call_${randomBytes(12).toString("hex")}`;
    return { id, callId, ...opened, release: once(opened.release) };
  }

  /** A session held for a connection the caller relays itself (see `AttachedSession`). */
  async attach(target: SessionTarget, clientHeaders: Record<string, string> = {}) {
    const { id, callId, sandbox, release, session, note } = await this.open(target);
    return {
      sessionId: id,
      version: session.version,
      socketPath: sandbox.socketPath,
      callId,
      headers: {
        ...clientHeaders,
        "x-agent-session-id": id,
        "x-agent-user-id": target.caller.subject,
        "x-agent-foundry-call-id": callId,
      },
      note,
      release,
    } satisfies AttachedSession;
  }

  async forward(call: ForwardedCall): Promise<ForwardedAnswer> {
    if (call.signal?.aborted) throw gone();
    const { id, callId, sandbox, release: free, session, note } = await this.open(call);
    // A caller who left while the session started: its call is not sent.
    if (call.signal?.aborted) {
      free();
      throw gone();
    }
    const method = call.method ?? "POST";
    note(`call ${callId}: ${method} ${call.path}`);
    const source = call.body instanceof Readable ? call.body : undefined;
    let streamed: Readable | undefined;
    let limiter: Transform | undefined;
    const length = source ? call.contentLength : ((call.body as Buffer | undefined)?.length ?? 0);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      let upstream: http.ClientRequest;
      let timer: NodeJS.Timeout | undefined;
      let answered = false;
      const fail = (err: AppError) => {
        clearTimeout(timer);
        call.signal?.removeEventListener("abort", onAbort);
        if (limiter) source?.unpipe(limiter);
        streamed?.unpipe();
        upstream?.destroy();
        free();
        reject(err);
      };
      const onAbort = () => fail(gone());
      try {
        upstream = http.request(
          {
            socketPath: sandbox.socketPath,
            agent: agentConnections,
            method,
            path: call.path,
            headers: {
              ...call.clientHeaders,
              ...call.extraHeaders,
              ...(call.body ? { "content-type": call.contentType } : {}),
              ...(length !== undefined ? { "content-length": length } : {}),
              "x-agent-session-id": id,
              "x-agent-user-id": call.caller.subject,
              "x-agent-foundry-call-id": callId,
            },
          },
          (answer) => {
            answered = true;
            clearTimeout(timer);
            call.signal?.removeEventListener("abort", onAbort);
            resolve(answer);
          },
        );
      } catch (err) {
        free();
        throw err;
      }
      call.signal?.addEventListener("abort", onAbort, { once: true });
      upstream.once("error", (err) =>
        fail(
          new AppError(
            "session_not_ready",
            `The session's agent did not answer: ${err.message}`,
            "agent_session_id",
          ),
        ),
      );
      const startDeadline = () => {
        if (answered) return;
        timer = setTimeout(
          () =>
            fail(
              new AppError(
                "upstream_timeout",
                `The session's agent sent no answer within ${this.options.answerTimeoutMs / 1000} s.`,
              ),
            ),
          this.options.answerTimeoutMs,
        );
      };
      if (!source) {
        upstream.end(call.body);
        startDeadline();
        return;
      }
      // Read from here on only: every error of the body is handled from its first byte.
      limiter = call.bodyLimit ? limited(source, call.bodyLimit) : undefined;
      streamed = limiter ?? source;
      streamed.on("error", (err) => fail(err instanceof AppError ? err : gone()));
      if (limiter) source.pipe(limiter);
      // The deadline runs from the end of the caller's body: an upload takes what it takes.
      streamed.once("end", startDeadline);
      streamed.pipe(upstream);
    });
    // The agent's answer outlives the caller only until the caller is gone.
    const onAbort = () => {
      res.destroy();
      source?.destroy();
    };
    call.signal?.addEventListener("abort", onAbort, { once: true });
    res.once("close", () => {
      call.signal?.removeEventListener("abort", onAbort);
      free();
    });
    return {
      sessionId: id,
      version: session.version,
      status: res.statusCode ?? 502,
      contentType: res.headers["content-type"],
      callId,
      agentHeaders: passed(res.headers, /^x-agent-[a-z0-9-]{1,64}$/),
      body: res,
    };
  }
}

/** The caller left before the agent answered (no one reads this, but the call ends). */
const gone = () => new AppError("invalid_parameter", "The caller closed the request.");

/** `fn`, callable any number of times, run once. */
function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

/** Passes a body's bytes through until `bytes`, then fails with `error()`, unpiped from `source`. */
function limited(source: Readable, limit: { bytes: number; error: () => AppError }): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > limit.bytes) {
        source.unpipe(this);
        callback(limit.error());
      } else callback(null, chunk);
    },
  });
}
