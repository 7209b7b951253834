import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import tls from "node:tls";
import { after, before, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { httpsJson, removeDir, startServer, type TestServer } from "../helpers/server.js";

/*
 * Connections that never authenticate: 20,000 plain TCP connections that never start TLS,
 * a TLS connection that never finishes its headers. The real service (a child process, with
 * the open-file limit it was started with) must drop them in seconds and keep answering
 * authenticated calls meanwhile.
 */

let server: TestServer;
let port: number;

before(async () => {
  server = await startServer();
  port = Number(new URL(server.origin).port);
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
});

const listAgents = () =>
  httpsJson(server, "GET", `${server.endpoint}/agents?api-version=v1`, {
    // A new connection per call: a kept-alive one would not notice a full server.
    headers: { authorization: `Bearer ${server.adminKey}`, connection: "close" },
  });

/** Resolves with the milliseconds until the server closes the socket. */
const closedAfter = (socket: net.Socket, started: number) =>
  new Promise<number>((resolve) => {
    socket.resume(); // read (and drop) what the server answers, so its close is seen
    socket.once("close", () => resolve(performance.now() - started));
  });

it("drops a connection that never starts TLS within the handshake timeout", async () => {
  const started = performance.now();
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  const ms = await closedAfter(socket, started);
  assert.ok(ms >= 4_000 && ms < 8_000, `closed after ${ms} ms`);
});

it("drops a TLS connection whose headers never end", async () => {
  const started = performance.now();
  const socket = tls.connect({
    port,
    host: "127.0.0.1",
    servername: "localhost",
    ca: server.caPem,
  });
  await new Promise((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  socket.write("GET /api/projects/default/agents?api-version=v1 HTTP/1.1\r\nhost: localhost\r\n");
  const ms = await closedAfter(socket, started);
  assert.ok(ms >= 10_000 && ms < 20_000, `closed after ${ms} ms`);
});

/** Script of an attacker process: `count` TCP connections that never send a byte. */
const attackerScript = `
const net = require("node:net");
const [port, count] = process.argv.slice(1).map(Number);
let refused = 0;
(async () => {
  for (let i = 0; i < count; i += 500) {
    await Promise.all(Array.from({ length: 500 }, () => new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.on("connect", resolve);
      s.on("error", () => { refused++; resolve(); });
    })));
  }
  process.stdout.write("done " + refused + "\\n");
  setInterval(() => {}, 1000);
})();
`;

it("answers authenticated calls while 20,000 connections that never start TLS arrive", async () => {
  // Two attackers: one process may not have 20,000 descriptors (the machine's limit).
  const attackers = [0, 1].map(() =>
    spawn(process.execPath, ["-e", attackerScript, String(port), "10000"], {
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  const done = attackers.map(
    (child) =>
      new Promise<number>((resolve) => {
        let out = "";
        child.stdout!.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /done (\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.once("exit", () => resolve(-1));
      }),
  );
  // Calls go on while the connections arrive and for 8 s while they are all held open.
  let until = Infinity;
  const refused = Promise.all(done).then((n) => {
    until = performance.now() + 8_000;
    return n;
  });
  try {
    const calls: { status: number; ms: number }[] = [];
    while (performance.now() < until || calls.length < 10) {
      const started = performance.now();
      const res = await listAgents().catch(() => ({ status: 0 }));
      calls.push({ status: res.status, ms: performance.now() - started });
      await sleep(50);
    }
    const failed = calls.filter((c) => c.status !== 200);
    const slowest = Math.max(...calls.map((c) => c.ms));
    assert.deepEqual(failed, [], `${failed.length} of ${calls.length} calls failed`);
    assert.ok(slowest < 3_000, `slowest call ${slowest} ms`);
    const [a, b] = await refused;
    assert.ok(a! >= 0 && b! >= 0, "both attackers ran to the end");
    assert.ok(a! + b! < 20_000, "the attack reached the server");
  } finally {
    for (const child of attackers) child.kill("SIGKILL");
  }
  // The service is still whole afterwards.
  assert.equal((await listAgents()).status, 200);
});

/** A TLS connection that sends a request's head and then reads only when told to. */
async function sender(head: string, allowHalfOpen = false) {
  const socket = tls.connect({
    port,
    host: "127.0.0.1",
    servername: "localhost",
    ca: server.caPem,
    // Half open: it goes on sending after the service has shut its side (Node takes the
    // option; its types for tls.connect leave it out).
    ...({ allowHalfOpen } as object),
  });
  await new Promise((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  socket.pause();
  socket.write(head);
  let answer = "";
  const closed = new Promise<{ answer: string; error?: string }>((resolve) => {
    socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    socket.once("error", (err: NodeJS.ErrnoException) => resolve({ answer, error: err.code }));
    socket.once("close", () => resolve({ answer }));
  });
  return { socket, closed };
}

const bigUpload = (length: number) =>
  `POST /api/projects/default/agents?api-version=v1 HTTP/1.1\r\nhost: localhost\r\n` +
  `content-type: application/octet-stream\r\ncontent-length: ${length}\r\n\r\n`;

it("a caller still sending a refused body reads the answer: the connection lingers, then closes", async () => {
  // No key: 401 before any of the body is read. The caller goes on sending after the answer
  // and reads only later; a connection destroyed at once would reset its writes first.
  const { socket, closed } = await sender(bigUpload(64 * 1024 * 1024));
  socket.write(Buffer.alloc(1024 * 1024));
  await sleep(300);
  socket.write(Buffer.alloc(1024 * 1024));
  await sleep(300);
  socket.resume();
  const { answer, error } = await closed;
  assert.match(answer, /^HTTP\/1\.1 401 /, `got ${error ?? "no error"} and ${answer.slice(0, 40)}`);
  assert.match(answer, /connection: close/i);
});

it("a caller that never stops sending after its answer is cut off", async () => {
  const { socket, closed } = await sender(bigUpload(1024 * 1024 * 1024), true);
  socket.resume();
  const started = performance.now();
  let sent = 0;
  const piece = Buffer.alloc(256 * 1024);
  const pump = () => {
    while (!socket.destroyed) {
      sent += piece.length;
      if (!socket.write(piece)) return void socket.once("drain", pump);
    }
  };
  pump();
  await closed;
  const ms = performance.now() - started;
  assert.ok(ms < 5_000, `closed after ${ms} ms`);
  assert.ok(sent < 64 * 1024 * 1024, `the service took ${sent} bytes`);
});
