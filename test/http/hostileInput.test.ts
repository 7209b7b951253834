import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { api, buildTestApp } from "../helpers/app.js";

/*
 * Input built to make the service work too hard: backtracking patterns and quadratic schema
 * keywords in caller-registered manifests, limits past what one machine has. Each must be
 * refused with a 4xx naming the field, or answered in linear time, never stall the process.
 */

type TestApp = Awaited<ReturnType<typeof buildTestApp>>;
let t: TestApp;

before(async () => {
  t = await buildTestApp();
});

after(async () => {
  await t.close();
});

let unique = 0;
const fresh = (prefix: string) => `${prefix}-${process.pid}-${++unique}`;

const post = (route: string, payload: unknown) =>
  t.app.inject({ method: "POST", url: api(route), headers: t.auth, payload: payload as object });

const registerManifest = (name: string, parameters: Record<string, unknown>) =>
  post("/manifests", {
    name,
    parameters,
    definition: { kind: "prompt", model: "gpt-4o", instructions: "{{p}}" },
  });

describe("hosted versions asking for more than the machine", () => {
  const hosted = (extra: Record<string, unknown>) => ({
    name: fresh("big"),
    definition: {
      kind: "hosted",
      cpu: "1",
      memory: "512Mi",
      container_configuration: { image: "registry.local/echo:1" },
      ...extra,
    },
  });

  it("refuses cpu past the maximum (the host's processors by default), naming the field", async () => {
    const res = await post("/agents", hosted({ cpu: "64" }));
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().error.param, "definition.cpu");
    assert.equal((await post("/agents", hosted({ cpu: "100000m" }))).statusCode, 400);
  });

  it("refuses memory past the maximum (half the host's memory by default), naming the field", async () => {
    const res = await post("/agents", hosted({ memory: "100000Gi" }));
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().error.param, "definition.memory");
  });

  it("accepts what the machine can give", async () => {
    const res = await post("/agents", hosted({ cpu: "1", memory: "1Gi" }));
    assert.equal(res.statusCode, 200, res.body);
  });
});

describe("manifest parameter schemas", () => {
  it("refuses a pattern that only a backtracking engine runs, naming the parameter", async () => {
    const res = await registerManifest(fresh("lookahead"), {
      p: { type: "string", pattern: "^(?=(a+)+$)b" },
    });
    assert.equal(res.statusCode, 400, res.body);
    const error = res.json().error;
    assert.equal(error.param, "parameters.p");
    assert.match(error.message, /RE2/);
  });

  it("checks a value against a nested-quantifier pattern in linear time", async () => {
    const name = fresh("nested");
    const reg = await registerManifest(name, { p: { type: "string", pattern: "^(a+)+$" } });
    assert.equal(reg.statusCode, 201, reg.body);
    // On a backtracking engine each extra 'a' doubles the time: 29 took 18 s there.
    const value = `${"a".repeat(5000)}!`;
    const started = performance.now();
    const res = await post("/agents:import", {
      name: fresh("agent"),
      manifest_id: name,
      parameter_values: { p: value },
    });
    const ms = performance.now() - started;
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().error.param, "parameter_values.p");
    assert.ok(ms < 500, `the check took ${ms} ms`);
    const ok = await post("/agents:import", {
      name: fresh("agent"),
      manifest_id: name,
      parameter_values: { p: "a".repeat(5000) },
    });
    assert.equal(ok.statusCode, 200, ok.body);
  });

  it("refuses uniqueItems over non-scalar items (a pairwise comparison)", async () => {
    const res = await registerManifest(fresh("unique"), {
      p: { type: "array", uniqueItems: true, default: [] },
    });
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().error.param, "parameters.p");
    const nested = await registerManifest(fresh("unique"), {
      p: {
        type: "object",
        properties: { list: { type: "array", items: { type: "object" }, uniqueItems: true } },
        default: {},
      },
    });
    assert.equal(nested.statusCode, 400, nested.body);
    const scalar = await registerManifest(fresh("unique"), {
      p: { type: "array", items: { type: "string" }, uniqueItems: true, default: [] },
    });
    assert.equal(scalar.statusCode, 201, scalar.body);
  });

  it("refuses an oversized schema and a schema Ajv cannot compile, never a 500", async () => {
    const properties: Record<string, unknown> = {};
    for (let i = 0; i < 20_000; i++) properties[`p${i}`] = { type: "string" };
    const big = await registerManifest(fresh("big"), { p: { type: "object", properties } });
    assert.equal(big.statusCode, 400, big.body);
    assert.equal(big.json().error.param, "parameters.p");
    const broken = await registerManifest(fresh("broken"), { p: { type: "no-such-type" } });
    assert.equal(broken.statusCode, 400, broken.body);
    assert.equal(broken.json().error.param, "parameters.p");
  });
});
