import type {
  ConversationRepository,
  ResponseRepository,
  UsageRepository,
} from "../responses/ports.js";
import type { ActivityRepository } from "../protocols/activity/ports.js";
import type { A2aRepository } from "../protocols/a2a/ports.js";
import type { Readable } from "node:stream";
import type { Manifest } from "./manifests.js";
import type {
  Agent,
  AgentState,
  JsonObject,
  NewAgent,
  NewVersion,
  Page,
  PageRequest,
  Session,
  SessionStatus,
  SessionUpdate,
  StatusReason,
  Version,
  VersionStatus,
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
   * Deletes one version. Refuses (`in_use`) when the agent's traffic rules name it, unless
   * `leaveRules`: then, in the same transaction, the version leaves the rules (see
   * `withoutVersion`). Refuses (`last_published`) when only drafts would remain, the rules
   * untouched. Deleting the last version deletes the agent (`agent_deleted`).
   */
  deleteVersion(
    project: string,
    name: string,
    version: number,
    options?: { leaveRules?: boolean },
  ): Promise<"deleted" | "agent_deleted" | "missing" | "in_use" | "last_published">;

  /** Records a provisioning outcome; undefined when the version is gone. */
  setVersionStatus(
    project: string,
    name: string,
    version: number,
    status: VersionStatus,
    reason: StatusReason | null,
  ): Promise<Version | undefined>;

  /** Every version in a status, oldest first, across projects (e.g. `creating` at start-up). */
  versionsWithStatus(status: VersionStatus): Promise<Version[]>;

  /** How many versions use a code zip. */
  countContentReferences(contentHash: string): Promise<number>;

  /** The zip of every code-based version of the project, once per version (for its quota). */
  projectContentHashes(project: string): Promise<string[]>;

  /** Every version of an agent, drafts included (empty when the agent is missing). */
  allVersions(project: string, name: string): Promise<Version[]>;
}

/**
 * What the control plane needs of hosted code. The build runtime implements it over the
 * blob store: uploaded zips, their builds, and releasing both.
 */
export interface HostedCode {
  /** True when a code zip with this SHA-256 is stored. */
  has(contentHash: string): Promise<boolean>;
  /** Starts provisioning a new `creating` code-based version in the background. */
  provision(version: Version): void;
  /** Removes the builds of deleted versions and the zips no version uses any more. */
  discard(versions: Version[]): Promise<void>;
  /**
   * The build log of a code-based version, while it builds and after: its history, then its
   * new lines, until the build ends (`ended`, with the last status line).
   */
  followBuild(version: Version): Promise<FollowedLog>;
}

/** One line of a log (a build's, a session's console), numbered from 1 for `Last-Event-ID`. */
export interface LogLine {
  id: number;
  timestamp: string;
  stream: "stdout" | "stderr" | "status";
  message: string;
}

/** A log as its stream reads it: a bounded history of numbered lines, and new ones as they come. */
export interface LogHistory {
  /** Id of the oldest line still in the history (the next id when it is empty). */
  readonly firstId: number;
  /** Lines of the history after `id`, at most `max`. */
  since(id: number, max: number): LogLine[];
  /** Calls `listener` for every new line, and with `null` when the log ends for good. */
  subscribe(listener: (line: LogLine | null) => void): () => void;
}

/** A log being read: settles `ended` with its last status line; `release` when done. */
export interface FollowedLog {
  log: LogHistory;
  ended: Promise<string>;
  release(): void;
}

export interface StoredBlob {
  sha256: string;
  size: number;
}

