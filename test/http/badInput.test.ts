import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LightMyRequestResponse as Response } from "fastify";
import { api, buildTestApp } from "../helpers/app.js";

/*
 * Bad input through the real HTTP stack (Fastify inject, real SQLite): every mistake a caller
 * can make is a 4xx in the contract's error envelope (§2.1, §4.6), never a 500, and names the
 * field to blame in `error.param` (§8).
 */

type TestApp = Awaited<ReturnType<typeof buildTestApp>>;
type Json = Record<string, unknown>;

interface ErrorEnvelope {
  error: {
    code: string;
    message: string;
    param: string | null;
    type: string;
    details: unknown[];
    additionalInfo: { request_id: string };
  };
}

let t: TestApp;

before(async () => {
  t = await buildTestApp();
});

after(async () => {
  await t.close();
});

// ---- fixtures -------------------------------------------------------------------------------

let unique = 0;
const newName = (prefix = "bad") => `${prefix}-${process.pid}-${++unique}`;

const promptDef = (extra: Json = {}): Json => ({ kind: "prompt", model: "gpt-4o", ...extra });

const hostedDef = (extra: Json = {}): Json => ({
  kind: "hosted",
  cpu: "0.5",
  memory: "1Gi",
  container_configuration: { image: "registry.local/echo:1" },
  ...extra,
});

const codeConfiguration = () => ({
  runtime: "python_3_12",
  entry_point: ["python", "main.py"],
  dependency_resolution: "bundled",
});

const agentBody = (extra: Json = {}): Json => ({
  name: newName(),
  definition: promptDef(),
  ...extra,
});

const skill = (i: number) => ({ id: `skill-${i}`, name: `Skill ${i}` });

const agentCard = (skills: number): Json => ({
  version: "1.0",
  skills: Array.from({ length: skills }, (_, i) => skill(i)),
});

const fixedRatio = (agent_version: string, traffic_percentage: number) => ({
  type: "FixedRatio",
  agent_version,
  traffic_percentage,
});

const endpointWithRules = (...rules: ReturnType<typeof fixedRatio>[]): Json => ({
  version_selector: { version_selection_rules: rules },
});

const metadataPairs = (count: number): Record<string, string> =>
  Object.fromEntries(Array.from({ length: count }, (_, i) => [`key${i}`, `value${i}`]));

// ---- requests -------------------------------------------------------------------------------

type Method = "GET" | "POST" | "PATCH" | "DELETE";

interface SendOptions {
  /** A raw string is sent as is; anything else is JSON-encoded. */
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
  /** Replaces the admin Authorization header; `null` sends none. */
  authorization?: string | null;
  app?: TestApp;
}

async function send(method: Method, url: string, options: SendOptions = {}): Promise<Response> {
  const target = options.app ?? t;
  const headers: Record<string, string> = { ...options.headers };
  const authorization =
    options.authorization === undefined ? target.auth.authorization : options.authorization;
  if (authorization !== null) headers.authorization = authorization;
  let payload: string | undefined;
  if (options.body !== undefined) {
    payload = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    headers["content-type"] = options.contentType ?? "application/json";
  }
  return target.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
}

const post = (url: string, body: unknown, options: SendOptions = {}) =>
  send("POST", url, { ...options, body });

const mergePatch = (name: string, body: unknown) =>
  send("PATCH", api(`/agents/${name}`), {
    body,
    contentType: "application/merge-patch+json",
  });

/** Creates a prompt agent with a fresh name and returns the name. */
async function createAgent(extra: Json = {}): Promise<string> {
  const body = agentBody(extra);
  const res = await post(api("/agents"), body);
  assert.equal(res.statusCode, 200, res.body);
  return String(body.name);
}

/**
 * Asserts an error response: exact status, a well-formed envelope, the code and `param`
 * (exactly, or one of a list where the contract leaves the choice open) when given.
 */
