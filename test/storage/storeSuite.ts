import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Store } from "../../src/domain/ports.js";
import { newVersion } from "../helpers/versions.js";

/** The Store port's promises, run against every backend. */
export function storeSuite(
  backend: string,
  open: () => Promise<{ store: Store; dispose: () => Promise<void> }>,
) {
  describe(`Store (${backend})`, () => {
    let store: Store;
    let dispose: () => Promise<void>;
    before(async () => {
      ({ store, dispose } = await open());
      await store.migrate();
      await store.migrate(); // migrating twice is harmless
    });
    after(() => dispose());

    const version = newVersion;
    const newAgent = { state: "enabled" as const, agentEndpoint: null, agentCard: null };

    it("appendVersion creates the agent, numbers versions, and reuses an unchanged one", async () => {
      assert.equal(await store.agents.appendVersion("default", "s1", version("a"), {}), undefined);
      const first = await store.agents.appendVersion("default", "s1", version("a"), { newAgent });
      assert.equal(first?.version.version, 1);
      assert.equal(first?.created, true);
      const same = await store.agents.appendVersion("default", "s1", version("a"), {
        reuseIfUnchanged: true,
      });
      assert.equal(same?.created, false);
      assert.equal(same?.version.version, 1);
      const draft = await store.agents.appendVersion(
        "default",
        "s1",
        version("b", { draft: true }),
        {},
      );
      assert.equal(draft?.version.version, 2);
      assert.equal(draft?.agent.latest.version, 1, "a draft is never latest");
      const next = await store.agents.appendVersion("default", "s1", version("c"), {
        reuseIfUnchanged: true,
      });
      assert.equal(next?.version.version, 3);
      assert.equal(next?.agent.latest.version, 3);
    });

    it("pages versions by keyset with after and before in both orders", async () => {
      for (let i = 0; i < 10; i++)
        await store.agents.appendVersion("default", "s2", version(`m${i}`), { newAgent });
      const page = async (order: "asc" | "desc", after?: string, before?: string) => {
        const p = await store.agents.listVersions("default", "s2", {
          limit: 3,
          order,
          after,
          before,
          includeDrafts: false,
        });
        return { versions: p!.items.map((v) => v.version), hasMore: p!.hasMore };
      };
      assert.deepEqual(await page("asc"), { versions: [1, 2, 3], hasMore: true });
      assert.deepEqual(await page("asc", "s2:3"), { versions: [4, 5, 6], hasMore: true });
      assert.deepEqual(await page("asc", "9"), { versions: [10], hasMore: false });
      assert.deepEqual(await page("desc", "s2:4"), { versions: [3, 2, 1], hasMore: false });
      assert.deepEqual(await page("asc", undefined, "s2:7"), {
        versions: [4, 5, 6],
        hasMore: true,
      });
      assert.deepEqual(await page("desc", undefined, "s2:7"), {
        versions: [10, 9, 8],
        hasMore: false,
      });
      assert.deepEqual(await page("asc", "2", "5"), { versions: [3, 4], hasMore: false });
      assert.equal(
        await store.agents.listVersions("default", "nope", {
          limit: 3,
          order: "asc",
          includeDrafts: false,
        }),
        undefined,
      );
    });

    it("lists agents in creation order, by kind, and past a deleted cursor", async () => {
      await store.projects.create("paging", 1);
      for (const [i, kind] of ["prompt", "hosted", "prompt", "hosted"].entries()) {
        const v = version(`k${i}`, { definition: { kind, model: "x" } });
        await store.agents.appendVersion("paging", `p${i}`, v, { newAgent });
      }
      const names = async (page: Parameters<Store["agents"]["list"]>[1]) =>
        (await store.agents.list("paging", page)).items.map((a) => a.name);
      assert.deepEqual(await names({ limit: 10, order: "asc" }), ["p0", "p1", "p2", "p3"]);
      assert.deepEqual(await names({ limit: 10, order: "desc", kind: "hosted" }), ["p3", "p1"]);
      assert.equal(await store.agents.delete("paging", "p1"), true);
      assert.deepEqual(await names({ limit: 10, order: "asc", after: "p1" }), ["p2", "p3"]);
      assert.deepEqual(await names({ limit: 10, order: "asc", after: "never-existed" }), [
        "p0",
        "p2",
        "p3",
      ]);
    });

    it("deleteVersion: latest falls back, in_use, last_published, agent_deleted", async () => {
      await store.agents.appendVersion("default", "s3", version("a"), { newAgent });
      await store.agents.appendVersion("default", "s3", version("b"), {});
      await store.agents.appendVersion("default", "s3", version("c", { draft: true }), {});
      assert.equal(await store.agents.deleteVersion("default", "s3", 2), "deleted");
      assert.equal((await store.agents.get("default", "s3"))?.latest.version, 1);
      const rules = {
        version_selector: {
          version_selection_rules: [{ agent_version: "1", traffic_percentage: 100 }],
        },
      };
      await store.agents.setEndpoint("default", "s3", { agentEndpoint: rules, agentCard: null });
      assert.equal(await store.agents.deleteVersion("default", "s3", 1), "in_use");
      // Refused for another reason: the rules stay as they were.
      assert.equal(
        await store.agents.deleteVersion("default", "s3", 1, { leaveRules: true }),
        "last_published",
      );
      assert.deepEqual((await store.agents.get("default", "s3"))?.agentEndpoint, rules);
      await store.agents.setEndpoint("default", "s3", { agentEndpoint: null, agentCard: null });
      assert.equal(await store.agents.deleteVersion("default", "s3", 1), "last_published");
      assert.equal(await store.agents.deleteVersion("default", "s3", 3), "deleted");
      assert.equal(await store.agents.deleteVersion("default", "s3", 9), "missing");
      assert.equal(await store.agents.deleteVersion("default", "s3", 1), "agent_deleted");
      assert.equal(await store.agents.get("default", "s3"), undefined);
    });

    it("deleteVersion with leaveRules: the version leaves the rules in the same write", async () => {
      await store.agents.appendVersion("default", "s4", version("a"), { newAgent });
      await store.agents.appendVersion("default", "s4", version("b"), {});
      await store.agents.appendVersion("default", "s4", version("c"), {});
      const rule = (v: string, p: number) => ({ agent_version: v, traffic_percentage: p });
      const agentEndpoint = {
        version_selector: {
          version_selection_rules: [rule("1", 25), rule("2", 25), rule("3", 50)],
        },
        authorization_schemes: [{ type: "Entra" }],
      };
      await store.agents.setEndpoint("default", "s4", { agentEndpoint, agentCard: null });
      assert.equal(
        await store.agents.deleteVersion("default", "s4", 3, { leaveRules: true }),
        "deleted",
      );
      const agent = await store.agents.get("default", "s4");
      assert.deepEqual(agent?.agentEndpoint, {
        version_selector: { version_selection_rules: [rule("1", 50), rule("2", 50)] },
        authorization_schemes: [{ type: "Entra" }],
      });
      assert.equal(agent?.latest.version, 2);
      await store.agents.deleteVersion("default", "s4", 1, { leaveRules: true });
      assert.equal(
        await store.agents.deleteVersion("default", "s4", 2, { leaveRules: true }),
        "agent_deleted",
      );
    });

    it("keys are found by hash until revoked", async () => {
      const key = {
        id: "key_1",
        project: "default",
        name: "k",
        admin: false,
        actForUsers: false,
        createdAt: 1,
      };
      await store.keys.insert(key, "hash-1");
      assert.deepEqual(await store.keys.findByHash("hash-1"), key);
      assert.equal(await store.keys.revoke("key_1", 2), true);
      assert.equal(await store.keys.findByHash("hash-1"), undefined);
      assert.equal(await store.keys.revoke("key_1", 3), false);
    });

    it("deployments: put creates then replaces (keeping created_at), listed by name, deleted", async () => {
      const d = {
        project: "default",
        name: "m2",
        model: "llama3.2",
        baseUrl: "http://127.0.0.1:11434/v1",
        apiKeyCiphertext: null,
        apiKeyEnv: null,
        createdAt: 10,
        updatedAt: 10,
      };
      assert.deepEqual(await store.deployments.put(d), { deployment: d, created: true });
      await store.deployments.put({ ...d, name: "m1", apiKeyEnv: "OPENAI_API_KEY" });
      const replaced = await store.deployments.put({
        ...d,
        model: "qwen3",
        apiKeyCiphertext: "v1.sealed",
        createdAt: 20,
        updatedAt: 20,
      });
      assert.equal(replaced.created, false);
      assert.deepEqual(replaced.deployment, {
        ...d,
        model: "qwen3",
        apiKeyCiphertext: "v1.sealed",
        updatedAt: 20,
      });
      assert.deepEqual(await store.deployments.get("default", "m2"), replaced.deployment);
      assert.deepEqual(
        (await store.deployments.list("default")).map((x) => x.name),
        ["m1", "m2"],
      );
      assert.deepEqual(await store.deployments.list("other"), []);
      assert.equal(await store.deployments.delete("default", "m2"), true);
      assert.equal(await store.deployments.delete("default", "m2"), false);
      assert.equal(await store.deployments.get("default", "m2"), undefined);
    });

    it("activity: a conversation's session is per identity and agent, and replaced", async () => {
      const alice = { project: "default", agentName: "a1", owner: "alice" };
      assert.equal(await store.activity.sessionOf(alice, "conv-1"), undefined);
      await store.activity.remember(alice, "conv-1", "sess_one", 1);
      assert.equal(await store.activity.sessionOf(alice, "conv-1"), "sess_one");
      assert.equal(await store.activity.sessionOf({ ...alice, owner: "bob" }, "conv-1"), undefined);
      assert.equal(
        await store.activity.sessionOf({ ...alice, agentName: "a2" }, "conv-1"),
        undefined,
      );
      await store.activity.remember(alice, "conv-1", "sess_two", 2);
      assert.equal(await store.activity.sessionOf(alice, "conv-1"), "sess_two");
    });

    it("a2a: a context is put once; a task is found only by its owner and never taken over", async () => {
      const ctx = {
        project: "default",
        agentName: "a1",
        owner: "alice",
        id: "ctx-1",
        kind: "conversation" as const,
        targetId: "conv_1",
        createdAt: 5,
      };
      assert.equal(await store.a2a.putContext(ctx), true);
      assert.equal(await store.a2a.putContext({ ...ctx, owner: "bob", targetId: "conv_2" }), false);
      assert.deepEqual(await store.a2a.context("default", "a1", "ctx-1"), ctx);
      assert.equal(await store.a2a.context("default", "a2", "ctx-1"), undefined);

      const alice = { project: "default", agentName: "a1", owner: "alice" };
      const bob = { ...alice, owner: "bob" };
      const task = {
        id: "t1",
        contextId: "ctx-1",
        state: "TASK_STATE_WORKING",
        body: { id: "t1", status: { state: "TASK_STATE_WORKING" } },
        updatedAt: 6,
      };
      await store.a2a.putTask(alice, task);
      assert.deepEqual(await store.a2a.task(alice, "t1"), task);
      assert.equal(await store.a2a.task(bob, "t1"), undefined);
      await store.a2a.putTask(bob, { ...task, state: "TASK_STATE_CANCELED", body: {} });
      assert.deepEqual(await store.a2a.task(alice, "t1"), task, "bob's write changed nothing");
      assert.deepEqual(
        (await store.a2a.unfinished(10)).map((t) => [t.id, t.scope.owner]),
        [["t1", "alice"]],
      );
      await store.a2a.putTask(alice, { ...task, state: "TASK_STATE_COMPLETED", updatedAt: 7 });
      assert.deepEqual(await store.a2a.unfinished(10), []);
    });

    it("a2a: retention keeps a scope's newest tasks, and running ones", async () => {
      const scope = { project: "default", agentName: "keep", owner: "alice" };
      const put = (id: string, state: string, updatedAt: number, s = scope) =>
        store.a2a.putTask(s, { id, contextId: "c", state, body: { id }, updatedAt });
      await put("old-done", "TASK_STATE_COMPLETED", 1);
      await put("old-running", "TASK_STATE_WORKING", 2);
      await put("mid", "TASK_STATE_FAILED", 3);
      await put("new", "TASK_STATE_COMPLETED", 4);
      await put("bobs", "TASK_STATE_COMPLETED", 0, { ...scope, owner: "bob" });
      await store.a2a.prune(scope, 2);
      const left = [];
      for (const id of ["old-done", "old-running", "mid", "new"])
        if (await store.a2a.task(scope, id)) left.push(id);
      assert.deepEqual(left, ["old-running", "mid", "new"]);
      assert.ok(await store.a2a.task({ ...scope, owner: "bob" }, "bobs"), "another scope's stays");
    });
  });
}
