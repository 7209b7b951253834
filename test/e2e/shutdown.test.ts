import assert from "node:assert/strict";
import { request as httpsRequest } from "node:https";
import { after, it } from "node:test";
import type { VersionRefIndicator } from "@azure/ai-projects";
import { deployFixture } from "../helpers/agents.js";
import { httpsJson, removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";

/*
 * SIGTERM ends every server-sent event stream at once, each with a last status frame, and the
 * process exits within the sandbox stop grace: with clients still reading, and without any.
 */

const graceSeconds = 3;
const servers: TestServer[] = [];

after(() => {
  for (const s of servers) removeDir(s.dataDir);
});

/** A log stream held open; `frames` are its frames' JSON data, `ended` settles at its end. */
function openLogStream(server: TestServer, agent: string, id: string) {
  const frames: { stream: string; message: string }[] = [];
  let tail = "";
  let connected!: () => void;
  const ready = new Promise<void>((resolve) => (connected = resolve));
  const ended = new Promise<"end" | "error">((resolve) => {
    const req = httpsRequest(
      `${server.endpoint}/agents/${agent}/versions/1/sessions/${id}:logstream?api-version=v1`,
      { ca: server.caPem, headers: { authorization: `Bearer ${server.adminKey}` }, agent: false },
      (res) => {
        res.setEncoding("utf8");
        res.on("data", (text: string) => {
          const blocks = (tail + text).split("\n\n");
          tail = blocks.pop()!;
          for (const block of blocks) {
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (data) frames.push(JSON.parse(data) as { stream: string; message: string });
          }
          if (frames.length > 0) connected();
        });
        res.on("end", () => resolve("end"));
        res.on("error", () => resolve("error"));
      },
    );
    req.on("error", () => resolve("error"));
    req.end();
  });
  return { frames, ready, ended };
}

it("SIGTERM with 50 open log streams ends each with a status frame and exits within the grace", async (t) => {
  const server = await startServer({
    env: { AGENTHOST_SESSION_STOP_GRACE_SECONDS: String(graceSeconds) },
  });
  servers.push(server);
  const client = sdk(server, server.adminKey);
  const agent = `shutdown-${process.pid}`;
  await deployFixture(client, agent, "echo-python");
  const session = await client.agents.createSession(agent, {
    type: "version_ref",
    agent_version: "1",
  } as VersionRefIndicator);
  const id = session.agent_session_id;
  const answer = await httpsJson(
    server,
    "POST",
    `${server.endpoint}/agents/${agent}/endpoint/protocols/openai/responses?api-version=v1`,
    {
      headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify({ input: "hello", agent_session_id: id }),
    },
  );
  assert.equal(answer.status, 200, "the session runs");

  const streams = Array.from({ length: 50 }, () => openLogStream(server, agent, id));
  await Promise.all(streams.map((s) => s.ready));
  const t0 = Date.now();
  const code = await server.stop();
  const elapsed = Date.now() - t0;
  t.diagnostic(`exited ${elapsed} ms after SIGTERM`);
  assert.equal(code, 0, server.output());
  assert.ok(elapsed < graceSeconds * 1000, `exited after ${elapsed} ms`);
  const ends = await Promise.all(streams.map((s) => s.ended));
  assert.deepEqual(new Set(ends), new Set(["end"]), "every stream ended cleanly");
  for (const s of streams) {
    const last = s.frames.at(-1)!;
    assert.equal(last.stream, "status");
    assert.match(last.message, /shutting down/);
  }
});

it("without clients, SIGTERM exits within the grace too", async () => {
  const server = await startServer({
    env: { AGENTHOST_SESSION_STOP_GRACE_SECONDS: String(graceSeconds) },
  });
  servers.push(server);
  const t0 = Date.now();
  assert.equal(await server.stop(), 0, server.output());
  assert.ok(Date.now() - t0 < graceSeconds * 1000, `exited after ${Date.now() - t0} ms`);
});