function expectError(
  res: Response,
  status: number,
  code: string | readonly string[],
  param?: string | null | readonly string[],
): ErrorEnvelope["error"] {
  const where = `${res.statusCode} ${res.body}`;
  assert.equal(res.statusCode, status, where);
  assert.match(String(res.headers["content-type"]), /^application\/json/, where);
  const body = res.json<ErrorEnvelope>();
  assert.equal(typeof body.error, "object", where);
  const { error } = body;
  if (typeof code === "string") assert.equal(error.code, code, where);
  else assert.ok(code.includes(error.code), where);
  assert.equal(typeof error.message, "string", where);
  assert.ok(error.message.length > 0, where);
  assert.equal(typeof error.type, "string", where);
  assert.deepEqual(error.details, [], where);
  assert.equal(typeof error.additionalInfo.request_id, "string", where);
  assert.ok(error.additionalInfo.request_id.length > 0, where);
  assert.equal(error.additionalInfo.request_id, res.headers["x-request-id"], where);
  if (param === undefined) return error;
  if (param === null || typeof param === "string") assert.equal(error.param, param, where);
  else assert.ok(error.param !== null && param.includes(error.param), where);
  return error;
}

const invalid = (res: Response, param: string | null | readonly string[]) =>
  expectError(res, 400, "invalid_parameter", param);

// ---- tests ----------------------------------------------------------------------------------

describe("malformed bodies", () => {
  it("answers 400 invalid_json for a body that is not JSON", async () => {
    const res = await post(api("/agents"), '{"name": "x", "definition": {');
    expectError(res, 400, "invalid_json", null);
  });

  it("answers 400 invalid_json for an empty JSON body", async () => {
    const res = await post(api("/agents"), "");
    expectError(res, 400, "invalid_json", null);
  });

  it("answers 400 invalid_json for trailing garbage after the JSON value", async () => {
    const res = await post(api("/agents"), `${JSON.stringify(agentBody())} trailing`);
    expectError(res, 400, "invalid_json", null);
  });

  for (const [label, raw] of [
    ["an array", "[1, 2, 3]"],
    ["an array of agent bodies", JSON.stringify([agentBody()])],
    ["a number", "42"],
    ["a string", '"agent"'],
    ["null", "null"],
    ["true", "true"],
  ] as const) {
    it(`answers 400 invalid_parameter for ${label} as the body of POST /agents`, async () => {
      invalid(await post(api("/agents"), raw), null);
    });
  }

  it("answers 400 for an array body on update, create-version and merge patch", async () => {
    const name = await createAgent();
    invalid(await post(api(`/agents/${name}`), "[]"), null);
    invalid(await post(api(`/agents/${name}/versions`), "[]"), null);
    invalid(await mergePatch(name, "[]"), null);
  });

  it("answers 400 for a number as the merge patch", async () => {
    const name = await createAgent();
    invalid(await mergePatch(name, "7"), null);
  });
});

describe("wrong types", () => {
  it("rejects definition.temperature given as a string", async () => {
    const res = await post(
      api("/agents"),
      agentBody({ definition: promptDef({ temperature: "1" }) }),
    );
    invalid(res, "definition.temperature");
  });

  it("rejects a metadata value that is a number", async () => {
    const res = await post(api("/agents"), agentBody({ metadata: { team: 7 } }));
    invalid(res, "metadata.team");
  });

  it("rejects a name that is a number", async () => {
    invalid(await post(api("/agents"), agentBody({ name: 42 })), "name");
  });

  it("rejects a definition that is a string", async () => {
    invalid(await post(api("/agents"), agentBody({ definition: "prompt" })), "definition");
  });

  it("rejects tools that are not an array", async () => {
    const res = await post(api("/agents"), agentBody({ definition: promptDef({ tools: {} }) }));
    invalid(res, "definition.tools");
  });

  it("rejects a state outside enabled|disabled", async () => {
    invalid(await post(api("/agents"), agentBody({ state: "paused" })), "state");
  });
});

