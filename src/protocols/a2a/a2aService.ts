import {
  Role,
  type AgentCard,
  TaskState,
  TaskStatus,
  type Message,
  type SendMessageRequest,
  type StreamResponse,
  type Task,
} from "@a2a-js/sdk";
import {
  A2A_ERROR_CODE,
  A2AError,
  RequestMalformedError,
  UnsupportedOperationError,
} from "@a2a-js/sdk/errors";
import {
  DefaultExecutionEventBusManager,
  DefaultRequestHandler,
  JsonRpcTransportHandler,
  ServerCallContext,
  validateVersion,
  type TaskStore,
  type User,
} from "@a2a-js/sdk/server";
import { LegacyJsonRpcTransportHandler } from "@a2a-js/sdk/compat/v0_3/server";
import type { Logger } from "pino";
import { AppError } from "../../domain/errors.js";
import type { Caller } from "../../domain/keyService.js";
import type { Agent, JsonObject } from "../../domain/model.js";
import { agentCardOf, cardJson, isLegacyVersion, type A2aEndpoint } from "./agentCard.js";
import { A2aExecutor, maxRunningTasks, textOf, type A2aExecutorDeps } from "./executor.js";
import type { A2aScope } from "./ports.js";
import { A2aTaskStore, callStateOf, ownerOf, withCallState } from "./taskStore.js";

/** Where the card was asked for (its URLs name it) and its `A2A-Version` header. */
export interface A2aCardSite extends A2aEndpoint {
  a2aVersion?: string;
}

/** How a call came: its `A2A-Version` header, and the request's id (for the log). */
export interface A2aCall {
  a2aVersion?: string;
  requestId: string;
}

/** A JSON-RPC request body: parsed, or why it could not be. */
export type RpcBody = { json: unknown } | { malformed: string };

/** One JSON-RPC response of a stream: an event, or the error that ends it. */
export type RpcEvent = { event: JsonObject } | { error: JsonObject };

/** What a JSON-RPC call answers: one JSON-RPC response, or a stream of them (for SSE). */
export type RpcAnswer =
  { kind: "json"; body: JsonObject } | { kind: "stream"; events: AsyncIterable<RpcEvent> };

const streamMethods = new Set(["message/stream", "SendStreamingMessage"]);

/**
 * The A2A protocol of an agent's endpoint (JSON-RPC, v1.0 and v0.3 by `A2A-Version`): its card,
 * and its calls handed to the SDK's request handler over this service's task store and
 * executor. Contexts and tasks are the caller's identity's alone: another finds none.
 */
export class A2aService {
  private readonly tasks: A2aTaskStore;
  private readonly buses = new DefaultExecutionEventBusManager(ownerOf);
  private readonly executor: A2aExecutor;

  constructor(private readonly deps: A2aExecutorDeps) {
    this.tasks = new A2aTaskStore(deps.repo, deps.clock);
    this.executor = new A2aExecutor({
      repo: deps.repo,
      responses: deps.responses,
      conversations: deps.conversations,
      answers: deps.answers,
      clock: deps.clock,
      log: deps.log,
    });
  }

  /** The agent's card (an agent that serves a2a), in the shape of the version asked for. */
  card(agent: Agent, site: A2aCardSite): JsonObject {
    return cardJson(agentCardOf(agent, site), site.a2aVersion);
  }

