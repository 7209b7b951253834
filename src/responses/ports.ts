import type { JsonObject } from "../domain/model.js";
import type { Order, Page, PageRequest } from "../domain/model.js";

/*
 * What the Responses engine keeps: responses, conversations and their items, token usage.
 * Items are stored as the wire shows them (JSON objects with `id` and `type`).
 */

export type Item = JsonObject & { id: string; type: string };

export interface StoredResponse {
  id: string;
  project: string;
  /** The identity that created it; nobody else sees it. */
  owner: string;
  agentName: string | null;
  /** The hosted session that answered it (responses of hosted agents). */
  sessionId: string | null;
  previousResponseId: string | null;
  conversationId: string | null;
  /** The response object as presented. */
  body: JsonObject;
  /** This call's input items (not the whole thread). */
  input: Item[];
  /** A background response's stream, once it has ended. */
  events: JsonObject[] | null;
  createdAt: number;
}

export interface ResponseRepository {
  /** Inserts or replaces (body and events) the response. */
  put(response: StoredResponse): Promise<void>;
  /** Inserts the response unless the project has one of this id; false when it had. */
  claim(response: StoredResponse): Promise<boolean>;
  /** Without its events (`events` is null): those are read by `events`. */
  get(project: string, id: string): Promise<StoredResponse | undefined>;
  events(project: string, id: string): Promise<JsonObject[] | null>;
  delete(project: string, id: string): Promise<boolean>;
  /** Marks every queued or running response failed (after a restart); how many were. */
  failUnfinished(message: string): Promise<number>;
}

export interface Conversation {
  id: string;
  project: string;
  owner: string;
  metadata: Record<string, string>;
  /** The agent version that first answered in it: later turns keep it. */
  agentName: string | null;
  agentVersion: number | null;
  createdAt: number;
}

export interface ConversationRepository {
  /** Creates the conversation with its first items, in one transaction. */
  create(conversation: Conversation, items: Item[]): Promise<void>;
  get(project: string, id: string): Promise<Conversation | undefined>;
  update(
    project: string,
    id: string,
    fields: Partial<Pick<Conversation, "metadata" | "agentName" | "agentVersion">>,
  ): Promise<Conversation | undefined>;
  /** Deletes it and its items. */
  delete(project: string, id: string): Promise<boolean>;
  /** Appends items at the end; false when the conversation is gone. */
  append(project: string, id: string, items: Item[], at: number): Promise<boolean>;
  /** Every item, oldest first (what a model call sees). */
  items(project: string, id: string): Promise<Item[]>;
  page(project: string, id: string, page: PageRequest): Promise<Page<Item>>;
  item(project: string, id: string, itemId: string): Promise<Item | undefined>;
  deleteItem(project: string, id: string, itemId: string): Promise<boolean>;
  /** One owner's conversations, by creation (cursors are conversation ids). */
  list(
    project: string,
    owner: string,
    filter: { agentName?: string },
    page: PageRequest,
  ): Promise<Page<Conversation>>;
}

/** One model call's tokens and who made it. */
export interface UsageRecord {
  project: string;
  agentName: string | null;
  agentVersion: number | null;
  sessionId: string | null;
  conversationId: string | null;
  owner: string;
  deployment: string;
  responseId: string | null;
  inputTokens: number;
  outputTokens: number;
  createdAt: number;
}

export interface UsageTotals {
  inputTokens: number;
  outputTokens: number;
  calls: number;
}

export type UsageGroup =
  "agent" | "version" | "session" | "identity" | "deployment" | "day" | "time";

export interface UsageRepository {
  /** Adds the rows in one transaction. */
  add(records: UsageRecord[]): Promise<void>;
  /** Totals of one session, or of one conversation. */
  totals(
    scope: { project: string; agentName: string; sessionId: string } | { conversationId: string },
  ): Promise<UsageTotals>;
  /**
   * Totals grouped, for one project or all; `since` in unix seconds. `time` groups by buckets
   * of `bucketSeconds` (a whole number of seconds), each named by its start.
   */
  grouped(
    groups: UsageGroup[],
    filter: { project?: string; since?: number; until?: number; bucketSeconds?: number },
  ): Promise<(UsageTotals & Record<string, string | number | null>)[]>;
}

export type { Order };
