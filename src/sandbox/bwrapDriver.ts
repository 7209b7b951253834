import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { readFile } from "node:fs/promises";
import type { Duplex, Readable, Writable } from "node:stream";
import type { Cgroup, CgroupHost } from "./cgroups.js";
import type {
  OutboundRelay,
  RunOptions,
  RunPaths,
  RunResult,
  SandboxDriver,
  SandboxOptions,
} from "./driver.js";
import { ExecChannel } from "./execChannel.js";
import { superviseRun } from "./oneShot.js";
import { SandboxProcess, type HostLayout } from "./sandboxProcess.js";
import { seccompFilter } from "./seccomp.js";
import { removeTree } from "../trees/agentTree.js";

/** The sandbox's view: only these host paths exist in it, all read-only. */
const systemBinds = ["/usr", "/etc/alternatives", "/etc/ssl", "/etc/ld.so.cache", "/etc/localtime"];

/**
 * bubblewrap sandboxes: every namespace (user, pid, mount, net, ipc, uts, cgroup), no
 * capabilities, no nested user namespaces, a read-only system, the code read-only at /app,
 * the session's home writable at /home/agent, a private /tmp, a clean environment, run as an
 * unprivileged host uid, under a seccomp filter (seccomp.ts). Each sandbox is placed in its
 * own cgroup before any of its code runs (bwrap waits on `--block-fd` until it is), and dies
 * with the service (`--die-with-parent`). bwrap reads its arguments from a pipe (`--args`),
 * so that the sandbox's /proc/1/cmdline shows no host path. The agent's socket is a
 * listening descriptor the host made (HostLayout.listen). With a relay, the sandbox's own
 * outbound socket is bound read-only at `relaySocket`, and the loader serves
 * 127.0.0.1:`relayPort` (in the sandbox's network namespace) through it.
 */
export class BwrapDriver implements SandboxDriver {
  readonly name = "bwrap";
  readonly isolated = true;

  constructor(
    private readonly host: HostLayout,
    private readonly cgroups: CgroupHost,
    private readonly relay?: OutboundRelay,
  ) {}

  /** Why a Node sandbox has no exec helper (no Python to run it), probed once. */
  private readonly nodeExecMissing = probeExecHelper();

  async start(options: SandboxOptions): Promise<SandboxProcess> {
    const noExec = options.language === "python" ? undefined : this.nodeExecMissing;
    const { run, cgroup } = await this.host.prepare(this.cgroups, options);
    const uid = options.uid ?? this.host.uid;
    let relay: { close(): Promise<void> } | undefined;
    let listener: { fd: number; release: () => void };
    try {
      relay = await this.relay?.listen(options.id, this.host.relaySocketOf(options.id), uid);
      listener = await this.host.listen(options.id);
    } catch (err) {
      await relay?.close();
      await cgroup.remove();
      await removeTree(run).catch(() => {});
      throw err;
    }
    const relayBind = relay ? ["--ro-bind", this.host.relaySocketOf(options.id), relaySocket] : [];
    const args = [
      ...sandboxArgs(this.host, options.network),
      ...["--tmpfs", "/tmp"],
      ...["--ro-bind", this.host.file("."), "/opt/agenthost"],
      ...["--ro-bind", options.appDir, "/app"],
      ...["--bind", options.homeDir, "/home/agent"],
      ...["--bind", run, "/run/agent"],
      ...relayBind,
      ...sandboxTail(),
    ];
    // Only the command (sandbox paths) stays on bwrap's command line: bwrap wants it there.
    const command = [
      "--",
      ...loaderCommand(options, "/opt/agenthost", listenerFd, noExec ? undefined : execFd),
    ];
    const child = spawn("bwrap", ["--args", "6", ...command], {
      // bwrap's own process is the sandbox's pid 1, readable there: it gets no environment.
      env: {},
      uid,
      // Every sandbox shares the sandbox group: built code is readable through it (homes are
      // 0700, so it opens no session's files to another).
      gid: this.host.uid,
      // 8: the exec channel (a socket pair; see ExecChannel), its far end for the helper.
      stdio: [
        ...(["pipe", "pipe", "pipe", "pipe", "pipe", "pipe", "pipe"] as const),
        listener.fd,
        noExec ? "ignore" : "pipe",
      ],
    });
    listener.release();
    for (const stream of child.stdio) stream?.on("error", () => {});
    const stdio = child.stdio as unknown as Writable[];
    stdio[5]!.end(seccompFilter());
    stdio[6]!.end(args.map((a) => `${a}\0`).join(""));
    let childPid = 0;
    // The agent is the child of the sandbox's init (bwrap's `child-pid`).
    const agentPids = async () =>
      (await readFile(`/proc/${childPid}/task/${childPid}/children`, "utf8"))
        .split(" ")
        .filter(Boolean)
        .map(Number);
    const paths = { app: "/app", home: "/home/agent" };
    const sandbox = new SandboxProcess(child, options.id, run, cgroup, this.host, paths, agentPids);
    if (noExec) sandbox.noExec(noExec);
    else sandbox.useExec(new ExecChannel((child.stdio as unknown as Duplex[])[8]!));
    if (relay) sandbox.useRelay({ port: relayPort, socket: relaySocket, close: relay.close });
    try {
      childPid = await place(child, cgroup, options.network, (p) => sandbox.holdUntilExit(p));
    } catch (err) {
      await sandbox.stop(0);
      throw err;
    }
    return sandbox;
  }

