import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, describe, it } from "node:test";
import type { Socket } from "node:net";
import path from "node:path";
import type { Duplex } from "node:stream";
import type { ExecEvent } from "../../src/sandbox/driver.js";
import { ExecChannel } from "../../src/sandbox/execChannel.js";
import { probeExecHelper } from "../../src/sandbox/bwrapDriver.js";
import { repoRoot } from "../helpers/server.js";

/*
 * The host's end of the exec channel against a hostile far end: a real Python process (run as
 * nobody) on a real socket pair, speaking the frame format wrongly on purpose. The channel
 * must drop what it does not know, clamp what it cannot trust, and break (ending every
 * command with an error, never a hang) on a frame it cannot frame or output it never granted.
 */

const children: ReturnType<typeof spawn>[] = [];
after(() => {
  for (const c of children) c.kill("SIGKILL");
});

/** A far end running `script` (Python) with the socket as descriptor 3; `out(id, type, payload)`. */
function hostile(script: string): ExecChannel {
  const prelude = `
import os, socket, struct, sys, time
s = socket.socket(fileno=3)
def out(i, t, p=b""):
    s.sendall(struct.pack(">IIB", len(p), i, t) + p)
s.recv(65536)  # the host's START (and stdin end) arrive first
`;
  const child = spawn("python3", ["-I", "-c", prelude + script], {
    stdio: ["ignore", "ignore", "inherit", "pipe"],
    uid: 65534,
    gid: 65534,
  });
  children.push(child);
  return new ExecChannel(child.stdio[3] as Duplex);
}

async function collect(events: AsyncIterable<ExecEvent>): Promise<ExecEvent[]> {
  const all: ExecEvent[] = [];
  for await (const e of events) all.push(e);
  return all;
}

const spec = { argv: ["x"], env: {}, cwd: "/" };

