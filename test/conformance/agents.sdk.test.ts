import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AIProjectClient, AgentDefinitionUnion } from "@azure/ai-projects";
import {
  expectRestError as rejects,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";

/*
 * The agent and version half of the contract, driven through the unmodified official client
 * (@azure/ai-projects) against the real service over HTTPS, trusting its generated CA.
 */

const prompt = (model = "gpt-4o", extra: Record<string, unknown> = {}) =>
  ({ kind: "prompt", model, ...extra }) as AgentDefinitionUnion;

const hosted = (extra: Record<string, unknown> = {}) =>
  ({
    kind: "hosted",
    cpu: "0.5",
    memory: "1Gi",
    container_configuration: { image: "registry.local/echo:1" },
    ...extra,
  }) as unknown as AgentDefinitionUnion;

let unique = 0;
const newName = (prefix = "agent") => `${prefix}-${process.pid}-${++unique}`;

async function collect<T>(iterator: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterator) items.push(item);
  return items;
}

let server: TestServer;
let client: AIProjectClient;

before(async () => {
  server = await startServer();
  client = sdk(server, server.adminKey);
});

after(async () => {
  assert.equal(await server.stop(), 0, "graceful shutdown exits 0");
  removeDir(server.dataDir);
});

describe("agents", () => {
  it("creates, gets and shows the wire shape the client expects", async () => {
    const name = newName();
    const created = await client.agents.create(
      name,
      prompt("gpt-4o", { instructions: "Be brief." }),
      {
        description: "demo",
        metadata: { team: "core" },
      },
    );
    assert.equal(created.object, "agent");
    assert.equal(created.id, name);
    assert.equal(created.name, name);
    assert.equal(created.state, "enabled");
    const latest = created.versions.latest;
    assert.equal(latest.object, "agent.version");
    assert.equal(latest.id, `${name}:1`);
    assert.equal(latest.version, "1");
    assert.equal(latest.status, "active");
    assert.equal(latest.description, "demo");
    assert.deepEqual(latest.metadata, { team: "core" });
    assert.ok(latest.created_at instanceof Date);
    assert.ok(
      Math.abs(latest.created_at.getTime() - Date.now()) < 60_000,
      "created_at is Unix seconds",
    );
    assert.equal(latest.definition.kind, "prompt");

    const fetched = await client.agents.get(name);
    assert.deepEqual(fetched, created);
  });

  it("update adds a version only when definition, description or metadata change", async () => {
    const name = newName();
    await client.agents.create(name, prompt(), { metadata: { a: "1" } });
    const same = await client.agents.update(name, prompt(), { metadata: { a: "1" } });
    assert.equal(same.versions.latest.version, "1", "unchanged update keeps version 1");
    const changed = await client.agents.update(name, prompt("gpt-4o-mini"), {
      metadata: { a: "1" },
    });
    assert.equal(changed.versions.latest.version, "2");
    const described = await client.agents.update(name, prompt("gpt-4o-mini"), {
      metadata: { a: "1" },
      description: "now described",
    });
    assert.equal(described.versions.latest.version, "3");
    const versions = await collect(client.agents.listVersions(name));
    assert.deepEqual(
      versions.map((v) => v.version),
      ["3", "2", "1"],
    );
  });

  it("create on an existing name behaves as an update", async () => {
    const name = newName();
    await client.agents.create(name, prompt());
    const again = await client.agents.create(name, prompt());
    assert.equal(again.versions.latest.version, "1");
    const next = await client.agents.create(name, prompt("other-model"));
    assert.equal(next.versions.latest.version, "2");
  });

  it("lists agents over many pages in both orders, and filters by kind", async () => {
    const prefix = newName("page");
    const names: string[] = [];
    for (let i = 0; i < 7; i++) {
      const name = `${prefix}-${i}`;
      names.push(name);
      await client.agents.create(name, i % 2 === 0 ? prompt() : hosted());
    }
    const mine = (list: { name: string }[]) =>
      list.map((a) => a.name).filter((n) => n.startsWith(prefix));

    const pagesAsc: string[][] = [];
    for await (const page of client.agents.list({ order: "asc", limit: 2 }).byPage()) {
      pagesAsc.push(mine(page));
    }
    assert.deepEqual(pagesAsc.flat(), names, "ascending: creation order across pages");
    assert.ok(pagesAsc.length >= 4, "limit=2 really pages");

    const desc = mine(await collect(client.agents.list({ order: "desc", limit: 3 })));
    assert.deepEqual(desc, [...names].reverse());

    const hostedOnly = mine(await collect(client.agents.list({ kind: "hosted", limit: 2 })));
    assert.deepEqual(hostedOnly, [names[5], names[3], names[1]]);
  });

  it("a page cursor naming a deleted agent still continues the listing", async () => {
    const prefix = newName("cursor");
    for (let i = 0; i < 4; i++) await client.agents.create(`${prefix}-${i}`, prompt());
    const seen: string[] = [];
    for await (const agent of client.agents.list({ order: "asc", limit: 2 })) {
      if (!agent.name.startsWith(prefix)) continue;
      seen.push(agent.name);
      await client.agents.delete(agent.name);
    }
    assert.deepEqual(
      seen,
      [0, 1, 2, 3].map((i) => `${prefix}-${i}`),
    );
  });

  it("enable and disable are idempotent and show in state", async () => {
    const name = newName();
    await client.agents.create(name, prompt());
    await client.agents.disable(name);
    await client.agents.disable(name);
    const disabled = await client.agents.get(name);
    assert.equal(disabled.state, "disabled");
    assert.equal(disabled.configuration_state, "disabled");
    await client.agents.enable(name);
    await client.agents.enable(name);
    assert.equal((await client.agents.get(name)).state, "enabled");
    await rejects(client.agents.enable(newName("missing")), 404, "not_found");
  });

  it("creates an agent disabled when asked", async () => {
    const agent = await client.agents.create(newName(), prompt(), { state: "disabled" });
    assert.equal(agent.state, "disabled");
  });

  it("merge-patches the endpoint and the card", async () => {
    const name = newName();
    await client.agents.create(name, prompt());
    await client.agents.createVersion(name, prompt("gpt-4o-mini"));
    const split = await client.agents.updateAgent(name, {
      agentEndpoint: {
        version_selector: {
          version_selection_rules: [
            { type: "FixedRatio", agent_version: "1", traffic_percentage: 30 },
            { type: "FixedRatio", agent_version: "2", traffic_percentage: 70 },
          ],
        },
        protocol_configuration: { responses: {} },
      },
    });
    assert.deepEqual(
      split.agent_endpoint?.version_selector?.version_selection_rules.map((r) => r.agent_version),
      ["1", "2"],
    );
    assert.ok(split.agent_endpoint?.protocol_configuration?.responses);

    const carded = await client.agents.updateAgent(name, {
      agentCard: { version: "1.0", skills: [{ id: "echo", name: "Echo" }] },
    });
    assert.equal(carded.agent_card?.skills[0]?.id, "echo");
    assert.ok(carded.agent_endpoint, "patching the card leaves the endpoint alone");
    assert.deepEqual((await client.agents.get(name)).agent_card, carded.agent_card);

    await rejects(
      client.agents.updateAgent(name, {
        agentEndpoint: {
          version_selector: {
            version_selection_rules: [
              { type: "FixedRatio", agent_version: "1", traffic_percentage: 90 },
            ],
          },
        },
      }),
      400,
      "invalid_parameter",
      "agent_endpoint.version_selector.version_selection_rules",
    );
    await rejects(
      client.agents.updateAgent(name, {
        agentEndpoint: {
          version_selector: {
            version_selection_rules: [
              { type: "FixedRatio", agent_version: "9", traffic_percentage: 100 },
            ],
          },
        },
      }),
      400,
      "invalid_parameter",
      "agent_endpoint.version_selector.version_selection_rules[0].agent_version",
    );
  });

  it("deletes an agent (force or not, it has no live sessions) and then 404s", async () => {
    const name = newName();
    await client.agents.create(name, hosted());
    const deleted = await client.agents.delete(name);
    assert.deepEqual(
      { object: deleted.object, name: deleted.name, deleted: deleted.deleted },
      { object: "agent.deleted", name, deleted: true },
    );
    await rejects(client.agents.get(name), 404, "not_found", "agent_name");
    await rejects(client.agents.delete(name), 404, "not_found");
    const other = newName();
    await client.agents.create(other, hosted());
    assert.equal((await client.agents.delete(other, { force: true })).deleted, true);
  });
});

