import type { Limits } from "./cgroups.js";

/** How a sandbox ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The kernel's OOM killer struck in the sandbox's group. */
  oomKilled: boolean;
}

export type Language = "python" | "node";

export interface SandboxOptions {
  /** Short unique id; names the cgroup and the run directory. */
  id: string;
  language: Language;
  /** The interpreter on the host (under /usr, which every sandbox sees read-only). */
  interpreter: string;
  /** Host directory that becomes the agent's writable $HOME (/home/agent). */
  homeDir: string;
  /** Host directory with the agent's code, read-only in the sandbox (/app). */
  appDir: string;
  limits: Limits;
  /** Boot the interpreter with the modules agents use most (for a warm pool). */
  preload?: boolean;
  /** "egress": outbound network through slirp4netns, the host's loopback blocked. */
  network: "none" | "egress";
}

/** What the agent is told to run once its sandbox is up. */
export interface Launch {
  /** Entry point relative to the code directory, e.g. ["main.py"] or ["-m", "app"]. */
  argv: string[];
  env: Record<string, string>;
  limits: Limits;
}

/** Told of each chunk of output; may return a promise, the reading waits for it. */
export type OutputListener = (stream: "stdout" | "stderr", chunk: Buffer) => unknown;

export interface Sandbox {
  readonly id: string;
  /** Host path of the Unix socket that reaches the agent's PORT. */
  readonly socketPath: string;
  /** Where the sandbox sees its code and home. */
  readonly paths: { app: string; home: string };
  /** Settles once, when every process of the sandbox is gone. */
  readonly exited: Promise<Exit>;
  /**
   * The agent's output, as it comes; a warm sandbox has none until it is launched. While a
   * promise the listener returns is pending, nothing more is read (the agent's writes wait).
   */
  onOutput(listener: OutputListener): void;
  /** Starts the agent in the booted interpreter. */
  launch(launch: Launch): Promise<void>;
  /** SIGTERM to the agent, then after `graceMs` a kill of everything left; verified empty. */
  stop(graceMs: number): Promise<Exit>;
}

/** Runs agents. The `bwrap` driver isolates them; the `process` driver does not. */
export interface SandboxDriver {
  readonly name: "bwrap" | "process";
  readonly isolated: boolean;
  /** Boots a sandbox with its interpreter waiting for `launch`. */
  start(options: SandboxOptions): Promise<Sandbox>;
  /** Kills what an earlier run of the service left (after a crash). */
  sweep(): Promise<number>;
  /** After the last sandbox has stopped: removes what the driver keeps on the host. */
  dispose(): Promise<void>;
}
