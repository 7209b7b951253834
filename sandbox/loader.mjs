// Starts an agent inside its sandbox: the Node twin of loader.py. Waits (booted) for one
// JSON line on stdin — argv, working directory, environment — then serves the agent's PORT
// on the listening Unix socket the host handed it as a descriptor, relays its own loopback
// relay port (when the host gives one) to the host's outbound socket, and imports the entry
// point in this process.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import { createInterface } from "node:readline";
import path from "node:path";
import { setTimeout, clearTimeout } from "node:timers";
import { pathToFileURL } from "node:url";

const listenerFd = Number(process.argv[2]);
// The host's control socket for commands run in this sandbox (`:exec`), when it gives one.
const execArg = process.argv.find((a) => a.startsWith("--exec-fd="));
const execFd = execArg === undefined ? undefined : Number(execArg.slice("--exec-fd=".length));
// Every descriptor without close-on-exec but stdio and the listener came from outside (Node's
// own are close-on-exec): nothing else is ours.
for (const name of fs.readdirSync("/proc/self/fd")) {
  const fd = Number(name);
  if (fd <= 2 || fd === listenerFd || fd === execFd) continue;
  try {
    const flags = /^flags:\s*([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
    if ((parseInt(flags?.[1] ?? "0", 8) & 0o2000000) === 0) fs.closeSync(fd);
  } catch {
    // the listing's own descriptor, closed by now
  }
}
// The exec helper (exec_helper.py, the same for both loaders) starts before any agent code
// runs, with the control socket as its descriptor 3; this process keeps no copy of it.
// Until the helper says (one byte on its descriptor 4) that it is non-dumpable and holds no
// stray descriptor, the agent's code could open its /proc/<pid>/mem: none of it runs before.
// No word in time: no helper.
if (execFd !== undefined) {
  const helper = path.join(path.dirname(new URL(import.meta.url).pathname), "exec_helper.py");
  const child = spawn("/usr/bin/python3", ["-I", "-S", helper, "3", "4"], {
    stdio: ["ignore", "ignore", "ignore", execFd, "pipe"],
  });
  fs.closeSync(execFd);
  const ready = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 5000);
    const done = (ok) => {
      clearTimeout(timer);
      resolve(ok);
    };
    child.on("error", () => done(false)); // no Python here: exec answers that its helper is gone
    const pipe = child.stdio[4];
    if (!pipe) return done(false);
    pipe.once("data", (b) => done(b[0] === 0x31));
    pipe.once("end", () => done(false));
    pipe.once("error", () => done(false));
  });
  child.stdio[4]?.destroy();
  if (!ready) child.kill("SIGKILL");
  child.unref();
}
// A warm sandbox has time to spare: load what agents use most before the agent is known.
if (process.argv.includes("--preload"))
  await Promise.all([import("node:http"), import("node:https")]);

const lines = createInterface({ input: process.stdin });
const [line] = await lines[Symbol.asyncIterator]()
  .next()
  .then((r) => [r.value]);
lines.close();
process.stdin.destroy();
const spec = JSON.parse(line);

for (const key of Object.keys(process.env)) delete process.env[key];
Object.assign(process.env, spec.env);
process.chdir(spec.cwd);

const port = Number(spec.env.PORT ?? 8088);
const forwarder = net.createServer((client) => {
  const upstream = net.connect(port, "127.0.0.1");
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close).pipe(upstream).on("error", close).pipe(client);
});
forwarder.listen({ fd: listenerFd });
forwarder.unref();

// Outbound: 127.0.0.1:relay.port in the sandbox reaches the service through the host's socket.
if (spec.relay) {
  const relay = net.createServer((client) => {
    const upstream = net.connect(spec.relay.socket);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close).pipe(upstream).on("error", close).pipe(client);
  });
  await new Promise((resolve, reject) => {
    relay.once("error", reject);
    relay.listen({ port: spec.relay.port, host: "127.0.0.1" }, resolve);
  });
  relay.unref();
}

const [script, ...args] = spec.argv;
const entry = path.resolve(script);
process.argv = [process.argv[0], entry, ...args];
fs.closeSync(fs.openSync(entry, "r")); // a clear ENOENT before the import's own message
await import(pathToFileURL(entry).href);