describe("missing required fields", () => {
  it("answers missing_parameter 'definition' when the definition is absent", async () => {
    const res = await post(api("/agents"), { name: newName() });
    expectError(res, 400, "missing_parameter", "definition");
  });

  it("answers missing_parameter 'name' when the name is absent", async () => {
    const res = await post(api("/agents"), { definition: promptDef() });
    expectError(res, 400, "missing_parameter", "name");
  });

  it("answers missing_parameter 'definition' on create-version and update", async () => {
    const name = await createAgent();
    const versions = await post(api(`/agents/${name}/versions`), { description: "x" });
    expectError(versions, 400, "missing_parameter", "definition");
    const update = await post(api(`/agents/${name}`), { description: "x" });
    expectError(update, 400, "missing_parameter", "definition");
  });

  it("answers missing_parameter 'definition.model' for a prompt definition without a model", async () => {
    const res = await post(api("/agents"), agentBody({ definition: { kind: "prompt" } }));
    expectError(res, 400, "missing_parameter", "definition.model");
  });

  it("answers missing_parameter 'definition.cpu' for a hosted definition without cpu", async () => {
    const definition = hostedDef();
    delete definition.cpu;
    const res = await post(api("/agents"), agentBody({ definition }));
    expectError(res, 400, "missing_parameter", "definition.cpu");
  });
});

describe("definition kind", () => {
  it("rejects an unknown kind naming definition.kind", async () => {
    const res = await post(api("/agents"), agentBody({ definition: promptDef({ kind: "robot" }) }));
    invalid(res, "definition.kind");
  });

  it("answers missing_parameter 'definition.kind' for a definition without a kind", async () => {
    const res = await post(api("/agents"), agentBody({ definition: { model: "gpt-4o" } }));
    expectError(res, 400, "missing_parameter", "definition.kind");
  });
});

describe("agent names", () => {
  const tooLong = "a".repeat(64);

  it("accepts a 63-character name (the boundary)", async () => {
    const name = `n${"0".repeat(61)}z`;
    const res = await post(api("/agents"), agentBody({ name }));
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json<Json>().name, name);
  });

  it("rejects a 64-character name naming 'name'", async () => {
    invalid(await post(api("/agents"), agentBody({ name: tooLong })), "name");
  });

  for (const bad of ["bad_name", "-leading", "trailing-", "has space", ""]) {
    it(`rejects the name ${JSON.stringify(bad)} naming 'name'`, async () => {
      invalid(await post(api("/agents"), agentBody({ name: bad })), "name");
    });
  }

  for (const [label, bad] of [
    ["bad_name", "bad_name"],
    ["a 64-character name", tooLong],
  ] as const) {
    it(`rejects ${label} on POST /agents/{name}/versions naming 'agent_name'`, async () => {
      const res = await post(api(`/agents/${bad}/versions`), { definition: promptDef() });
      invalid(res, "agent_name");
      expectError(await send("GET", api(`/agents/${bad}`)), 404, "not_found");
    });
  }
});

describe("metadata and description limits", () => {
  it("accepts 16 metadata pairs (the boundary)", async () => {
    const res = await post(api("/agents"), agentBody({ metadata: metadataPairs(16) }));
    assert.equal(res.statusCode, 200, res.body);
  });

  it("rejects 17 metadata pairs naming 'metadata'", async () => {
    invalid(await post(api("/agents"), agentBody({ metadata: metadataPairs(17) })), "metadata");
  });

  it("rejects 17 metadata pairs on create-version naming 'metadata'", async () => {
    const name = await createAgent();
    const res = await post(api(`/agents/${name}/versions`), {
      definition: promptDef(),
      metadata: metadataPairs(17),
    });
    invalid(res, "metadata");
  });

  it("rejects a 65-character metadata key", async () => {
    const key = "k".repeat(65);
    const res = await post(api("/agents"), agentBody({ metadata: { [key]: "v" } }));
    invalid(res, ["metadata", `metadata.${key}`]);
  });

  it("accepts a 64-character metadata key (the boundary)", async () => {
    const res = await post(api("/agents"), agentBody({ metadata: { ["k".repeat(64)]: "v" } }));
    assert.equal(res.statusCode, 200, res.body);
  });

  it("rejects a 513-character metadata value", async () => {
    const res = await post(api("/agents"), agentBody({ metadata: { note: "v".repeat(513) } }));
    invalid(res, "metadata.note");
  });

  it("rejects a 513-character description naming 'description'", async () => {
    const res = await post(api("/agents"), agentBody({ description: "d".repeat(513) }));
    invalid(res, "description");
  });

  it("accepts a 512-character description (the boundary)", async () => {
    const res = await post(api("/agents"), agentBody({ description: "d".repeat(512) }));
    assert.equal(res.statusCode, 200, res.body);
  });
});

