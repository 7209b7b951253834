import { spawn } from "node:child_process";
import { createServer } from "node:net";
import type { CgroupHost } from "./cgroups.js";
import type {
  OutboundRelay,
  RunOptions,
  RunResult,
  SandboxDriver,
  SandboxOptions,
} from "./driver.js";
import { loaderCommand } from "./bwrapDriver.js";
import { superviseRun } from "./oneShot.js";
import { SandboxProcess, type HostLayout } from "./sandboxProcess.js";

/**
 * Runs agents as plain child processes: **no isolation** — the agent sees the host's files,
 * network and processes. For development machines without user namespaces only; the service
 * refuses it unless chosen explicitly and warns at every start. It keeps what it can: the
 * sandbox uid, a clean environment, cgroup limits and a provable kill, the home directory as
 * $HOME, and its own TCP port (the host network is shared, so PORT is not 8088); its relay
 * port is a free one of the host's loopback too.
 */
export class ProcessDriver implements SandboxDriver {
  readonly name = "process";
  readonly isolated = false;

  constructor(
    private readonly host: HostLayout,
    private readonly cgroups: CgroupHost,
    private readonly relay?: OutboundRelay,
  ) {}

  async start(options: SandboxOptions): Promise<SandboxProcess> {
    const { run, cgroup } = await this.host.prepare(this.cgroups, options);
    const uid = options.uid ?? this.host.uid;
    const socket = this.host.relaySocketOf(options.id);
    const relay = await this.relay?.listen(options.id, socket, uid);
    // Two ports at once, so the agent's and the relay's are never the same.
    const [agentPort = 0, relayPort = 0] = await freePorts(2);
    const listener = await this.host.listen(options.id);
    const [command, ...args] = loaderCommand(options, this.host.file("."), 3);
    const child = spawn(command!, args, {
      cwd: options.appDir,
      env: {},
      uid,
      // Every sandbox shares the sandbox group: built code is readable through it (homes are
      // 0700, so it opens no session's files to another).
      gid: this.host.uid,
      stdio: ["pipe", "pipe", "pipe", listener.fd],
    });
    listener.release();
    const sandbox = new SandboxProcess(child, options.id, run, cgroup, this.host, {
      app: options.appDir,
      home: options.homeDir,
    });
    if (relay) sandbox.useRelay({ port: relayPort, socket, close: relay.close });
    sandbox.overrideEnv({ PORT: String(agentPort) });
    try {
      await cgroup.add(child.pid!);
    } catch (err) {
      await sandbox.stop(0);
      throw err;
    }
    return sandbox;
  }

  /**
   * A one-shot command on the host, unisolated: as the sandbox uid, with only the given
   * environment, in its own cgroup (joined before the command runs: a shell waits for the
   * word on its stdin), files no larger than `maxFileBytes`.
   */
  async run(options: RunOptions): Promise<RunResult> {
    const cgroup = await this.cgroups.create(`b-${options.id}`);
    await cgroup.setLimits(options.limits);
    const fsize = `--fsize=${options.maxFileBytes}:${options.maxFileBytes}`;
    const argv = options.argv(options.dirs);
    const child = spawn(
      "prlimit",
      [fsize, "--", "/bin/sh", "-c", 'read -r _ && exec "$@"', "sh", ...argv],
      {
        cwd: options.dirs.app,
        env: options.env(options.dirs),
        uid: this.host.uid,
        gid: this.host.uid,
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    return superviseRun(child, cgroup, options, async () => {
      await cgroup.add(child.pid!);
      child.stdin!.end("go\n");
    });
  }

  sweep(): Promise<number> {
    return this.cgroups.sweep();
  }

  dispose(): Promise<void> {
    return this.cgroups.dispose();
  }
}

/** `n` distinct free ports of the host's loopback (all held until each is known). */
async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.once("error", reject);
            server.listen(0, "127.0.0.1", () => {
              const address = server.address();
              resolve(typeof address === "object" && address ? address.port : 0);
            });
          }),
      ),
    );
  } finally {
    await Promise.all(
      servers.map((s) => new Promise((resolve) => (s.listening ? s.close(resolve) : resolve(0)))),
    );
  }
}
