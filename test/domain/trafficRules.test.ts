import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pickVersion, withoutVersion } from "../../src/domain/trafficRules.js";

/* Which version a new session of an endpoint gets under a traffic split. */

describe("pickVersion", () => {
  const split = [
    { agent_version: "1", traffic_percentage: 20 },
    { agent_version: "2", traffic_percentage: 0 },
    { agent_version: "3", traffic_percentage: 80 },
  ];

  it("draws by the percentages, never a version with no traffic", () => {
    assert.equal(pickVersion(split, 0), "1");
    assert.equal(pickVersion(split, 0.1999), "1");
    assert.equal(pickVersion(split, 0.2), "3");
    assert.equal(pickVersion(split, 0.9999999), "3");
  });

  it("matches the split over many draws", () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const v = pickVersion(split, i / 10_000)!;
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(counts), { "1": 2000, "3": 8000 });
  });

  it("leaves the choice to the caller when there are no rules", () => {
    assert.equal(pickVersion([]), undefined);
    assert.equal(pickVersion([{ agent_version: "1", traffic_percentage: 0 }]), undefined);
  });
});

describe("withoutVersion", () => {
  const endpoint = (...split: [string, number][]) => ({
    version_selector: {
      version_selection_rules: split.map(([v, p]) => ({
        type: "FixedRatio",
        agent_version: v,
        traffic_percentage: p,
      })),
    },
    protocol_configuration: { responses: {} },
  });
  const percentages = (e: Record<string, unknown>) =>
    (
      e.version_selector as {
        version_selection_rules: { agent_version: string; traffic_percentage: number }[];
      }
    ).version_selection_rules.map((r) => [r.agent_version, r.traffic_percentage]);

  it("scales the other rules to 100, keeping every other field", () => {
    const after = withoutVersion(endpoint(["1", 30], ["2", 30], ["3", 40]), "3");
    assert.deepEqual(after, endpoint(["1", 50], ["2", 50]));
  });

  it("rounds by the largest remainder, the earlier rule first on a tie", () => {
    assert.deepEqual(
      percentages(withoutVersion(endpoint(["1", 20], ["2", 20], ["3", 20], ["4", 40]), "4")),
      [
        ["1", 34],
        ["2", 33],
        ["3", 33],
      ],
    );
    // 10/90*100 = 11.1, 35/90*100 = 38.9, 45/90*100 = 50: the .9 gets the point.
    assert.deepEqual(
      percentages(withoutVersion(endpoint(["1", 10], ["2", 35], ["3", 45], ["4", 10]), "4")),
      [
        ["1", 11],
        ["2", 39],
        ["3", 50],
      ],
    );
    // A rule with no traffic keeps none.
    assert.deepEqual(percentages(withoutVersion(endpoint(["1", 0], ["2", 1], ["3", 99]), "3")), [
      ["1", 0],
      ["2", 100],
    ]);
  });

  it("always sums to 100 when any traffic is left", () => {
    for (let a = 0; a <= 100; a++)
      for (let b = 0; a + b <= 100; b += 7) {
        const after = withoutVersion(endpoint(["1", a], ["2", b], ["3", 100 - a - b]), "1");
        if (a === 100) assert.equal(after.version_selector, undefined);
        else {
          const sum = percentages(after).reduce((total, [, p]) => total + (p as number), 0);
          assert.equal(sum, 100, `${a}/${b}`);
        }
      }
  });

  it("removes the selector when no rule with traffic is left", () => {
    assert.deepEqual(withoutVersion(endpoint(["1", 100]), "1"), {
      protocol_configuration: { responses: {} },
    });
    assert.deepEqual(withoutVersion(endpoint(["1", 100], ["2", 0]), "1"), {
      protocol_configuration: { responses: {} },
    });
  });
});
