import assert from "node:assert/strict";
import { lstatSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, HostedAgentDefinition } from "@azure/ai-projects";
import {
  httpsJson,
  removeDir,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";
import { makeZip, sha256, type ZipEntry } from "../helpers/zip.js";

/*
 * A zip whose links climb out one level each when created through the previous one:
 * `a/l → ..`, `a/l/m → ..`, `a/l/m/n → ..`, … and a last regular file written through the
 * whole chain. Each passes the textual check; on disk (written as root, path by path) the
 * chain reached outside the data directory. The data directory sits two levels below the
 * test's own directory, so an escape lands where the test can see it (never in /).
 */

const skip =
  process.getuid?.() === 0 ? false : "needs root (the service unpacks as the sandbox uid)";
const symlinkMode = 0o120777;
const chainNames = ["l", "m", "n", "o", "p", "q", "r", "s"];

function chainZip(): Buffer {
  const entries: ZipEntry[] = [
    { name: "main.py", data: "print('hello')\n" },
    { name: "a/", mode: 0o040755 },
  ];
  for (let i = 1; i <= chainNames.length; i++)
    entries.push({ name: `a/${chainNames.slice(0, i).join("/")}`, data: "..", mode: symlinkMode });
  entries.push({ name: `a/${chainNames.join("/")}/pwned.txt`, data: "written through the chain" });
  return makeZip(entries);
}

const definition = {
  kind: "hosted",
  cpu: "1",
  memory: "256Mi",
  code_configuration: { runtime: "python_3_11", entry_point: ["python", "main.py"] },
  protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
} as unknown as HostedAgentDefinition;

async function upload(client: AIProjectClient, name: string, zip: Buffer) {
  const created = await client.agents.createVersionFromCode(name, sha256(zip), {
    metadata: { definition },
    code: zip,
  });
  for (let i = 0; i < 600; i++) {
    const v = await client.agents.getVersion(name, created.version);
    if (v.status !== "creating") return v;
    await sleep(50);
  }
  throw new Error("build did not finish");
}

/**
 * The messages of a version's build log (JSON lines, as a session's console), one a line: the
 * reason a build failed is the last.
 */
const buildLog = (server: TestServer, name: string) =>
  readFileSync(path.join(server.dataDir, "builds", "default", name, "1", "build.log"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { message: string }).message)
    .join("\n");

/** Every symlink and every entry named `name` below `dir` (links not followed). */
function find(dir: string, name: string): { links: string[]; named: string[] } {
  const links: string[] = [];
  const named: string[] = [];
  const visit = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = path.join(d, e);
      const s = lstatSync(p);
      if (s.isSymbolicLink()) links.push(p);
      if (e === name) named.push(p);
      if (s.isDirectory()) visit(p);
    }
  };
  visit(dir);
  return { links, named };
}

describe("a zip with a chain of '..' symlinks", { skip }, () => {
  let base: string;
  let server: TestServer;
  let client: AIProjectClient;

  before(async () => {
    base = tempDir("agenthost-zipchain-");
    mkdirSync(path.join(base, "outer"), { mode: 0o711 });
    server = await startServer({
      dataDir: path.join(base, "outer", "data"),
      env: { AGENTHOST_WARM_POOL_SIZE: "0" },
    });
    client = sdk(server, server.adminKey);
  });
  after(async () => {
    await server?.stop();
    if (base) removeDir(base);
  });

  it("writes nothing outside its build directory, fails clearly, and leaves nothing behind", async () => {
    const v = await upload(client, "chain", chainZip());
    const appDir = path.join(server.dataDir, "builds", "default", "chain", "1", "app");
    const found = find(base, "pwned.txt");
    const outside = [...found.links, ...found.named].filter((p) => !p.startsWith(`${appDir}/`));
    assert.deepEqual(outside, [], "an entry was written outside the build directory");
    assert.deepEqual(found.named, [], "the file through the chain was written");
    assert.deepEqual(readdirSync(path.join(base, "outer")), ["data"]);
    assert.deepEqual(readdirSync(path.join(server.dataDir, "builds", "default")), ["chain"]);
    assert.deepEqual(readdirSync(path.join(server.dataDir, "builds", "default", "chain")), ["1"]);
    assert.deepEqual(readdirSync(path.dirname(appDir)).sort(), ["app", "build.log"]);
    assert.equal(v.status, "failed");
    assert.match(buildLog(server, "chain"), /'a\/l\/m'.*symlink or a file of the zip/);
    const raw = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/chain/versions/1?api-version=v1`,
      {
        headers: { authorization: `Bearer ${server.adminKey}` },
      },
    );
    assert.match(
      (raw.body.status_reason as { message: string }).message,
      /'a\/l\/m' cannot be written: its path goes through a symlink/,
    );
    // Sealed after the unpack: root's, read-only for the sandbox group.
    const main = lstatSync(path.join(appDir, "main.py"));
    assert.equal(main.uid, 0);
    assert.equal(main.gid, 65534);
    assert.equal(main.mode & 0o022, 0, "no sandbox may write the code");

    await client.agents.deleteVersion("chain", "1");
    assert.deepEqual(find(base, "pwned.txt").links, [], "a link stayed after the delete");
    assert.deepEqual(readdirSync(path.join(server.dataDir, "builds", "default")), []);
  });

  it("refuses a link whose target goes through another link of the zip", async () => {
    const zip = makeZip([
      { name: "main.py", data: "print('hello')\n" },
      { name: "a/", mode: 0o040755 },
      // `up` comes first: when it is judged textually, `a/l` does not exist yet.
      { name: "up", data: "a/l/../..", mode: symlinkMode },
      { name: "a/l", data: "..", mode: symlinkMode },
    ]);
    const v = await upload(client, "through", zip);
    assert.equal(v.status, "failed");
    assert.match(buildLog(server, "through"), /'up'.*would lead out.*climbs above/);
  });

  it("keeps links that stay inside the code directory", async () => {
    const zip = makeZip([
      { name: "main.py", data: "print('hello')\n" },
      { name: "lib/v1/x.py", data: "x = 1\n" },
      { name: "lib/current", data: "v1", mode: symlinkMode },
      { name: "x.py", data: "lib/current/x.py", mode: symlinkMode },
    ]);
    const v = await upload(client, "inside", zip);
    assert.equal(v.status, "active", buildLog(server, "inside"));
    const appDir = path.join(server.dataDir, "builds", "default", "inside", "1", "app");
    assert.ok(lstatSync(path.join(appDir, "lib/current")).isSymbolicLink());
    assert.ok(lstatSync(path.join(appDir, "x.py")).isSymbolicLink());
  });
});