  /** One JSON-RPC call to the agent (one that serves a2a), as the caller. */
  async call(caller: Caller, agent: Agent, body: RpcBody, how: A2aCall): Promise<RpcAnswer> {
    const legacy = isLegacyVersion(how.a2aVersion);
    const toError = legacy
      ? LegacyJsonRpcTransportHandler.mapToLegacyJSONRPCError
      : JsonRpcTransportHandler.mapToJSONRPCError;
    if ("malformed" in body)
      return json({
        jsonrpc: "2.0",
        id: null,
        error: { code: A2A_ERROR_CODE.PARSE_ERROR, message: body.malformed },
      });
    const request = body.json as { id?: unknown; method?: unknown; params?: unknown };
    const id = isId(request?.id) ? request.id : null;
    const scope: A2aScope = {
      project: agent.project,
      agentName: agent.name,
      owner: caller.subject,
    };
    const method = typeof request?.method === "string" ? request.method : "";
    const known = (err: unknown) => this.known(err, how.requestId);
    try {
      // The card the SDK's handler checks against; its URL is never shown by a call.
      const card = agentCardOf(agent, undefined);
      const context = new ServerCallContext({
        user: new CallerUser(caller.subject),
        requestedVersion: legacy ? "0.3" : how.a2aVersion!,
        state: withCallState({ scope, caller, streaming: streamMethods.has(method) }),
      });
      validateVersion(context.requestedVersion, card, "JSONRPC");
      const handler = new A2aRequestHandler(card, this.tasks, this.executor, this.buses, {
        check: (params, ctx) => this.checkMessage(params, ctx),
        known,
      });
      const transport = legacy
        ? new LegacyJsonRpcTransportHandler(handler)
        : new JsonRpcTransportHandler(handler);
      const answer = await transport.handle(withoutTenant(body.json), context);
      if (!isIterable(answer)) return json(this.masked(answer as JsonObject, how.requestId));
      // The first event decides: an error before it is a plain JSON-RPC error, not a stream.
      const iterator = answer[Symbol.asyncIterator]();
      const log = this.deps.log;
      const mask = (event: unknown) => this.masked(event as JsonObject, how.requestId);
      const first = await iterator.next();
      return {
        kind: "stream",
        events: (async function* (): AsyncGenerator<RpcEvent> {
          let ended = first.done === true;
          try {
            if (!first.done) yield { event: mask(first.value) };
            for (let next = await iterator.next(); !next.done; next = await iterator.next())
              yield { event: mask(next.value) };
            ended = true;
          } catch (err) {
            ended = true;
            yield { error: { jsonrpc: "2.0", id, error: toError(known(err)) } };
          } finally {
            // A client gone mid-stream does not cancel the task: the SDK's handler records its
            // events only as they are read, so the rest are read (and dropped) to its end.
            if (!ended) void drain(iterator, log);
          }
        })(),
      };
    } catch (err) {
      return json({ jsonrpc: "2.0", id, error: toError(known(err)) });
    }
  }

  /**
   * An internal error the SDK answered by itself (one thrown while it read the request, say)
   * says no more than "Internal error."; what it said is logged.
   */
  private masked(answer: JsonObject, requestId: string): JsonObject {
    const error = answer.error as { code?: unknown; message?: unknown } | undefined;
    if (error?.code !== A2A_ERROR_CODE.INTERNAL_ERROR || error.message === internalError)
      return answer;
    this.deps.log.error({ reqId: requestId, error: error.message }, "an A2A call failed");
    return { ...answer, error: { code: A2A_ERROR_CODE.INTERNAL_ERROR, message: internalError } };
  }

  /**
   * What a call's error says: the protocol's own as they are, the service's refusals as
   * invalid params with their message; anything else is logged and only "Internal error.".
   */
  private known(err: unknown, requestId: string): unknown {
    if (err instanceof A2AError) return err;
    if (err instanceof AppError) return new RequestMalformedError(err.message);
    this.deps.log.error({ err, reqId: requestId }, "an A2A call failed");
    return new Error(internalError);
  }

  /**
   * On the message as the SDK parsed it (whatever spelling the wire used): it has text; it
   * continues a context only if that is the caller's context of this agent (another's is not
   * found, as an unknown one); it always starts a new task; the identity has room for one.
   */
  private async checkMessage(params: SendMessageRequest, context: ServerCallContext) {
    const { scope } = callStateOf(context);
    const message = params.message;
    if (!message) throw new RequestMalformedError("The request has no message.");
    if (message.taskId !== "")
      throw new UnsupportedOperationError(
        "Every message starts a new task here: send the context's contextId (not a taskId) to continue.",
      );
    textOf(message);
    if (this.executor.runningCount(scope) >= maxRunningTasks)
      throw new AppError(
        "too_many_responses",
        `This identity already has ${maxRunningTasks} tasks running at this agent; wait for one to end.`,
      );
    if (message.contextId === "") return;
    const found = await this.deps.repo.context(scope.project, scope.agentName, message.contextId);
    if (!found || found.owner !== scope.owner)
      throw new RequestMalformedError(`Context '${message.contextId}' was not found.`);
  }

