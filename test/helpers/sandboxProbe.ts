/*
 * Run as its own process (by test/sandbox/walls.test.ts, from a shell that gives it extra
 * descriptors): prepares a sandbox host the way the service does, starts one fixture agent
 * in a bwrap sandbox, prints what GET <path> answers, and cleans up.
 * Usage: sandboxProbe.ts <dataDir> <uid> <fixture> <path>
 */
import { randomBytes } from "node:crypto";
import { chown, mkdir } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { BwrapDriver } from "../../src/sandbox/bwrapDriver.js";
import { detectCgroups } from "../../src/sandbox/cgroups.js";
import { HostLayout } from "../../src/sandbox/sandboxProcess.js";
import { waitUntilReady } from "../../src/sessions/agentSocket.js";
import { fixtureDir } from "./agents.js";

const [dataDir, uid, fixture, urlPath] = process.argv.slice(2) as [string, string, string, string];
const host = await HostLayout.prepare(path.join(dataDir, "sandbox"), Number(uid));
const cgroups = detectCgroups(`agenthost-test-probe-${process.pid}`);
if ("unavailable" in cgroups) throw new Error(cgroups.unavailable);
const driver = new BwrapDriver(host, cgroups);
const id = randomBytes(8).toString("hex");
const homeDir = path.join(dataDir, `home-${id}`);
await mkdir(homeDir, { mode: 0o700 });
await chown(homeDir, Number(uid), Number(uid));
const node = fixture.endsWith("-node");
const limits = { cpu: 1, memoryBytes: 256 * 2 ** 20, pids: 64 };
const sb = await driver.start({
  id,
  language: node ? "node" : "python",
  interpreter: node ? "/usr/bin/node" : "/usr/bin/python3",
  homeDir,
  appDir: fixtureDir(fixture),
  limits,
  network: "none",
});
try {
  await sb.launch({ argv: [node ? "index.js" : "main.py"], env: { PORT: "8088" }, limits });
  await waitUntilReady(sb.socketPath, Date.now() + 20_000, sb.exited);
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get({ socketPath: sb.socketPath, path: urlPath, agent: false }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += String(c)));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
  process.stdout.write(text);
} finally {
  await sb.stop(0);
  await driver.dispose();
}
