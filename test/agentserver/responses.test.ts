import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  serve,
  type AgentServer,
  type ResponsesContext,
} from "../../packages/agentserver/src/index.js";

/*
 * @agenthost/agentserver's readiness and /responses routes, served on a real loopback port
 * and asked with fetch: sync answers of each result kind, the Responses event sequence of a
 * stream, background runs (GET, replay, cancel of a handler that never ends, DELETE),
 * input_items paging, the container headers a handler sees, and clear 4xx for bad requests.
 */

let agent: AgentServer;
let base: string;
let ready = true;
const seen: ResponsesContext[] = [];
let hungAborted: unknown;

before(async () => {
  agent = await serve({
    host: "127.0.0.1",
    port: 0,
    handleSignals: false,
    log: () => {},
    env: { FOUNDRY_AGENT_NAME: "unit", FOUNDRY_AGENT_VERSION: "3", PORT: "9999" },
    ready: () => ready,
    async responses(request, ctx) {
      seen.push(ctx);
      const text = ctx.inputText;
      if (text === "pieces") return pieces(["one ", "two ", "three"]);
      if (text === "whole")
        return {
          output: [
            {
              type: "message",
              role: "assistant",
              content: [{ type: "output_text", text: "made whole" }],
            },
          ],
          metadata: { kind: "whole" },
        };
      if (text === "fail") throw new Error("asked to fail");
      if (text === "bigint") return { output: [], metadata: { n: 1n } };
      if (text === "hang") {
        // Never resolves by itself: only the signal (cancel, DELETE) ends it.
        ctx.signal.addEventListener("abort", () => (hungAborted = ctx.signal.reason));
        return new Promise<string>(() => {});
      }
      if (text === "headers") ctx.setHeader("x-agent-trace", "set-by-handler");
      if (text === "nothing") return null;
      return `echo: ${text}`;
    },
  });
  base = `http://127.0.0.1:${agent.port}`;
});

after(() => agent.close(0));

