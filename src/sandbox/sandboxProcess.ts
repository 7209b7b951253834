import type { ChildProcess } from "node:child_process";
import { closeSync, readFileSync, readdirSync } from "node:fs";
import { chmod, chown, copyFile, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import path from "node:path";
import type { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { removeTree } from "../trees/agentTree.js";
import type { Cgroup, CgroupHost, Limits } from "./cgroups.js";
import type {
  ExecProcess,
  ExecSpec,
  ExecUnavailable,
  Exit,
  Launch,
  OutputListener,
  Sandbox,
} from "./driver.js";
import type { ExecChannel } from "./execChannel.js";

const loaderSource = fileURLToPath(new URL("../../sandbox/", import.meta.url));
/** Output read before anyone listens; past it the pipes wait for a listener. */
const maxEarlyBytes = 256 * 1024;
/** A Unix socket path must fit in sockaddr_un (108 bytes with its NUL). */
const maxSocketPath = 107;

/**
 * The host side of every sandbox: `<data>/sandbox/files` (the loaders and the few /etc files
 * a sandbox sees), `<data>/sandbox/run/<id>` (the sandbox's writable /run/agent),
 * `<data>/sandbox/sock/<id>` (the agent's socket) and `<data>/sandbox/relay/<id>` (the
 * sandbox's outbound socket). The files are readable by the sandbox uid, nothing is writable
 * by it but its own run directory. The socket the host connects to is created by the host,
 * in a directory only root can enter, and handed to the sandbox as a listening descriptor:
 * the agent can neither see its path nor replace it. The outbound socket, which the host
 * serves, is created by the host in a directory only root may write, connectable by the
 * sandbox's uid alone, and bound read-only into the sandbox.
 */
export class HostLayout {
  private constructor(
    readonly root: string,
    /** Host uid (and gid) the sandboxes run as. */
    readonly uid: number,
    /** Descriptors this process had inherited, closed before any sandbox could inherit them. */
    readonly closedDescriptors: number[] = [],
  ) {}

  static async prepare(root: string, uid: number): Promise<HostLayout> {
    const files = path.join(root, "files");
    const closed = closeInheritedDescriptors();
    await removeTree(path.join(root, "run"));
    await rm(path.join(root, "sock"), { recursive: true, force: true });
    await rm(path.join(root, "relay"), { recursive: true, force: true });
    await mkdir(files, { recursive: true, mode: 0o755 });
    await mkdir(path.join(root, "run"), { recursive: true, mode: 0o711 });
    await mkdir(path.join(root, "sock"), { mode: 0o700 });
    // Traversable by the sandbox uids (bwrap binds a sandbox's socket from here as that uid).
    await mkdir(path.join(root, "relay"), { mode: 0o711 });
    await chmod(root, 0o711);
    for (const loader of ["loader.py", "loader.mjs", "exec_helper.py"])
      await copyFile(path.join(loaderSource, loader), path.join(files, loader));
    await writeFile(
      path.join(files, "passwd"),
      "agent:x:1000:1000:agent:/home/agent:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    );
    await writeFile(path.join(files, "group"), "agent:x:1000:\nnogroup:x:65534:\n");
    // Name lookups of the sandbox itself (e.g. Python's HTTPServer asks for its FQDN) are
    // answered from files, without a DNS round trip.
    await writeFile(path.join(files, "hosts"), "127.0.0.1 localhost sandbox\n::1 localhost\n");
    await writeFile(
      path.join(files, "nsswitch.conf"),
      "passwd: files\ngroup: files\nhosts: files dns\n",
    );
    // slirp4netns answers DNS at 10.0.2.3.
    await writeFile(path.join(files, "resolv.conf"), "nameserver 10.0.2.3\n");
    const layout = new HostLayout(root, uid, closed);
    const longest = `${layout.relaySocketOf("x".repeat(16))}.`;
    if (Buffer.byteLength(longest) > maxSocketPath)
      throw new Error(
        `The data directory path is too long for agent sockets (${longest}); choose a shorter one.`,
      );
    return layout;
  }

  file(name: string): string {
    return path.join(this.root, "files", name);
  }

  socketOf(id: string): string {
    return path.join(this.root, "sock", id);
  }

  /** The host path of a sandbox's outbound socket (served by the host's relay). */
  relaySocketOf(id: string): string {
    return path.join(this.root, "relay", id);
  }

  /**
   * The agent's listening socket, bound at `socketOf(id)`: pass `fd` to the sandbox (spawn's
   * stdio), then `release` the host's own copy at once, so that only the loader accepts.
   */
  async listen(id: string): Promise<{ fd: number; release: () => void }> {
    // Bound under a temporary name and renamed into place: closing the host's copy unlinks
    // the name it was bound to (libuv does), which is then gone already.
    const bound = path.join(this.root, "sock", `.${id}`);
    const server: Server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path: bound, backlog: 256 }, resolve);
    });
    server.on("connection", (socket) => socket.destroy()); // never: nobody knows the name yet
    await rename(bound, this.socketOf(id));
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    return { fd, release: () => server.close() };
  }

  /** A new sandbox's run directory and its cgroup, with the limits set. */
  async prepare(
    cgroups: CgroupHost,
    options: { id: string; limits: Limits; uid?: number },
  ): Promise<{ run: string; cgroup: Cgroup }> {
    const run = await this.makeRunDir(options.id, options.uid ?? this.uid);
    const cgroup = await cgroups.create(`s-${options.id}`);
    await cgroup.setLimits(options.limits);
    return { run, cgroup };
  }

  async makeRunDir(id: string, uid = this.uid): Promise<string> {
    const dir = path.join(this.root, "run", id);
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, uid, uid);
    return dir;
  }
}

