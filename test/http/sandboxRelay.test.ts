import assert from "node:assert/strict";
import { mkdirSync, statSync, existsSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { SandboxRelay } from "../../src/gateway/sandboxRelay.js";
import { SessionTokens, type SessionGrant } from "../../src/gateway/sessionTokens.js";
import { buildTestApp } from "../helpers/app.js";
import { removeDir, tempDir } from "../helpers/server.js";

/*
 * The host side of the sandboxes' relays, in-process: the real app behind one Unix socket per
 * sandbox, the session tokens, and the relay's bounds (connections, idle time).
 */

const skip = process.getuid?.() !== 0 ? "the relay gives its sockets to a uid: needs root" : false;
const uid = 1879048300;

function get(
  socketPath: string,
  urlPath: string,
  token?: string,
  extra: Record<string, string> = {},
): Promise<{ status: number; body: { error?: { code: string } } }> {
  return new Promise((resolve, reject) => {
    const headers = {
      ...extra,
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    };
    const req = http.get({ socketPath, path: urlPath, headers, agent: false }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += String(c)));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on("error", reject);
  });
}

const grant = (sandboxId: string, sessionId = `s-${sandboxId}`): SessionGrant => ({
  project: "default",
  agentName: "a",
  version: 1,
  sessionId,
  owner: "key_x",
  sandboxId,
  issuedAt: 0,
});

describe("session tokens", () => {
  it("are random, bound to their sandbox, replaced by a new issue and revoked", () => {
    const tokens = new SessionTokens();
    const one = tokens.issue(grant("sb1"));
    const two = tokens.issue(grant("sb2"));
    assert.notEqual(one, two);
    assert.equal(tokens.find(one, "sb1")?.sessionId, "s-sb1");
    assert.equal(tokens.find(one, "sb2"), undefined, "another sandbox cannot present it");
    assert.equal(tokens.find(undefined, "sb1"), undefined);
    const again = tokens.issue(grant("sb1"));
    assert.equal(tokens.find(one, "sb1"), undefined, "a new issue replaces the old token");
    assert.ok(tokens.find(again, "sb1"));
    tokens.revoke("sb1");
    assert.equal(tokens.find(again, "sb1"), undefined);
    assert.equal(tokens.size, 1);
  });
});

describe("the sandbox relay (host side)", { skip }, () => {
  let test: Awaited<ReturnType<typeof buildTestApp>>;
  let dir: string;
  const relay = new SandboxRelay({
    connectionsPerSandbox: 3,
    headersTimeoutMs: 5_000,
    requestTimeoutMs: 5_000,
    keepAliveTimeoutMs: 5_000,
    idleTimeoutMs: 300,
  });
  const open: { close(): Promise<void> }[] = [];

  before(async () => {
    test = await buildTestApp();
    relay.serve((req, res) => test.app.routing(req, res));
    dir = tempDir("agenthost-relay-");
    mkdirSync(path.join(dir, "relay"), { mode: 0o711 });
  });

  after(async () => {
    await Promise.all(open.map((r) => r.close()));
    await test?.close();
    if (dir) removeDir(dir);
  });

  async function listen(id: string): Promise<string> {
    const socket = path.join(dir, "relay", id);
    open.push(await relay.listen(id, socket, uid));
    return socket;
  }

  it("accepts a sandbox's own token on the data plane only", async () => {
    const tokens = test.services.sessionTokens;
    const a = await listen("sba");
    const b = await listen("sbb");
    const info = statSync(a);
    assert.ok(info.isSocket());
    assert.equal(info.uid, uid);
    assert.equal(info.mode & 0o777, 0o600);
    const token = tokens.issue(grant("sba"));
    assert.equal((await get(a, "/api/projects/default/openai/v1/models", token)).status, 200);
    const control = await get(a, "/api/projects/default/agents?api-version=v1", token);
    assert.equal(control.status, 401);
    assert.equal(control.body.error?.code, "unauthorized");
    assert.equal(
      (await get(a, "/admin/keys", test.adminKey)).status,
      401,
      "no admin from a sandbox",
    );
    const asUser = await get(a, "/api/projects/default/openai/v1/models", token, {
      "x-ms-user-identity": "someone",
    });
    assert.equal(asUser.status, 403, "a token acts for its session's owner only");
    assert.equal(asUser.body.error?.code, "user_identity_not_allowed");
    const key = await get(a, "/api/projects/default/openai/v1/models", test.adminKey);
    assert.equal(key.status, 401, "an API key is not taken through a relay");
    assert.equal(
      (await get(b, "/api/projects/default/openai/v1/models", token)).status,
      401,
      "another sandbox's relay",
    );
    tokens.revoke("sba");
    assert.equal((await get(a, "/api/projects/default/openai/v1/models", token)).status, 401);
    const direct = await test.app.inject({
      url: "/api/projects/default/openai/v1/models",
      headers: { authorization: `Bearer ${tokens.issue(grant("sba"))}` },
    });
    assert.equal(direct.statusCode, 401, "a token is not taken other than through its relay");
  });

  it("holds each sandbox to its connections and closes idle ones", async () => {
    const socket = await listen("sbc");
    const conns = await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          new Promise<{ closedAt?: number; s: net.Socket }>((resolve) => {
            const s = net.connect(socket, () => resolve(entry));
            const entry: { closedAt?: number; s: net.Socket } = { s };
            s.on("close", () => (entry.closedAt = Date.now()));
            s.on("error", () => {});
          }),
      ),
    );
    await sleep(100);
    const closed = conns.filter((c) => c.closedAt !== undefined).length;
    assert.equal(closed, 1, "past 3 connections, the next is closed at once");
    // Another sandbox is not held up by this one's connections.
    const other = await listen("sbd");
    assert.equal((await get(other, "/api/projects/default/openai/v1/models", "x")).status, 401);
    await sleep(800);
    assert.ok(
      conns.every((c) => c.closedAt !== undefined),
      "connections with nothing moving are closed",
    );
  });

  it("removes the socket when the sandbox's relay closes", async () => {
    const socket = path.join(dir, "relay", "sbe");
    const r = await relay.listen("sbe", socket, uid);
    assert.ok(existsSync(socket));
    await r.close();
    assert.ok(!existsSync(socket));
    assert.ok(!existsSync(path.join(dir, "relay", ".sbe")));
  });
});
