import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { Role, TaskState, type Message, type Part, type Task } from "@a2a-js/sdk";
import {
  AgentEvent,
  type AgentExecutor,
  type ExecutionEventBus,
  type RequestContext,
} from "@a2a-js/sdk/server";
import type { Logger } from "pino";
import { createResponseBody } from "../../contract/responses.js";
import { parse } from "../../contract/validate.js";
import { AppError } from "../../domain/errors.js";
import type { Clock } from "../../domain/ports.js";
import type { ConversationService } from "../../responses/conversationService.js";
import type { Created, ResponseService } from "../../responses/responseService.js";
import { untilAborted, type AgentAnswerOptions } from "../agentAnswer.js";
import { AnswerFailure, eventsOf, failureOf, outputText } from "../answers.js";
import type { A2aContext, A2aRepository, A2aScope } from "./ports.js";
import { callStateOf, type CallState } from "./taskStore.js";

export interface A2aExecutorDeps {
  repo: A2aRepository;
  responses: ResponseService;
  conversations: ConversationService;
  /** The deadline of one answer (the same as the other endpoint protocols'). */
  answers: AgentAnswerOptions;
  clock: Clock;
  log: Logger;
}

/** Largest answer text a task keeps. */
const maxAnswerChars = 4 * 1024 * 1024;
/**
 * Tasks one identity may have running at one agent: the number of responses an identity may
 * have running (the Responses engine's limit), which a task is one of.
 */
export const maxRunningTasks = 64;
/** Tasks kept per identity and agent: past this many, the oldest finished ones are deleted. */
export const keptTasks = 1000;
/** A stream's answer goes out in pieces at most this often, or once this many characters wait. */
const pieceIntervalMs = 100;
const pieceChars = 16 * 1024;
/** Pieces one task sends at most; the rest of its answer goes in the closing piece. */
const maxPieces = 1000;

/** A task's outcome. */
type Outcome =
  { kind: "completed"; text: string } | { kind: "canceled" } | { kind: "failed"; message: string };

/** What one task's answer needs. */
interface Ask {
  state: CallState;
  contextId: string;
  existing: A2aContext | undefined;
  text: string;
  /** Canceled (tasks/cancel, shutdown). */
  cancel: AbortSignal;
  /** Where the context goes on, once known (a new context's conversation or session). */
  found: (kind: A2aContext["kind"], targetId: string) => void;
  /** A piece of the answer as it comes (a stream's). */
  piece: (text: string) => void;
}

/**
 * Runs each A2A message as one response of the agent: a prompt agent's through the Responses
 * engine in the context's conversation, a hosted agent's in the context's session (its own
 * `/responses`). A task is submitted, working, then completed with the answer as its one
 * artifact (sent in pieces as they come for a stream), failed with the reason, or canceled.
 */
export class A2aExecutor implements AgentExecutor {
  /** Each task this process is running: its scope, its cancel, and its end. */
  private readonly running = new Map<
    string,
    { scope: string; cancel: () => void; done: Promise<void> }
  >();

  constructor(private readonly deps: A2aExecutorDeps) {}

  /** How many tasks the caller's identity has running at this agent. */
  runningCount(scope: A2aScope): number {
    const key = scopeKey(scope);
    let count = 0;
    for (const run of this.running.values()) if (run.scope === key) count++;
    return count;
  }

  execute = async (request: RequestContext, bus: ExecutionEventBus): Promise<void> => {
    const abort = new AbortController();
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const scope = scopeKey(callStateOf(request.context).scope);
    this.running.set(request.taskId, { scope, cancel: () => abort.abort(), done });
    try {
      await this.run(request, bus, abort.signal);
    } finally {
      this.running.delete(request.taskId);
      finish();
    }
  };