  /**
   * A one-shot command (a dependency install) behind the same walls as a session: the code
   * directory writable at /app, a scratch home at /home/agent, the host's files for it
   * read-only at /opt/build, a small private /tmp, its own cgroup and limits, and files no
   * larger than `maxFileBytes`. Nothing of it outlives the call.
   */
  async run(options: RunOptions): Promise<RunResult> {
    const cgroup = await this.cgroups.create(`b-${options.id}`);
    await cgroup.setLimits(options.limits);
    const paths: RunPaths = { app: "/app", home: "/home/agent", config: "/opt/build" };
    const args = [
      ...sandboxArgs(this.host, options.network),
      ...["--size", String(64 * 1024 * 1024), "--tmpfs", "/tmp"],
      ...["--ro-bind", options.dirs.config, paths.config],
      ...["--bind", options.dirs.app, paths.app],
      ...["--bind", options.dirs.home, paths.home],
      ...sandboxTail(options.env(paths)),
    ];
    const fsize = `--fsize=${options.maxFileBytes}:${options.maxFileBytes}`;
    const command = ["--args", "6", "--", ...options.argv(paths)];
    const child = spawn("prlimit", [fsize, "--", "bwrap", ...command], {
      env: {},
      uid: this.host.uid,
      gid: this.host.uid,
      stdio: ["ignore", "pipe", "pipe", "pipe", "pipe", "pipe", "pipe"],
    });
    const stdio = child.stdio as unknown as Writable[];
    for (const stream of stdio) stream?.on("error", () => {});
    stdio[5]!.end(seccompFilter());
    stdio[6]!.end(args.map((a) => `${a}\0`).join(""));
    return superviseRun(child, cgroup, options, async (held) => {
      await place(child, cgroup, options.network, (p) => held.push(p));
    });
  }

  sweep(): Promise<number> {
    return this.cgroups.sweep();
  }

  dispose(): Promise<void> {
    return this.cgroups.dispose();
  }
}

/**
 * What every sandbox starts with: every namespace, no capabilities, no nested user
 * namespaces, the read-only system and the sandbox's own /etc files, /proc and /dev.
 */
