import type { JsonObject } from "./model.js";

/** The version selection rules of an endpoint configuration (already validated). */
export function trafficRules(
  endpoint: JsonObject | null,
): { agent_version: string; traffic_percentage: number }[] {
  const selector = endpoint?.version_selector as
    | { version_selection_rules?: { agent_version: string; traffic_percentage: number }[] }
    | undefined;
  return selector?.version_selection_rules ?? [];
}
