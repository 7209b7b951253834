// Starts an agent inside its sandbox: the Node twin of loader.py. Waits (booted) for one
// JSON line on stdin — argv, working directory, environment — then serves the agent's PORT
// on the listening Unix socket the host handed it as a descriptor, relays its own loopback
// relay port (when the host gives one) to the host's outbound socket, and imports the entry
// point in this process.
import fs from "node:fs";
import net from "node:net";
import { createInterface } from "node:readline";
import path from "node:path";
import { pathToFileURL } from "node:url";

const listenerFd = Number(process.argv[2]);
// Every descriptor without close-on-exec but stdio and the listener came from outside (Node's
// own are close-on-exec): nothing else is ours.
for (const name of fs.readdirSync("/proc/self/fd")) {
  const fd = Number(name);
  if (fd <= 2 || fd === listenerFd) continue;
  try {
    const flags = /^flags:\s*([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
    if ((parseInt(flags?.[1] ?? "0", 8) & 0o2000000) === 0) fs.closeSync(fd);
  } catch {
    // the listing's own descriptor, closed by now
  }
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
