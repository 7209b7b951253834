import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pickVersion } from "../../src/domain/trafficRules.js";

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
