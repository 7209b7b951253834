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
  /** Host uid (and gid) to run as; the layout's uid when not given. */
  uid?: number;
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
  /**
   * The loopback port in the sandbox that its relay listens on once launched (connections to
   * it reach the service through the sandbox's own socket); undefined without a relay.
   */
  readonly relayPort?: number;
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
  /** Why `exec` cannot run a command in this sandbox, or undefined when it can. */
  readonly execUnavailable: ExecUnavailable | undefined;
  /** Commands running through `exec` now. */
  readonly execCount: number;
  /**
   * Runs a command beside the agent, behind the same walls (namespaces, cgroup, seccomp
   * filter, uid), through the sandbox's exec helper; throws when `execUnavailable`.
   */
  exec(spec: ExecSpec): ExecProcess;
}

/** Where a one-shot command sees its directories (in the sandbox, or host paths unisolated). */
export interface RunPaths {
  /** The writable work directory (the build's code directory), also the working directory. */
  app: string;
  /** A writable scratch directory: $HOME, caches, temporary files. */
  home: string;
  /** Read-only files the host provides for the command (configs, CA bundle). */
  config: string;
}

/** A one-shot command (a dependency install) in a sandbox of its own. */
export interface RunOptions {
  /** Short unique id; names the cgroup. */
  id: string;
  /** Host directories: `app` and `home` writable, `config` read-only. */
  dirs: RunPaths;
  /** The command, its first word an absolute path or a name on PATH. */
  argv: (paths: RunPaths) => string[];
  /** The whole environment of the command (nothing of the host's is added). */
  env: (paths: RunPaths) => Record<string, string>;
  limits: Limits;
  /** Largest file the command may write (RLIMIT_FSIZE). */
  maxFileBytes: number;
  network: "none" | "egress";
  timeoutMs: number;
  /** Aborting kills the command. */
  signal: AbortSignal;
  /** Output as it comes (stdout and stderr together). */
  onOutput(chunk: Buffer): void;
}

export interface RunResult extends Exit {
  /** Killed at `timeoutMs`. */
  timedOut: boolean;
  /** Killed because `signal` was aborted. */
  aborted: boolean;
}

/**
 * The host side of every sandbox's outbound socket: a listening Unix socket per sandbox that
 * only the sandbox's uid may connect to, served by the host, which knows from the socket
 * alone which sandbox a connection comes from.
 */
export interface OutboundRelay {
  /** Serves sandbox `id` on a new socket at `socketPath`, connectable by `uid` only. */
  listen(id: string, socketPath: string, uid: number): Promise<{ close(): Promise<void> }>;
}

/** Runs agents. The `bwrap` driver isolates them; the `process` driver does not. */
export interface SandboxDriver {
  readonly name: "bwrap" | "process";
  readonly isolated: boolean;
  /** Boots a sandbox with its interpreter waiting for `launch`. */
  start(options: SandboxOptions): Promise<Sandbox>;
  /**
   * Runs one command to its end in a sandbox of its own (same walls, uid and cgroup kill as a
   * session); resolves once every process of it is gone.
   */
  run(options: RunOptions): Promise<RunResult>;
  /** Kills what an earlier run of the service left (after a crash). */
  sweep(): Promise<number>;
  /** After the last sandbox has stopped: removes what the driver keeps on the host. */
  dispose(): Promise<void>;
}

export interface ExecSpec {
  argv: string[];
  env: Record<string, string>;
  /** The working directory, as the sandbox sees it. */
  cwd: string;
  stdin?: Buffer;
}

export type ExecEvent =
  | { type: "stdout" | "stderr"; data: Buffer }
  | { type: "error"; message: string }
  | { type: "exit"; code: number | null; signal: string | null };

/** One command running in the sandbox. */
export interface ExecProcess {
  /** Its events in order, the last an `exit`; asking for the next grants the last chunk's credit. */
  events: AsyncIterable<ExecEvent>;
  /** Kills the command's process group (the exit event follows). */
  kill(): void;
  /** Nobody reads `events` any more: what output still comes is dropped. */
  detach(): void;
  /**
   * The sandbox did not confirm the command's end: kills it again and forgets it (it no longer
   * counts as running; whatever comes for it is dropped).
   */
  abandon(): void;
}

/** Why a sandbox runs no commands: its driver cannot (`unsupported`), or not now. */
export interface ExecUnavailable {
  kind: "unsupported" | "unavailable";
  message: string;
}
