import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, VersionRefIndicator } from "@azure/ai-projects";
import { deployFixture } from "../helpers/agents.js";
import { httpsJson, removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";

/*
 * Uploads at their edges, against the real service: a chunked session-file upload past the
 * limit, uploads racing the session's delete, and what a kill -9 mid-upload leaves behind
 * (a temp file in the home, one in blobs/tmp), swept by the next run and never listed.
 */

const skip = process.getuid?.() === 0 ? false : "needs root (real sandboxes)";
const v = (n: string): VersionRefIndicator => ({ type: "version_ref", agent_version: n });
const MiB = 1024 * 1024;
const env = { AGENTHOST_WARM_POOL_SIZE: "0", AGENTHOST_SESSION_MAX_IDLE_SECONDS: "30" };

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * A PUT of a session file, chunked (no Content-Length), streaming `total` bytes in 1 MiB
 * chunks while the server reads; `onSent` hears how much went out. Resolves with the answer,
 * or with status 0 when the connection ended without one.
 */
function putChunked(
  server: TestServer,
  url: string,
  total: number,
  onSent?: (bytes: number) => void,
  /** Paced: 256 KiB every this many ms (instead of as fast as the server reads). */
  paceMs?: number,
): Promise<Answer> {
  return new Promise((resolve) => {
    let answered = false;
    const req = httpsRequest(
      url,
      {
        method: "PUT",
        ca: server.caPem,
        agent: false,
        headers: {
          authorization: `Bearer ${server.adminKey}`,
          "content-type": "application/octet-stream",
          "transfer-encoding": "chunked",
        },
      },
      (res) => {
        answered = true;
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} }),
        );
        res.on("error", () => resolve({ status: res.statusCode ?? 0, body: {} }));
      },
    );
    req.on("error", () => {
      if (!answered) resolve({ status: 0, body: {} });
    });
    const chunk = Buffer.alloc(paceMs === undefined ? MiB : 256 * 1024, 7);
    let sent = 0;
    const pump = () => {
      while (sent < total && !answered && !req.destroyed) {
        sent += chunk.length;
        onSent?.(sent);
        const more = req.write(chunk);
        if (paceMs !== undefined) return void setTimeout(pump, paceMs);
        if (!more) return void req.once("drain", pump);
      }
      if (sent >= total) req.end();
    };
    pump();
  });
}