describe("prompt sampling ranges", () => {
  for (const [field, value] of [
    ["temperature", 2.5],
    ["temperature", -0.5],
    ["top_p", -0.1],
    ["top_p", 1.5],
  ] as const) {
    it(`rejects ${field} ${value} naming definition.${field}`, async () => {
      const res = await post(
        api("/agents"),
        agentBody({ definition: promptDef({ [field]: value }) }),
      );
      invalid(res, `definition.${field}`);
    });
  }

  it("accepts temperature 2 and top_p 0 (the boundaries)", async () => {
    const definition = promptDef({ temperature: 2, top_p: 0 });
    const res = await post(api("/agents"), agentBody({ definition }));
    assert.equal(res.statusCode, 200, res.body);
  });
});

describe("hosted definitions", () => {
  const eitherConfiguration = [
    "definition.container_configuration",
    "definition.code_configuration",
  ] as const;

  it("rejects both container_configuration and code_configuration", async () => {
    const definition = hostedDef({ code_configuration: codeConfiguration() });
    invalid(await post(api("/agents"), agentBody({ definition })), eitherConfiguration);
  });

  it("rejects neither container_configuration nor code_configuration", async () => {
    const definition = hostedDef();
    delete definition.container_configuration;
    invalid(await post(api("/agents"), agentBody({ definition })), eitherConfiguration);
  });

  for (const seconds of [119, 3601]) {
    it(`rejects idle_timeout_seconds ${seconds}`, async () => {
      const definition = hostedDef({ session_configuration: { idle_timeout_seconds: seconds } });
      const res = await post(api("/agents"), agentBody({ definition }));
      invalid(res, "definition.session_configuration.idle_timeout_seconds");
    });
  }

  it("accepts idle_timeout_seconds 120 and 3600 (the boundaries)", async () => {
    for (const seconds of [120, 3600]) {
      const definition = hostedDef({ session_configuration: { idle_timeout_seconds: seconds } });
      const res = await post(api("/agents"), agentBody({ definition }));
      assert.equal(res.statusCode, 200, res.body);
    }
  });
});

describe("agent card", () => {
  it("rejects 17 skills on create naming agent_card.skills", async () => {
    invalid(
      await post(api("/agents"), agentBody({ agent_card: agentCard(17) })),
      "agent_card.skills",
    );
  });

  it("rejects an empty skills list on create naming agent_card.skills", async () => {
    invalid(
      await post(api("/agents"), agentBody({ agent_card: agentCard(0) })),
      "agent_card.skills",
    );
  });

  it("rejects 17 skills and no skills through PATCH naming agent_card.skills", async () => {
    const name = await createAgent();
    invalid(await mergePatch(name, { agent_card: agentCard(17) }), "agent_card.skills");
    invalid(await mergePatch(name, { agent_card: agentCard(0) }), "agent_card.skills");
    const get = await send("GET", api(`/agents/${name}`));
    assert.equal(get.json<Json>().agent_card, undefined, "a rejected patch changes nothing");
  });

  it("accepts 16 skills (the boundary)", async () => {
    const res = await post(api("/agents"), agentBody({ agent_card: agentCard(16) }));
    assert.equal(res.statusCode, 200, res.body);
  });
});

