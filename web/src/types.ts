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
  agent_endpoint?: { version_selector?: { version_selection_rules: Rule[] } } & Record<
    string,
    unknown
  >;
}
