import assert from "node:assert/strict";
import { request } from "node:https";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, HostedAgentDefinition } from "@azure/ai-projects";
import {
  expectRestError as refused,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";
import { makeZip, sha256, type ZipEntry } from "../helpers/zip.js";

/*
 * A version's build log through the API: `GET …/versions/{v}/build:logstream` while the build
 * runs and after it, in the frames of a session's console stream, resumable with
 * `Last-Event-ID`, ending with the version's status; the last lines of a failed build in
 * `status_reason.message`. Uploads go through the official client; the stream (which the
 * client has no method for) and `status_reason` (which it drops) are read over raw HTTPS.
 */

let server: TestServer;
let client: AIProjectClient;
let unique = 0;
const newName = () => `buildlog-${process.pid}-${++unique}`;

before(async () => {
  server = await startServer();
  client = sdk(server, server.adminKey);
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
});

const definition = {
  kind: "hosted",
  cpu: "0.5",
  memory: "256Mi",
  protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
  code_configuration: {
    runtime: "python_3_11",
    entry_point: ["python", "main.py"],
    dependency_resolution: "remote_build",
  },
} as unknown as HostedAgentDefinition;

/** A requirement no index has; `--no-index` (no PyPI here) makes pip fail at once. */
const missing = "agenthost-no-such-package==9.9.9";

/**
 * A local package whose build pauses, so that the build is still running when the stream is
 * opened, followed by the requirement that cannot be found.
 */
const failingZip = (pauseSeconds: number): Buffer =>
  makeZip([
    { name: "main.py", data: "print('never runs')\n" },
    { name: "requirements.txt", data: `--no-index\n./slow\n${missing}\n` },
    {
      name: "slow/setup.py",
      data: `import time\ntime.sleep(${pauseSeconds})\nfrom setuptools import setup\nsetup(name="slow", version="1.0", py_modules=[])\n`,
    },
  ] satisfies ZipEntry[]);

async function upload(name: string, zip: Buffer): Promise<string> {
  const created = await client.agents.createVersionFromCode(name, sha256(zip), {
    metadata: { definition },
    code: zip,
  });
  return created.version;
}

interface Frame {
  id?: number;
  event: string;
  data: { timestamp: string; stream: string; message: string };
}

interface Stream {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  frames: Frame[];
  /** Resolves when the server ends the stream. */
  done: Promise<void>;
  /** Resolves once a frame matching `test` has come. */
  until(test: (f: Frame) => boolean, ms?: number): Promise<Frame>;
  close(): void;
}

/** Opens a build log stream over raw HTTPS, parsing SSE frames as they come. */
function openStream(name: string, version: string, headers: Record<string, string> = {}) {
  return new Promise<Stream>((resolve, reject) => {
    const url = `${server.endpoint}/agents/${name}/versions/${version}/build:logstream?api-version=v1`;
    const req = request(
      url,
      { ca: server.caPem, headers: { authorization: `Bearer ${server.adminKey}`, ...headers } },
      (res) => {
        const frames: Frame[] = [];
        let text = "";
        let body = "";
        const waiting = new Set<() => void>();
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
          text += chunk;
          let end: number;
          while ((end = text.indexOf("\n\n")) >= 0) {
            const raw = text.slice(0, end);
            text = text.slice(end + 2);
            const fields = Object.fromEntries(
              raw.split("\n").map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)]),
            );
            if (fields.data === undefined) continue;
            frames.push({
              ...(fields.id !== undefined ? { id: Number(fields.id) } : {}),
              event: fields.event!,
              data: JSON.parse(fields.data),
            });
          }
          for (const wake of waiting) wake();
        });
        const done = new Promise<void>((ok) => res.on("end", ok).on("close", ok));
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          frames,
          done,
          get body() {
            return body;
          },
          async until(test, ms = 60_000) {
            const deadline = Date.now() + ms;
            for (;;) {
              const found = frames.find(test);
              if (found) return found;
              if (Date.now() > deadline) assert.fail(`no such frame in:\n${body}`);
              await Promise.race([
                new Promise<void>((wake) => {
                  waiting.add(wake);
                  setTimeout(wake, 200);
                }),
                done,
              ]);
            }
          },
          close: () => req.destroy(),
        } as Stream);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** The version as the wire has it (the client drops `status_reason`). */
async function rawVersion(name: string, version: string) {
  const r = await httpsJson(
    server,
    "GET",
    `${server.endpoint}/agents/${name}/versions/${version}?api-version=v1`,
    { headers: { authorization: `Bearer ${server.adminKey}` } },
  );
  return r.body as { status: string; status_reason?: { code: string; message: string } };
}