describe("agent endpoint traffic rules", () => {
  it("rejects percentages summing to 90 with a param naming version_selection_rules", async () => {
    const name = await createAgent();
    const v2 = await post(api(`/agents/${name}/versions`), {
      definition: promptDef({ model: "m2" }),
    });
    assert.equal(v2.statusCode, 200, v2.body);
    const res = await mergePatch(name, {
      agent_endpoint: endpointWithRules(fixedRatio("1", 50), fixedRatio("2", 40)),
    });
    invalid(res, "agent_endpoint.version_selector.version_selection_rules");
  });

  it("rejects a rule naming a version that does not exist", async () => {
    const name = await createAgent();
    const res = await mergePatch(name, {
      agent_endpoint: endpointWithRules(fixedRatio("1", 50), fixedRatio("7", 50)),
    });
    invalid(res, "agent_endpoint.version_selector.version_selection_rules[1].agent_version");
  });

  it("rejects a non-integer traffic percentage", async () => {
    const name = await createAgent();
    const res = await mergePatch(name, {
      agent_endpoint: endpointWithRules(fixedRatio("1", 99.5)),
    });
    invalid(res, "agent_endpoint.version_selector.version_selection_rules[0].traffic_percentage");
  });

  it("rejects percentages summing to 90 on create", async () => {
    const res = await post(
      api("/agents"),
      agentBody({ agent_endpoint: endpointWithRules(fixedRatio("1", 90)) }),
    );
    invalid(res, "agent_endpoint.version_selector.version_selection_rules");
  });

  it("accepts rules summing to 100 on existing versions", async () => {
    const name = await createAgent();
    const res = await mergePatch(name, {
      agent_endpoint: endpointWithRules(fixedRatio("1", 100)),
    });
    assert.equal(res.statusCode, 200, res.body);
  });

  it("answers 404 not_found when patching an agent that does not exist", async () => {
    const res = await mergePatch(newName("ghost"), { agent_card: agentCard(1) });
    expectError(res, 404, "not_found", "agent_name");
  });
});

describe("query strings", () => {
  for (const [query, param] of [
    ["limit=0", "limit"],
    ["limit=101", "limit"],
    ["limit=abc", "limit"],
    ["limit=1.5", "limit"],
    ["order=sideways", "order"],
    ["kind=robot", "kind"],
  ] as const) {
    it(`rejects ${query} on GET /agents naming '${param}'`, async () => {
      invalid(await send("GET", api("/agents", query)), param);
    });
  }

  it("accepts limit=1 and limit=100 (the boundaries)", async () => {
    for (const query of ["limit=1", "limit=100"]) {
      const res = await send("GET", api("/agents", query));
      assert.equal(res.statusCode, 200, res.body);
    }
  });

  it("rejects include_drafts=maybe on GET /agents/{name}/versions", async () => {
    const name = await createAgent();
    const res = await send("GET", api(`/agents/${name}/versions`, "include_drafts=maybe"));
    invalid(res, "include_drafts");
  });

  it("rejects force=yes on DELETE /agents/{name} and keeps the agent", async () => {
    const name = await createAgent();
    invalid(await send("DELETE", api(`/agents/${name}`, "force=yes")), "force");
    const get = await send("GET", api(`/agents/${name}`));
    assert.equal(get.statusCode, 200, get.body);
  });

  it("rejects force=yes on DELETE /agents/{name}/versions/{v}", async () => {
    const name = await createAgent();
    const res = await send("DELETE", api(`/agents/${name}/versions/1`, "force=yes"));
    invalid(res, "force");
  });
});

