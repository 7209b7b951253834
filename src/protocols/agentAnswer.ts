import type { Caller } from "../domain/keyService.js";
import { AppError } from "../domain/errors.js";
import type { JsonObject, Version } from "../domain/model.js";
import { isObject } from "../lib/isObject.js";
import type { Created, ResponseService } from "../responses/responseService.js";
import { AnswerFailure, eventsOf, failureOf, outputText } from "./answers.js";

/*
 * One question to an agent, one text answer: what the endpoint protocols that are not the
 * Responses API (MCP, activities) ask of an agent. A prompt agent answers through the
 * Responses machinery; a hosted one through its session's `/responses` (the same path the
 * agent's `openai` endpoint takes). Every answer is bounded in bytes and time.
 */

/**
 * The version that answers a call of an endpoint protocol, picked once (the traffic split's
 * pick, the same for one `sticky` key) so the call branches on the kind of the version that
 * answers. A session is a hosted agent's: with `sessionId`, a prompt version is refused.
 */
export async function answeringVersion(
  responses: ResponseService,
  project: string,
  agentName: string,
  sessionId: string | undefined,
  sticky?: string,
): Promise<Version> {
  const version = await responses.answeringVersion(project, agentName, sticky);
  if (sessionId !== undefined && version.definition.kind !== "hosted")
    throw new AppError(
      "invalid_parameter",
      `Agent '${agentName}' answers as a ${version.definition.kind} agent; agent_session_id is for hosted agents.`,
      "agent_session_id",
    );
  return version;
}

/** An agent that could not answer: its reason, for the protocol to present its own way. */
export class AgentFailure extends Error {
  override readonly name = "AgentFailure";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Question {
  caller: Caller;
  project: string;
  agentName: string;
  input: string;
  /** The version that answers (the endpoint's traffic split's pick when absent). */
  version?: number;
  /** A hosted agent's session to continue; a new one when absent. */
  sessionId?: string;
  clientHeaders?: Record<string, string>;
  /** The asker is gone: the answer is abandoned. */
  signal?: AbortSignal;
}

export interface Answer {
  text: string;
  /** The hosted agent's session that answered. */
  sessionId?: string;
}

export interface AgentAnswerOptions {
  /** A hosted agent's answer is read up to this many bytes. */
  maxAnswerBytes: number;
  /** Deadline of one question. */
  timeoutMs: number;
}

export const defaultAnswerOptions: AgentAnswerOptions = {
  maxAnswerBytes: 4 * 1024 * 1024,
  timeoutMs: 10 * 60 * 1000,
};

/**
 * The agent's answer text. The caller's faults (and the service's refusals: limits, budgets,
 * missing sessions) stay AppErrors; an agent that answers with a failure, nothing readable, or
 * not in time is an AgentFailure.
 */
export async function askAgent(
  responses: ResponseService,
  q: Question,
  options: AgentAnswerOptions = defaultAnswerOptions,
): Promise<Answer> {
  const deadline = AbortSignal.timeout(options.timeoutMs);
  const signal = q.signal ? AbortSignal.any([q.signal, deadline]) : deadline;
  const pending = responses.create(
    q.caller,
    q.project,
    {
      input: q.input,
      store: false,
      ...(q.version !== undefined
        ? {
            agent_reference: {
              type: "agent_reference",
              name: q.agentName,
              version: String(q.version),
            },
          }
        : {}),
      ...(q.sessionId !== undefined ? { agent_session_id: q.sessionId } : {}),
    },
    { agentName: q.agentName, clientHeaders: q.clientHeaders },
    signal,
  );
  let created: Created;
  try {
    // A hosted agent that never answers its headers is not waited for past the deadline (or
    // the asker's leaving); its answer, should it come, is thrown away.
    created = await untilAborted(pending, signal, (c) => {
      if (c.kind === "hosted") c.body.destroy();
    });
  } catch (err) {
    if (deadline.aborted) throw timedOut(options.timeoutMs);
    throw err;
  }
  // A hosted agent's answer, one JSON response or its events, is cut off past the deadline
  // (or once the asker left): destroyed, which frees its session.
  const body = created.kind === "hosted" ? created.body : undefined;
  const onAbort = () => body?.destroy();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const event of eventsOf(created, options.maxAnswerBytes)) {
      const type = event.type;
      if (
        type === "response.completed" ||
        type === "response.failed" ||
        type === "response.incomplete"
      ) {
        const response = isObject(event.response) ? event.response : {};
        if (type !== "response.completed" && response.status === undefined)
          throw new AgentFailure("agent_error", failureOf(event));
        return {
          text: answerText(response as JsonObject),
          ...(created.kind === "hosted" ? { sessionId: created.answer.sessionId } : {}),
        };
      }
      if (type === "error") throw new AgentFailure("agent_error", failureOf(event));
    }
  } catch (err) {
    if (deadline.aborted) throw timedOut(options.timeoutMs);
    if (err instanceof AgentFailure || err instanceof AppError) throw err;
    if (err instanceof AnswerFailure) throw new AgentFailure("agent_error", err.message);
    throw new AgentFailure("agent_error", "The agent's answer was cut short.");
  } finally {
    signal.removeEventListener("abort", onAbort);
    body?.destroy();
  }
  if (deadline.aborted) throw timedOut(options.timeoutMs);
  throw new AgentFailure("agent_error", "The agent's answer ended before its response did.");
}

/**
 * The text of a response object: its messages' `output_text` parts, joined. A failed
 * response, or one with nothing to say (only function calls for its caller, say), fails.
 */
export function answerText(response: JsonObject): string {
  if (response.status === "failed" || response.status === "cancelled") {
    // The agent's own words: a code only of the shape codes have, a message clipped.
    const error = isObject(response.error) ? response.error : {};
    throw new AgentFailure(
      typeof error.code === "string" && failureCodePattern.test(error.code)
        ? error.code
        : "agent_error",
      typeof error.message === "string"
        ? clip(error.message)
        : `The agent's response is ${String(response.status)}.`,
    );
  }
  const text = outputText(response);
  if (text === "") {
    const output = Array.isArray(response.output) ? response.output : [];
    const asks = output.some((i) => isObject(i) && i.type === "function_call");
    throw new AgentFailure(
      "agent_error",
      asks
        ? "The agent asked its caller to run a function, which this protocol cannot answer."
        : "The agent's response has no text.",
    );
  }
  return text;
}

/**
 * `pending`, or a rejection once `signal` aborts; what `pending` gives after that is handed to
 * `late` (to free it: a hosted agent's answer body is destroyed).
 */
export function untilAborted<T>(
  pending: Promise<T>,
  signal: AbortSignal,
  late: (value: T) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(new AgentFailure("agent_error", "The question was abandoned."));
      pending.then(late, () => {});
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    pending.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

const timedOut = (ms: number) =>
  new AgentFailure("timeout", `The agent did not answer within ${Math.round(ms / 1000)} s.`);

/** The shape of a failure code an agent may name. */
const failureCodePattern = /^[a-z_]{1,64}$/;

const clip = (s: string) => (s.length > 1000 ? `${s.slice(0, 1000)}…` : s);
