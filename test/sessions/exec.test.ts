import assert from "node:assert/strict";
import { readFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import type { ClientRequest, IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, VersionRefIndicator } from "@azure/ai-projects";
import { deployFixture } from "../helpers/agents.js";
import {
  expectRestError as refused,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";

/*
 * `POST …/sessions/{id}:exec` on real bwrap sandboxes (fixtures exec-target and
 * exec-target-node): output streamed as SSE while the command runs, stdout and stderr apart,
 * the exit code; the command is behind the agent's walls (same uid, home, cgroup, namespaces,
 * seccomp filter, checked from the host's /proc); the timeout and a caller that goes away
 * kill it; the output is cut at its cap; another identity, a bad body and a stopped session
 * are refused; the session's log has a line for each exec.
 */

const v = (n: string): VersionRefIndicator => ({ type: "version_ref", agent_version: n });

let server: TestServer;
let client: AIProjectClient;
const agent = `exec-${process.pid}`;
const nodeAgent = `exec-node-${process.pid}`;
let unique = 0;
/** In the commands' sleeps: each run's commands are told apart on the host by it. */
const runTag = process.pid;

before(async () => {
  server = await startServer();
  client = sdk(server, server.adminKey);
  await deployFixture(client, agent, "exec-target");
  await deployFixture(client, nodeAgent, "exec-target-node");
});

after(async () => {
  await server?.stop();
  removeDir(server.dataDir);
});

async function liveSession(name = agent): Promise<string> {
  const id = (
    await client.agents.createSession(name, v("1"), {
      agentSessionId: `exec-${++unique}-${process.pid}`,
    })
  ).agent_session_id;
  for (let i = 0; i < 400; i++) {
    const s = await client.agents.getSession(name, id);
    if (s.status === "active") return id;
    assert.equal(s.status, "creating", JSON.stringify(s));
    await sleep(25);
  }
  assert.fail("the session did not become active");
}

interface ExecEvent {
  event: string;
  data: Record<string, unknown>;
  at: number;
}

interface ExecCall {
  status: number;
  events: ExecEvent[];
  /** The JSON body of a refusal. */
  error?: { code: string; param?: string; message: string };
  ended: Promise<void>;
  req: ClientRequest;
  res: IncomingMessage;
}

/** POST :exec, its SSE events collected as they arrive. */
function exec(id: string, body: unknown, options: { key?: string; name?: string } = {}) {
  const url = `${server.endpoint}/agents/${options.name ?? agent}/endpoint/sessions/${id}:exec?api-version=v1`;
  return new Promise<ExecCall>((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: "POST",
        ca: server.caPem,
        // A connection of its own: a pooled one may be closing at the server's keep-alive end.
        agent: false,
        headers: {
          authorization: `Bearer ${options.key ?? server.adminKey}`,
          "content-type": "application/json",
        },
      },
      (res) => {
        const call = { status: res.statusCode ?? 0, events: [], req, res } as unknown as ExecCall;
        let text = "";
        call.ended = new Promise((done) => {
          res.on("data", (chunk: Buffer) => {
            text += chunk.toString();
            if (call.status !== 200) return;
            const blocks = text.split("\n\n");
            text = blocks.pop()!;
            for (const block of blocks) {
              const event = /^event: (.*)$/m.exec(block)?.[1];
              const data = /^data: (.*)$/m.exec(block)?.[1];
              if (event && data)
                call.events.push({ event, data: JSON.parse(data), at: Date.now() });
            }
          });
          res.on("end", () => {
            if (call.status !== 200)
              call.error = (JSON.parse(text) as { error: ExecCall["error"] }).error;
            done();
          });
          res.on("close", done);
        });
        resolve(call);
      },
    );
    req.on("error", reject);
    req.end(typeof body === "string" ? body : JSON.stringify(body));
  });
}

/** Runs a command to its end: its stdout, stderr, exit event and all events. */
async function run(id: string, body: unknown, options: { key?: string; name?: string } = {}) {
  const call = await exec(id, body, options);
  await call.ended;
  const text = (stream: string) =>
    call.events
      .filter((e) => e.event === stream)
      .map((e) => e.data.data)
      .join("");
  const exit = call.events.find((e) => e.event === "exit")?.data;
  return { ...call, stdout: text("stdout"), stderr: text("stderr"), exit };
}