describe("api-version", () => {
  it("answers 400 invalid_api_version for an unknown version", async () => {
    const res = await send("GET", "/api/projects/default/agents?api-version=2099-01-01");
    expectError(res, 400, "invalid_api_version", "api-version");
  });

  it("answers 400 invalid_api_version when api-version is missing", async () => {
    const res = await send("GET", "/api/projects/default/agents");
    expectError(res, 400, "invalid_api_version", "api-version");
  });

  it("answers 400 invalid_api_version on a write route too", async () => {
    const res = await post("/api/projects/default/agents?api-version=v2", agentBody());
    expectError(res, 400, "invalid_api_version", "api-version");
  });

  it("answers 400 invalid_api_version when api-version is given twice", async () => {
    const res = await send("GET", "/api/projects/default/agents?api-version=v1&api-version=v1");
    expectError(res, 400, "invalid_api_version", "api-version");
  });
});

describe("body size and content type", () => {
  let small: TestApp;

  before(async () => {
    small = await buildTestApp({ maxJsonBytes: 4096 });
  });

  after(async () => {
    await small.close();
  });

  it("answers 413 payload_too_large beyond maxJsonBytes", async () => {
    const body = agentBody({
      description: "x",
      definition: promptDef({ instructions: "i".repeat(5000) }),
    });
    const res = await post(api("/agents"), body, { app: small });
    expectError(res, 413, "payload_too_large");
  });

  it("answers 413 payload_too_large for an oversize merge patch", async () => {
    const res = await send("PATCH", api("/agents/anything"), {
      app: small,
      body: { agent_card: { version: "1", description: "d".repeat(5000), skills: [skill(1)] } },
      contentType: "application/merge-patch+json",
    });
    expectError(res, 413, "payload_too_large");
  });

  it("still accepts a body just under maxJsonBytes", async () => {
    const body = agentBody({ definition: promptDef({ instructions: "i".repeat(3000) }) });
    const res = await post(api("/agents"), body, { app: small });
    assert.equal(res.statusCode, 200, res.body);
  });

  it("answers 415 unsupported_media_type for text/plain on POST /agents", async () => {
    const res = await post(api("/agents"), JSON.stringify(agentBody()), {
      contentType: "text/plain",
    });
    expectError(res, 415, "unsupported_media_type");
  });

  it("answers 415 unsupported_media_type for form-encoded bodies", async () => {
    const res = await post(api("/agents"), "name=x", {
      contentType: "application/x-www-form-urlencoded",
    });
    expectError(res, 415, "unsupported_media_type");
  });
});

describe("authentication", () => {
  it("answers 401 unauthorized without a bearer key", async () => {
    expectError(await send("GET", api("/agents"), { authorization: null }), 401, "unauthorized");
  });

  it("answers 401 unauthorized for an unknown bearer key", async () => {
    const res = await send("GET", api("/agents"), { authorization: "Bearer ahk_not_a_real_key" });
    expectError(res, 401, "unauthorized");
  });

  it("answers 401 unauthorized for a non-bearer scheme", async () => {
    const res = await send("GET", api("/agents"), { authorization: `Basic ${t.adminKey}` });
    expectError(res, 401, "unauthorized");
  });

  it("answers 401 unauthorized on a write route before looking at the body", async () => {
    const res = await post(api("/agents"), "{not json", { authorization: null });
    expectError(res, 401, "unauthorized");
  });
});

