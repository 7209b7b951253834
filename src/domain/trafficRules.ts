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

/**
 * The version a new session of the endpoint gets: drawn by the rules' traffic percentages
 * (`random` in [0, 1)), or undefined when there are no rules (the caller takes the latest).
 */
export function pickVersion(
  rules: { agent_version: string; traffic_percentage: number }[],
  random: number = Math.random(),
): string | undefined {
  const total = rules.reduce((sum, r) => sum + r.traffic_percentage, 0);
  if (total <= 0) return undefined;
  let point = random * total;
  for (const rule of rules) {
    point -= rule.traffic_percentage;
    if (point < 0) return rule.agent_version;
  }
  // Only floating-point rounding gets here: the last rule with traffic.
  return rules.filter((r) => r.traffic_percentage > 0).at(-1)!.agent_version;
}