  /** After a restart: tasks that were running then have failed; how many. */
  async recover(): Promise<number> {
    let count = 0;
    for (;;) {
      const batch = await this.deps.repo.unfinished(1000);
      if (batch.length === 0) return count;
      for (const task of batch) {
        const status = TaskStatus.toJSON({
          state: TaskState.TASK_STATE_FAILED,
          message: stoppedMessage(task.id, task.contextId),
          timestamp: new Date(this.deps.clock() * 1000).toISOString(),
        }) as JsonObject;
        await this.deps.repo.putTask(task.scope, {
          ...task,
          state: status.state as string,
          body: { ...task.body, status },
          updatedAt: this.deps.clock(),
        });
        count++;
      }
    }
  }

  /** At shutdown: cancels what still runs, and waits for it to end, at most `graceMs`. */
  close(graceMs: number): Promise<void> {
    return this.executor.cancelAll(graceMs);
  }
}

/**
 * The SDK's request handler, with the service's checks on each message as parsed, and its
 * errors made known. A task is followed while it runs by the stream that sent it alone:
 * `SubscribeToTask` (`tasks/resubscribe`) is refused.
 */
class A2aRequestHandler extends DefaultRequestHandler {
  constructor(
    card: AgentCard,
    tasks: TaskStore,
    executor: A2aExecutor,
    buses: DefaultExecutionEventBusManager,
    private readonly hooks: {
      check: (params: SendMessageRequest, context: ServerCallContext) => Promise<void>;
      known: (err: unknown) => unknown;
    },
  ) {
    super(card, tasks, executor, buses);
  }

  override async sendMessage(
    params: SendMessageRequest,
    context: ServerCallContext,
  ): Promise<Message | Task> {
    try {
      await this.hooks.check(params, context);
      return await super.sendMessage(params, context);
    } catch (err) {
      throw this.hooks.known(err);
    }
  }

  override async *sendMessageStream(
    params: SendMessageRequest,
    context: ServerCallContext,
  ): AsyncGenerator<StreamResponse, void, undefined> {
    try {
      await this.hooks.check(params, context);
      yield* super.sendMessageStream(params, context);
    } catch (err) {
      throw this.hooks.known(err);
    }
  }

  // eslint-disable-next-line require-yield
  override async *resubscribe(): AsyncGenerator<StreamResponse, void, undefined> {
    throw new UnsupportedOperationError(
      "Subscribing to a task is not served: follow it with the stream that sent it, or get it by its id.",
    );
  }
}

const stoppedMessage = (taskId: string, contextId: string): Message => ({
  messageId: `${taskId}-stopped`,
  contextId,
  taskId,
  role: Role.ROLE_AGENT,
  parts: [
    {
      content: { $case: "text", value: "The service stopped while this task was running." },
      metadata: undefined,
      filename: "",
      mediaType: "text/plain",
    },
  ],
  metadata: undefined,
  extensions: [],
  referenceTaskIds: [],
});

/**
 * The request without a `tenant`: tasks are scoped by the agent and the caller alone, and a
 * tenant would split the SDK's own scoping (its buses and locks) from the task store's.
 */
function withoutTenant(json: unknown): Record<string, unknown> {
  const request = json as Record<string, unknown>;
  const params = request?.params;
  if (params === null || typeof params !== "object" || Array.isArray(params)) return request;
  const rest = { ...(params as Record<string, unknown>) };
  delete rest.tenant;
  return { ...request, params: rest };
}

/** The SDK's view of the caller: its identity is the owner of what it creates. */
class CallerUser implements User {
  constructor(private readonly subject: string) {}
  get isAuthenticated() {
    return true;
  }
  get userName() {
    return this.subject;
  }
}

/** Reads a stream to its end, for what reading it records. */
async function drain(iterator: AsyncIterator<unknown>, log: Logger) {
  try {
    for (let next = await iterator.next(); !next.done; next = await iterator.next());
  } catch (err) {
    log.warn({ err }, "an A2A stream failed after its client left");
  }
}

const internalError = "Internal error.";

const json = (body: JsonObject): RpcAnswer => ({ kind: "json", body });

const isId = (v: unknown): v is string | number =>
  typeof v === "string" || (typeof v === "number" && Number.isInteger(v));

const isIterable = (v: unknown): v is AsyncIterable<unknown> =>
  typeof (v as AsyncIterable<unknown>)?.[Symbol.asyncIterator] === "function";