/** Host pids whose command line is exactly `argv` (NUL-separated). */
function hostPids(argv: string[]): number[] {
  const want = `${argv.join("\0")}\0`;
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8") === want) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The host pid of the session's agent (its loader, run as the home's owner). */
function agentPid(uid: number): number {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
      const owner = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${name}/status`, "utf8"))?.[1];
      // The interpreter running the loader (not bwrap, whose command line names it too).
      const [program] = cmd.split("\0");
      if (cmd.includes("loader.py") && !program!.endsWith("bwrap") && Number(owner) === uid)
        return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  assert.fail(`no agent process of uid ${uid}`);
}

async function waitFor<T>(what: string, check: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const homeOf = (id: string, name = agent) =>
  path.join(server.dataDir, "sessions/default", name, id, "home");

/** The session's console as its log stream sends it now (the history), status lines included. */
async function logLines(id: string): Promise<{ stream: string; message: string }[]> {
  const res = await client.agents.getSessionLogStream(agent, "1", id); // an admin sees all
  const body = res.readableStreamBody!;
  const lines: { stream: string; message: string }[] = [];
  let text = "";
  body.on("data", (chunk: Buffer) => {
    text += chunk.toString();
    const blocks = text.split("\n\n");
    text = blocks.pop()!;
    for (const block of blocks) {
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (data) lines.push(JSON.parse(data));
    }
  });
  await sleep(500);
  (body as unknown as { destroy(): void }).destroy();
  return lines;
}

describe("exec into a session", () => {
  let id: string;
  before(async () => {
    id = await liveSession();
  });

  it("streams output as it comes: a line arrives before the command ends", async () => {
    const started = Date.now();
    const r = await run(id, { command: ["sh", "-c", "echo first; sleep 1.5; echo second"] });
    assert.equal(r.status, 200);
    assert.match(String(r.res.headers["content-type"]), /^text\/event-stream/);
    assert.deepEqual(r.events[0]!.data, {
      command: ["sh", "-c", "echo first; sleep 1.5; echo second"],
      timeout_seconds: 60,
    });
    assert.equal(r.events[0]!.event, "started");
    const first = r.events.find((e) => e.event === "stdout" && e.data.data === "first\n");
    const exit = r.events.find((e) => e.event === "exit")!;
    assert.ok(first, JSON.stringify(r.events));
    assert.ok(
      exit.at - first.at >= 1000,
      `first line ${first.at - started} ms, exit ${exit.at - started} ms`,
    );
    assert.equal(r.stdout, "first\nsecond\n");
    assert.equal(r.exit!.code, 0);
    assert.equal(r.exit!.timed_out, false);
  });

  it("tells stdout from stderr and reports the exit code; stdin and env reach the command", async () => {
    const r = await run(id, {
      command: ["sh", "-c", 'echo out; echo err >&2; read line; echo "got $line $FOO"; exit 3'],
      stdin: "hello\n",
      env: { FOO: "bar" },
    });
    assert.equal(r.stdout, "out\ngot hello bar\n");
    assert.equal(r.stderr, "err\n");
    assert.deepEqual(
      { code: r.exit!.code, signal: r.exit!.signal, timed_out: r.exit!.timed_out },
      { code: 3, signal: null, timed_out: false },
    );
  });

  it("answers a missing program with an error event and exit 127", async () => {
    const r = await run(id, { command: ["no-such-program-here"] });
    assert.equal(r.status, 200);
    const error = r.events.find((e) => e.event === "error");
    assert.match(String(error?.data.message), /No such file or directory/);
    assert.equal(r.exit!.code, 127);
  });

  it("runs as the session's uid in its home, and sees what the agent wrote", async () => {
    const r = await run(id, { command: ["sh", "-c", "id -u; pwd; cat agent-wrote.txt"] });
    assert.equal(r.exit!.code, 0, r.stderr);
    const [uid, cwd, wrote] = r.stdout.split("\n");
    assert.equal(uid, "1000");
    assert.equal(cwd, "/home/agent");
    assert.match(wrote!, /^written by the agent, pid \d+$/);
    // And a file the command writes is the agent's (the home's owner on the host).
    const w = await run(id, { command: ["sh", "-c", "echo from-exec > from-exec.txt"] });
    assert.equal(w.exit!.code, 0);
    const home = homeOf(id);
    assert.equal(statSync(path.join(home, "from-exec.txt")).uid, statSync(home).uid);
  });

  it("is behind the agent's walls: same cgroup and namespaces, seccomp, no capabilities", async () => {
    const call = await exec(id, { command: ["sh", "-c", `echo ready; exec sleep 23.${runTag}`] });
    await waitFor("the command's first line", () =>
      call.events.some((e) => e.event === "stdout") ? true : undefined,
    );
    const [pid] = await waitFor("the command on the host", () => {
      const p = hostPids(["sleep", `23.${runTag}`]);
      return p.length ? p : undefined;
    });
    const uid = statSync(homeOf(id)).uid;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    assert.equal(Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]), uid, "the session's host uid");
    assert.match(status, /^Seccomp:\s+2$/m);
    assert.match(status, /^NoNewPrivs:\s+1$/m);
    assert.match(status, /^CapEff:\s+0+$/m);
    const agentProc = agentPid(uid);
    assert.equal(
      readFileSync(`/proc/${pid}/cgroup`, "utf8"),
      readFileSync(`/proc/${agentProc}/cgroup`, "utf8"),
      "the agent's cgroups",
    );
    assert.match(readFileSync(`/proc/${pid}/cgroup`, "utf8"), /s-/);
    for (const ns of ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"])
      assert.equal(
        readlinkSync(`/proc/${pid}/ns/${ns}`),
        readlinkSync(`/proc/${agentProc}/ns/${ns}`),
        `the agent's ${ns} namespace`,
      );
    call.req.destroy();
    await call.ended;
    // Nested namespaces are refused by the filter.
    const u = await run(id, { command: ["unshare", "-U", "true"] });
    assert.notEqual(u.exit!.code, 0);
    assert.match(u.stderr, /Operation not permitted/);
  });

  it("kills the command at its timeout, and says so", async () => {
    const started = Date.now();
    const r = await run(id, { command: ["sleep", `31.${runTag}`], timeout_seconds: 1 });
    const took = Date.now() - started;
    // A silent command's stream opens at once, with its `started` event.
    assert.equal(r.events[0]!.event, "started");
    assert.ok(r.events[0]!.at - started < 900, `started after ${r.events[0]!.at - started} ms`);
    assert.equal(r.exit!.timed_out, true);
    assert.equal(r.exit!.signal, "SIGKILL");
    assert.equal(r.exit!.code, null);
    assert.ok(took >= 900 && took < 5000, `${took} ms`);
    assert.deepEqual(hostPids(["sleep", `31.${runTag}`]), [], "nothing of it is left");
  });

  it("kills the command when the caller goes away", async () => {
    const call = await exec(id, { command: ["sh", "-c", `echo go; exec sleep 32.${runTag}`] });
    await waitFor("the first line", () =>
      call.events.some((e) => e.event === "stdout") ? true : undefined,
    );
    await waitFor("the command on the host", () =>
      hostPids(["sleep", `32.${runTag}`]).length ? true : undefined,
    );
    call.req.destroy();
    await waitFor("the command's end", () =>
      hostPids(["sleep", `32.${runTag}`]).length === 0 ? true : undefined,
    );
    const lines = await logLines(id);
    assert.ok(
      lines.some(
        (l) => l.stream === "status" && /ended \(killed: the caller went away/.test(l.message),
      ),
      JSON.stringify(lines.slice(-5)),
    );
  });

  it("cuts the output at 4 MiB with a note, and kills the command there", async () => {
    const started = Date.now();
    const r = await run(id, {
      command: ["sh", "-c", `yes a; sleep 33.${runTag}`],
      timeout_seconds: 60,
    });
    assert.equal(Buffer.byteLength(r.stdout), 4 * 1024 * 1024);
    assert.ok(
      r.events.some(
        (e) => e.event === "note" && /Output cut at 4194304 bytes/.test(String(e.data.message)),
      ),
    );
    assert.equal(r.exit!.output_truncated, true);
    assert.equal(r.exit!.timed_out, false);
    assert.equal(r.exit!.signal, "SIGKILL");
    assert.ok(Date.now() - started < 20_000, "it did not run on to its timeout");
    assert.deepEqual(hostPids(["sleep", `33.${runTag}`]), [], "nothing of it is left");
  });

  it("gives a slow caller every byte: output waits for it, even past the command's exit", async () => {
    const call = await exec(id, {
      command: ["sh", "-c", "head -c 2000000 /dev/zero | tr '\\0' b; echo end >&2"],
    });
    call.res.pause();
    await sleep(1500); // the command has exited meanwhile, its last output still in its pipe
    call.res.resume();
    await call.ended;
    const out = call.events
      .filter((e) => e.event === "stdout")
      .map((e) => e.data.data)
      .join("");
    assert.equal(out.length, 2_000_000);
    assert.ok(/^b+$/.test(out));
    assert.equal(call.events.at(-1)!.event, "exit");
    assert.equal(call.events.at(-1)!.data.code, 0);
  });

  it("writes who ran which command and how it ended in the session's log", async () => {
    await run(id, { command: ["sh", "-c", "exit 7", "log-marker"] });
    const lines = (await logLines(id)).filter((l) => l.stream === "status");
    const start = lines.find((l) => l.message.includes("log-marker") && !/ended/.test(l.message));
    const end = lines.find((l) => l.message.includes("log-marker") && /ended/.test(l.message));
    assert.ok(start && end, JSON.stringify(lines.slice(-6)));
    assert.match(start.message, /^exec by \S+: \["sh","-c","exit 7","log-marker"\]$/);
    assert.match(end.message, /^exec by \S+ ended \(exit 7, [\d.]+ s\): /);
  });

  it("refuses a bad body with a 400 naming the field", async () => {
    const bigEnv = Object.fromEntries(
      Array.from({ length: 64 }, (_, i) => [`V${i}`, "a".repeat(4096)]),
    );
    const cases: [unknown, string, string][] = [
      [{}, "command", "missing_parameter"],
      [{ command: [] }, "command", "invalid_parameter"],
      [{ command: "ls" }, "command", "invalid_parameter"],
      [{ command: ["a\u0000b"] }, "command[0]", "invalid_parameter"],
      [{ command: ["x".repeat(70_000)] }, "command[0]", "invalid_parameter"],
      [{ command: Array(300).fill("x") }, "command", "invalid_parameter"],
      [{ command: ["ls"], timeout_seconds: 601 }, "timeout_seconds", "invalid_parameter"],
      [{ command: ["ls"], timeout_seconds: 0 }, "timeout_seconds", "invalid_parameter"],
      [{ command: ["ls"], env: { "1A": "x" } }, "env.1A", "invalid_parameter"],
      [{ command: ["ls"], stdin: 5 }, "stdin", "invalid_parameter"],
      // Each within its own bounds, too large together (or as JSON) for the helper's frame.
      [{ command: ["ls"], env: bigEnv }, "env", "invalid_parameter"],
      [{ command: ["\u0001".repeat(60_000)] }, "command", "invalid_parameter"],
    ];
    for (const [body, param, code] of cases) {
      const r = await run(id, body);
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
      assert.equal(r.error!.code, code, r.error!.message);
      assert.equal(r.error!.param, param, r.error!.message);
    }
    const extra = await run(id, { command: ["ls"], shell: true });
    assert.equal(extra.status, 400);
    assert.match(extra.error!.message, /shell/);
    // The largest environment allowed reaches the command, and the helper lives on.
    const most = Object.fromEntries(
      Array.from({ length: 58 }, (_, i) => [`V${i}`, "a".repeat(4096)]),
    );
    const ok = await run(id, { command: ["sh", "-c", 'printf %s "$V57" | wc -c'], env: most });
    assert.equal(ok.stdout.trim(), "4096", JSON.stringify(ok.events.slice(0, 3)));
    assert.equal((await run(id, { command: ["true"] })).exit!.code, 0);
  });

  it("lets the owner run commands, refuses another identity (403) and an unknown session (404)", async () => {
    const key = async (name: string) => {
      const r = await httpsJson(server, "POST", `${server.origin}/admin/keys`, {
        headers: { authorization: `Bearer ${server.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ project: "default", name }),
      });
      return (r.body as { key: string }).key;
    };
    const alice = await key(`alice-${process.pid}`);
    const bob = await key(`bob-${process.pid}`);
    const aliceClient = sdk(server, alice);
    const hers = (await aliceClient.agents.createSession(agent, v("1"))).agent_session_id;
    for (let i = 0; i < 400; i++) {
      if ((await aliceClient.agents.getSession(agent, hers)).status === "active") break;
      await sleep(25);
    }
    const own = await run(hers, { command: ["echo", "hers"] }, { key: alice });
    assert.equal(own.status, 200, "the owner may");
    assert.equal(own.stdout, "hers\n");
    for (const session of [hers, id]) {
      const r = await run(session, { command: ["id"] }, { key: session === hers ? bob : alice });
      assert.equal(r.status, 403);
      assert.equal(r.error!.code, "session_not_accessible");
    }
    const lines = (await logLines(hers)).filter((l) => l.stream === "status");
    assert.ok(
      lines.some((l) => l.message.startsWith("exec by key_") && l.message.includes("hers")),
      "the log names the owner's identity",
    );
    const missing = await run("sess_nope_0000", { command: ["id"] });
    assert.equal(missing.status, 404);
    assert.equal(missing.error!.code, "not_found");
  });

  it("is refused from inside a sandbox (401), even with an admin key", async () => {
    // From a command in the session: the service through the sandbox's relay port (the one
    // loopback listener that is not the agent's).
    const script = `
import json, os, urllib.error, urllib.request
ports = set()
for line in open("/proc/net/tcp").readlines()[1:]:
    local, state = line.split()[1], line.split()[3]
    if state == "0A" and local.startswith("0100007F:"):
        ports.add(int(local.split(":")[1], 16))
ports.discard(8088)
for port in sorted(ports):
    url = f"http://127.0.0.1:{port}/api/projects/default/agents/${agent}/endpoint/sessions/${id}:exec?api-version=v1"
    for key in (os.environ["ADMIN_KEY"], "not-a-token"):
        req = urllib.request.Request(url, data=b'{"command": ["true"]}', headers={
            "authorization": "Bearer " + key, "content-type": "application/json"})
        try:
            print(urllib.request.urlopen(req, timeout=10).status)
        except urllib.error.HTTPError as err:
            print(err.code, json.loads(err.read())["error"]["code"])
`;
    const r = await run(id, {
      command: ["python3", "-c", script],
      env: { ADMIN_KEY: server.adminKey },
    });
    assert.equal(r.exit!.code, 0, r.stderr);
    assert.equal(r.stdout, "401 unauthorized\n401 unauthorized\n");
  });

  it("answers 409 for a session that is not running, and does not start it", async () => {
    const other = await liveSession();
    await client.agents.stopSession(agent, other);
    const r = await run(other, { command: ["id"] });
    assert.equal(r.status, 409);
    assert.equal(r.error!.code, "session_not_running");
    assert.equal(r.error!.param, "agent_session_id");
    assert.notEqual((await client.agents.getSession(agent, other)).status, "active");
    await refused(client.agents.getSession(agent, "sess_nope_0001"), 404, "not_found");
  });

  it("ends the stream when the agent kills the exec helper, then answers 409 exec_unavailable", async () => {
    const other = await liveSession();
    const started = Date.now();
    // The command's parent is the helper: the same uid may kill it, as the agent could.
    const r = await run(other, { command: ["sh", "-c", "kill -9 $PPID; sleep 2.5"] });
    assert.ok(Date.now() - started < 2000, "the stream ended without waiting for the command");
    const error = r.events.find((e) => e.event === "error");
    assert.match(String(error?.data.message), /exec helper is gone/);
    assert.deepEqual({ code: r.exit!.code, signal: r.exit!.signal }, { code: null, signal: null });
    const again = await run(other, { command: ["true"] });
    assert.equal(again.status, 409);
    assert.equal(again.error!.code, "exec_unavailable");
    // The agent itself is unharmed.
    assert.equal((await client.agents.getSession(agent, other)).status, "active");
  });

  it("ends the stream at timeout + 5 s when the agent has frozen the exec helper", async () => {
    const other = await liveSession();
    const started = Date.now();
    const calls = [
      run(other, {
        command: ["sh", "-c", `kill -STOP $PPID; sleep 35.${runTag}`],
        timeout_seconds: 1,
      }),
      // Three more, never confirmed either: the session's four.
      ...[1, 2, 3].map(() => run(other, { command: ["sleep", "1"], timeout_seconds: 1 })),
    ];
    const [r] = await Promise.all(calls);
    const took = Date.now() - started;
    assert.ok(took >= 5500 && took < 9000, `${took} ms`);
    const error = r!.events.find((e) => e.event === "error");
    assert.match(String(error?.data.message), /did not confirm/);
    assert.equal(r!.exit!.timed_out, true);
    // Given up on, they no longer count against the session's four.
    const fifth = await exec(other, { command: ["true"], timeout_seconds: 1 });
    assert.equal(fifth.status, 200, JSON.stringify(fifth.error));
    fifth.req.destroy();
    await client.agents.stopSession(agent, other);
    assert.deepEqual(hostPids(["sleep", `35.${runTag}`]), [], "the session's stop took it");
  });

  it("reports the exit within 5 s when a process that left the group keeps writing", async () => {
    const started = Date.now();
    const r = await run(id, {
      command: [
        "sh",
        "-c",
        `setsid sh -c 'while :; do echo tick; sleep 0.05; done; : 36.${runTag}' & sleep 0.3; echo started`,
      ],
    });
    const took = Date.now() - started;
    try {
      assert.equal(r.exit!.code, 0);
      assert.match(r.stdout, /started/);
      assert.ok(took < 8000, `${took} ms`);
      // A second such command is not held up either.
      const again = await run(id, { command: ["echo", "again"] });
      assert.equal(again.stdout, "again\n");
    } finally {
      for (const pid of hostPids([
        "sh",
        "-c",
        `while :; do echo tick; sleep 0.05; done; : 36.${runTag}`,
      ]))
        process.kill(pid, "SIGKILL");
    }
  });

  it("ends the stream when the session stops under a running command", async () => {
    const other = await liveSession();
    const call = await exec(other, { command: ["sh", "-c", `echo up; exec sleep 34.${runTag}`] });
    await waitFor("the first line", () =>
      call.events.some((e) => e.event === "stdout") ? true : undefined,
    );
    await client.agents.stopSession(agent, other);
    await call.ended;
    assert.equal(call.events.at(-1)!.event, "exit");
    assert.deepEqual(hostPids(["sleep", `34.${runTag}`]), []);
  });

  it("runs in a Node agent's sandbox too", async () => {
    const nid = await liveSession(nodeAgent);
    const r = await run(
      nid,
      { command: ["sh", "-c", "id -u; cat agent-wrote.txt"] },
      {
        name: nodeAgent,
      },
    );
    assert.equal(r.exit!.code, 0, r.stderr);
    assert.match(r.stdout, /^1000\nnode agent, pid \d+\n$/);
  });
});

describe("exec with the process driver (development only)", () => {
  it("refuses with 501 sandbox_unavailable, naming the driver", async () => {
    const plain = await startServer({ env: { AGENTHOST_SANDBOX_DRIVER: "process" } });
    try {
      const plainClient = sdk(plain, plain.adminKey);
      const name = `exec-plain-${process.pid}`;
      await deployFixture(plainClient, name, "exec-target");
      const sid = (await plainClient.agents.createSession(name, v("1"))).agent_session_id;
      for (let i = 0; i < 400; i++) {
        if ((await plainClient.agents.getSession(name, sid)).status === "active") break;
        await sleep(25);
      }
      const r = await httpsJson(
        plain,
        "POST",
        `${plain.endpoint}/agents/${name}/endpoint/sessions/${sid}:exec?api-version=v1`,
        {
          headers: {
            authorization: `Bearer ${plain.adminKey}`,
            "content-type": "application/json",
          },
          body: JSON.stringify({ command: ["id"] }),
        },
      );
      assert.equal(
        r.status,
        501,
        JSON.stringify([r.body, await plainClient.agents.getSession(name, sid)]),
      );
      const error = r.body.error as { code: string; message: string };
      assert.equal(error.code, "sandbox_unavailable");
      assert.match(error.message, /driver cannot run commands/);
    } finally {
      await plain.stop();
      removeDir(plain.dataDir);
    }
  });
});