describe("versions", () => {
  it("createVersion creates the agent when missing and numbers versions 1, 2, …", async () => {
    const name = newName();
    const v1 = await client.agents.createVersion(name, prompt(), { description: "first" });
    assert.equal(v1.version, "1");
    assert.equal(v1.id, `${name}:1`);
    assert.equal((await client.agents.get(name)).versions.latest.version, "1");
    const v2 = await client.agents.createVersion(name, prompt());
    assert.equal(v2.version, "2", "createVersion always adds a version");
    const got = await client.agents.getVersion(name, "1");
    assert.equal(got.description, "first");
  });

  it("never reuses a number after a delete", async () => {
    const name = newName();
    for (let i = 0; i < 3; i++) await client.agents.createVersion(name, prompt(`m${i}`));
    const del = await client.agents.deleteVersion(name, "3");
    assert.deepEqual(
      { object: del.object, name: del.name, version: del.version, deleted: del.deleted },
      { object: "agent.version.deleted", name, version: "3", deleted: true },
    );
    assert.equal((await client.agents.get(name)).versions.latest.version, "2", "latest falls back");
    const v4 = await client.agents.createVersion(name, prompt());
    assert.equal(v4.version, "4");
    await rejects(client.agents.getVersion(name, "3"), 404, "not_found", "agent_version");
    await client.agents.deleteVersion(name, "1", { force: true });
    await rejects(client.agents.deleteVersion(name, "1"), 404, "not_found");
  });

  it("drafts are listed only on request and never become latest", async () => {
    const name = newName();
    await client.agents.createVersion(name, prompt());
    const draft = await client.agents.createVersion(name, prompt("draft-model"), { draft: true });
    assert.equal(draft.version, "2");
    assert.equal(draft.draft, true);
    assert.equal((await client.agents.get(name)).versions.latest.version, "1");
    const published = await collect(client.agents.listVersions(name));
    assert.deepEqual(
      published.map((v) => v.version),
      ["1"],
    );
    const all = await collect(
      client.agents.listVersions(name, {
        includeDrafts: true,
        foundryFeatures: "DraftAgents=V1Preview",
      }),
    );
    assert.deepEqual(
      all.map((v) => v.version),
      ["2", "1"],
    );
    await rejects(
      client.agents.createVersion(newName(), prompt(), { draft: true }),
      400,
      "invalid_parameter",
      "draft",
    );
    await rejects(client.agents.deleteVersion(name, "1"), 409, "last_published_version");
  });

  it("lists versions over many pages in both orders", async () => {
    const name = newName();
    for (let i = 0; i < 9; i++) await client.agents.createVersion(name, prompt(`m${i}`));
    const asc = await collect(client.agents.listVersions(name, { order: "asc", limit: 2 }));
    assert.deepEqual(
      asc.map((v) => v.version),
      ["1", "2", "3", "4", "5", "6", "7", "8", "9"],
    );
    const pages: string[][] = [];
    for await (const page of client.agents
      .listVersions(name, { order: "desc", limit: 4 })
      .byPage()) {
      pages.push(page.map((v) => v.version));
    }
    assert.deepEqual(pages, [["9", "8", "7", "6"], ["5", "4", "3", "2"], ["1"]]);
  });

  it("image-based hosted versions say they cannot run; other kinds are 'active'", async () => {
    const h = await client.agents.createVersion(newName(), hosted());
    assert.equal(h.status, "failed");
    const raw = await fetchJson(`${server.endpoint}/agents/${h.name}/versions/1?api-version=v1`, {
      method: "GET",
      headers: { authorization: `Bearer ${server.adminKey}` },
    });
    assert.equal(
      (raw.body as { status_reason: { code: string } }).status_reason.code,
      "container_driver_unavailable",
    );
    const ext = await client.agents.createVersion(newName(), {
      kind: "external",
    } as AgentDefinitionUnion);
    assert.equal(ext.status, "active");
    assert.equal((ext.definition as { otel_agent_id?: string }).otel_agent_id, ext.name);
    const wf = await client.agents.createVersion(newName(), {
      kind: "workflow",
      workflow: "kind: x",
    } as AgentDefinitionUnion);
    assert.equal(wf.status, "active");
  });

  it("a version named by traffic rules is deleted only with force, leaving the rules", async () => {
    const name = newName();
    await client.agents.createVersion(name, prompt());
    await client.agents.createVersion(name, prompt("b"));
    await client.agents.createVersion(name, prompt("c"));
    const rule = (agent_version: string, traffic_percentage: number) => ({
      type: "FixedRatio" as const,
      agent_version,
      traffic_percentage,
    });
    await client.agents.updateAgent(name, {
      agentEndpoint: {
        version_selector: {
          version_selection_rules: [rule("1", 15), rule("2", 15), rule("3", 70)],
        },
      },
    });
    await rejects(client.agents.deleteVersion(name, "3"), 409, "version_in_use", "agent_version");
    assert.equal((await client.agents.deleteVersion(name, "3", { force: true })).deleted, true);
    let agent = await client.agents.get(name);
    assert.deepEqual(agent.agent_endpoint?.version_selector?.version_selection_rules, [
      rule("1", 50),
      rule("2", 50),
    ]);
    assert.equal(agent.versions.latest.version, "2");
    await client.agents.deleteVersion(name, "2", { force: true });
    agent = await client.agents.get(name);
    assert.deepEqual(agent.agent_endpoint?.version_selector?.version_selection_rules, [
      rule("1", 100),
    ]);
    // The last version: the agent goes, rules and all.
    await client.agents.deleteVersion(name, "1", { force: true });
    await rejects(client.agents.get(name), 404, "not_found");
  });

  it("deleting the last version deletes the agent", async () => {
    const name = newName();
    await client.agents.createVersion(name, prompt());
    await client.agents.deleteVersion(name, "1");
    await rejects(client.agents.get(name), 404, "not_found");
  });

  it("concurrent creates on one agent never share a number", async () => {
    const name = newName();
    await client.agents.createVersion(name, prompt());
    const made = await Promise.all(
      Array.from({ length: 30 }, (_, i) => client.agents.createVersion(name, prompt(`c${i}`))),
    );
    const numbers = made.map((v) => Number(v.version)).sort((a, b) => a - b);
    assert.deepEqual(
      numbers,
      Array.from({ length: 30 }, (_, i) => i + 2),
    );
  });

  it("rejects bad input with 400 naming the field", async () => {
    await rejects(
      client.agents.createVersion(newName(), prompt("m", { temperature: 5 })),
      400,
      "invalid_parameter",
      "definition.temperature",
    );
    await rejects(
      client.agents.createVersion("bad_name", prompt()),
      400,
      "invalid_parameter",
      "agent_name",
    );
    await rejects(client.agents.create("x".repeat(64), prompt()), 400, "invalid_parameter", "name");
    await rejects(
      client.agents.createVersion(
        newName(),
        hosted({ code_configuration: { runtime: "python_3_12", entry_point: ["main.py"] } }),
      ),
      400,
      "invalid_parameter",
      "definition.container_configuration",
    );
  });

  it("unknown tool types are stored and echoed", async () => {
    // The client itself keeps only `type` of a tool it does not know; the raw HTTP tests
    // check that the server keeps every field.
    const name = newName();
    await client.agents.createVersion(name, prompt("m", { tools: [{ type: "brand_new_tool" }] }));
    const got = await client.agents.getVersion(name, "1");
    assert.deepEqual((got.definition as { tools?: unknown }).tools, [{ type: "brand_new_tool" }]);
  });
});