const messages = (frames: Frame[]) => frames.map((f) => f.data.message);

describe("a version's build log", () => {
  it("is streamed while the build runs and ends with the failed status; the failing line is in status_reason", async () => {
    const name = newName();
    const version = await upload(name, failingZip(3));
    const live = await openStream(name, version);
    assert.equal(live.status, 200);
    assert.match(String(live.headers["content-type"]), /^text\/event-stream/);
    await live.until((f) => f.data.message.startsWith("installing dependencies"));
    // The build is still running while its lines come.
    assert.equal((await client.agents.getVersion(name, version)).status, "creating");
    await live.done;

    const frames = live.frames;
    assert.ok(frames.every((f) => f.event === "log"));
    assert.equal(frames[0]!.data.message, "Connected to the version's build log");
    const last = frames.at(-1)!;
    assert.deepEqual(
      [last.data.stream, last.data.message, last.id],
      ["status", "build ended: failed (dependency_install_failed)", undefined],
    );
    // pip's complaint about the requirement, as install output, numbered.
    const complaint = frames.find(
      (f) => f.data.stream === "stdout" && f.data.message.includes(missing),
    );
    assert.ok(complaint, `pip's output names the requirement:\n${messages(frames).join("\n")}`);
    assert.equal(typeof complaint.id, "number");
    const ids = frames.filter((f) => f.id !== undefined).map((f) => f.id!);
    assert.deepEqual(
      ids,
      ids.map((_, i) => ids[0]! + i),
      "line ids are consecutive",
    );

    const v = await rawVersion(name, version);
    assert.equal(v.status, "failed");
    assert.equal(v.status_reason?.code, "dependency_install_failed");
    assert.match(
      v.status_reason!.message,
      /^Installing dependencies from requirements\.txt failed/,
    );
    assert.match(v.status_reason!.message, /Last lines of the build log:\n/);
    assert.ok(v.status_reason!.message.includes(missing), v.status_reason!.message);
    assert.ok(v.status_reason!.message.length < 4000);
  });

  it("is read back after the build, and resumes after Last-Event-ID", async () => {
    const name = newName();
    const version = await upload(name, failingZip(0));
    for (let i = 0; (await rawVersion(name, version)).status === "creating"; i++) {
      if (i > 600) assert.fail("the build never ended");
      await sleep(100);
    }
    const whole = await openStream(name, version);
    await whole.done;
    const lines = whole.frames.filter((f) => f.id !== undefined);
    assert.ok(
      lines.some((f) => f.data.message.includes(missing)),
      messages(whole.frames).join("\n"),
    );
    assert.equal(
      whole.frames.at(-1)!.data.message,
      "build ended: failed (dependency_install_failed)",
    );
    // The status lines of the service are there too, first the unpacking.
    assert.match(lines[0]!.data.message, /^unpacking [0-9a-f]{64}$/);
    assert.equal(lines[0]!.data.stream, "status");

    const middle = lines[Math.floor(lines.length / 2)]!;
    const resumed = await openStream(name, version, { "last-event-id": String(middle.id) });
    await resumed.done;
    const after = resumed.frames.filter((f) => f.id !== undefined);
    assert.deepEqual(
      after.map((f) => f.id),
      lines.filter((f) => f.id! > middle.id!).map((f) => f.id),
      "nothing lost, nothing repeated",
    );
    assert.equal(resumed.frames.at(-1)!.data.message, whole.frames.at(-1)!.data.message);
  });

  it("ends with `active` for a build that succeeds, and is 404 for a version without a build", async () => {
    const name = newName();
    const zip = makeZip([{ name: "main.py", data: "print('hi')\n" }]);
    const version = await upload(name, zip);
    const stream = await openStream(name, version);
    await stream.done;
    assert.equal(stream.frames.at(-1)!.data.message, "build ended: active");
    assert.ok(messages(stream.frames).includes("build succeeded"));

    const prompt = newName();
    await client.agents.createVersion(prompt, { kind: "prompt", model: "gpt-4o" } as never);
    const none = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/${prompt}/versions/1/build:logstream?api-version=v1`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.equal(none.status, 404);
    assert.equal((none.body.error as { param: string }).param, "agent_version");
    await refused(client.agents.getVersion(name, "9"), 404, "not_found");
    const missingVersion = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/${name}/versions/9/build:logstream?api-version=v1`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.equal(missingVersion.status, 404);
    const noApiVersion = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/${name}/versions/${version}/build:logstream`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    assert.equal(noApiVersion.status, 400);
  });
});
