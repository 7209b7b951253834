/* The entities of the control plane, as the domain sees them (not as the wire shows them). */

export type AgentState = "enabled" | "disabled";
export type VersionStatus = "creating" | "active" | "failed" | "deleting" | "deleted";
export type JsonObject = Record<string, unknown>;

export interface Version {
  project: string;
  agentName: string;
  /** Sequential per agent from 1; never reused, even after a delete. */
  version: number;
  /** The definition as given (unknown fields kept), with `kind` always present. */
  definition: JsonObject & { kind: string };
  metadata: Record<string, string>;
  description: string;
  draft: boolean;
  status: VersionStatus;
  /** Why a version is `failed` (or what it waits for), in words a user can act on. */
  statusReason: StatusReason | null;
  /** SHA-256 of the code zip of a code-based hosted version. */
  contentHash: string | null;
  blueprintReference: JsonObject | null;
  digitalWorkerType: string | null;
  createdAt: number;
}

export interface StatusReason {
  code: string;
  message: string;
}

export interface Agent {
  project: string;
  name: string;
  state: AgentState;
  agentEndpoint: JsonObject | null;
  agentCard: JsonObject | null;
  createdAt: number;
  /** The newest version that is not a draft. Every stored agent has one. */
  latest: Version;
}

/** What a caller supplies for a new version; the store assigns the number. */
export interface NewVersion {
  definition: JsonObject & { kind: string };
  metadata: Record<string, string>;
  description: string;
  draft: boolean;
  status: VersionStatus;
  statusReason: StatusReason | null;
  blueprintReference: JsonObject | null;
  digitalWorkerType: string | null;
  /** SHA-256 of the code zip of a code-based hosted version. */
  contentHash: string | null;
  /** Canonical form of what makes two versions "the same" for update-if-changed. */
  fingerprint: string;
  createdAt: number;
}

/** Agent-level fields used only when the agent does not exist yet. */
export interface NewAgent {
  state: AgentState;
  agentEndpoint: JsonObject | null;
  agentCard: JsonObject | null;
}

export type Order = "asc" | "desc";

export interface PageRequest {
  limit: number;
  order: Order;
  /** Id of the item after which the page starts, in `order`. */
  after?: string;
  /** Id of the item before which the page ends, in `order`. */
  before?: string;
}

export interface Page<T> {
  items: T[];
  hasMore: boolean;
}

/**
 * A session's lifecycle: `creating` until its agent answers, `active` while its sandbox runs,
 * `idle` when stopped with its files kept (the next use starts it again), `failed` when the
 * sandbox could not start or died, `expired` once its files are gone.
 */
export type SessionStatus = "creating" | "active" | "idle" | "failed" | "expired";

export type TerminationReason =
  | "user_stop"
  | "idle_timeout"
  | "expired"
  | "oom"
  | "crash"
  | "start_failed"
  | "agent_deleted"
  | "service_stopped"
  | "budget";

export interface Termination {
  reason: TerminationReason;
  message: string;
}

export interface Session {
  project: string;
  agentName: string;
  id: string;
  version: number;
  /** The identity that created it (Caller.subject); only it may use the session. */
  owner: string;
  status: SessionStatus;
  createdAt: number;
  lastAccessedAt: number;
  expiresAt: number;
  stoppedAt: number | null;
  termination: Termination | null;
}

export type SessionUpdate = Partial<
  Pick<Session, "status" | "lastAccessedAt" | "expiresAt" | "stoppedAt" | "termination">
>;
