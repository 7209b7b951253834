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

/**
 * The endpoint configuration once `version` is deleted with `force`: its rules are gone and
 * the others are scaled to sum to 100 again, in whole percentages by the largest remainder
 * (each rule gets its share rounded down; the points left go to the largest fractions, the
 * earlier rule first on a tie). When no rule with traffic is left, `version_selector` is
 * removed and new sessions get the latest version. Everything else is kept as it was.
 */
export function withoutVersion(endpoint: JsonObject, version: string): JsonObject {
  const rules = trafficRules(endpoint);
  const kept = rules.filter((r) => r.agent_version !== version);
  const total = kept.reduce((sum, r) => sum + r.traffic_percentage, 0);
  const { version_selector: selector, ...rest } = endpoint;
  if (total <= 0) return rest;
  const exact = kept.map((r) => (r.traffic_percentage * 100) / total);
  const shares = exact.map(Math.floor);
  let left = 100 - shares.reduce((sum, s) => sum + s, 0);
  const byRemainder = exact
    .map((x, i) => ({ i, remainder: x - shares[i]! }))
    .sort((a, b) => b.remainder - a.remainder || a.i - b.i);
  for (const { i } of byRemainder) {
    if (left-- <= 0) break;
    shares[i]!++;
  }
  return {
    ...rest,
    version_selector: {
      ...(selector as JsonObject),
      version_selection_rules: kept.map((r, i) => ({ ...r, traffic_percentage: shares[i]! })),
    },
  };
}
