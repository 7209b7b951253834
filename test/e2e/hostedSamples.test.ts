import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { projectOpenAI } from "../helpers/openaiClient.js";
import {
  removeDir,
  repoRoot,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";

/*
 * The sample agents of docs/hosted-agents.md, deployed exactly as the page says: zipped with
 * `zip`, deployed and asked through the official client (docs/samples/deploy.mjs) and through
 * curl (docs/samples/deploy.sh), into real bwrap sandboxes; each answers twice in one session
 * (its home keeps the turn count), and streams through the official `openai` client. The
 * Node sample is built on @agenthost/agentserver, packed and installed by remote_build.
 */

const run = promisify(execFile);
const samples = path.join(repoRoot, "docs/samples");
let server: TestServer;
let work: string;

before(async () => {
  server = await startServer();
  work = tempDir("agenthost-samples-");
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
  removeDir(work);
});

/**
 * A copy of a sample with its agent.zip made by the documented commands: for the Node one,
 * first `npm pack` of packages/agentserver (it builds itself) into the app's vendor/.
 */
async function zipped(sample: string): Promise<string> {
  const dir = path.join(work, sample);
  cpSync(path.join(samples, sample), dir, { recursive: true });
  if (sample === "hosted-node") {
    const vendor = path.join(dir, "app/vendor");
    mkdirSync(vendor, { recursive: true });
    await run("npm", ["pack", "./packages/agentserver", "--pack-destination", vendor], {
      cwd: repoRoot,
    });
  }
  await run("zip", ["-r", "../agent.zip", "."], { cwd: path.join(dir, "app") });
  return dir;
}

const env = () => ({
  PATH: process.env.PATH!,
  AGENTHOST_ENDPOINT: server.endpoint,
  AGENTHOST_KEY: server.adminKey,
  AGENTHOST_CA: path.join(server.dataDir, "tls/ca.pem"),
  NODE_EXTRA_CA_CERTS: path.join(server.dataDir, "tls/ca.pem"),
});

/** The two answers (turn 1, then turn 2 of the same session) each script prints. */
function assertTwoTurns(out: string, agent: string) {
  assert.match(out, /^version 1 is active$/m, out);
  const turns = [...out.matchAll(/(\S+) v1, turn (\d) of session (\S+): you said "(\w+)"/g)];
  assert.equal(turns.length, 2, out);
  assert.deepEqual(
    turns.map((m) => [m[1], m[2], m[4]]),
    [
      [agent, "1", "Hello"],
      [agent, "2", "Again"],
    ],
  );
  assert.equal(turns[0]![3], turns[1]![3], "one session");
}

for (const sample of ["hosted-python", "hosted-node"]) {
  describe(sample, () => {
    it("deploys and answers through the official client (deploy.mjs)", async () => {
      const dir = await zipped(sample);
      const agent = `${sample}-sdk`;
      const { stdout } = await run(
        process.execPath,
        [path.join(samples, "deploy.mjs"), agent, dir],
        { env: env(), cwd: repoRoot },
      );
      assertTwoTurns(stdout, agent);
      // The same agent streams through the unmodified openai client.
      const openai = projectOpenAI(sdk(server, server.adminKey), server, agent);
      const events: string[] = [];
      let text = "";
      for await (const event of await openai.responses.create({ input: "Stream", stream: true })) {
        events.push(event.type);
        if (event.type === "response.output_text.delta") text += event.delta;
      }
      assert.equal(events[0], "response.created");
      assert.equal(events.at(-1), "response.completed");
      assert.match(text, /turn 1 of session \S+: you said "Stream"/);
    });

    it("deploys and answers through curl (deploy.sh)", async () => {
      const dir = await zipped(sample);
      const agent = `${sample}-curl`;
      const { stdout } = await run("sh", [path.join(samples, "deploy.sh"), agent, dir], {
        env: env(),
      });
      const texts = stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => (JSON.parse(l) as { output: { content: { text: string }[] }[] }).output[0]!);
      assertTwoTurns(
        [stdout.split("\n")[0], ...texts.map((o) => o.content[0]!.text)].join("\n"),
        agent,
      );
    });
  });
}
