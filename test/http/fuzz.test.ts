import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import type { LightMyRequestResponse as Response } from "fastify";
import { errorCodes } from "../../src/contract/errorCodes.js";
import { api, buildTestApp } from "../helpers/app.js";

/*
 * Property-based robustness of every write route: whatever arrives (random JSON, random text,
 * valid bodies with fields replaced, deeply nested values, random query strings, odd content
 * types and headers), the answer is never a 5xx; errors are the contract's JSON envelope with a
 * known code (§2.1, §4.6); successes are the documented objects (§3.1, §3.2).
 * FUZZ_RUNS and FUZZ_SEED override the defaults to reproduce or widen a run.
 */

type TestApp = Awaited<ReturnType<typeof buildTestApp>>;
type Json = Record<string, unknown>;
type Method = "GET" | "POST" | "PATCH" | "DELETE";

const numRuns = Number(process.env.FUZZ_RUNS ?? 500);
const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const runOptions = { numRuns, ...(seed === undefined ? {} : { seed }) };

// ---- fixtures: valid bodies ------------------------------------------------------------------

const promptDef = (): Json => ({
  kind: "prompt",
  model: "gpt-4o",
  instructions: "Be brief.",
  temperature: 0.7,
  top_p: 1,
  tools: [{ type: "function", name: "lookup", parameters: { type: "object" } }],
  tool_choice: "auto",
  text: { format: { type: "text" } },
});

const hostedContainerDef = (): Json => ({
  kind: "hosted",
  cpu: "0.5",
  memory: "1Gi",
  container_configuration: { image: "registry.local/echo:1" },
  protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
  environment_variables: { MODE: "test" },
  session_configuration: { idle_timeout_seconds: 900 },
});

const hostedCodeDef = (): Json => ({
  kind: "hosted",
  cpu: "1",
  memory: "2Gi",
  code_configuration: {
    runtime: "python_3_12",
    entry_point: ["python", "main.py"],
    dependency_resolution: "bundled",
  },
  telemetry_config: {
    endpoints: [
      { kind: "OTLP", data: ["Metrics"], endpoint: "https://otel.local:4318", protocol: "Http" },
    ],
  },
});

/** Definitions a JSON request can create (code-based versions need a zip upload). */
const creatable = [promptDef, hostedContainerDef];
/** Also fuzzed: a code-based definition sent as JSON, which must be refused cleanly. */
const definitions = [...creatable, hostedCodeDef];

/** Definitions and fields that need a Foundry-Features opt-in in strict mode (§1.6). */
const previewVersionBodies = (): Json[] => [
  { definition: { kind: "workflow", workflow: "kind: workflow" } },
  { definition: { kind: "external" } },
  { definition: { kind: "voice", model: "gpt-realtime" } },
  { definition: promptDef(), draft: true },
  { definition: { ...promptDef(), skills: [{ name: "s" }] } },
  { definition: promptDef(), digital_worker_type: "m365" },
];

const agentCard = (): Json => ({
  version: "1.0",
  description: "card",
  skills: [{ id: "s1", name: "Skill", tags: ["a"], examples: ["hi"] }],
});

const agentEndpoint = (): Json => ({
  version_selector: {
    version_selection_rules: [{ type: "FixedRatio", agent_version: "1", traffic_percentage: 100 }],
  },
  protocol_configuration: { responses: {} },
  authorization_schemes: [{ type: "Entra" }],
});

const versionBody = (definition: Json): Json => ({
  definition,
  metadata: { team: "fuzz" },
  description: "fuzzed",
});

const createBody = (name: string, definition: Json): Json => ({
  name,
  ...versionBody(definition),
  state: "enabled",
  agent_card: agentCard(),
});

const patchBody = (): Json => ({ agent_endpoint: agentEndpoint(), agent_card: agentCard() });

// ---- the apps and the agents kept alive for routes on existing agents ------------------------

let lenient: TestApp;
let strict: TestApp;

/** Agents the properties keep alive, so routes on existing agents answer more than 404. */
const pool = ["fz-prompt", "fz-hosted", "fz-code"] as const;

const request = (app: TestApp, method: Method, url: string, payload?: Json) =>
  app.app.inject({ method, url, headers: app.auth, ...(payload ? { payload } : {}) });