describe("the exec channel against a hostile sandbox", () => {
  it("drops frames of commands it never started, and clamps a lying exit", async () => {
    const channel = hostile(`
out(99, 11, b"not yours")
out(1, 11, b"mine")
out(1, 12, b"err")
out(1, 14, b'{"code": -5, "signal": "SIGKILL; rm -rf /"}')
out(1, 11, b"after the exit")
time.sleep(5)
`);
    const events = await collect(channel.start(spec).events);
    assert.deepEqual(
      events.map((e) => ("data" in e ? `${e.type}:${e.data.toString()}` : JSON.stringify(e))),
      ["stdout:mine", "stderr:err", JSON.stringify({ type: "exit", code: null, signal: null })],
    );
    assert.equal(channel.unavailable, undefined, "the channel still works");
  });

  it("clamps an exit code that is no byte", async () => {
    const channel = hostile(`
out(1, 14, b'{"code": 300, "signal": null}')
time.sleep(5)
`);
    const events = await collect(channel.start(spec).events);
    assert.deepEqual(events, [{ type: "exit", code: null, signal: null }]);
  });

  it("breaks on a frame longer than allowed: every command ends with an error", async () => {
    const channel = hostile(`
s.sendall(struct.pack(">IIB", 1 << 30, 1, 11))
time.sleep(5)
`);
    const events = await collect(channel.start(spec).events);
    assert.equal(events.at(-1)!.type, "exit");
    assert.match(JSON.stringify(events[0]), /malformed exec frame/);
    assert.match(String(channel.unavailable), /malformed/);
    assert.throws(() => channel.start(spec), /malformed/);
  });

  it("breaks when the sandbox sends more output than it was granted", async () => {
    const channel = hostile(`
for _ in range(64):
    out(1, 11, b"a" * 65536)
time.sleep(5)
`);
    const proc = channel.start(spec);
    // Nobody reads: no credit is granted past the first window.
    await new Promise((r) => setTimeout(r, 1000));
    assert.match(String(channel.unavailable), /more output than it was granted/);
    const events = await collect(proc.events);
    assert.equal(events.at(-1)!.type, "exit");
    const bytes = events.reduce((n, e) => n + ("data" in e ? e.data.length : 0), 0);
    assert.ok(bytes <= 256 * 1024 + 2 * 65536, `${bytes} bytes queued`);
  });

  it("breaks on an unknown frame type and on bad JSON", async () => {
    for (const script of [`out(1, 77, b"?")`, `out(1, 14, b"{not json")`]) {
      const channel = hostile(`${script}\ntime.sleep(5)\n`);
      const events = await collect(channel.start(spec).events);
      assert.match(JSON.stringify(events[0]), /malformed/);
      assert.equal(events.at(-1)!.type, "exit");
    }
  });

  it("breaks on a flood of error frames instead of queueing them", async () => {
    const channel = hostile(`
frame = struct.pack(">IIB", 512, 1, 13) + (b'{"message": "' + b"x" * 497 + b'"}')
batch = frame * 4000
while True:
    s.sendall(batch)
`);
    const proc = channel.start(spec);
    const rss = process.memoryUsage().rss;
    // Nobody reads the events yet (a client that does not read its stream).
    await new Promise((r) => setTimeout(r, 1000));
    assert.match(String(channel.unavailable), /more exec errors than a command has/);
    const events = await collect(proc.events);
    assert.ok(events.length <= 4, `${events.length} events queued`);
    assert.equal(events.at(-1)!.type, "exit");
    assert.ok(process.memoryUsage().rss - rss < 64 * 2 ** 20, "no flood was kept");
  });

  it("grants credit in large grants, not one frame per chunk", async () => {
    // One byte a frame, as fast as it can, and it never reads what the host sends.
    const channel = hostile(`
batch = (struct.pack(">IIB", 1, 1, 11) + b"y") * 4000
while True:
    s.sendall(batch)
`);
    const socket = (channel as unknown as { socket: Socket }).socket;
    const proc = channel.start(spec);
    const sentAtStart = socket.bytesWritten + socket.writableLength;
    const events = proc.events[Symbol.asyncIterator]();
    let taken = 0;
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      const next = await events.next();
      if (next.done || next.value.type === "exit") break;
      taken++;
      if (taken % 1000 === 0) await new Promise((r) => setImmediate(r));
    }
    proc.detach();
    const credit = socket.bytesWritten + socket.writableLength - sentAtStart;
    assert.ok(taken > 5000, `${taken} chunks taken`);
    // One 13-byte grant a chunk would be 13 bytes a chunk.
    assert.ok(credit < taken / 10, `${credit} bytes of credit for ${taken} chunks`);
  });

  it("breaks when the sandbox leaves what the host sends unread", async () => {
    const channel = hostile(`time.sleep(30)`);
    const stdin = Buffer.alloc(256 * 1024, "i");
    const procs = [];
    for (let i = 0; i < 24 && channel.unavailable === undefined; i++)
      procs.push(channel.start({ ...spec, stdin }));
    assert.match(String(channel.unavailable), /does not read what it is sent/);
    const socket = (channel as unknown as { socket: Socket }).socket;
    assert.ok(socket.destroyed, "the channel's socket is gone");
    const events = await collect(procs[0]!.events);
    assert.equal(events.at(-1)!.type, "exit");
  });

  it("refuses to start a command whose START frame would pass the frame limit", () => {
    const channel = hostile(`time.sleep(5)`);
    const env = Object.fromEntries(
      Array.from({ length: 64 }, (_, i) => [`V${i}`, "a".repeat(4096)]),
    );
    assert.throws(() => channel.start({ ...spec, env }), /more than 262144 bytes/);
    assert.equal(channel.unavailable, undefined, "the channel still works");
    assert.equal(channel.count, 0);
  });

  it("the real helper answers an error, and lives on, when it cannot start a thread", async () => {
    // Its uid may have two tasks: the helper and one command, no thread for its pipes (as at
    // the session's pids limit). A uid of its own: the limit counts every task of the uid.
    const uid = 60_000 + (process.pid % 5000);
    const helper = path.join(repoRoot, "sandbox/exec_helper.py");
    const child = spawn("prlimit", ["--nproc=2:2", "python3", "-I", "-S", helper, "3"], {
      stdio: ["ignore", "ignore", "inherit", "pipe"],
      uid,
      gid: uid,
    });
    children.push(child);
    const channel = new ExecChannel(child.stdio[3] as Duplex);
    for (let i = 0; i < 2; i++) {
      const events = await collect(
        channel.start({ argv: ["sleep", "5"], env: {}, cwd: "/" }).events,
      );
      assert.match(JSON.stringify(events[0]), /no thread could be started/);
      assert.deepEqual(events.at(-1), { type: "exit", code: 126, signal: null });
    }
    assert.equal(channel.unavailable, undefined, "the helper lives on");
  });

  it("ends every command when the far end goes away", async () => {
    const channel = hostile(`os._exit(0)`);
    const events = await collect(channel.start(spec).events);
    assert.match(JSON.stringify(events[0]), /exec helper is gone/);
    assert.equal(events.at(-1)!.type, "exit");
  });
});

describe("the exec helper's interpreter for Node sandboxes", () => {
  it("is probed: a missing one is named, and then Node sandboxes get no helper", () => {
    assert.equal(probeExecHelper(), undefined, "/usr/bin/python3 is here");
    assert.equal(
      probeExecHelper("/nonexistent/python3"),
      "no /nonexistent/python3 for the exec helper",
    );
  });
});