describe("prototype pollution", () => {
  it("rejects a top-level __proto__ key", async () => {
    const raw = `{"__proto__": {"admin": true}, "name": "${newName()}", "definition": {"kind": "prompt", "model": "m"}}`;
    expectError(await post(api("/agents"), raw), 400, "invalid_json");
  });

  it("rejects a __proto__ key nested in the definition", async () => {
    const raw = `{"name": "${newName()}", "definition": {"kind": "prompt", "model": "m", "__proto__": {"x": 1}}}`;
    expectError(await post(api("/agents"), raw), 400, "invalid_json");
  });

  it("rejects a __proto__ key in metadata", async () => {
    const raw = `{"name": "${newName()}", "definition": {"kind": "prompt", "model": "m"}, "metadata": {"__proto__": "x"}}`;
    expectError(await post(api("/agents"), raw), 400, "invalid_json");
  });

  it("rejects a __proto__ key in a merge patch", async () => {
    const name = await createAgent();
    const res = await mergePatch(name, '{"agent_card": {"__proto__": {"polluted": true}}}');
    expectError(res, 400, "invalid_json");
  });

  it("rejects constructor.prototype", async () => {
    const raw = `{"name": "${newName()}", "definition": {"kind": "prompt", "model": "m", "constructor": {"prototype": {"x": 1}}}}`;
    expectError(await post(api("/agents"), raw), 400, "invalid_json");
  });

  it("leaves Object.prototype untouched", () => {
    assert.equal(({} as Json).admin, undefined);
    assert.equal(({} as Json).polluted, undefined);
    assert.equal(({} as Json).x, undefined);
  });
});

describe("deeply nested JSON", () => {
  /*
   * The contract sets no nesting limit, but a body nested thousands of levels deep must not
   * exhaust the stack (a 500, which clients retry three times, §2.3). A depth limit answering
   * 400 is the expected fix; the code may be either of the two body-level codes.
   */
  const depth = 5000;
  const deepArray = () => "[".repeat(depth) + "]".repeat(depth);
  const deepObject = () => '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
  const bodyCodes = ["invalid_json", "invalid_parameter"] as const;
  const expectBadBody = (res: Response) => expectError(res, 400, bodyCodes);

  it("rejects an unknown definition field nested 5000 arrays deep with a 400", async () => {
    const raw = `{"name":"${newName()}","definition":{"kind":"prompt","model":"m","x":${deepArray()}}}`;
    expectBadBody(await post(api("/agents"), raw));
  });

  it("rejects a tool nested 5000 objects deep with a 400", async () => {
    const raw = `{"definition":{"kind":"prompt","model":"m","tools":[{"type":"t","x":${deepObject()}}]}}`;
    expectBadBody(await post(api(`/agents/${newName()}/versions`), raw));
  });

  it("rejects an agent card nested 5000 objects deep with a 400", async () => {
    const card = `{"version":"1","skills":[{"id":"a","name":"b","x":${deepObject()}}]}`;
    const raw = `{"name":"${newName()}","definition":{"kind":"prompt","model":"m"},"agent_card":${card}}`;
    expectBadBody(await post(api("/agents"), raw));
  });

  it("rejects a merge patch nested 5000 objects deep with a 400", async () => {
    const name = await createAgent();
    const raw = `{"agent_endpoint":{"protocol_configuration":{"x":${deepObject()}}}}`;
    expectBadBody(await mergePatch(name, raw));
  });
});

describe("forward compatibility: unknown content is stored and echoed", () => {
  const unknownTools = [
    { type: "quantum_teleport_preview", target: { planet: "mars", hops: [1, 2, 3] } },
    { type: "function", name: "f", parameters: { type: "object" }, future_flag: true },
  ];

  async function roundTrip(definition: Json) {
    const name = newName("echo");
    const created = await post(api("/agents"), { name, definition });
    assert.equal(created.statusCode, 200, created.body);
    const agent = created.json<{ versions: { latest: { definition: Json } } }>();
    assert.deepEqual(agent.versions.latest.definition, definition);

    const got = await send("GET", api(`/agents/${name}`));
    assert.equal(got.statusCode, 200, got.body);
    assert.deepEqual(
      got.json<{ versions: { latest: { definition: Json } } }>().versions.latest.definition,
      definition,
    );

    const version = await send("GET", api(`/agents/${name}/versions/1`));
    assert.equal(version.statusCode, 200, version.body);
    assert.deepEqual(version.json<{ definition: Json }>().definition, definition);
    return name;
  }

  it("accepts unknown tool types and echoes them verbatim", async () => {
    await roundTrip(promptDef({ tools: unknownTools }));
  });

  it("accepts unknown fields inside a prompt definition and echoes them verbatim", async () => {
    await roundTrip(
      promptDef({
        future_option: { nested: { list: [1, "two", null, { three: 3 }] } },
        reasoning: { effort: "high", brand_new_knob: 0.25 },
        text: { format: { type: "json_schema", schema: { type: "object" }, strict: true } },
      }),
    );
  });

  it("accepts unknown fields inside a hosted definition and echoes them verbatim", async () => {
    await roundTrip(
      hostedDef({
        container_configuration: { image: "registry.local/echo:2", pull_policy: "always" },
        gpu: { count: 1, sku: "future" },
      }),
    );
  });

  it("echoes unknown fields from create-version through the version routes", async () => {
    const name = await roundTrip(promptDef());
    const definition = promptDef({ tools: unknownTools, experimental: ["a", { b: false }] });
    const created = await post(api(`/agents/${name}/versions`), { definition });
    assert.equal(created.statusCode, 200, created.body);
    assert.deepEqual(created.json<{ definition: Json }>().definition, definition);
    const got = await send("GET", api(`/agents/${name}/versions/2`));
    assert.deepEqual(got.json<{ definition: Json }>().definition, definition);
  });
});

