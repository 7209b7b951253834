import http from "node:http";
import { AppError } from "../domain/errors.js";
import type { Caller } from "../domain/keyService.js";
import { agentConnections } from "../sessions/agentSocket.js";
import type { SessionService } from "../sessions/sessionService.js";

/*
 * The data plane of hosted agents: a call for an agent is handed to one of its sessions'
 * sandboxes through the agent's socket, and the answer streamed back unbuffered.
 */

export interface ForwardedCall {
  caller: Caller;
  project: string;
  agentName: string;
  /** The session to use; a new one (of `version`, else the split's pick) when absent. */
  sessionId?: string;
  version?: number;
  /** The agent's route, e.g. `/responses`. */
  path: string;
  body: Buffer;
  contentType: string;
}

export interface ForwardedAnswer {
  sessionId: string;
  version: number;
  status: number;
  contentType: string | undefined;
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
    const { sandbox, release, session } = await this.sessions.open(
      call.caller,
      call.project,
      call.agentName,
      id,
    );
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const upstream = http.request(
        {
          socketPath: sandbox.socketPath,
          agent: agentConnections,
          method: "POST",
          path: call.path,
          headers: {
            "content-type": call.contentType,
            "content-length": call.body.length,
            "x-agent-session-id": id,
            "x-agent-user-id": call.caller.subject,
          },
        },
        resolve,
      );
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
      body: res,
    };
  }
}
