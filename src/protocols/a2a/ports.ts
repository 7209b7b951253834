import type { JsonObject } from "../../domain/model.js";

/*
 * What the A2A protocol keeps: each context (an A2A `contextId`) and what it continues — a
 * conversation for a prompt agent, a session for a hosted one — and each task as the A2A
 * wire shows it. Both belong to one identity of one agent; nobody else finds them.
 */

/** Whose an A2A context or task is: the agent it was sent to and the identity that sent it. */
export interface A2aScope {
  project: string;
  agentName: string;
  owner: string;
}

export interface A2aContext extends A2aScope {
  id: string;
  /** A prompt agent's context continues a conversation; a hosted agent's, a session. */
  kind: "conversation" | "session";
  targetId: string;
  createdAt: number;
}

export interface StoredTask {
  id: string;
  contextId: string;
  /** The task's state as the wire names it (`TASK_STATE_WORKING`, …). */
  state: string;
  /** The task as the v1.0 JSON wire shows it (`Task.toJSON`). */
  body: JsonObject;
  updatedAt: number;
}

export interface A2aRepository {
  /** The context of this agent, whoever owns it (the caller checks the owner). */
  context(project: string, agentName: string, id: string): Promise<A2aContext | undefined>;
  /**
   * Inserts the context, or moves the owner's own to a new target; false (and nothing written)
   * when the agent has one of this id owned by another.
   */
  putContext(context: A2aContext): Promise<boolean>;
  /** The task of this scope (another owner's is undefined). */
  task(scope: A2aScope, id: string): Promise<StoredTask | undefined>;
  /** Inserts or replaces the task; never replaces another owner's task of that id. */
  putTask(scope: A2aScope, task: StoredTask): Promise<void>;
  /** Deletes the scope's oldest finished tasks past its newest `keep`. */
  prune(scope: A2aScope, keep: number): Promise<void>;
  /** Tasks still submitted or working (after a restart: none of them runs any more). */
  unfinished(limit: number): Promise<(StoredTask & { scope: A2aScope })[]>;
}