describe("sessions and session files", () => {
  const sessions = (name: string) => `/agents/${name}/endpoint/sessions`;
  const files = (name: string) => `${sessions(name)}/s-12345678/files`;

  for (const [label, body, param] of [
    ["no version_indicator", {}, "version_indicator"],
    ["a version_indicator that is a string", { version_indicator: "1" }, "version_indicator"],
    [
      "an unknown indicator type",
      { version_indicator: { type: "latest", agent_version: "1" } },
      "version_indicator.type",
    ],
    [
      "a version that is not a number",
      { version_indicator: { type: "version_ref", agent_version: "one" } },
      "version_indicator.agent_version",
    ],
    [
      "a session id with a slash",
      {
        version_indicator: { type: "version_ref", agent_version: "1" },
        agent_session_id: "a/bcdefgh",
      },
      "agent_session_id",
    ],
    [
      "a session id too short",
      { version_indicator: { type: "version_ref", agent_version: "1" }, agent_session_id: "short" },
      "agent_session_id",
    ],
  ] as const) {
    it(`refuses a session with ${label}, naming '${param}'`, async () => {
      const name = await createAgent();
      const res = await send("POST", api(sessions(name)), { body: body as unknown as Json });
      expectError(res, 400, ["missing_parameter", "invalid_parameter"], param);
    });
  }

  it("refuses bad paging and filters on the session list", async () => {
    const name = await createAgent();
    invalid(await send("GET", api(sessions(name), "limit=0")), "limit");
    invalid(await send("GET", api(sessions(name), "status=sleeping")), "status");
  });

  for (const [query, param] of [
    ["", "path"],
    ["path=..%2Fx", "path"],
    ["path=a%2F..%2F..%2Fx", "path"],
    ["path=a%00b", "path"],
    [`path=${"n".repeat(256)}`, "path"],
    ["path=a&recursive=maybe", "recursive"],
  ] as const) {
    it(`refuses a file delete with '${query.slice(0, 30)}', naming '${param}'`, async () => {
      const name = await createAgent();
      const res = await send("DELETE", api(files(name), query));
      expectError(res, 400, ["missing_parameter", "invalid_parameter"], param);
    });
  }

  it("refuses a file listing with bad paging or a traversing path", async () => {
    const name = await createAgent();
    invalid(await send("GET", api(files(name), "limit=101")), "limit");
    invalid(await send("GET", api(files(name), "path=..")), "path");
  });

  it("refuses a session of a prompt agent: sessions are for hosted agents", async () => {
    const name = await createAgent();
    const res = await send("POST", api(sessions(name)), {
      body: { version_indicator: { type: "version_ref", agent_version: "1" } },
    });
    expectError(res, 400, "agent_not_hosted", "version_indicator.agent_version");
  });
});
