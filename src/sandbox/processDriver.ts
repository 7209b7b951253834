import { spawn } from "node:child_process";
import { createServer } from "node:net";
import type { CgroupHost } from "./cgroups.js";
import type { SandboxDriver, SandboxOptions } from "./driver.js";
import { loaderCommand } from "./bwrapDriver.js";
import { SandboxProcess, type HostLayout } from "./sandboxProcess.js";

/**
 * Runs agents as plain child processes: **no isolation** — the agent sees the host's files,
 * network and processes. For development machines without user namespaces only; the service
 * refuses it unless chosen explicitly and warns at every start. It keeps what it can: the
 * sandbox uid, a clean environment, cgroup limits and a provable kill, the home directory as
 * $HOME, and its own TCP port (the host network is shared, so PORT is not 8088).
 */
export class ProcessDriver implements SandboxDriver {
  readonly name = "process";
  readonly isolated = false;

  constructor(
    private readonly host: HostLayout,
    private readonly cgroups: CgroupHost,
  ) {}

  async start(options: SandboxOptions): Promise<SandboxProcess> {
    const { run, cgroup } = await this.host.prepare(this.cgroups, options);
    const listener = await this.host.listen(options.id);
    const [command, ...args] = loaderCommand(options, this.host.file("."), 3);
    const child = spawn(command!, args, {
      cwd: options.appDir,
      env: {},
      uid: options.uid ?? this.host.uid,
      gid: options.uid ?? this.host.uid,
      stdio: ["pipe", "pipe", "pipe", listener.fd],
    });
    listener.release();
    const sandbox = new SandboxProcess(child, options.id, run, cgroup, this.host, {
      app: options.appDir,
      home: options.homeDir,
    });
    sandbox.overrideEnv({ PORT: String(await freePort()) });
    try {
      await cgroup.add(child.pid!);
    } catch (err) {
      await sandbox.stop(0);
      throw err;
    }
    return sandbox;
  }

  sweep(): Promise<number> {
    return this.cgroups.sweep();
  }

  dispose(): Promise<void> {
    return this.cgroups.dispose();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}
