import assert from "node:assert/strict";
import { lookup } from "node:dns/promises";
import os from "node:os";
import tls from "node:tls";
import { after, it } from "node:test";
import { removeDir, sdk, startServer, type TestServer } from "../helpers/server.js";

/*
 * Where the service listens and what its banner and certificate promise: bound to 0.0.0.0 it
 * prints a URL per interface address and the host name, and each one works through the
 * official client trusting only the local CA; `--tls-san` adds names; bound to localhost it
 * answers on every address localhost resolves to.
 */

const servers: TestServer[] = [];
after(async () => {
  for (const s of servers) {
    await s.stop();
    removeDir(s.dataDir);
  }
});

const port = (origin: string) => Number(new URL(origin).port);

/** The agents list through the official client at `origin`. */
async function listAgents(server: TestServer, origin: string) {
  const client = sdk(server, server.adminKey, `${origin}/api/projects/default`);
  const names: string[] = [];
  for await (const a of client.agents.list()) names.push(a.name);
  return names;
}

it("--host 0.0.0.0 prints every URL that works; each verifies against the local CA", async () => {
  const server = await startServer({
    args: ["--host", "0.0.0.0", "--tls-san", "extra.example.test,second.example.test"],
  });
  servers.push(server);
  const urls = [...server.output().matchAll(/(?:listening on|and) (https:\/\/\S+)/g)].map(
    (m) => m[1]!,
  );
  const p = port(server.origin);
  const addresses = Object.values(os.networkInterfaces())
    .flat()
    .filter((i) => i && !i.internal && i.family === "IPv4")
    .map((i) => `https://${i!.address}:${p}`);
  assert.deepEqual(urls, [`https://localhost:${p}`, `https://${os.hostname()}:${p}`, ...addresses]);
  // Every printed URL whose name resolves here answers through the official client.
  for (const url of urls) {
    const host = new URL(url).hostname;
    if (
      !(await lookup(host).then(
        () => true,
        () => false,
      ))
    )
      continue;
    assert.deepEqual(await listAgents(server, url), [], url);
  }
  assert.ok(addresses.length > 0, "this host has a non-loopback address to check");
  // --tls-san names are in the certificate: a client naming one verifies it.
  for (const name of ["extra.example.test", "second.example.test"]) {
    await new Promise<void>((resolve, reject) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port: p,
        servername: name,
        ca: server.caPem,
      });
      socket.once("secureConnect", () => {
        socket.end();
        resolve();
      });
      socket.once("error", reject);
    });
  }
});

it("--host localhost answers on every address localhost resolves to", async () => {
  const server = await startServer({ args: ["--host", "localhost"] });
  servers.push(server);
  assert.equal(server.origin, `https://localhost:${port(server.origin)}`);
  assert.doesNotMatch(server.output(), /^ +and https/m, "one URL: localhost");
  const resolved = await lookup("localhost", { all: true });
  assert.ok(resolved.length > 0);
  for (const { address, family } of resolved) {
    const origin = `https://${family === 6 ? `[${address}]` : address}:${port(server.origin)}`;
    assert.deepEqual(await listAgents(server, origin), [], origin);
  }
});
