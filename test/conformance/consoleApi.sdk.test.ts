import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AIProjectClient } from "@azure/ai-projects";
import type OpenAI from "openai";
import { openaiClient, projectOpenAI } from "../helpers/openaiClient.js";
import {
  adminRequest,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";
import {
  deployStandInModel,
  startStandInModel,
  type StandInModel,
} from "../helpers/standInModel.js";

/*
 * What the console reads besides the Foundry API: the caller's conversations (a list OpenAI's
 * API lacks) and usage by time bucket. The model behind the deployment is a TEST DOUBLE
 * (test/helpers/standInModel.ts); everything else is the real service over HTTPS.
 */

let server: TestServer;
let model: StandInModel;
let project: AIProjectClient;
let openai: OpenAI;
let otherKey: string;

before(async () => {
  model = await startStandInModel();
  server = await startServer();
  await deployStandInModel(server, model);
  project = sdk(server, server.adminKey);
  openai = projectOpenAI(project, server);
  otherKey = (await adminRequest(server, "POST", "/keys", { project: "default" })).body
    .key as string;
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
  await model?.close();
});

const get = (route: string, key = server.adminKey) =>
  httpsJson(server, "GET", `${server.endpoint}${route}`, {
    headers: { authorization: `Bearer ${key}` },
  });

interface ListBody {
  data: { id: string; object: string }[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

describe("GET /openai/v1/conversations", () => {
  it("lists the caller's own conversations newest first, paged, filtered by agent", async () => {
    await project.agents.createVersion("conv-list-agent", {
      kind: "prompt",
      model: "chat",
    } as never);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await openai.conversations.create({})).id);
    // The agent answers in the last one, which then remembers it.
    await openai.responses.create({ input: "Hi", conversation: ids[2] }, {
      body: { agent: { name: "conv-list-agent", type: "agent_reference" } },
    } as never);
    const all = await get("/openai/v1/conversations");
    assert.equal(all.status, 200, JSON.stringify(all.body));
    const list = all.body as unknown as ListBody;
    assert.deepEqual(
      list.data.map((c) => c.id),
      [...ids].reverse(),
    );
    assert.equal(list.data[0]!.object, "conversation");
    assert.equal(list.has_more, false);

    const first = (await get("/openai/v1/conversations?limit=2")).body as unknown as ListBody;
    assert.deepEqual(
      first.data.map((c) => c.id),
      [ids[2], ids[1]],
    );
    assert.equal(first.has_more, true);
    const next = (await get(`/openai/v1/conversations?limit=2&after=${first.last_id}`))
      .body as unknown as ListBody;
    assert.deepEqual(
      next.data.map((c) => c.id),
      [ids[0]],
    );
    assert.equal(next.has_more, false);

    const byAgent = (await get("/openai/v1/conversations?agent_name=conv-list-agent"))
      .body as unknown as ListBody;
    assert.deepEqual(
      byAgent.data.map((c) => c.id),
      [ids[2]],
    );
    const onEndpoint = (
      await get("/agents/conv-list-agent/endpoint/protocols/openai/conversations?api-version=v1")
    ).body as unknown as ListBody;
    assert.deepEqual(
      onEndpoint.data.map((c) => c.id),
      [ids[2]],
    );

    // Another key sees none of them.
    const other = await openaiClient(server, otherKey).conversations.create({});
    const theirs = (await get("/openai/v1/conversations", otherKey)).body as unknown as ListBody;
    assert.deepEqual(
      theirs.data.map((c) => c.id),
      [other.id],
    );
  });

  it("pages nowhere from an unknown or another's cursor", async () => {
    const theirs = await openaiClient(server, otherKey).conversations.create({});
    for (const cursor of ["conv_unknown", theirs.id]) {
      const page = (await get(`/openai/v1/conversations?after=${cursor}`))
        .body as unknown as ListBody;
      assert.deepEqual(page.data, [], cursor);
      assert.equal(page.has_more, false);
    }
  });

  it("answers 400 naming limit when it is out of range", async () => {
    const bad = await get("/openai/v1/conversations?limit=0");
    assert.equal(bad.status, 400);
    assert.equal((bad.body.error as { param: string }).param, "limit");
  });
});

describe("GET /admin/usage?group_by=time", () => {
  it("totals tokens per time bucket, each named by its start in Unix seconds", async () => {
    model.answer(() => ({ text: "ok", usage: { prompt_tokens: 5, completion_tokens: 1 } }));
    await project.agents.createVersion("usage-time-agent", {
      kind: "prompt",
      model: "chat",
    } as never);
    for (let i = 0; i < 2; i++)
      await openai.responses.create({ input: "Hi" }, {
        body: { agent: { name: "usage-time-agent", type: "agent_reference" } },
      } as never);
    const now = Math.floor(Date.now() / 1000);
    const res = await httpsJson(
      server,
      "GET",
      `${server.origin}/admin/usage?group_by=agent,version,time&bucket=60`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.group_by, ["project", "agent", "version", "time"]);
    assert.equal(res.body.bucket, 60);
    const rows = (
      res.body.data as {
        agent: string;
        version: number;
        time: number;
        total_tokens: number;
        calls: number;
      }[]
    ).filter((r) => r.agent === "usage-time-agent");
    assert.ok(rows.length >= 1 && rows.length <= 2, JSON.stringify(rows));
    for (const r of rows) {
      assert.equal(r.time % 60, 0);
      assert.ok(r.time <= now && r.time > now - 180, `${r.time} near ${now}`);
      assert.equal(String(r.version), "1");
    }
    assert.equal(
      rows.reduce((n, r) => n + r.calls, 0),
      2,
    );
    assert.equal(
      rows.reduce((n, r) => n + r.total_tokens, 0),
      12,
    );
  });

  it("answers 400 naming bucket when it is under a minute", async () => {
    const res = await httpsJson(
      server,
      "GET",
      `${server.origin}/admin/usage?group_by=time&bucket=5`,
      {
        headers: { authorization: `Bearer ${server.adminKey}` },
      },
    );
    assert.equal(res.status, 400);
    assert.equal((res.body.error as { param: string }).param, "bucket");
  });
});
