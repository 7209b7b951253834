import { randomBytes } from "node:crypto";
import http from "node:http";
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

export interface ForwardedCall {
  caller: Caller;
  project: string;
  agentName: string;
  /** The session to use; a new one (of `version`, else the split's pick) when absent. */
  sessionId?: string;
  version?: number;
  /** `POST` unless given. */
  method?: "GET" | "POST" | "DELETE";
  /** The agent's route with its query, e.g. `/responses`. */
  path: string;
  /** With its content type; none for a call without a body. */
  body?: Buffer;
  contentType?: string;
  /** The caller's `x-client-*` headers (see `clientHeadersOf`). */
  clientHeaders?: Record<string, string>;
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

export class SessionForwarder {
  constructor(private readonly sessions: SessionService) {}

  async forward(call: ForwardedCall): Promise<ForwardedAnswer> {
    let id = call.sessionId;
    if (id === undefined) {
      const version =
        call.version ?? Number(await this.sessions.defaultVersion(call.project, call.agentName));
      const created = await this.sessions.create(call.caller, call.project, call.agentName, {
        version_indicator: { type: "version_ref", agent_version: String(version) },
      });
      id = created.id;
    }
    const { sandbox, release, session, note } = await this.sessions.open(
      call.caller,
      call.project,
      call.agentName,
      id,
    );
    const callId = `call_${randomBytes(12).toString("hex")}`;
    const method = call.method ?? "POST";
    note(`call ${callId}: ${method} ${call.path}`);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      let upstream: http.ClientRequest;
      try {
        upstream = http.request(
          {
            socketPath: sandbox.socketPath,
            agent: agentConnections,
            method,
            path: call.path,
            headers: {
              ...call.clientHeaders,
              ...(call.body ? { "content-type": call.contentType } : {}),
              "content-length": call.body?.length ?? 0,
              "x-agent-session-id": id,
              "x-agent-user-id": call.caller.subject,
              "x-agent-foundry-call-id": callId,
            },
          },
          resolve,
        );
      } catch (err) {
        release();
        throw err;
      }
      upstream.once("error", (err) => {
        release();
        reject(
          new AppError(
            "session_not_ready",
            `The session's agent did not answer: ${err.message}`,
            "agent_session_id",
          ),
        );
      });
      upstream.end(call.body);
    });
    res.once("close", release);
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