async function* pieces(list: string[]) {
  for (const p of list) {
    await sleep(5);
    yield p;
  }
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

type Json = Record<string, unknown> & { id: string; status: string; output: Item[] };
type Item = { id: string; type: string; content: { type: string; text: string }[] };
const text = (r: Json) => r.output.map((o) => o.content.map((c) => c.text).join("")).join("");

/** The events of a server-sent event stream, with each frame's `event:` name checked. */
async function events(res: Response): Promise<{ type: string; [k: string]: unknown }[]> {
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const frames = (await res.text()).split("\n\n").filter((f) => f.startsWith("event:"));
  return frames.map((f) => {
    const [name, data] = f.split("\n");
    const event = JSON.parse(data!.slice("data: ".length)) as { type: string };
    assert.equal(name, `event: ${event.type}`);
    return event;
  });
}

describe("readiness", () => {
  it("answers 200 when ready and 503 while the agent says it is not", async () => {
    const yes = await fetch(`${base}/readiness`);
    assert.equal(yes.status, 200);
    assert.deepEqual(await yes.json(), { status: "ready" });
    ready = false;
    assert.equal((await fetch(`${base}/readiness`)).status, 503);
    ready = true;
    assert.equal((await fetch(`${base}/readiness`, { method: "POST" })).status, 405);
  });
});

describe("POST /responses", () => {
  it("answers a string, pieces, a whole response and nothing as a completed response", async () => {
    const cases: [string, string][] = [
      ["hello", "echo: hello"],
      ["pieces", "one two three"],
      ["whole", "made whole"],
      ["nothing", ""],
    ];
    for (const [input, expected] of cases) {
      const res = await post("/responses", { input });
      assert.equal(res.status, 200);
      const body = (await res.json()) as Json;
      assert.match(body.id, /^resp_[0-9a-f]{48}$/);
      assert.equal(body.object, "response");
      assert.equal(body.status, "completed");
      assert.equal(body.model, "unit");
      assert.equal(text(body), expected, input);
    }
    const whole = (await (await post("/responses", { input: "whole" })).json()) as Json;
    assert.deepEqual(whole.metadata, { kind: "whole" });
    assert.match(whole.output[0]!.id, /^msg_/);
  });

  it("gives the handler the container headers, the input and the environment", async () => {
    const res = await post(
      "/responses",
      {
        input: [
          { role: "user", content: "first" },
          { type: "message", role: "user", content: [{ type: "input_text", text: "second" }] },
        ],
      },
      {
        "x-agent-session-id": "sess-1",
        "x-agent-user-id": "key_abc",
        "x-agent-foundry-call-id": "call_0123456789abcdef01234567",
        "x-client-trace": "t-1",
        "x-request-id": "req-9",
      },
    );
    assert.equal(res.status, 200);
    assert.equal(text((await res.json()) as Json), "echo: first\nsecond");
    const ctx = seen.at(-1)!;
    assert.equal(ctx.sessionId, "sess-1");
    assert.equal(ctx.userId, "key_abc");
    assert.equal(ctx.callId, "call_0123456789abcdef01234567");
    assert.equal(ctx.requestId, "req-9");
    assert.deepEqual(ctx.clientHeaders, { "x-client-trace": "t-1" });
    assert.equal(ctx.env.agentName, "unit");
    assert.equal(ctx.env.agentVersion, "3");
    assert.equal(ctx.env.port, 9999);
    assert.equal(ctx.inputItems.length, 2);
    assert.ok(ctx.inputItems.every((i) => typeof i.id === "string" && i.id.startsWith("msg_")));
    assert.equal(ctx.stream, false);
    assert.equal(ctx.background, false);
  });

  it("answers the headers the handler set", async () => {
    const res = await post("/responses", { input: "headers" });
    assert.equal(res.headers.get("x-agent-trace"), "set-by-handler");
  });

  it("streams the Responses event sequence, with the deltas as they come", async () => {
    const res = await post("/responses", { input: "pieces", stream: true });
    assert.equal(res.status, 200);
    const list = await events(res);
    assert.deepEqual(
      list.map((e) => e.type),
      [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
      ],
    );
    assert.deepEqual(
      list.map((e) => e.sequence_number),
      list.map((_, i) => i),
    );
    assert.deepEqual(
      list.filter((e) => e.type.endsWith(".delta")).map((e) => e.delta),
      ["one ", "two ", "three"],
    );
    const created = list[0]!.response as Json;
    const completed = list.at(-1)!.response as Json;
    assert.equal(created.status, "in_progress");
    assert.equal(completed.id, created.id);
    assert.equal(text(completed), "one two three");
    // A whole response streams too: its text as one delta.
    const whole = await events(await post("/responses", { input: "whole", stream: true }));
    assert.equal(whole.find((e) => e.type === "response.output_text.delta")!.delta, "made whole");
  });

  it("reports a handler's failure: 500 in the error envelope, response.failed in a stream", async () => {
    const res = await post("/responses", { input: "fail" });
    assert.equal(res.status, 500);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "server_error");
    assert.equal(body.error.message, "asked to fail");
    const list = await events(await post("/responses", { input: "fail", stream: true }));
    const last = list.at(-1)!;
    assert.equal(last.type, "response.failed");
    assert.equal((last.response as Json).status, "failed");
  });

  it("refuses bad bodies with a 400 naming the field", async () => {
    const cases: [string, number, string | null][] = [
      ["{not json", 400, null],
      ["[1]", 400, null],
      [JSON.stringify({ input: 5 }), 400, "input"],
      [JSON.stringify({ input: ["x"] }), 400, "input"],
      [JSON.stringify({ input: "x", stream: "yes" }), 400, "stream"],
      [JSON.stringify({ input: "x", background: true, store: false }), 400, "store"],
    ];
    for (const [body, status, param] of cases) {
      const res = await post("/responses", body);
      assert.equal(res.status, status, body);
      const error = ((await res.json()) as { error: { param: string | null; type: string } }).error;
      assert.equal(error.param, param, body);
      assert.equal(error.type, "invalid_request_error");
    }
    assert.equal((await fetch(`${base}/responses`)).status, 405);
    assert.equal((await fetch(`${base}/nowhere`)).status, 404);
    assert.equal((await fetch(`${base}/responses/%E0%A4%A`)).status, 404, "bad percent-encoding");
  });

  it("fails a response the handler made unserialisable, and keeps serving", async () => {
    const res = await post("/responses", { input: "bigint" });
    assert.equal(res.status, 500);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "server_error");
    const list = await events(await post("/responses", { input: "bigint", stream: true }));
    assert.equal(
      list.at(-1)!.type,
      "response.in_progress",
      "the stream ends after what it could send",
    );
    assert.equal((await post("/responses", { input: "still" })).status, 200);
  });
});