function sandboxArgs(host: HostLayout, network: "none" | "egress"): string[] {
  return [
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
    "--hostname",
    "sandbox",
    ...systemBinds.flatMap((p) => ["--ro-bind-try", p, p]),
    ...["--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin"],
    ...["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"],
    ...["--ro-bind", host.file("passwd"), "/etc/passwd"],
    ...["--ro-bind", host.file("group"), "/etc/group"],
    ...["--ro-bind", host.file("hosts"), "/etc/hosts"],
    ...["--ro-bind", host.file("nsswitch.conf"), "/etc/nsswitch.conf"],
    ...(network === "egress" ? ["--ro-bind", host.file("resolv.conf"), "/etc/resolv.conf"] : []),
    ...["--proc", "/proc", "--dev", "/dev"],
  ];
}

/**
 * After the mounts: a read-only root, a clean environment (only `env`: bwrap applies
 * --clearenv and --setenv in order), uid 1000, the start handshake.
 */
function sandboxTail(env: Record<string, string> = {}): string[] {
  return [
    // The root itself (bwrap's tmpfs holding the mount points) read-only too.
    ...["--remount-ro", "/"],
    ...["--chdir", "/app", "--clearenv", "--uid", "1000", "--gid", "1000"],
    ...Object.entries(env).flatMap(([k, v]) => ["--setenv", k, v]),
    ...["--info-fd", "3", "--block-fd", "4", "--seccomp", "5"],
  ];
}

/** The descriptor the loader finds its listening socket on, in a bwrap sandbox. */
const listenerFd = 7;
/**
 * The descriptor of the exec channel, handed by the loader to the exec helper before any
 * agent code runs (sandbox/exec_helper.py). Commands of `:exec` are started by that helper,
 * inside the sandbox, rather than by the host entering the sandbox's namespaces (nsenter):
 * being a descendant of the sandbox's own process, the command has every wall of the agent
 * (namespaces, mounts, cgroup, seccomp filter, no capabilities, no new privileges, the uid)
 * by inheritance, while a process entering from outside would have to rebuild each of them
 * by hand, with full capabilities in the sandbox's user namespace until it did; one omission
 * there is an escape.
 */
const execFd = 8;
/** Where a bwrap sandbox sees its outbound socket (read-only: it cannot be moved or replaced). */
const relaySocket = "/run/agenthost/relay.sock";
/** The loopback port in a bwrap sandbox that reaches the service (its own network namespace). */
export const relayPort = 8089;

/** The interpreter command that boots the loader, which accepts on descriptor `listenerFd`. */
export function loaderCommand(
  options: Pick<SandboxOptions, "language" | "interpreter" | "limits" | "preload">,
  loaderDir: string,
  listenerFd: number,
  execFd?: number,
): string[] {
  const preload = [
    ...(options.preload ? ["--preload"] : []),
    ...(execFd !== undefined ? [`--exec-fd=${execFd}`] : []),
  ];
  const fd = String(listenerFd);
  if (options.language === "python")
    return [options.interpreter, "-I", `${loaderDir}/loader.py`, fd, ...preload];
  // V8 only learns the memory limit from a flag; the cgroup stays the hard cap.
  const heapMb = Math.max(16, Math.floor((options.limits.memoryBytes / 1024 / 1024) * 0.75));
  const heap = `--max-old-space-size=${heapMb}`;
  return [options.interpreter, heap, `${loaderDir}/loader.mjs`, fd, ...preload];
}

/**
 * Puts a sandbox still waiting on its block fd into its cgroup (bwrap and the sandbox's init),
 * attaches its network, then lets it go; returns the init's pid. On failure the waiting init,
 * which does not die with its parent, is killed.
 */
async function place(
  child: ChildProcess,
  cgroup: Cgroup,
  network: "none" | "egress",
  hold: (helper: ChildProcess) => void,
): Promise<number> {
  let childPid = 0;
  try {
    childPid = await readChildPid(child);
    await cgroup.add(child.pid!);
    await cgroup.add(childPid);
    if (network === "egress") await attachNetwork(childPid, cgroup.add, hold);
    (child.stdio[4] as Writable).end("go");
    return childPid;
  } catch (err) {
    if (childPid) killQuietly(childPid);
    throw err;
  }
}

