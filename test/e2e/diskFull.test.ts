import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, rmSync, rmdirSync, writeSync } from "node:fs";
import path from "node:path";
import { after, before, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, VersionRefIndicator } from "@azure/ai-projects";
import { deployFixture, zipFixture } from "../helpers/agents.js";
import {
  expectRestError,
  httpsJson,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";
import { sha256 } from "../helpers/zip.js";

/*
 * A full disk: the service's data directory is a small tmpfs, filled to the last byte by a
 * filler file while a session runs. The agent's output keeps flowing to the log stream (the
 * file gets a counted gap), writes answer 507 insufficient_storage, reads keep working, the
 * service restarts on the full disk, and once the filler is gone everything writes again and
 * the console says how many lines it could not keep.
 */

const agent = `full-${process.pid}`;
const mountPoint = tempDir("agenthost-diskfull-");
const filler = path.join(mountPoint, "filler");
let server: TestServer;
let client: AIProjectClient;
let session: string;

before(async () => {
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=48m,mode=0711", "tmpfs", mountPoint]);
  server = await startServer({ dataDir: mountPoint });
  client = sdk(server, server.adminKey);
  await deployFixture(client, agent, "echo-python");
  session = (
    await client.agents.createSession(agent, {
      type: "version_ref",
      agent_version: "1",
    } as VersionRefIndicator)
  ).agent_session_id;
});

after(async () => {
  await Promise.race([server?.stop(), sleep(20_000).then(() => server?.kill())]);
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync("umount", [mountPoint], { stdio: "ignore" });
      break;
    } catch {
      await sleep(100); // a sandbox may still hold it for a moment
    }
  }
  rmdirSync(mountPoint);
});

/** Writes zeros until the filesystem takes no more, down to single bytes. */
function fillDisk(): void {
  const fd = openSync(filler, "a");
  try {
    for (const size of [1024 * 1024, 4096, 1]) {
      const block = Buffer.alloc(size);
      for (;;) {
        try {
          writeSync(fd, block);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw err;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

const bearer = () => ({ authorization: `Bearer ${server.adminKey}` });

const ask = (input: string) =>
  httpsJson(
    server,
    "POST",
    `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
    {
      headers: { ...bearer(), "content-type": "application/json" },
      body: JSON.stringify({ input, agent_session_id: session }),
    },
  );

const upload = (file: string, data: Buffer) =>
  httpsJson(
    server,
    "PUT",
    `${server.endpoint}/agents/${agent}/endpoint/sessions/${session}/files/content?path=${file}&api-version=v1`,
    { headers: { ...bearer(), "content-type": "application/octet-stream" }, body: data },
  );

/** The session's log stream, as text, until `until` matches (or the deadline). */
async function logText(until: RegExp, timeoutMs = 15_000): Promise<string> {
  const res = await client.agents.getSessionLogStream(agent, "1", session);
  const body = res.readableStreamBody!;
  let text = "";
  const deadline = Date.now() + timeoutMs;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      text += chunk.toString();
      if (until.test(text) || Date.now() > deadline) break;
    }
  } finally {
    (body as unknown as { destroy(): void }).destroy();
  }
  return text;
}

const consoleLog = () =>
  readFileSync(path.join(mountPoint, "sessions/default", agent, session, "console.log"), "utf8");

it(
  "survives a full disk: output flows, writes answer 507, reads work, and it recovers",
  { timeout: 120_000 },
  async () => {
    assert.equal((await ask("print 2")).status, 200);
    fillDisk();
    await sleep(1100); // the next use records its time (a database write)

    // The agent's output still reaches the stream (the file cannot take it).
    assert.equal((await ask("print 40")).status, 200, "the agent still answers");
    assert.match(await logText(/line 39/), /"message":"line 39"/);

    const up = await upload("a.txt", randomBytes(256 * 1024));
    assert.equal(up.status, 507, JSON.stringify(up.body));
    assert.equal((up.body.error as { code: string }).code, "insufficient_storage");

    const zip = zipFixture("echo-python");
    await expectRestError(
      client.agents.createVersionFromCode(agent, sha256(zip), {
        metadata: {
          definition: {
            kind: "hosted",
            code_configuration: { runtime: "python_3_11", entry_point: ["python", "main.py"] },
            protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
          },
        } as never,
        code: zip,
      }),
      507,
      "insufficient_storage",
    );
    // A database write: a new prompt version (the row does not fit).
    const versions: number[] = [];
    for (let i = 0; i < 400; i++) {
      const res = await httpsJson(
        server,
        "POST",
        `${server.endpoint}/agents/full-prompt-${process.pid}/versions?api-version=v1`,
        {
          headers: { ...bearer(), "content-type": "application/json" },
          body: JSON.stringify({
            definition: {
              kind: "prompt",
              model: "m",
              instructions: randomBytes(8000).toString("hex"),
            },
          }),
        },
      );
      versions.push(res.status);
      if (res.status !== 200) {
        assert.equal(res.status, 507, JSON.stringify(res.body));
        assert.equal((res.body.error as { code: string }).code, "insufficient_storage");
        break;
      }
    }
    assert.equal(versions.at(-1), 507, "the database filled up and said so");

    // Reads work.
    assert.equal((await client.agents.get(agent)).name, agent);
    const names: string[] = [];
    for await (const e of client.agents.listSessionFiles(agent, session)) names.push(e.name);
    assert.ok(!names.includes("a.txt"), "the refused upload left nothing");

    // Space is back: writes work again, and the console counts what it lost.
    rmSync(filler);
    assert.equal((await upload("b.txt", randomBytes(256 * 1024))).status, 201);
    await deployFixture(client, agent, "echo-python");
    assert.equal((await ask("print 3")).status, 200);
    assert.match(await logText(/lines not written: disk full/), /\d+ lines not written: disk full/);
    await sleep(200); // the batch with the note reaches the file
    assert.match(consoleLog(), /"message":"\d+ lines not written: disk full"/);
    assert.match(consoleLog(), /"message":"line 1"/);
  },
);

it(
  "starts on a full disk and serves reads, and writes once space is back",
  { timeout: 120_000 },
  async () => {
    fillDisk();
    await server.stop();
    server = await startServer({ dataDir: mountPoint });
    client = sdk(server, server.adminKey);
    assert.equal((await client.agents.get(agent)).name, agent);
    // More than the home's image already holds on the host's disk: it needs new space.
    assert.equal((await upload("c.txt", randomBytes(4 * 1024 * 1024))).status, 507);
    rmSync(filler);
    assert.equal((await upload("c.txt", randomBytes(4 * 1024 * 1024))).status, 201);
    assert.equal((await ask("print 1")).status, 200);
  },
);