  private async run(request: RequestContext, bus: ExecutionEventBus, cancel: AbortSignal) {
    const state = callStateOf(request.context);
    const { taskId, contextId } = request;
    const user = request.userMessage;
    const now = () => new Date(this.deps.clock() * 1000).toISOString();
    // Where the context goes on: shown only once the context is known to be the caller's.
    let target: { kind: A2aContext["kind"]; id: string } | undefined;
    const metadata = () => target && { [metadataKey(target.kind)]: target.id };
    const status = (state: TaskState, text?: string) =>
      bus.publish(
        AgentEvent.statusUpdate({
          taskId,
          contextId,
          status: {
            state,
            message: text === undefined ? undefined : agentMessage(text, taskId, contextId),
            timestamp: now(),
          },
          metadata: metadata(),
        }),
      );
    const artifact = (text: string, append: boolean, lastChunk: boolean) =>
      bus.publish(
        AgentEvent.artifactUpdate({
          taskId,
          contextId,
          artifact: answerArtifact(taskId, text),
          append,
          lastChunk,
          metadata: undefined,
        }),
      );
    let published = false;
    try {
      const existing = await this.deps.repo.context(
        state.scope.project,
        state.scope.agentName,
        contextId,
      );
      // The request handler checked this already; a run never trusts another's context.
      if (existing && existing.owner !== state.scope.owner)
        throw new AppError(
          "invalid_parameter",
          `Context '${contextId}' was not found.`,
          "contextId",
        );
      if (request.task)
        throw new AppError(
          "invalid_parameter",
          "Every message starts a new task here: send the context's contextId (not a taskId) to continue.",
          "taskId",
        );
      if (this.runningCount(state.scope) > maxRunningTasks)
        throw new AppError(
          "too_many_responses",
          `This identity already has ${maxRunningTasks} tasks running at this agent; wait for one to end.`,
        );
      if (existing) target = { kind: existing.kind, id: existing.targetId };
      const task: Task = {
        id: taskId,
        contextId,
        status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: now() },
        artifacts: [],
        history: [user],
        metadata: metadata(),
      };
      bus.publish(AgentEvent.task(task));
      published = true;
      await this.deps.repo.prune(state.scope, keptTasks);
      status(TaskState.TASK_STATE_WORKING);
      // A stream's pieces, gathered: one publish (one write of the task) per interval or size.
      let sent = "";
      let waiting = "";
      let pieces = 0;
      let lastSent = 0;
      const flush = () => {
        if (waiting === "") return;
        artifact(waiting, sent !== "", false);
        sent += waiting;
        waiting = "";
        pieces++;
        lastSent = Date.now();
      };
      const outcome = await this.answer({
        state,
        contextId,
        existing,
        text: textOf(user),
        cancel,
        found: (kind, id) => (target = { kind, id }),
        piece: (text) => {
          if (!state.streaming) return;
          waiting += text;
          if (
            pieces < maxPieces &&
            (waiting.length >= pieceChars || Date.now() - lastSent >= pieceIntervalMs)
          )
            flush();
        },
      });
      if (outcome.kind === "completed") {
        // The answer closes as it went: the rest after what was sent (often nothing), or, when
        // the agent's final text is not what its pieces said, the whole answer anew.
        if (sent !== "" && outcome.text.startsWith(sent))
          artifact(outcome.text.slice(sent.length), true, true);
        else artifact(outcome.text, false, true);
        status(TaskState.TASK_STATE_COMPLETED);
      } else if (outcome.kind === "canceled") status(TaskState.TASK_STATE_CANCELED, "Canceled.");
      else status(TaskState.TASK_STATE_FAILED, outcome.message);
    } catch (err) {
      // A refusal before the task exists is the call's error; after, the task ends failed.
      if (!published && err instanceof AppError) throw err;
      if (!(err instanceof AppError) && !(err instanceof AnswerFailure))
        this.deps.log.error({ err, task: taskId }, "an A2A task failed");
      if (!published) throw err;
      status(
        cancel.aborted ? TaskState.TASK_STATE_CANCELED : TaskState.TASK_STATE_FAILED,
        cancel.aborted
          ? "Canceled."
          : err instanceof AppError || err instanceof AnswerFailure
            ? err.message
            : "The task failed unexpectedly.",
      );
    }
  }

  cancelTask = async (taskId: string, _bus: ExecutionEventBus): Promise<void> => {
    // The run, once stopped, ends the task as canceled on its bus.
    this.running.get(taskId)?.cancel();
  };

  /** Cancels every running task (at shutdown) and waits for them to end, at most `graceMs`. */
  async cancelAll(graceMs: number) {
    const runs = [...this.running.values()];
    for (const run of runs) run.cancel();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(runs.map((r) => r.done)),
      new Promise((resolve) => (timer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(timer);
  }

  private async answer(ask: Ask): Promise<Outcome> {
    const { caller, scope } = ask.state;
    const { timeoutMs } = this.deps.answers;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([ask.cancel, deadline]);
    const stopped = (): Outcome | undefined =>
      ask.cancel.aborted
        ? { kind: "canceled" }
        : deadline.aborted
          ? {
              kind: "failed",
              message: `The agent did not answer within ${Math.round(timeoutMs / 1000)} s.`,
            }
          : undefined;
    const kind = ask.existing?.kind;
    const targetId = ask.existing?.targetId;
    // A new context of a prompt agent continues a conversation made for it; should the version
    // that answers be hosted (a traffic split), the conversation is left unused.
    let conversation = kind === "conversation" ? targetId : undefined;
    if (kind === undefined) {
      conversation = (await this.deps.conversations.create(caller, scope.project, {})).id;
      // Recorded at once, so the context goes on even if this task ends before any answer.
      await this.remember(ask.state, ask.contextId, "conversation", conversation);
    }
    const body = parse(createResponseBody, {
      input: ask.text,
      stream: true,
      ...(conversation !== undefined && kind !== "session" ? { conversation } : {}),
      ...(kind === "session" ? { agent_session_id: targetId } : {}),
    });
    // A new context goes on where the version that answered runs: its conversation, or (a
    // hosted version) its session, the conversation made for it then unused.
    // A context that was a conversation and is answered by a hosted version moves to its
    // session (a new context's conversation, unused then, goes).
    const settle = async (c: Created) => {
      if (c.kind !== "hosted") {
        if (!ask.existing) ask.found("conversation", conversation!);
        return;
      }
      if (ask.existing?.kind === "session") return;
      await this.remember(ask.state, ask.contextId, "session", c.answer.sessionId);
      if (!ask.existing)
        await this.deps.conversations.delete(caller, scope.project, conversation!).catch(() => {});
      ask.found("session", c.answer.sessionId);
    };
    let late: Promise<void> | undefined;
    const pending = this.deps.responses.create(
      caller,
      scope.project,
      body,
      { agentName: scope.agentName },
      signal,
    );
    let created: Created;
    try {
      // A hosted agent that never sends its headers is not waited for past the deadline or a
      // cancel; its answer, should it come later, is freed (its session still the context's).
      created = await untilAborted(pending, signal, (c) => {
        free(c);
        late = settle(c).catch((err: unknown) =>
          this.deps.log.warn({ err }, "an A2A context was not recorded"),
        );
      });
    } catch (err) {
      const why = stopped();
      // Refused (a limit, a budget): the context stays, to be used again.
      if (!why) throw err;
      // A cancel right after the send: the headers on their way are waited for a moment, so
      // the context (its session) goes on. (`late` is set by then: untilAborted's handler
      // runs first.)
      if (ask.cancel.aborted && !ask.existing)
        await Promise.race([
          pending.then(
            () => late,
            () => undefined,
          ),
          delay(lateWaitMs, undefined, { ref: false }),
        ]);
      return why;
    }
    await settle(created);
    const onAbort = () => free(created);
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) free(created);
    let sent = 0;
    try {
      for await (const event of eventsOf(created)) {
        if (event.type === "response.output_text.delta" && typeof event.delta === "string") {
          // Nothing to add, or past what a task keeps: not a piece.
          if (event.delta === "" || sent + event.delta.length > maxAnswerChars) continue;
          ask.piece(event.delta);
          sent += event.delta.length;
        } else if (event.type === "response.completed") {
          if (stopped()) break;
          const answer = outputText(event.response as never);
          if (answer.length > maxAnswerChars)
            return {
              kind: "failed",
              message: `The answer is longer than ${maxAnswerChars} characters.`,
            };
          return { kind: "completed", text: answer };
        } else if (event.type === "response.failed" || event.type === "error") {
          return stopped() ?? { kind: "failed", message: failureOf(event) };
        } else if (event.type === "response.incomplete") {
          return stopped() ?? { kind: "failed", message: "The response is incomplete." };
        }
      }
    } catch (err) {
      const why = stopped();
      if (why) return why;
      throw err;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    return (
      stopped() ?? {
        kind: "failed",
        message: "The agent's answer ended before the response completed.",
      }
    );
  }

  private async remember(state: CallState, id: string, kind: A2aContext["kind"], targetId: string) {
    await this.deps.repo.putContext({
      ...state.scope,
      id,
      kind,
      targetId,
      createdAt: this.deps.clock(),
    });
  }
}

/** How long a canceled task waits for the headers of its new context's session. */
const lateWaitMs = 1000;

/** Stops an answer: a hosted agent's body destroyed (its session freed), a run aborted. */
function free(created: Created) {
  if (created.kind === "hosted") created.body.destroy();
  else if (created.kind === "stream") created.run.abort.abort();
}

const scopeKey = (s: A2aScope) => `${s.project}\0${s.agentName}\0${s.owner}`;

const metadataKey = (kind: A2aContext["kind"]) =>
  kind === "session" ? "agent_session_id" : "conversation_id";

const textPart = (text: string): Part => ({
  content: { $case: "text", value: text },
  metadata: undefined,
  filename: "",
  mediaType: "text/plain",
});

const answerArtifact = (taskId: string, text: string) => ({
  artifactId: `${taskId}-answer`,
  name: "answer",
  description: "",
  parts: [textPart(text)],
  metadata: undefined,
  extensions: [],
});

const agentMessage = (text: string, taskId: string, contextId: string): Message => ({
  messageId: randomUUID(),
  contextId,
  taskId,
  role: Role.ROLE_AGENT,
  parts: [textPart(text)],
  metadata: undefined,
  extensions: [],
  referenceTaskIds: [],
});

/** A message's text: its text parts, and its data parts as JSON, in order. */
export function textOf(message: Message): string {
  const texts: string[] = [];
  for (const part of message.parts) {
    const content = part.content;
    if (content?.$case === "text") texts.push(content.value);
    else if (content?.$case === "data") texts.push(JSON.stringify(content.value));
    else if (content?.$case === "url") texts.push(content.value);
  }
  const text = texts.join("\n");
  if (text.trim() === "")
    throw new AppError("invalid_parameter", "The message has no text.", "params.message.parts");
  return text;
}