/** bwrap writes `{"child-pid": N}` on the info fd once the sandbox's init exists. */
async function readChildPid(child: ChildProcess): Promise<number> {
  const info = child.stdio[3] as Readable;
  let text = "";
  const stderr: Buffer[] = [];
  child.stderr!.on("data", (b: Buffer) => stderr.push(b));
  for await (const chunk of info) {
    text += String(chunk);
    // The number may arrive split over two chunks: wait for the whole object.
    const m = /"child-pid":\s*(\d+)[^}]*}/.exec(text);
    if (m) return Number(m[1]);
  }
  await new Promise((resolve) =>
    child.exitCode === null ? child.once("exit", resolve) : resolve(0),
  );
  throw new Error(
    `bwrap failed: ${Buffer.concat(stderr).toString().trim() || `exit ${child.exitCode}`}`,
  );
}

/**
 * Outbound network for one sandbox: slirp4netns in its network namespace, with the host's
 * loopback out of reach. It exits with the sandbox (its exit fd closes with the sandbox).
 */
async function attachNetwork(
  childPid: number,
  place: (pid: number) => Promise<void>,
  hold: (helper: ChildProcess) => void,
): Promise<void> {
  const slirp = spawn(
    "slirp4netns",
    [
      "--configure",
      "--mtu=65520",
      "--disable-host-loopback",
      "--ready-fd=3",
      "--exit-fd=4",
      // slirp4netns confines itself: its own mount namespace, no capabilities, a seccomp filter.
      "--enable-sandbox",
      "--enable-seccomp",
      "--netns-type=path",
      `/proc/${childPid}/ns/net`,
      "tap0",
    ],
    { env: {}, stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] },
  );
  hold(slirp);
  await place(slirp.pid!);
  const ready = slirp.stdio[3] as Readable;
  const errors: Buffer[] = [];
  slirp.stderr!.on("data", (b: Buffer) => errors.push(b));
  for await (const chunk of ready) if (String(chunk).includes("1")) return;
  throw new Error(`slirp4netns failed: ${Buffer.concat(errors).toString().trim()}`);
}

/** The exec helper's interpreter in a Node sandbox (the host's /usr, read-only). */
export const execHelperPython = "/usr/bin/python3";

/** Why a Node sandbox cannot run the exec helper, or undefined when it can. */
export function probeExecHelper(python = execHelperPython): string | undefined {
  try {
    accessSync(python, constants.X_OK);
    return undefined;
  } catch {
    return `no ${python} for the exec helper`;
  }
}

/**
 * Why bwrap cannot run sandboxes here, or undefined when it can. Runs the smallest sandbox
 * as the sandbox uid, and checks that the uid can reach the data directory.
 */
export function probeBwrap(uid: number, dataDir: string): string | undefined {
  const run = spawnSync(
    "bwrap",
    ["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "/bin/true"],
    { uid, gid: uid, encoding: "utf8", timeout: 10_000 },
  );
  if (run.error && (run.error as NodeJS.ErrnoException).code === "ENOENT")
    return "bubblewrap is not installed (apt-get install bubblewrap)";
  if (run.status !== 0) {
    const why = (run.stderr || String(run.error ?? "")).trim();
    if (/No permissions to create new namespace/.test(why))
      return `user namespaces are not allowed here (${why}); in a container, allow unshare in its seccomp profile`;
    if (/uid map|RTM_NEWADDR/.test(why))
      return `user namespaces are restricted (${why}); on Ubuntu, allow bwrap in AppArmor`;
    return `bwrap failed: ${why}`;
  }
  const reach = spawnSync("/usr/bin/test", ["-x", dataDir], { uid, gid: uid });
  if (reach.status !== 0)
    return `the sandbox user (uid ${uid}) cannot reach the data directory ${dataDir}: give every directory above it o+x, or choose a data directory outside /root`;
  return undefined;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}