/** Creates the agent with three versions unless it exists. */
async function ensureAgent(app: TestApp, name: string): Promise<void> {
  if ((await request(app, "GET", api(`/agents/${name}`))).statusCode === 200) return;
  const index = Math.max(0, pool.indexOf(name as (typeof pool)[number]));
  const definition = creatable[index % creatable.length]!();
  const created = await request(app, "POST", api("/agents"), { name, definition });
  assert.equal(created.statusCode, 200, created.body);
  for (const description of ["v2", "v3"]) {
    const version = await request(app, "POST", api(`/agents/${name}/versions`), {
      definition,
      description,
    });
    assert.equal(version.statusCode, 200, version.body);
  }
}

// ---- arbitraries ------------------------------------------------------------------------------

const anyText = (maxLength: number) => fc.string({ unit: "grapheme", maxLength });

/** Printable ASCII only: what an HTTP parser lets through in a header value. */
const headerText = (maxLength: number) =>
  fc.string({
    unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength,
  });

const nameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...pool) },
  { weight: 2, arbitrary: fc.stringMatching(/^[a-z][a-z0-9-]{0,20}[a-z0-9]$/) },
  { weight: 1, arbitrary: fc.constantFrom("a".repeat(64), "bad_name", "-x", "x-", "%", ":") },
  { weight: 2, arbitrary: anyText(70) },
);

const versionArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom("1", "2", "3", "4") },
  { weight: 2, arbitrary: fc.nat().map(String) },
  {
    weight: 1,
    arbitrary: fc.constantFrom("0", "01", "-1", "1.0", "1e3", "99999999999999999999", "latest"),
  },
  { weight: 1, arbitrary: anyText(20).filter((s) => s.length > 0) },
);

const queryKeyArb = fc.oneof(
  fc.constantFrom("force", "limit", "order", "after", "before", "kind", "include_drafts"),
  fc.constantFrom("api-version", "__proto__", "constructor", "force[]", "force[a]"),
  anyText(10),
);

const queryValueArb = fc.oneof(
  fc.constantFrom("true", "false", "yes", "TRUE", "1", "0", "", "null", "v1"),
  anyText(20),
);

/** Query strings appended after `api-version=v1`: structured pairs or raw characters. */
const queryArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.constant("") },
  { weight: 2, arbitrary: fc.constantFrom("force=true", "force=false", "force=yes", "force=") },
  {
    weight: 3,
    arbitrary: fc
      .array(fc.tuple(queryKeyArb, queryValueArb), { maxLength: 4 })
      .map((pairs) => new URLSearchParams(pairs).toString()),
  },
  {
    weight: 2,
    arbitrary: fc.string({
      unit: fc.constantFrom(..."abfotrue019=&%+-_.~!*'();:@,/?[]"),
      maxLength: 30,
    }),
  },
);

const contentTypeArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constant("application/json") },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "application/merge-patch+json",
      "application/json; charset=utf-8",
      "APPLICATION/JSON",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data",
      "multipart/form-data; boundary=xyz",
      "application/octet-stream",
      "application/json; charset=latin1",
    ),
  },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-z]{1,10}\/[a-z0-9+.-]{1,15}$/) },
);

const featureValues = [
  "WorkflowAgents=V1Preview",
  "ExternalAgents=V1Preview",
  "VoiceAgents=V1Preview",
  "DraftAgents=V1Preview",
  "DigitalWorker=V1Preview",
  "Skills=V1Preview",
  "HostedAgents=V1Preview",
];

const headersArb: fc.Arbitrary<Record<string, string>> = fc.record(
  {
    "foundry-features": fc.oneof(
      fc.subarray(featureValues).map((values) => values.join(", ")),
      fc.constantFrom("", ",,", " , ", "Skills=V2Preview"),
      headerText(40),
    ),
    "x-ms-user-identity": fc.oneof(
      fc.constantFrom("user@example.com", "a".repeat(257), "", "tenant:user.1"),
      headerText(20),
    ),
    "x-ms-client-request-id": fc.oneof(fc.uuid(), headerText(40)),
  },
  { requiredKeys: [] },
);

/*
 * The strict-mode runs fuzz the preview opt-ins alone: a random user identity (fuzzed by the
 * lenient runs above) would turn most of them into 400s before the opt-in is even read.
 */