describe("session-file uploads at the edges", { skip }, () => {
  let server: TestServer;
  let client: AIProjectClient;
  let unique = 0;
  const agent = "uploads";

  before(async () => {
    server = await startServer({ env });
    client = sdk(server, server.adminKey);
    await deployFixture(client, agent, "echo-python");
  });
  after(async () => {
    await server?.stop();
    if (server) removeDir(server.dataDir);
  });

  const newSession = async () =>
    (
      await client.agents.createSession(agent, v("1"), {
        agentSessionId: `up-${++unique}-${process.pid}`,
      })
    ).agent_session_id;
  const fileUrl = (id: string, file: string) =>
    `${server.endpoint}/agents/${agent}/endpoint/sessions/${id}/files/content?api-version=v1&path=${encodeURIComponent(file)}`;
  const homeOf = (id: string) =>
    path.join(server.dataDir, "sessions", "default", agent, id, "home");

  it("a chunked upload past 50 MiB answers 413 and leaves nothing", async () => {
    const id = await newSession();
    const started = Date.now();
    let sent = 0;
    const answer = await Promise.race([
      putChunked(server, fileUrl(id, "big.bin"), 400 * MiB, (n) => (sent = n)),
      sleep(60_000).then((): Answer => ({ status: -1, body: {} })),
    ]);
    assert.equal(
      answer.status,
      413,
      `after ${Date.now() - started} ms: ${JSON.stringify(answer.body)}`,
    );
    assert.equal((answer.body.error as { code: string }).code, "payload_too_large");
    assert.ok(sent < 200 * MiB, `answered only after ${sent} bytes`);
    assert.deepEqual(readdirSync(homeOf(id)), []);
    // The service still answers on a new connection.
    assert.equal((await client.agents.get(agent)).name, agent);
  });

  it("uploads racing the session's delete answer 201 or 404, never 500 (20 races)", async () => {
    const statuses = new Map<number, number>();
    const auth = { authorization: `Bearer ${server.adminKey}` };
    for (let i = 0; i < 20; i++) {
      const id = await newSession();
      await client.agents.stopSession(agent, id); // idle: the delete goes straight to the files
      // Small uploads (the delete lands in their path walk) and paced ones (it lands mid-body).
      const uploads = [
        ...Array.from({ length: 8 }, (_, k) =>
          httpsJson(server, "PUT", fileUrl(id, `d${k}/e/f/g.bin`), {
            headers: { ...auth, "content-type": "application/octet-stream" },
            body: Buffer.alloc(1024, k),
          }),
        ),
        putChunked(server, fileUrl(id, "paced.bin"), MiB, undefined, 5),
      ];
      await sleep(i % 10);
      const deleted = await httpsJson(
        server,
        "DELETE",
        `${server.endpoint}/agents/${agent}/endpoint/sessions/${id}?api-version=v1`,
        { headers: auth },
      );
      assert.equal(deleted.status, 204);
      for (const up of await Promise.all(uploads)) {
        statuses.set(up.status, (statuses.get(up.status) ?? 0) + 1);
        assert.ok(
          [201, 404].includes(up.status),
          `upload answered ${up.status}: ${JSON.stringify(up.body)}`,
        );
      }
      assert.equal(
        existsSync(path.join(server.dataDir, "sessions", "default", agent, id)),
        false,
        "the deleted session's directory came back",
      );
    }
    console.log(`race outcomes: ${JSON.stringify(Object.fromEntries(statuses))}`);
  });

  it("a kill -9 mid-upload leaves temp files the next run sweeps and never lists", async () => {
    const id = await newSession();
    await client.agents.uploadSessionFile(agent, id, "kept.txt", Buffer.from("kept"));
    // A session-file upload and a code upload, both cut off by the kill.
    const half = putChunked(server, fileUrl(id, "half.bin"), 40 * MiB);
    const code = httpsRequest(`${server.endpoint}/agents/${agent}/versions?api-version=v1`, {
      method: "POST",
      ca: server.caPem,
      agent: false,
      headers: {
        authorization: `Bearer ${server.adminKey}`,
        "content-type": "multipart/form-data; boundary=XX",
        "x-ms-code-zip-sha256": "0".repeat(64),
      },
    });
    code.on("error", () => {});
    code.write('--XX\r\ncontent-disposition: form-data; name="code"; filename="code.zip"\r\n\r\n');
    code.write(Buffer.alloc(2 * MiB));
    const tempsIn = (dir: string) =>
      existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith("sha256")) : [];
    const homeTemps = () =>
      readdirSync(homeOf(id)).filter((n) => n.startsWith(".agenthost-upload-"));
    const blobTmp = path.join(server.dataDir, "blobs", "tmp");
    for (const end = Date.now() + 20_000; Date.now() < end; await sleep(20))
      if (homeTemps().length > 0 && tempsIn(blobTmp).length > 0) break;
    assert.equal(homeTemps().length, 1, "the session-file upload is in progress");
    assert.equal(tempsIn(blobTmp).length, 1, "the code upload is in progress");
    await server.kill();
    await half;
    code.destroy();
    assert.equal(homeTemps().length, 1, "the kill left the temp file");

    server = await startServer({ dataDir: server.dataDir, env });
    client = sdk(server, server.adminKey);
    assert.deepEqual(tempsIn(blobTmp), [], "blobs/tmp is swept at start");
    const listed = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/${agent}/endpoint/sessions/${id}/files?api-version=v1&path=/`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.equal(listed.status, 200);
    assert.deepEqual(
      (listed.body.entries as { name: string }[]).map((e) => e.name),
      ["kept.txt"],
    );
    assert.deepEqual(homeTemps(), [], "the home's temp file is swept on its first use");
  });
});