describe("auth and projects", () => {
  it("refuses a wrong key with 401 in the envelope", async () => {
    await rejects(sdk(server, "ahk_wrong").agents.get("anything"), 401, "unauthorized");
  });

  it("scopes keys to a project; admin keys reach every project", async () => {
    const admin = {
      authorization: `Bearer ${server.adminKey}`,
      "content-type": "application/json",
    };
    const post = (path: string, body: unknown) =>
      fetchJson(`${server.origin}${path}`, {
        method: "POST",
        headers: admin,
        body: JSON.stringify(body),
      });
    const project = newName("proj");
    assert.equal((await post("/admin/projects", { name: project })).status, 201);
    const created = await post("/admin/keys", { project, name: "ci" });
    assert.equal(created.status, 201);
    const key = (created.body as { key: string }).key;

    const inProject = sdk(server, key, `${server.origin}/api/projects/${project}`);
    const name = newName();
    await inProject.agents.create(name, prompt());
    assert.equal((await inProject.agents.get(name)).name, name);
    await rejects(client.agents.get(name), 404, "not_found", "agent_name");
    await rejects(sdk(server, key).agents.get(name), 403, "forbidden");
    const adminThere = sdk(server, server.adminKey, `${server.origin}/api/projects/${project}`);
    assert.equal((await adminThere.agents.get(name)).name, name);
    await rejects(
      sdk(server, server.adminKey, `${server.origin}/api/projects/nope`).agents.get("x"),
      404,
      "not_found",
      "project",
    );
  });

  it("x-ms-user-identity needs a key allowed to act for users", async () => {
    const plain = await fetchJson(`${server.origin}/admin/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ project: "default" }),
    });
    const key = (plain.body as { key: string }).key;
    await rejects(
      sdk(server, key)
        .agents.list({ requestOptions: { headers: { "x-ms-user-identity": "alice" } } })
        .next(),
      403,
      "user_identity_not_allowed",
    );
    const asAlice = await client.agents
      .list({ requestOptions: { headers: { "x-ms-user-identity": "alice@example.com" } } })
      .next();
    assert.equal(asAlice.done === true || typeof asAlice.value === "object", true);
  });
});

function fetchJson(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
) {
  return httpsJson(server, init.method, url, init);
}
