import type { Conversation, UsageTotals } from "../responses/ports.js";
import type { Agent, Page, Session, Version } from "../domain/model.js";
import type { ApiKey } from "../domain/ports.js";
import type { Deployment } from "../gateway/deploymentService.js";

/* The only bridge from entities to the wire (contract §4). Timestamps are Unix seconds. */

export function presentVersion(v: Version) {
  return {
    object: "agent.version" as const,
    id: `${v.agentName}:${v.version}`,
    name: v.agentName,
    version: String(v.version),
    metadata: v.metadata,
    description: v.description,
    created_at: v.createdAt,
    definition: v.definition,
    draft: v.draft,
    status: v.status,
    // Not in Foundry's shape (clients ignore it): why a version is failed or still creating.
    ...(v.statusReason ? { status_reason: v.statusReason } : {}),
    ...(v.blueprintReference ? { blueprint_reference: v.blueprintReference } : {}),
    ...(v.digitalWorkerType ? { digital_worker_type: v.digitalWorkerType } : {}),
  };
}

export function presentAgent(a: Agent) {
  return {
    object: "agent" as const,
    id: a.name,
    name: a.name,
    state: a.state,
    configuration_state: a.state,
    versions: { latest: presentVersion(a.latest) },
    ...(a.agentEndpoint ? { agent_endpoint: a.agentEndpoint } : {}),
    ...(a.agentCard ? { agent_card: a.agentCard } : {}),
    ...(a.latest.blueprintReference ? { blueprint_reference: a.latest.blueprintReference } : {}),
    ...(a.latest.digitalWorkerType ? { digital_worker_type: a.latest.digitalWorkerType } : {}),
  };
}

/** A page of items with `id`s: `data`, `has_more`, `first_id`, `last_id`. */
export function presentPage<T, W>(
  page: Page<T>,
  present: (item: T) => W,
  idOf: (item: W) => string = (item) => (item as { id: string }).id,
) {
  const data = page.items.map(present);
  return {
    object: "list" as const,
    data,
    has_more: page.hasMore,
    first_id: data.length > 0 ? idOf(data[0]!) : null,
    last_id: data.length > 0 ? idOf(data.at(-1)!) : null,
  };
}

/** AgentSessionResource, plus why it last stopped (`termination_reason`, `termination_message`). */
export function presentSession(s: Session) {
  return {
    object: "agent.session" as const,
    agent_session_id: s.id,
    version_indicator: { type: "version_ref" as const, agent_version: String(s.version) },
    status: s.status,
    created_at: s.createdAt,
    last_accessed_at: s.lastAccessedAt,
    expires_at: s.expiresAt,
    ...(s.stoppedAt !== null ? { stopped_at: s.stoppedAt } : {}),
    ...(s.termination
      ? { termination_reason: s.termination.reason, termination_message: s.termination.message }
      : {}),
  };
}

/**
 * A session in the project-wide list: also its agent (and, for an admin key, its owner); its
 * cursor is `<agent_name>/<agent_session_id>`.
 */
export function presentProjectSession(s: Session, withOwner: boolean) {
  return {
    ...presentSession(s),
    agent_name: s.agentName,
    ...(withOwner ? { owner: s.owner } : {}),
  };
}

export const presentDeletedAgent = (name: string) => ({
  object: "agent.deleted" as const,
  name,
  deleted: true,
});

export const presentDeletedVersion = (name: string, version: string) => ({
  object: "agent.version.deleted" as const,
  name,
  version,
  deleted: true,
});

export function presentKey(key: ApiKey, secret?: string) {
  return {
    object: "api_key" as const,
    id: key.id,
    name: key.name,
    project: key.project,
    admin: key.admin,
    act_for_users: key.actForUsers,
    created_at: key.createdAt,
    ...(secret ? { key: secret } : {}),
  };
}

/** A conversation as the `openai` client reads it. */
export const presentConversation = (c: Conversation) => ({
  id: c.id,
  object: "conversation" as const,
  created_at: c.createdAt,
  metadata: c.metadata,
});
/** A deployment for admins: where it points, never its key (only whether one is stored). */
export function presentDeployment(d: Deployment) {
  return {
    object: "deployment" as const,
    name: d.name,
    model: d.model,
    base_url: d.baseUrl,
    api_key: d.hasApiKey ? ("set" as const) : null,
    api_key_env: d.apiKeyEnv,
    source: d.source,
    created_at: d.createdAt,
    updated_at: d.updatedAt,
  };
}

/** A deployment as Foundry's `deployments.get()` reads it (`ModelDeployment`). */
export function presentModelDeployment(d: Deployment) {
  return {
    type: "ModelDeployment" as const,
    name: d.name,
    modelName: d.model,
    modelVersion: "",
    modelPublisher: new URL(d.baseUrl).host,
    capabilities: { chat_completion: "true" },
    sku: { name: "agenthost", capacity: 0, family: "", size: "", tier: "" },
    connectionName: "",
  };
}

/** Tokens used, as the Responses API counts them, with the number of model calls. */
export const presentUsage = (u: UsageTotals) => ({
  input_tokens: u.inputTokens,
  output_tokens: u.outputTokens,
  total_tokens: u.inputTokens + u.outputTokens,
  calls: u.calls,
});
