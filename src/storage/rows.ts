import type {
  Agent,
  AgentState,
  JsonObject,
  StatusReason,
  Version,
  VersionStatus,
} from "../domain/model.js";

/* Row ⇄ entity mapping shared by every SQL dialect. JSON columns hold text. */

export interface VersionRow {
  project: string;
  agent_name: string;
  version: number;
  kind: string;
  definition: string;
  metadata: string;
  description: string;
  draft: number | boolean;
  status: string;
  status_reason: string | null;
  content_hash: string | null;
  blueprint_reference: string | null;
  digital_worker_type: string | null;
  created_at: number;
}

export interface AgentRow {
  seq: number;
  project: string;
  name: string;
  state: string;
  agent_endpoint: string | null;
  agent_card: string | null;
  created_at: number;
}

const parse = (text: string | null) => (text === null ? null : (JSON.parse(text) as JsonObject));

export function toVersion(row: VersionRow): Version {
  return {
    project: row.project,
    agentName: row.agent_name,
    version: Number(row.version),
    definition: JSON.parse(row.definition) as Version["definition"],
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    description: row.description,
    draft: Boolean(row.draft),
    status: row.status as VersionStatus,
    contentHash: row.content_hash,
    statusReason:
      row.status_reason === null ? null : (JSON.parse(row.status_reason) as StatusReason),
    blueprintReference: parse(row.blueprint_reference),
    digitalWorkerType: row.digital_worker_type,
    createdAt: Number(row.created_at),
  };
}

export function toAgent(row: AgentRow, latest: Version): Agent {
  return {
    project: row.project,
    name: row.name,
    state: row.state as AgentState,
    agentEndpoint: parse(row.agent_endpoint),
    agentCard: parse(row.agent_card),
    createdAt: Number(row.created_at),
    latest,
  };
}

export const json = (value: JsonObject | null) => (value === null ? null : JSON.stringify(value));

/** Version cursors are the wire id "name:3" or the bare number "3". */
export function versionCursor(cursor: string): number | undefined {
  const tail = cursor.includes(":") ? cursor.slice(cursor.lastIndexOf(":") + 1) : cursor;
  return /^[0-9]{1,15}$/.test(tail) ? Number(tail) : undefined;
}
