export interface Page<T> {
  data: T[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

export interface Version {
  version: string;
  status?: string;
  draft?: boolean;
  created_at?: number;
  status_reason?: { code: string; message: string };
  definition: { kind: string } & Record<string, unknown>;
}

export interface Rule {
  type: string;
  agent_version: string;
  traffic_percentage: number;
}

export interface Agent {
  name: string;
  state: "enabled" | "disabled";
  versions: { latest: Version };
  /** With `include=live_session_count`: its sessions creating or active. */
  live_session_count?: number;
  agent_endpoint?: { version_selector?: { version_selection_rules: Rule[] } } & Record<
    string,
    unknown
  >;
}

/** An item of a response's output or of a conversation (the Responses API's shapes). */
export interface Item {
  id?: string;
  type: string;
  role?: string;
  status?: string;
  content?: { type: string; text?: string }[] | string;
  name?: string;
  arguments?: string;
  call_id?: string;
  output?: unknown;
  error?: unknown;
  server_label?: string;
  tools?: { name: string }[];
  approval_request_id?: string;
  approve?: boolean;
}

export interface ResponseObject {
  id: string;
  status?: string;
  output?: Item[];
  output_text?: string;
  usage?: { input_tokens: number; output_tokens: number; total_tokens: number } | null;
  agent_reference?: { name: string; version?: string } | null;
  error?: { code?: string; message?: string } | null;
}

export interface Conversation {
  id: string;
  created_at: number;
  metadata: Record<string, string>;
}

export interface ApiKey {
  id: string;
  name: string;
  project: string;
  admin?: boolean;
  act_for_users?: boolean;
  created_at?: number;
  key?: string;
}

export interface Deployment {
  name: string;
  model: string;
  base_url: string;
  api_key: "set" | null;
  api_key_env: string | null;
  source?: string;
}

export interface UsageRow {
  project: string;
  agent?: string | null;
  version?: number | string | null;
  time?: number;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  calls: number;
}

/** `GET {project}/deployments`: Foundry's model deployments. */
export interface ModelDeployment {
  name: string;
  modelName: string;
  modelPublisher: string;
}

export interface AgentSession {
  agent_session_id: string;
  /** In the project-wide list only. */
  agent_name?: string;
  /** In the project-wide list, for an admin key. */
  owner?: string;
  version_indicator: { agent_version: string };
  status: string;
  created_at: number;
  last_accessed_at: number;
  expires_at: number;
  stopped_at?: number;
  termination_reason?: string;
  termination_message?: string;
}

export interface FileEntry {
  name: string;
  size: number;
  is_directory: boolean;
  modified_time: number;
}

export interface FileListing {
  path: string;
  entries: FileEntry[];
  has_more: boolean;
  last_id: string | null;
}

export interface LogLine {
  id?: number;
  timestamp: string;
  stream: "stdout" | "stderr" | "status";
  message: string;
}