describe("stored responses", () => {
  it("retrieves, replays from a sequence number, lists input items and deletes", async () => {
    const created = (await (
      await post("/responses", {
        input: [1, 2, 3].map((n) => ({ role: "user", content: `m${n}` })),
      })
    ).json()) as Json;
    const got = (await (await fetch(`${base}/responses/${created.id}`)).json()) as Json;
    assert.deepEqual(got, created);

    const replay = await events(
      await fetch(`${base}/responses/${created.id}?stream=true&starting_after=7`),
    );
    assert.deepEqual(
      replay.map((e) => e.type),
      ["response.completed"],
    );
    assert.equal(replay[0]!.sequence_number, 8);

    const list = async (query: string) =>
      (await (await fetch(`${base}/responses/${created.id}/input_items?${query}`)).json()) as {
        data: Item[];
        has_more: boolean;
        first_id: string;
        last_id: string;
      };
    const texts = (l: { data: Item[] }) => l.data.map((i) => i.content[0]!.text);
    assert.deepEqual(texts(await list("")), ["m3", "m2", "m1"], "newest first by default");
    const page = await list("order=asc&limit=2");
    assert.deepEqual(texts(page), ["m1", "m2"]);
    assert.equal(page.has_more, true);
    const rest = await list(`order=asc&after=${page.last_id}`);
    assert.deepEqual(texts(rest), ["m3"]);
    assert.equal(rest.has_more, false);
    assert.equal((await fetch(`${base}/responses/${created.id}/input_items?limit=0`)).status, 400);

    const deleted = await fetch(`${base}/responses/${created.id}`, { method: "DELETE" });
    assert.deepEqual(await deleted.json(), {
      id: created.id,
      object: "response.deleted",
      deleted: true,
    });
    const gone = await fetch(`${base}/responses/${created.id}`);
    assert.equal(gone.status, 404);
    assert.equal(((await gone.json()) as { error: { param: string } }).error.param, "response_id");
  });

  it("runs a background response: answered queued at once, then polled until completed", async () => {
    const res = await post("/responses", { input: "pieces", background: true });
    const queued = (await res.json()) as Json;
    assert.equal(queued.status, "queued");
    assert.equal(queued.background, true);
    let polled: Json;
    for (;;) {
      polled = (await (await fetch(`${base}/responses/${queued.id}`)).json()) as Json;
      if (polled.status === "completed") break;
      assert.match(polled.status, /^(queued|in_progress)$/);
      await sleep(5);
    }
    assert.equal(text(polled), "one two three");
    // The whole stream can be replayed afterwards, from the start.
    const replay = await events(await fetch(`${base}/responses/${queued.id}?stream=true`));
    assert.equal(replay[0]!.type, "response.created");
    assert.equal((replay[0]!.response as Json).status, "queued");
    assert.equal(replay.at(-1)!.type, "response.completed");
  });

  it("follows a background stream live and cancels a handler that never ends", async () => {
    hungAborted = undefined;
    const res = await post("/responses", { input: "hang", background: true, stream: true });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    const id = /"id":"(resp_[0-9a-f]+)"/.exec(first)![1]!;
    assert.equal(
      ((await (await fetch(`${base}/responses/${id}`)).json()) as Json).status,
      "in_progress",
    );
    const cancelled = await post(`/responses/${id}/cancel`, "");
    assert.equal(cancelled.status, 200);
    assert.equal(((await cancelled.json()) as Json).status, "cancelled");
    assert.ok(hungAborted instanceof Error, "the handler's signal was aborted");
    // The live stream ends; the record says cancelled; cancelling again answers the same.
    while (!(await reader.read()).done);
    assert.equal(
      ((await (await fetch(`${base}/responses/${id}`)).json()) as Json).status,
      "cancelled",
    );
    assert.equal(
      ((await (await post(`/responses/${id}/cancel`, "")).json()) as Json).status,
      "cancelled",
    );
  });

  it("cancels only background responses, and DELETE ends a running one", async () => {
    const done = (await (await post("/responses", { input: "hi" })).json()) as Json;
    const refused = await post(`/responses/${done.id}/cancel`, "");
    assert.equal(refused.status, 400);
    hungAborted = undefined;
    const running = (await (
      await post("/responses", { input: "hang", background: true })
    ).json()) as Json;
    await sleep(20);
    const deleted = await fetch(`${base}/responses/${running.id}`, { method: "DELETE" });
    assert.equal(deleted.status, 200);
    assert.ok(hungAborted instanceof Error, "the handler's signal was aborted");
    assert.equal((await fetch(`${base}/responses/${running.id}`)).status, 404);
  });

  it("does not keep a response with store: false", async () => {
    const r = (await (await post("/responses", { input: "x", store: false })).json()) as Json;
    assert.equal(r.status, "completed");
    assert.equal((await fetch(`${base}/responses/${r.id}`)).status, 404);
  });

  it("aborts the handler of a sync request whose caller goes away", async () => {
    hungAborted = undefined;
    const controller = new AbortController();
    const res = fetch(`${base}/responses`, {
      method: "POST",
      body: JSON.stringify({ input: "hang" }),
      signal: controller.signal,
    }).catch(() => undefined);
    await sleep(50);
    controller.abort();
    await res;
    for (let i = 0; i < 100 && !hungAborted; i++) await sleep(5);
    assert.ok(hungAborted instanceof Error, "the handler's signal was aborted");
  });
});
