import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import fc from "fast-check";
import { errorCodes } from "../../src/contract/errorCodes.js";
import { api, buildTestApp } from "../helpers/app.js";

/*
 * Whatever arrives at an agent's `mcp` and `activity` endpoints (random JSON, JSON-RPC-looking
 * messages with random parts, activities with fields replaced), the answer is never a 5xx:
 * the MCP endpoint answers JSON-RPC (or 202 for notifications), the activity endpoint the
 * contract's envelope with a known code. In-process (Fastify inject), real SQLite; the prompt
 * agent's model is a deployment that does not exist, so no model is ever called.
 */

type TestApp = Awaited<ReturnType<typeof buildTestApp>>;
let t: TestApp;
const runs = Number(process.env.FUZZ_RUNS ?? 200);

before(async () => {
  t = await buildTestApp();
  const created = await t.app.inject({
    method: "POST",
    url: api("/agents"),
    headers: { ...t.auth, "content-type": "application/json" },
    payload: {
      name: "fuzzed",
      definition: { kind: "prompt", model: "no-such-deployment" },
      agent_endpoint: { protocol_configuration: { mcp: {}, activity: {} } },
    },
  });
  assert.equal(created.statusCode, 200, created.body);
});

after(() => t?.close());

const json = fc.jsonValue({ maxDepth: 4 });

const rpc = fc.record(
  {
    jsonrpc: fc.oneof(fc.constant("2.0"), json),
    id: fc.oneof(fc.integer(), fc.string(), json),
    method: fc.oneof(
      fc.constantFrom(
        "initialize",
        "tools/list",
        "tools/call",
        "ping",
        "notifications/initialized",
        "notifications/cancelled",
      ),
      fc.string(),
    ),
    params: fc.oneof(
      fc.record({ name: fc.oneof(fc.constant("fuzzed"), fc.string()), arguments: json }),
      fc.record({ requestId: fc.oneof(fc.constantFrom(0, 1, "1"), fc.integer()) }),
      json,
    ),
  },
  { requiredKeys: [] },
);

/** A request's answer, or a failure once `ms` pass: a hang fails the property. */
async function within<T>(ms: number, pending: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([pending, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Host headers a client could send that are no valid host (the URL parser refuses them). */
const hostileHost = fc.constantFrom(undefined, "[::1", "a%zz", "a b", "[", "::::", "é.example");

it("the MCP endpoint never answers a 5xx, and always answers", async () => {
  const version = fc.constantFrom("2025-06-18", "2025-03-26", "2024-11-05");
  const batch = fc.array(rpc, { maxLength: 3 });
  // A request and its own cancellation, in one batch: the SDK answers no cancelled request.
  const cancelled = fc.constantFrom(0, 1, "1").map((id) => [
    {
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name: "fuzzed", arguments: { input: "hi" } },
    },
    { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: id } },
  ]);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(rpc, json, batch, cancelled),
      version,
      hostileHost,
      async (body, v, host) => {
        const r = await within(
          5000,
          t.app.inject({
            method: "POST",
            url: api("/agents/fuzzed/endpoint/protocols/mcp"),
            headers: {
              ...t.auth,
              "content-type": "application/json",
              accept: "application/json, text/event-stream",
              "mcp-protocol-version": v,
              ...(host !== undefined ? { host } : {}),
            },
            payload: JSON.stringify(body),
          }),
        );
        assert.ok(r.statusCode < 500, `${r.statusCode} ${r.body}`);
        if (r.statusCode !== 202) assert.doesNotThrow(() => JSON.parse(r.body) as unknown, r.body);
      },
    ),
    { numRuns: runs },
  );
});

