import type {
  Agent,
  AgentState,
  JsonObject,
  NewAgent,
  NewVersion,
  Page,
  PageRequest,
  Version,
} from "./model.js";

/**
 * Agents and their versions: one aggregate, one repository. Every method is atomic; names
 * are case-sensitive; a missing agent or version is `undefined`, never an exception.
 */
export interface AgentRepository {
  get(project: string, name: string): Promise<Agent | undefined>;

  /** Ordered by creation; `kind` filters on the latest version's kind. */
  list(project: string, page: PageRequest & { kind?: string }): Promise<Page<Agent>>;

  /**
   * Appends a version with the next number, creating the agent (from `newAgent`) if it is
   * missing. Concurrent calls never get the same number. With `reuseIfUnchanged`, when the
   * latest version has the same fingerprint nothing is written and that version is returned
   * with `created: false`. Returns undefined when the agent is missing and `newAgent` is not given.
   */
  appendVersion(
    project: string,
    name: string,
    version: NewVersion,
    options: { newAgent?: NewAgent; reuseIfUnchanged?: boolean },
  ): Promise<{ agent: Agent; version: Version; created: boolean } | undefined>;

  setState(project: string, name: string, state: AgentState): Promise<Agent | undefined>;

  /** Replaces the endpoint configuration and card (null clears them). */
  setEndpoint(
    project: string,
    name: string,
    fields: { agentEndpoint: JsonObject | null; agentCard: JsonObject | null },
  ): Promise<Agent | undefined>;

  /** Deletes the agent and all its versions; false when it did not exist. */
  delete(project: string, name: string): Promise<boolean>;

  getVersion(project: string, name: string, version: number): Promise<Version | undefined>;

  /** Ordered by version number; drafts only when asked. Undefined when the agent is missing. */
  listVersions(
    project: string,
    name: string,
    page: PageRequest & { includeDrafts: boolean },
  ): Promise<Page<Version> | undefined>;

  /**
   * Deletes one version. Refuses (`in_use`) when the agent's traffic rules name it and
   * (`last_published`) when only drafts would remain. Deleting the last version deletes
   * the agent (`agent_deleted`).
   */
  deleteVersion(
    project: string,
    name: string,
    version: number,
  ): Promise<"deleted" | "agent_deleted" | "missing" | "in_use" | "last_published">;
}

export interface ApiKey {
  id: string;
  /** The project the key works in, or "*" for every project (admin keys). */
  project: string;
  name: string;
  admin: boolean;
  /** May send `x-ms-user-identity` to act for an end user. */
  actForUsers: boolean;
  createdAt: number;
}

/** API keys, stored by the SHA-256 of the secret only. */
export interface KeyRepository {
  insert(key: ApiKey, secretHash: string): Promise<void>;
  /** The key with this secret hash, unless revoked. */
  findByHash(secretHash: string): Promise<ApiKey | undefined>;
  list(project?: string): Promise<ApiKey[]>;
  /** False when no such key (or already revoked). */
  revoke(id: string, at: number): Promise<boolean>;
  countAdmins(): Promise<number>;
}

export interface ProjectRepository {
  exists(name: string): Promise<boolean>;
  /** Idempotent. */
  create(name: string, at: number): Promise<void>;
  list(): Promise<string[]>;
}

/** The storage backend: create (no I/O) → migrate → use → close. */
export interface Store {
  readonly agents: AgentRepository;
  readonly keys: KeyRepository;
  readonly projects: ProjectRepository;
  /** Creates or upgrades the schema; safe to call on every start. */
  migrate(): Promise<void>;
  close(): Promise<void>;
}

/**
 * What the control plane needs to know about sessions, so that deleting an agent or a
 * version can respect them. The session runtime implements it.
 */
export interface LiveSessions {
  /** Live (not stopped) sessions of an agent, or of one of its versions. */
  count(project: string, agentName: string, version?: number): Promise<number>;
  /** Stops and deletes every session of the agent or version; resolves when none is left. */
  terminate(project: string, agentName: string, version?: number): Promise<void>;
}

/** For a control plane without a session runtime: no agent ever has sessions. */
export const noLiveSessions: LiveSessions = {
  count: async () => 0,
  terminate: async () => {},
};

export type Clock = () => number;

/** Unix seconds. */
export const systemClock: Clock = () => Math.floor(Date.now() / 1000);
