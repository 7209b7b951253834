import { Task, type ListTasksRequest, type ListTasksResponse } from "@a2a-js/sdk";
import { UnsupportedOperationError } from "@a2a-js/sdk/errors";
import type { ServerCallContext, TaskStore } from "@a2a-js/sdk/server";
import type { Caller } from "../../domain/keyService.js";
import type { Clock } from "../../domain/ports.js";
import type { A2aRepository, A2aScope } from "./ports.js";

/** What the service puts in each call's `ServerCallContext.state`. */
export interface CallState {
  scope: A2aScope;
  caller: Caller;
  /** `message/stream` / `SendStreamingMessage`: the answer's text goes out as it comes. */
  streaming: boolean;
}

const stateKey = "agenthost.a2a";

export const withCallState = (state: CallState) => new Map<string, unknown>([[stateKey, state]]);

export function callStateOf(context: ServerCallContext): CallState {
  const state = context.state.get(stateKey) as CallState | undefined;
  if (!state) throw new Error("an A2A call without its scope");
  return state;
}

/** The owner of a call's buses and tasks: the agent and the caller's identity, never a tenant. */
export const ownerOf = (context: ServerCallContext) => {
  const { project, agentName, owner } = callStateOf(context).scope;
  return `${project}\0${agentName}\0${owner}`;
};

/**
 * The SDK's TaskStore over the A2A repository: a task is found only in its own scope (the
 * agent and the identity of the call), whatever `tenant` a client names. A running task's
 * pieces stay in memory: the repository is written when its state changes (submitted,
 * working, its end), so a long stream costs a few writes, not one per piece.
 */
export class A2aTaskStore implements TaskStore {
  /** Running tasks as last saved, by scope and id, with the state last written. */
  private readonly live = new Map<string, { body: Record<string, unknown>; written: string }>();

  constructor(
    private readonly repo: A2aRepository,
    private readonly clock: Clock,
  ) {}

  async save(task: Task, context: ServerCallContext): Promise<void> {
    const key = `${ownerOf(context)}\0${task.id}`;
    const body = Task.toJSON(task) as Record<string, unknown>;
    const state =
      (body.status as { state?: string } | undefined)?.state ?? "TASK_STATE_UNSPECIFIED";
    const running = state === "TASK_STATE_SUBMITTED" || state === "TASK_STATE_WORKING";
    const live = this.live.get(key);
    if (running && live?.written === state) {
      live.body = body;
      return;
    }
    await this.repo.putTask(callStateOf(context).scope, {
      id: task.id,
      contextId: task.contextId,
      state,
      body: body as never,
      updatedAt: this.clock(),
    });
    if (running) this.live.set(key, { body, written: state });
    else this.live.delete(key);
  }

  async load(taskId: string, context: ServerCallContext): Promise<Task | undefined> {
    const live = this.live.get(`${ownerOf(context)}\0${taskId}`);
    if (live) return Task.fromJSON(live.body);
    const stored = await this.repo.task(callStateOf(context).scope, taskId);
    return stored && Task.fromJSON(stored.body);
  }

  async list(_params: ListTasksRequest, _context: ServerCallContext): Promise<ListTasksResponse> {
    throw new UnsupportedOperationError("Listing tasks is not served; get a task by its id.");
  }
}