const featureHeadersArb: fc.Arbitrary<Record<string, string>> = fc.record(
  {
    "foundry-features": fc.oneof(
      { weight: 3, arbitrary: fc.subarray(featureValues).map((values) => values.join(", ")) },
      { weight: 1, arbitrary: fc.constantFrom("", ",,", " , ", "Skills=V2Preview") },
      { weight: 1, arbitrary: headerText(40) },
    ),
    "x-ms-client-request-id": fc.oneof(fc.uuid(), headerText(40)),
  },
  { requiredKeys: [] },
);

type Segment = string | number;

/** Every path to a node inside `value` (not the root itself). */
function pathsOf(value: unknown, prefix: Segment[] = []): Segment[][] {
  if (value === null || typeof value !== "object") return [];
  const entries: [Segment, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : Object.entries(value);
  return entries.flatMap(([k, v]) => [[...prefix, k], ...pathsOf(v, [...prefix, k])]);
}

/*
 * Deeply nested values are written into the JSON text only when it is sent (the test process
 * need not hold them, and a counterexample shows the depth, not the brackets): a mutation
 * inserts a marker string, `fire` expands it.
 */
const deepMarker = /"\\u0000deep:(array|object):(\d+)"/g;

const deepValueArb: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom("array", "object"), fc.integer({ min: 1, max: 10_000 }))
  .map(([shape, depth]) => `\u0000deep:${shape}:${depth}`);

function nested(shape: string, depth: number): string {
  return shape === "array"
    ? "[".repeat(depth) + "]".repeat(depth)
    : '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
}

/** Expands the deep markers of a JSON text; done when sending, so counterexamples stay short. */
const expandDeep = (text: string) =>
  text.replace(deepMarker, (_, shape: string, depth: string) => nested(shape, Number(depth)));

function toJsonText(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

interface Mutation {
  target: number;
  action: "replace" | "delete" | "insert";
  key: string;
  value: unknown;
}

const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  target: fc.nat(),
  action: fc.constantFrom("replace", "replace", "delete", "insert"),
  key: fc.oneof(
    fc.constantFrom("kind", "model", "type", "name", "skills", "draft", "__proto__"),
    anyText(12),
  ),
  value: fc.oneof(
    { weight: 6, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    {
      weight: 3,
      arbitrary: fc.constantFrom<unknown>(
        null,
        "",
        -1,
        0,
        2.5,
        1e308,
        true,
        "x".repeat(600),
        [],
        {},
        "hosted",
        "prompt",
        "workflow",
        "voice",
        "FixedRatio",
      ),
    },
    { weight: 1, arbitrary: deepValueArb },
  ),
});

/** A valid body with one to three fields replaced, deleted or added. */
function mutate(base: Json, mutations: Mutation[]): Json {
  const body = structuredClone(base);
  for (const m of mutations) {
    const paths = pathsOf(body);
    if (paths.length === 0) break;
    const path = paths[m.target % paths.length]!;
    const parent = path.slice(0, -1).reduce<unknown>((node, k) => (node as Json)[k], body) as
      Json | unknown[];
    const last = path.at(-1)!;
    const node = (parent as Json)[last];
    // A copy: constant values are shared between runs and must never end up inside themselves.
    const value = structuredClone(m.value);
    if (m.action === "replace") (parent as Json)[last] = value;
    else if (m.action === "delete") {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else if (Array.isArray(node)) node.push(value);
    else if (node !== null && typeof node === "object") (node as Json)[m.key] = value;
    else (parent as Json)[last] = value;
  }
  return body;
}

interface Body {
  payload?: string | Buffer;
  contentType?: string;
}

/** Random bodies: JSON texts, JSON values, arbitrary values, raw text and mutated bases. */
function bodyArb(bases: fc.Arbitrary<Json>, mainType = "application/json"): fc.Arbitrary<Body> {
  const payload: fc.Arbitrary<string | undefined> = fc.oneof(
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: fc.json({ maxDepth: 4 }) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map(toJsonText) },
    { weight: 1, arbitrary: fc.anything({ maxDepth: 3 }).map(toJsonText) },
    { weight: 2, arbitrary: anyText(200) },
    { weight: 2, arbitrary: bases.map(toJsonText) },
    {
      weight: 6,
      arbitrary: fc
        .tuple(bases, fc.array(mutationArb, { minLength: 1, maxLength: 3 }))
        .map(([base, mutations]) => toJsonText(mutate(base, mutations))),
    },
  );
  const contentType = fc.oneof(
    { weight: 3, arbitrary: fc.constant(mainType) },
    { weight: 1, arbitrary: contentTypeArb },
  );
  return fc
    .tuple(payload, contentType)
    .map(([p, type]) => (p === undefined ? {} : { payload: p, contentType: type }));
}