it("a request and its own cancellation in one batch are answered, not left hanging", async () => {
  const r = await within(
    5000,
    t.app.inject({
      method: "POST",
      url: api("/agents/fuzzed/endpoint/protocols/mcp"),
      headers: {
        ...t.auth,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": "2025-03-26",
      },
      payload: JSON.stringify([
        { jsonrpc: "2.0", id: 1, method: "tools/list" },
        { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 1 } },
      ]),
    }),
  );
  assert.equal(r.statusCode, 200, r.body);
  const answers = JSON.parse(r.body) as { id: number; result?: { tools: unknown[] } }[];
  const answer = Array.isArray(answers) ? answers[0] : answers;
  assert.equal(answer?.id, 1, r.body);
  assert.ok(answer?.result?.tools, r.body);
});

const mcpPost = (body: unknown) =>
  t.app.inject({
    method: "POST",
    url: api("/agents/fuzzed/endpoint/protocols/mcp"),
    headers: {
      ...t.auth,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2025-06-18",
    },
    payload: JSON.stringify(body),
  });

it("a tools/call with arguments that are no object is -32602 naming the field", async () => {
  const r = await mcpPost({
    jsonrpc: "2.0",
    id: 7,
    method: "tools/call",
    params: { name: "fuzzed", arguments: null },
  });
  assert.equal(r.statusCode, 200, r.body);
  const answer = JSON.parse(r.body) as { id: number; error: { code: number; message: string } };
  assert.equal(answer.id, 7);
  assert.equal(answer.error.code, -32602, r.body);
  assert.match(answer.error.message, /^Invalid params: 'params\.arguments': /);
  assert.ok(answer.error.message.length < 200, r.body);
});

it("agent_session_id for a prompt agent is the tool's isError naming it (as activity's 400)", async () => {
  const r = await mcpPost({
    jsonrpc: "2.0",
    id: 8,
    method: "tools/call",
    params: { name: "fuzzed", arguments: { input: "hi", agent_session_id: "sess_12345678" } },
  });
  assert.equal(r.statusCode, 200, r.body);
  const answer = JSON.parse(r.body) as {
    result: { isError: boolean; content: { text: string }[] };
  };
  assert.equal(answer.result.isError, true, r.body);
  assert.match(answer.result.content[0]!.text, /^invalid_parameter: .*agent_session_id/);
});

it("a hostile Host header is no 500 at the MCP endpoint", async () => {
  for (const host of ["[::1", "a%zz"]) {
    const r = await t.app.inject({
      method: "POST",
      url: api("/agents/fuzzed/endpoint/protocols/mcp"),
      headers: {
        ...t.auth,
        host,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      payload: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
    });
    assert.equal(r.statusCode, 200, `${host}: ${r.body}`);
  }
});

const activity = fc.record(
  {
    type: fc.oneof(fc.constantFrom("message", "conversationUpdate"), json),
    id: fc.oneof(fc.string(), json),
    text: fc.oneof(fc.string(), json),
    conversation: fc.oneof(fc.record({ id: fc.oneof(fc.string(), json) }), json),
    from: fc.oneof(fc.record({ id: fc.string() }), json),
    recipient: json,
    attachments: json,
  },
  { requiredKeys: [] },
);

it("the activity endpoint never answers a 5xx; its errors are the contract's", async () => {
  await fc.assert(
    fc.asyncProperty(fc.oneof(activity, json), hostileHost, async (body, host) => {
      const r = await within(
        5000,
        t.app.inject({
          method: "POST",
          url: api("/agents/fuzzed/endpoint/protocols/activity/messages"),
          headers: { ...t.auth, "content-type": "application/json", ...(host ? { host } : {}) },
          payload: JSON.stringify(body),
        }),
      );
      assert.ok(r.statusCode < 500, `${r.statusCode} ${r.body}`);
      const answer = JSON.parse(r.body) as { error?: { code: string } };
      if (r.statusCode >= 400) {
        assert.ok(answer.error && answer.error.code in errorCodes, r.body);
        assert.equal(errorCodes[answer.error.code as keyof typeof errorCodes].status, r.statusCode);
      }
    }),
    { numRuns: runs },
  );
});