/**
 * One running sandbox: a loader process (inside bwrap, or not) in its own cgroup. Its exit is
 * final only once the cgroup is empty and removed.
 */
export class SandboxProcess implements Sandbox {
  readonly socketPath: string;
  readonly exited: Promise<Exit>;
  private listener: OutputListener | undefined;
  private early: ["stdout" | "stderr", Buffer][] = [];
  private earlyBytes = 0;
  /** Reasons the output pipes are paused (a listener's wait, or no listener yet). */
  private holds = 0;
  private done = false;
  private readonly held: ChildProcess[] = [];
  private fixedEnv: Record<string, string> = {};
  private relay: { port: number; socket: string; close(): Promise<void> } | undefined;
  private execChannel: ExecChannel | undefined;

  constructor(
    private readonly child: ChildProcess,
    readonly id: string,
    private readonly runDir: string,
    private readonly cgroup: Cgroup,
    host: HostLayout,
    readonly paths: { app: string; home: string },
    /** The processes that get SIGTERM on stop (the agent, not its supervisors). */
    private readonly agentPids: () => Promise<number[]> = async () => [child.pid!],
  ) {
    this.socketPath = host.socketOf(id);
    for (const stream of ["stdout", "stderr"] as const)
      child[stream]!.on("data", (chunk: Buffer) => this.deliver(stream, chunk));
    child.stdin!.on("error", () => {}); // the loader may be gone before it reads
    this.exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    ).then(async ({ code, signal }) => {
      this.done = true;
      this.execChannel?.close();
      await this.cgroup.killAll();
      if (!this.listener) this.onOutput(() => {}); // nobody will read it: let the pipes end
      // Once nothing holds them, the pipes end: the last output (a traceback) is in.
      await Promise.all(
        [child.stdout!, child.stderr!].map(
          (stream) =>
            new Promise((resolve) =>
              stream.readableEnded || stream.destroyed ? resolve(0) : stream.once("close", resolve),
            ),
        ),
      );
      const oomKilled = (await this.cgroup.oomKills()) > 0;
      for (const p of this.held) p.kill("SIGKILL");
      await this.cgroup.remove();
      await removeTree(this.runDir).catch(() => {}); // an agent's leftovers never fail an exit
      await rm(this.socketPath, { force: true });
      await this.relay?.close().catch(() => {}); // never fails an exit
      return { code, signal, oomKilled };
    });
  }

  onOutput(listener: OutputListener): void {
    const waiting = !this.listener && this.earlyBytes >= maxEarlyBytes;
    this.listener = listener;
    for (const [stream, chunk] of this.early.splice(0)) this.deliver(stream, chunk);
    if (waiting) this.release();
  }

  /**
   * Output to the listener. The pipes are read no faster than it takes them: while a wait it
   * returns is pending (or before there is a listener, past `maxEarlyBytes`) they are paused,
   * so that a flooding agent blocks in its own writes instead of filling the service's memory.
   */
  private deliver(stream: "stdout" | "stderr", chunk: Buffer): void {
    if (!this.listener) {
      this.early.push([stream, chunk]);
      this.earlyBytes += chunk.length;
      if (this.earlyBytes - chunk.length < maxEarlyBytes && this.earlyBytes >= maxEarlyBytes)
        this.hold();
      return;
    }
    const wait = this.listener(stream, chunk);
    if (wait instanceof Promise) {
      this.hold();
      void wait.catch(() => {}).finally(() => this.release());
    }
  }

  private hold(): void {
    if (this.holds++ === 0) for (const s of [this.child.stdout!, this.child.stderr!]) s.pause();
  }

  private release(): void {
    if (--this.holds === 0) for (const s of [this.child.stdout!, this.child.stderr!]) s.resume();
  }

  /** A helper process (e.g. slirp4netns) that lives and dies with this sandbox. */
  holdUntilExit(helper: ChildProcess): void {
    this.held.push(helper);
    helper.on("error", () => {});
  }

  get relayPort(): number | undefined {
    return this.relay?.port;
  }

  /**
   * The sandbox's outbound relay: once launched, the loader listens on 127.0.0.1:`port` and
   * relays each connection to `socket` (the path the sandbox sees); `close` runs at its end.
   */
  useRelay(relay: { port: number; socket: string; close(): Promise<void> }): void {
    this.relay = relay;
  }

  /** The sandbox's exec channel (its helper holds the other end). */
  useExec(channel: ExecChannel): void {
    this.execChannel = channel;
  }

  /** The sandbox has no exec helper, for this reason. */
  noExec(why: string): void {
    this.noExecWhy = why;
  }

  private noExecWhy: string | undefined;

  get execUnavailable(): ExecUnavailable | undefined {
    const unavailable = (message: string) => ({ kind: "unavailable" as const, message });
    if (this.noExecWhy) return unavailable(this.noExecWhy);
    if (!this.execChannel)
      return {
        kind: "unsupported",
        message: "this sandbox driver cannot run commands in a session",
      };
    if (this.done) return unavailable("the sandbox has stopped");
    const why = this.execChannel.unavailable;
    return why === undefined ? undefined : unavailable(why);
  }

  get execCount(): number {
    return this.execChannel?.count ?? 0;
  }

  exec(spec: ExecSpec): ExecProcess {
    const why = this.execUnavailable;
    if (why !== undefined) throw new Error(why.message);
    return this.execChannel!.start(spec);
  }

  /** Environment the driver insists on, whatever the launch asks for. */
  overrideEnv(env: Record<string, string>): void {
    this.fixedEnv = env;
  }

  async launch(launch: Launch): Promise<void> {
    const agentPort = this.fixedEnv.PORT ?? launch.env.PORT;
    if (this.relay && agentPort === String(this.relay.port))
      throw new Error(
        `PORT ${agentPort} is the sandbox's relay to the service; give the agent another port`,
      );
    await this.cgroup.setLimits(launch.limits);
    const spec = {
      ...(this.relay ? { relay: { port: this.relay.port, socket: this.relay.socket } } : {}),
      argv: launch.argv,
      cwd: this.paths.app,
      path: [path.join(this.paths.app, ".python_packages")],
      env: {
        HOME: this.paths.home,
        PATH: "/usr/local/bin:/usr/bin:/bin",
        LANG: "C.UTF-8",
        TZ: "UTC",
        PYTHONUNBUFFERED: "1",
        ...launch.env,
        ...this.fixedEnv,
      },
    };
    (this.child.stdin as Writable).end(`${JSON.stringify(spec)}\n`);
  }

  async stop(graceMs: number): Promise<Exit> {
    if (!this.done && graceMs > 0) {
      for (const pid of await this.agentPids().catch(() => [])) {
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          // gone already
        }
      }
      await Promise.race([this.exited, sleep(graceMs)]);
    }
    if (!this.done) {
      await this.cgroup.killAll();
      this.child.kill("SIGKILL"); // in case it never made it into the cgroup
    }
    return this.exited;
  }
}

/** O_CLOEXEC as /proc/<pid>/fdinfo shows it (octal flags). */
const oCloexec = 0o2000000;

/**
 * Closes every descriptor above stderr that this process inherited without close-on-exec
 * (e.g. `300<file` in the shell that started the service): each would pass through bwrap
 * into every sandbox. Node opens its own descriptors close-on-exec (a fork's IPC channel
 * too). Returns the descriptors closed.
 */
export function closeInheritedDescriptors(): number[] {
  const keep = new Set([0, 1, 2]);
  const closed: number[] = [];
  for (const name of readdirSync("/proc/self/fd")) {
    const fd = Number(name);
    if (keep.has(fd)) continue;
    let flags: number;
    try {
      const info = readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
      flags = parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? "0", 8);
    } catch {
      continue; // the listing's own descriptor, gone by now
    }
    if ((flags & oCloexec) !== 0) continue;
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // closed meanwhile
    }
  }
  return closed;
}