/** Body-less routes mostly get no body, sometimes anything. */
const mostlyEmptyBodyArb: fc.Arbitrary<Body> = fc.oneof(
  { weight: 5, arbitrary: fc.constant<Body>({}) },
  { weight: 1, arbitrary: bodyArb(fc.constant({})) },
);

const definitionArb = fc.constantFrom(...definitions).map((make) => make());
const freshNameArb = fc.oneof(
  fc.constantFrom(...pool),
  fc.stringMatching(/^fz-new-[a-z0-9]{1,12}$/),
);

const createBases = fc
  .tuple(freshNameArb, definitionArb, fc.boolean())
  .map(([name, definition, withEndpoint]) => ({
    ...createBody(name, definition),
    ...(withEndpoint ? { agent_endpoint: agentEndpoint() } : {}),
  }));
const versionBases = definitionArb.map(versionBody);
const patchBases = fc.constant(null).map(patchBody);
/** Imports of the built-in prompt manifest, mutated like the other bodies. */
const importBases = fc
  .tuple(freshNameArb, fc.constantFrom("prompt-agent", "prompt-agent@1", "python-hosted-agent"))
  .map(([name, manifest_id]) => ({
    name,
    manifest_id,
    parameter_values: { model: "gpt-4o", temperature: 0.5 },
  }));
const manifestBases = freshNameArb.map((name) => ({
  name,
  parameters: { model: { type: "string", default: "m" } },
  definition: { kind: "prompt", model: "{{model}}" },
}));
const previewBases = fc.nat().map((i) => {
  const bodies = previewVersionBodies();
  return bodies[i % bodies.length]!;
});

// ---- requests and the properties every answer must have -------------------------------------

interface Sent {
  method: Method;
  url: string;
  body: Body;
  headers?: Record<string, string>;
}

const enc = encodeURIComponent;

async function fire(app: TestApp, sent: Sent): Promise<Response> {
  const headers: Record<string, string> = { ...sent.headers, ...app.auth };
  if (sent.body.contentType !== undefined) headers["content-type"] = sent.body.contentType;
  return app.app.inject({
    method: sent.method,
    url: sent.url,
    headers,
    ...(sent.body.payload === undefined
      ? {}
      : {
          payload: Buffer.isBuffer(sent.body.payload)
            ? sent.body.payload
            : expandDeep(sent.body.payload),
        }),
  });
}

const successObjects = [
  "agent",
  "agent.version",
  "agent.deleted",
  "agent.version.deleted",
  "manifest",
];

interface Envelope {
  error?: {
    code?: unknown;
    message?: unknown;
    details?: unknown;
    additionalInfo?: { request_id?: unknown };
  };
}

function describeExchange(sent: Sent, res: Response): string {
  return [
    `${sent.method} ${sent.url}`,
    `headers: ${JSON.stringify(sent.headers ?? {})}`,
    `content-type: ${sent.body.contentType ?? "(none)"}`,
    `body (${sent.body.payload?.length ?? 0} chars): ${sent.body.payload?.slice(0, 400) ?? "(none)"}`,
    `-> ${res.statusCode} ${String(res.headers["content-type"])} ${res.body.slice(0, 400)}`,
  ].join("\n");
}

/** The properties of every answer; returns the error code, or "2xx". */
function checkAnswer(sent: Sent, res: Response): string {
  const where = describeExchange(sent, res);
  assert.ok(res.statusCode < 500, `server error\n${where}`);

  if (res.statusCode === 204) {
    assert.equal(res.body, "", `204 with a body\n${where}`);
    return "2xx";
  }
  assert.match(String(res.headers["content-type"]), /^application\/json/, where);
  let parsed: unknown;
  assert.doesNotThrow(() => (parsed = JSON.parse(res.body)), `body is not JSON\n${where}`);

  if (res.statusCode >= 200 && res.statusCode < 300) {
    const object = (parsed as { object?: unknown }).object;
    assert.ok(successObjects.includes(String(object)), `unexpected object\n${where}`);
    if (object === "agent") {
      // The client dereferences versions.latest.definition.kind (contract §2.5).
      const latest = (parsed as { versions?: { latest?: { definition?: { kind?: unknown } } } })
        .versions?.latest;
      assert.equal(typeof latest?.definition?.kind, "string", where);
    }
    return "2xx";
  }

  const { error } = parsed as Envelope;
  assert.ok(error !== null && typeof error === "object", `no error envelope\n${where}`);
  assert.equal(typeof error.code, "string", where);
  const code = String(error.code);
  assert.ok(Object.hasOwn(errorCodes, code), `unknown error code ${code}\n${where}`);
  assert.equal(errorCodes[code as keyof typeof errorCodes].status, res.statusCode, where);
  assert.equal(typeof error.message, "string", where);
  assert.ok(String(error.message).length > 0, where);
  assert.ok(Array.isArray(error.details), where);
  assert.equal(typeof error.additionalInfo?.request_id, "string", where);
  return code;
}