/** Content-addressed storage of uploaded code: identical bytes are stored once. */
export interface BlobStore {
  /**
   * Streams `source` in while hashing it. Past `maxBytes` it fails with `payload_too_large`
   * and leaves nothing behind; a reader never sees a partial blob.
   */
  put(source: Readable, maxBytes: number): Promise<StoredBlob>;
  /** Size in bytes, or undefined when absent. */
  size(sha256: string): Promise<number | undefined>;
  open(sha256: string): Readable;
  /** A local file path of the blob, for unpacking. */
  pathOf(sha256: string): string;
  /** Idempotent. */
  delete(sha256: string): Promise<void>;
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

/** Registered manifests (the built-in ones are not stored). */
export interface ManifestRepository {
  /** Adds the next version of the named manifest (1, 2, …) and returns it. */
  add(manifest: Omit<Manifest, "version" | "builtin">): Promise<Manifest>;
  /** The given version, or the newest when none is named. */
  get(project: string, name: string, version?: number): Promise<Manifest | undefined>;
  /** Every version, by name then version. */
  list(project: string): Promise<Manifest[]>;
  /** Deletes one version, or all versions of the name; false when nothing matched. */
  delete(project: string, name: string, version?: number): Promise<boolean>;
}

/** A model deployment as stored: its key only ever as ciphertext. */
export interface StoredDeployment {
  project: string;
  /** What a request's `model` names. */
  name: string;
  /** The upstream's model id. */
  model: string;
  /** An OpenAI-compatible API root, ending in `/v1`. */
  baseUrl: string;
  /** The sealed API key, or null. */
  apiKeyCiphertext: string | null;
  /** The service's environment variable holding the key (read at each call), or null. */
  apiKeyEnv: string | null;
  createdAt: number;
  updatedAt: number;
}

/** Model deployments, one row per (project, name). */
export interface DeploymentRepository {
  get(project: string, name: string): Promise<StoredDeployment | undefined>;
  /** Ordered by name. */
  list(project: string): Promise<StoredDeployment[]>;
  /**
   * Creates or replaces the deployment atomically; a replaced one keeps its `createdAt`.
   * Returns the row as stored and whether it is new.
   */
  put(deployment: StoredDeployment): Promise<{ deployment: StoredDeployment; created: boolean }>;
  /** False when there was none. */
  delete(project: string, name: string): Promise<boolean>;
}

export interface ProjectRepository {
  exists(name: string): Promise<boolean>;
  /** Idempotent. */
  create(name: string, at: number): Promise<void>;
  list(): Promise<string[]>;
}

export interface SessionFilter {
  project: string;
  agentName: string;
  version?: number;
  owner?: string;
  status?: SessionStatus;
}

/** A session named across a project's agents (a project-wide page cursor). */
export interface SessionRef {
  agentName: string;
  id: string;
}

export type ProjectSessionFilter = Omit<SessionFilter, "agentName"> & { agentName?: string };

/** Sessions of hosted agents. Ids are unique per agent. */
export interface SessionRepository {
  /** False when the agent already has a session with this id. */
  insert(session: Session): Promise<boolean>;
  get(project: string, agentName: string, id: string): Promise<Session | undefined>;
  /** Ordered by creation. */
  list(filter: SessionFilter, page: PageRequest): Promise<Page<Session>>;
  /**
   * A project's sessions across its agents, ordered by creation; cursors name a session by
   * agent and id.
   */
  listProject(
    filter: ProjectSessionFilter,
    page: Omit<PageRequest, "after" | "before"> & { after?: SessionRef; before?: SessionRef },
  ): Promise<Page<Session>>;
  /** Every session matching, oldest first. */
  all(filter: SessionFilter): Promise<Session[]>;
  /** The updated session, or undefined when it is gone. */
  update(
    project: string,
    agentName: string,
    id: string,
    fields: SessionUpdate,
  ): Promise<Session | undefined>;
  delete(project: string, agentName: string, id: string): Promise<boolean>;
  /** Sessions whose sandbox runs or starts (creating, active), across agents when unfiltered. */
  countLive(filter: Partial<SessionFilter>): Promise<number>;
  /** Every session in one of these states, across projects. */
  withStatus(statuses: SessionStatus[]): Promise<Session[]>;
  /** Sessions (not yet expired) whose `expires_at` is at or before `now`. */
  expiring(now: number): Promise<Session[]>;
}

/** The storage backend: create (no I/O) → migrate → use → close. */
export interface Store {
  readonly agents: AgentRepository;
  readonly sessions: SessionRepository;
  readonly keys: KeyRepository;
  readonly projects: ProjectRepository;
  readonly manifests: ManifestRepository;
  readonly responses: ResponseRepository;
  readonly conversations: ConversationRepository;
  readonly usage: UsageRepository;
  readonly deployments: DeploymentRepository;
  readonly a2a: A2aRepository;
  readonly activity: ActivityRepository;
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
  /**
   * Stops and deletes every session of the agent or version, idle ones included; resolves
   * when none is left.
   */
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