/**
 * Runs the property against `app` (re-creating the pool agents first when the route may delete
 * them) and returns how often each outcome occurred, so a test can show it reached success.
 */
async function fuzz<T>(
  app: TestApp,
  arb: fc.Arbitrary<T>,
  build: (input: T) => Sent,
  options: { keepPool?: boolean } = {},
): Promise<Map<string, number>> {
  const outcomes = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(arb, async (input) => {
      if (options.keepPool) for (const name of pool) await ensureAgent(app, name);
      const sent = build(input);
      const outcome = checkAnswer(sent, await fire(app, sent));
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }),
    runOptions,
  );
  return outcomes;
}

/** The run reached both success and validation failure: it did not only collect 404s. */
function assertExercised(outcomes: Map<string, number>, ...codes: string[]): void {
  const seen = JSON.stringify(Object.fromEntries(outcomes));
  for (const code of ["2xx", ...codes]) assert.ok(outcomes.has(code), `no ${code}: ${seen}`);
}

describe("fuzzing the write routes", () => {
  before(async () => {
    lenient = await buildTestApp();
    for (const name of pool) await ensureAgent(lenient, name);
  });

  after(async () => {
    await lenient.close();
  });

  it("POST /agents", async () => {
    const outcomes = await fuzz(
      lenient,
      fc.tuple(queryArb, headersArb, bodyArb(createBases)),
      ([query, headers, body]) => ({ method: "POST", url: api("/agents", query), headers, body }),
    );
    assertExercised(outcomes, "invalid_parameter", "invalid_json");
  });

  it("POST /agents/{name}", async () => {
    const outcomes = await fuzz(
      lenient,
      fc.tuple(nameArb, queryArb, headersArb, bodyArb(versionBases)),
      ([name, query, headers, body]) => ({
        method: "POST",
        url: api(`/agents/${enc(name)}`, query),
        headers,
        body,
      }),
    );
    assertExercised(outcomes, "invalid_parameter", "not_found");
  });

  it("PATCH /agents/{name} (merge patch)", async () => {
    const outcomes = await fuzz(
      lenient,
      fc.tuple(nameArb, queryArb, bodyArb(patchBases, "application/merge-patch+json")),
      ([name, query, body]) => ({ method: "PATCH", url: api(`/agents/${enc(name)}`, query), body }),
    );
    assertExercised(outcomes, "invalid_parameter", "not_found");
  });

  it("POST /agents/{name}/versions", async () => {
    const outcomes = await fuzz(
      lenient,
      fc.tuple(nameArb, queryArb, headersArb, bodyArb(versionBases)),
      ([name, query, headers, body]) => ({
        method: "POST",
        url: api(`/agents/${enc(name)}/versions`, query),
        headers,
        body,
      }),
    );
    assertExercised(outcomes, "invalid_parameter");
  });

  it("POST /agents/{name}:enable and :disable", async () => {
    const verbArb = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom("enable", "disable") },
      { weight: 1, arbitrary: fc.constantFrom("", "stop", "ENABLE", "enable:enable") },
    );
    const outcomes = await fuzz(
      lenient,
      fc.tuple(nameArb, verbArb, queryArb, mostlyEmptyBodyArb),
      ([name, verb, query, body]) => ({
        method: "POST",
        url: api(`/agents/${enc(name)}:${verb}`, query),
        body,
      }),
    );
    assertExercised(outcomes, "not_found");
  });

  it("DELETE /agents/{name}", async () => {
    const outcomes = await fuzz(
      lenient,
      fc.tuple(nameArb, queryArb, mostlyEmptyBodyArb),
      ([name, query, body]) => ({
        method: "DELETE",
        url: api(`/agents/${enc(name)}`, query),
        body,
      }),
      { keepPool: true },
    );
    assertExercised(outcomes, "invalid_parameter", "not_found");
  });

  it("DELETE /agents/{name}/versions/{version}", async () => {
    const outcomes = await fuzz(
      lenient,
      fc.tuple(nameArb, versionArb, queryArb, mostlyEmptyBodyArb),
      ([name, version, query, body]) => ({
        method: "DELETE",
        url: api(`/agents/${enc(name)}/versions/${enc(version)}`, query),
        body,
      }),
      { keepPool: true },
    );
    assertExercised(outcomes, "invalid_parameter", "not_found");
  });

  it("POST /agents:import, /agents/{name}/import, /agents/{name}/versions:import", async () => {
    const routes = ["/agents:import", "/agents/{name}/import", "/agents/{name}/versions:import"];
    const outcomes = await fuzz(
      lenient,
      fc.tuple(fc.constantFrom(...routes), nameArb, queryArb, bodyArb(importBases)),
      ([route, name, query, body]) => ({
        method: "POST",
        url: api(route.replace("{name}", enc(name)), query),
        body,
      }),
    );
    assertExercised(outcomes, "invalid_parameter");
  });

  it("POST /manifests", async () => {
    const outcomes = await fuzz(
      lenient,
      fc.tuple(queryArb, bodyArb(manifestBases)),
      ([query, body]) => ({ method: "POST", url: api("/manifests", query), body }),
    );
    assertExercised(outcomes, "invalid_parameter");
  });

  it("multipart code uploads with random bytes", async () => {
    const outcomes = await fuzz(
      lenient,
      fc.tuple(
        nameArb,
        fc.uint8Array({ maxLength: 2048 }),
        fc.constantFrom("", "; boundary=x", "; boundary=----b"),
      ),
      ([name, bytes, params]) => ({
        method: "POST",
        url: api(`/agents/${enc(name)}/versions`),
        headers: { "x-ms-code-zip-sha256": "0".repeat(64) },
        body: { payload: Buffer.from(bytes), contentType: `multipart/form-data${params}` },
      }),
    );
    assert.ok(outcomes.size > 0);
  });

  it("left every stored agent and version listable and well-formed", async () => {
    let cursor = "";
    let agents = 0;
    for (;;) {
      const query = `limit=100${cursor ? `&after=${enc(cursor)}` : ""}`;
      const res = await request(lenient, "GET", api("/agents", query));
      assert.equal(res.statusCode, 200, res.body);
      const page = res.json<{ data: { name: string }[]; has_more: boolean; last_id: string }>();
      for (const agent of page.data) {
        agents++;
        const url = api(`/agents/${enc(agent.name)}/versions`, "limit=100&include_drafts=true");
        const versions = await request(lenient, "GET", url);
        assert.equal(versions.statusCode, 200, versions.body);
        for (const v of versions.json<{ data: { object: string; definition: Json }[] }>().data) {
          assert.equal(v.object, "agent.version");
          assert.equal(typeof v.definition.kind, "string");
        }
      }
      if (!page.has_more) break;
      cursor = page.last_id;
    }
    assert.ok(agents >= pool.length, "the fuzzed routes left agents behind");
  });
});

describe("fuzzing preview opt-ins in strict mode", () => {
  before(async () => {
    strict = await buildTestApp({ foundryFeatures: "strict" });
    for (const name of pool) await ensureAgent(strict, name);
  });

  after(async () => {
    await strict.close();
  });

  it("POST /agents/{name}/versions with random Foundry-Features", async () => {
    const outcomes = await fuzz(
      strict,
      fc.tuple(fc.constantFrom(...pool), featureHeadersArb, bodyArb(previewBases)),
      ([name, headers, body]) => ({
        method: "POST",
        url: api(`/agents/${name}/versions`),
        headers,
        body,
      }),
    );
    assertExercised(outcomes, "preview_feature_required", "invalid_parameter");
  });

  it("POST /agents with random Foundry-Features", async () => {
    const bases = fc
      .tuple(freshNameArb, previewBases)
      .map(([name, body]) => ({ ...body, name }) as Json);
    const outcomes = await fuzz(
      strict,
      fc.tuple(featureHeadersArb, bodyArb(bases)),
      ([headers, body]) => ({ method: "POST", url: api("/agents"), headers, body }),
    );
    assertExercised(outcomes, "preview_feature_required");
  });
});
