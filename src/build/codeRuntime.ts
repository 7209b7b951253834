import { randomBytes } from "node:crypto";
import {
  chmod,
  chown,
  copyFile,
  lstat,
  mkdir,
  readdir,
  rmdir,
  unlink,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Version } from "../domain/model.js";
import type { AgentRepository, BlobStore, FollowedLog, HostedCode } from "../domain/ports.js";
import type { SessionLog } from "../sessions/sessionLog.js";
import type { Limits } from "../sandbox/cgroups.js";
import type { SandboxDriver } from "../sandbox/driver.js";
import { BuildLogs, endOfBuild, maxInstallOutputBytes, withLastLines } from "./buildLog.js";
import { handOver, seal, treeUsage } from "./buildTree.js";
import {
  configFiles,
  installStep,
  neutralisedFiles,
  type InstallStep,
  type RegistrySettings,
} from "./dependencies.js";
import { removeTree } from "../trees/agentTree.js";
import {
  discoverInterpreters,
  resolveRuntime,
  type Interpreter,
  type RuntimePolicy,
} from "./runtimes.js";
import { unpackZip } from "../trees/unpackZip.js";
import { unpackedBytesOf, type ZipLimits } from "./zipArchive.js";
import { AppError } from "../domain/errors.js";

export interface RunPlan {
  appDir: string;
  /** The version's build log (unpack, runtime, dependency install). */
  buildLog: string;
  language: "python" | "node";
  interpreter: string;
  argv: string[];
}

export interface CodeRuntimeOptions {
  /** `<data>/builds`: one directory per version with `app/` and `build.log`. */
  buildsDir: string;
  runtimePolicy: RuntimePolicy;
  zipLimits: ZipLimits;
  buildTimeoutMs: number;
  /** The sandbox limits of one dependency install (default 1 CPU, 1 GiB, 256 processes). */
  buildLimits?: Limits;
  /** Bytes one version's build directory may take; an install past it is stopped. */
  buildDiskBytes?: number;
  /** How installs reach their registries; a function is asked once, at the first install. */
  registry?: RegistrySettings | (() => Promise<RegistrySettings>);
  /** Host uid (and gid) of the sandboxes: installs run as it; built code is its group's. */
  sandboxUid?: number;
  /** Host directory for the files installs read (default `<buildsDir>/../sandbox/build`). */
  configDir?: string;
  /** Unpacked bytes all the builds of one project may hold together. */
  maxProjectCodeBytes?: number;
  /** Uid the zip is unpacked as (the sandbox uid); unset: the service's own (not root). */
  unpackUid?: number;
  log: Logger;
  interpreters?: Interpreter[];
}

/** How often a running install's build directory is measured. */
const diskPollMs = 1000;

/**
 * Provisioning of code-based hosted versions: unpack the zip into a build directory, resolve
 * the runtime, install dependencies for `remote_build`, then mark the version `active` or
 * `failed` with the reason. Builds run one at a time, in the background.
 */
export class CodeRuntime implements HostedCode {
  private queue: Promise<void> = Promise.resolve();
  /** Aborted on close: a running dependency install is killed, never left behind. */
  private readonly shutdown = new AbortController();
  /** Zips an upload is turning into a version right now: never released meanwhile. */
  private readonly pinned = new Map<string, number>();
  private interpreters: Interpreter[] | undefined;
  private readonly options: Required<
    Omit<CodeRuntimeOptions, "interpreters" | "maxProjectCodeBytes" | "unpackUid">
  > &
    Pick<CodeRuntimeOptions, "maxProjectCodeBytes" | "unpackUid">;
  /** Where dependency installs run, or why they cannot (no sandbox runtime here). */
  private sandbox: SandboxDriver | { unavailable: string } = {
    unavailable: "no sandbox runtime",
  };
  private configReady = false;
  private registrySettings: Promise<RegistrySettings> | undefined;
  /** Bytes each stored zip unpacks to (its central directory read once). */
  private readonly unpackedSizes = new Map<string, number>();
  private readonly logs: BuildLogs;

  constructor(
    private readonly agents: AgentRepository,
    private readonly blobs: BlobStore,
    options: CodeRuntimeOptions,
  ) {
    this.interpreters = options.interpreters;
    this.logs = new BuildLogs((err) => options.log.warn({ err }, "build log not written"));
    this.options = {
      buildLimits: { cpu: 1, memoryBytes: 1024 ** 3, pids: 256 },
      buildDiskBytes: 2 * 1024 ** 3,
      registry: {
        npmRegistry: "https://registry.npmjs.org/",
        caFile: undefined,
        network: "egress",
      },
      sandboxUid: 65534,
      configDir: path.join(options.buildsDir, "..", "sandbox", "build"),
      ...options,
    };
  }

  /** The driver dependency installs run in (the sessions' one), or why there is none. */
  useSandbox(sandbox: SandboxDriver | { unavailable: string }): void {
    this.sandbox = sandbox;
  }

  async has(contentHash: string): Promise<boolean> {
    return /^[0-9a-f]{64}$/.test(contentHash) && (await this.blobs.size(contentHash)) !== undefined;
  }

  provision(version: Version): void {
    if (this.shutdown.signal.aborted) return;
    // Followed from the moment it is queued: a stream opened now waits for its first line.
    const log = this.logs.start(keyOf(version), this.buildLogOf(version));
    if (!log.empty) log.status("building again: the earlier build was interrupted by a restart");
    this.queue = this.queue
      .then(() => this.build(version, log))
      .catch((err: unknown) => {
        this.options.log.error(
          { err, agent: version.agentName, version: version.version },
          "build crashed",
        );
      });
  }

  /** Builds interrupted by a restart start again from scratch. */
  async resumeInterrupted(): Promise<number> {
    const pending = await this.agents.versionsWithStatus("creating");
    for (const v of pending) if (v.contentHash) this.provision(v);
    return pending.length;
  }

  /** Resolves when every build scheduled so far has finished. */
  idle(): Promise<void> {
    return this.queue;
  }

  /**
   * Stops building: a running install is killed and its version stays `creating`, so the
   * next start builds it again. Resolves when no build is running.
   */
  async close(): Promise<void> {
    this.shutdown.abort();
    await this.queue;
    this.logs.close(
      "build interrupted: the service is stopping; it builds again at the next start",
    );
  }

  async discard(versions: Version[]): Promise<void> {
    await this.queue; // never delete under a running build
    for (const v of versions) {
      this.logs.discard(keyOf(v));
      await removeTree(this.dirOf(v));
      // The agent's directory goes with its last build.
      await rmdir(path.dirname(this.dirOf(v))).catch(() => {});
    }
    for (const hash of new Set(versions.map((v) => v.contentHash).filter((h) => h !== null))) {
      await this.releaseIfUnused(hash);
    }
  }

  /** Deletes a stored zip that no version uses and no upload holds. */
  async releaseIfUnused(contentHash: string): Promise<void> {
    if (this.pinned.has(contentHash)) return;
    if ((await this.agents.countContentReferences(contentHash)) === 0) {
      await this.blobs.delete(contentHash);
      this.unpackedSizes.delete(contentHash);
    }
  }

  /**
   * Refuses a build of `bytes` more when the project's builds (one per code-based version,
   * each the size its zip unpacks to) would then exceed `maxProjectCodeBytes`.
   */
  async checkProjectQuota(project: string, bytes: number): Promise<void> {
    const max = this.options.maxProjectCodeBytes;
    if (max === undefined) return;
    let total = bytes;
    for (const hash of await this.agents.projectContentHashes(project)) {
      let size = this.unpackedSizes.get(hash);
      if (size === undefined) {
        size = await unpackedBytesOf(this.blobs.pathOf(hash)).catch(() => 0);
        this.unpackedSizes.set(hash, size);
      }
      total += size;
    }
    if (total > max)
      throw new AppError(
        "project_code_quota_exceeded",
        `The project's versions would unpack to ${total} bytes; the most allowed is ${max}. Delete versions first.`,
        "code",
      );
  }

  /** Holds a zip while an upload turns it into a version; returns the release. */
  pin(contentHash: string): () => void {
    this.pinned.set(contentHash, (this.pinned.get(contentHash) ?? 0) + 1);
    return () => {
      const n = (this.pinned.get(contentHash) ?? 1) - 1;
      if (n === 0) this.pinned.delete(contentHash);
      else this.pinned.set(contentHash, n);
    };
  }

  dirOf(v: Pick<Version, "project" | "agentName" | "version">): string {
    return path.join(this.options.buildsDir, v.project, v.agentName, String(v.version));
  }

  /**
   * How a session runs a built version: its code directory, the interpreter of its runtime
   * and the entry point's arguments (the interpreter word itself dropped).
   */
  runPlan(v: Version): RunPlan | { error: string } {
    const code = v.definition.code_configuration as
      { runtime: string; entry_point: string[] } | undefined;
    if (!code) return { error: "The version has no code_configuration." };
    this.interpreters ??= discoverInterpreters();
    const runtime = resolveRuntime(code.runtime, this.interpreters, this.options.runtimePolicy);
    if ("error" in runtime) return { error: runtime.error };
    const [first, ...rest] = code.entry_point;
    const argv = /^(python[\d.]*|node(js)?)$/.test(path.basename(first!)) ? rest : code.entry_point;
    if (argv.length === 0) return { error: "The entry point names no script." };
    return {
      appDir: path.join(this.dirOf(v), "app"),
      buildLog: this.buildLogOf(v),
      language: runtime.interpreter.language,
      interpreter: runtime.interpreter.path,
      argv,
    };
  }

  /** The interpreters builds resolve to (for the warm pool). */
  knownInterpreters(): Interpreter[] {
    this.interpreters ??= discoverInterpreters();
    return this.interpreters;
  }

  buildLogOf(v: Pick<Version, "project" | "agentName" | "version">): string {
    return path.join(this.dirOf(v), "build.log");
  }

  async followBuild(version: Version): Promise<FollowedLog> {
    const key = keyOf(version);
    // Not being built: the build has ended (its status is recorded before its log lets go).
    const current = this.logs.isLive(key)
      ? version
      : await this.agents.getVersion(version.project, version.agentName, version.version);
    return this.logs.follow(key, this.buildLogOf(version), () => {
      if (!current) return "the version was deleted";
      // `creating` and not building: the service is stopping, or has not resumed it yet.
      return current.status === "creating"
        ? undefined
        : endOfBuild(current.status, current.statusReason);
    });
  }

  private async build(version: Version, log: SessionLog): Promise<void> {
    const key = keyOf(version);
    const dir = this.dirOf(version);
    const appDir = path.join(dir, "app");
    const say = (line: string) => log.status(line);
    const record = async (ok: boolean, code: string, message: string) => {
      // On disk before the status says it ended: a reader from then on reads the file.
      await log.settled();
      await this.agents.setVersionStatus(
        version.project,
        version.agentName,
        version.version,
        ok ? "active" : "failed",
        ok ? null : { code, message: withLastLines(message, log) },
      );
      this.logs.finish(key, endOfBuild(ok ? "active" : "failed", ok ? null : { code }));
    };
    try {
      // What an earlier build left goes, its log excepted (it is this build's log).
      await mkdir(dir, { recursive: true, mode: 0o711 });
      for (const entry of await readdir(dir))
        if (entry !== "build.log") await removeTree(path.join(dir, entry));
      // Traversable, not listable: the sandbox uid reaches `app/`, other users see nothing.
      await chmod(dir, 0o711);
    } catch (err) {
      // Never left `creating`: what an earlier build left that cannot go fails this one.
      const message = `The build directory could not be prepared: ${(err as Error).message}`;
      this.options.log.error({ err, agent: version.agentName, version: version.version }, message);
      say(message);
      await record(false, "build_failed", message);
      return;
    }
    const finish = async (ok: boolean, code: string, message: string) => {
      say(message);
      await record(ok, code, message);
      this.options.log.info(
        { agent: version.agentName, version: version.version, ok, code },
        "build finished",
      );
    };
    try {
      const code = version.definition.code_configuration as {
        runtime: string;
        dependency_resolution?: string;
      };
      say(`unpacking ${version.contentHash}`);
      await unpackZip(
        this.blobs.pathOf(version.contentHash!),
        appDir,
        this.options.zipLimits,
        this.options.unpackUid,
      );
      this.interpreters ??= discoverInterpreters();
      const runtime = resolveRuntime(code.runtime, this.interpreters, this.options.runtimePolicy);
      if ("error" in runtime) {
        await seal(appDir, this.options.sandboxUid);
        return await finish(false, "runtime_unavailable", runtime.error);
      }
      if (runtime.warning) say(`warning: ${runtime.warning}`);
      say(`runtime ${code.runtime} → ${runtime.interpreter.path}`);
      const step =
        code.dependency_resolution === "remote_build"
          ? installStep(appDir, runtime.interpreter, await this.registry())
          : undefined;
      if (code.dependency_resolution === "remote_build" && !step)
        say(
          "remote_build: no requirements.txt, pyproject.toml or package.json; nothing to install",
        );
      if (step) {
        const failure = await this.install(step, dir, appDir, log, say);
        // Interrupted by shutdown: leave the version `creating` for the next start.
        if (failure === "shutdown") {
          say("install stopped: the service is stopping");
          return await log.settled();
        }
        if (failure) return await finish(false, failure.code, failure.message);
      } else {
        await seal(appDir, this.options.sandboxUid);
      }
      await finish(true, "ready", "build succeeded");
    } catch (err) {
      // Whatever was unpacked stays, private to the sandboxes and read-only (if it can be).
      await seal(appDir, this.options.sandboxUid).catch(() => {});
      await finish(false, "build_failed", `The build failed: ${(err as Error).message}`);
    }
  }

  /**
   * Runs a dependency install in a sandbox of its own (see `SandboxDriver.run`) as the
   * sandbox uid, with the code directory its only writable place besides a scratch home,
   * the build directory measured while it runs; then seals the code directory.
   */
  private async install(
    step: InstallStep,
    dir: string,
    appDir: string,
    log: SessionLog,
    say: (line: string) => void,
  ): Promise<{ code: string; message: string } | "shutdown" | undefined> {
    const { sandbox } = this;
    if ("unavailable" in sandbox) {
      await seal(appDir, this.options.sandboxUid);
      return {
        code: "dependency_install_failed",
        message: `Dependency installs run in a sandbox, and sandboxes are unavailable here: ${sandbox.unavailable}.`,
      };
    }
    if (this.shutdown.signal.aborted) return "shutdown";
    const { sandboxUid: uid, buildDiskBytes } = this.options;
    await this.writeConfig();
    for (const name of neutralisedFiles) {
      const file = path.join(appDir, name);
      const st = await lstat(file).catch(() => undefined);
      if (st && !st.isDirectory()) {
        await unlink(file);
        say(`removed ${name} from the code: installs read no configuration of the upload`);
      }
    }
    const home = path.join(dir, "scratch");
    await mkdir(path.join(home, "tmp"), { recursive: true, mode: 0o700 });
    await handOver(home, uid);
    await handOver(appDir, uid);
    say(
      `installing dependencies from ${step.manifest} (sandbox ${sandbox.name}, network ${step.network})`,
    );
    const argv = step.argv({ app: ".", home: "", config: "" });
    say(`$ ${argv.join(" ")}`);
    let logged = 0;
    let dropped = 0;
    const tooBig = new AbortController();
    let usage = 0;
    let unmeasurable: string | undefined;
    // A finished tree that cannot be walked counts as too big.
    const measure = () =>
      treeUsage(dir).catch((err: Error) => {
        unmeasurable = err.message;
        return Infinity;
      });
    const done = new AbortController();
    const watch = (async () => {
      let pause = diskPollMs;
      while (!done.signal.aborted) {
        await sleep(pause, undefined, { signal: done.signal }).catch(() => {});
        if (done.signal.aborted) return;
        const started = Date.now();
        // A walk the install's own renames cut short is not a verdict: the next poll counts.
        usage = await treeUsage(dir).catch(() => usage);
        if (usage > buildDiskBytes) return tooBig.abort();
        // A big tree is walked less often: the walk takes at most a fifth of the time.
        pause = Math.max(diskPollMs, 4 * (Date.now() - started));
      }
    })();
    const result = await sandbox
      .run({
        id: randomBytes(6).toString("hex"),
        dirs: { app: appDir, home, config: this.options.configDir },
        argv: step.argv,
        env: step.env,
        limits: this.options.buildLimits,
        maxFileBytes: buildDiskBytes,
        network: step.network,
        timeoutMs: this.options.buildTimeoutMs,
        signal: AbortSignal.any([this.shutdown.signal, tooBig.signal]),
        // stdout and stderr come as one stream; the log's read rate is not waited for (the
        // install's pipes are read at once), the bytes past the cap are only counted.
        onOutput: (chunk) => {
          if (logged + chunk.length > maxInstallOutputBytes) dropped += chunk.length;
          else {
            logged += chunk.length;
            void log.write("stdout", chunk);
          }
        },
      })
      .finally(() => done.abort());
    await watch;
    log.flush();
    if (dropped > 0) say(`${dropped} bytes of install output dropped (the build log is full)`);
    if (this.shutdown.signal.aborted) return "shutdown";
    await removeTree(home);
    if (!tooBig.signal.aborted && result.code === 0) usage = await measure();
    // (A tree it cannot seal, too deep, fails the version: no session runs it.)
    const unsealed = await seal(appDir, uid).then(
      () => undefined,
      (err: Error) => err.message,
    );
    const limitMiB = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MiB`;
    if (tooBig.signal.aborted || usage > buildDiskBytes) {
      return {
        code: "dependency_install_failed",
        message: unmeasurable
          ? `The install was stopped: ${unmeasurable}.`
          : `The build directory grew past its limit of ${limitMiB(buildDiskBytes)}; the install was stopped.`,
      };
    }
    if (result.timedOut) {
      return {
        code: "build_timeout",
        message: `Dependency install took longer than ${this.options.buildTimeoutMs} ms.`,
      };
    }
    if (result.oomKilled) {
      return {
        code: "dependency_install_failed",
        message: `Installing dependencies from ${step.manifest} ran out of memory (limit ${limitMiB(this.options.buildLimits.memoryBytes)}).`,
      };
    }
    if (result.code !== 0) {
      return {
        code: "dependency_install_failed",
        message: `Installing dependencies from ${step.manifest} failed (exit ${result.code ?? result.signal}).`,
      };
    }
    if (unsealed) {
      return {
        code: "dependency_install_failed",
        message: `The installed code cannot be made read-only: ${unsealed}.`,
      };
    }
    return undefined;
  }

  private registry(): Promise<RegistrySettings> {
    const { registry } = this.options;
    this.registrySettings ??=
      typeof registry === "function" ? registry() : Promise.resolve(registry);
    return this.registrySettings;
  }

  /** The files every install reads: empty npm configs and the registry CA bundle. */
  private async writeConfig(): Promise<void> {
    if (this.configReady) return;
    const dir = this.options.configDir;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await chmod(dir, 0o755);
    await chown(dir, 0, 0);
    for (const empty of [configFiles.userNpmrc, configFiles.globalNpmrc])
      await writeFile(path.join(dir, empty), "", { mode: 0o644 });
    const ca = (await this.registry()).caFile;
    if (ca) {
      await copyFile(ca, path.join(dir, configFiles.ca));
      await chmod(path.join(dir, configFiles.ca), 0o644);
    }
    this.configReady = true;
  }
}

const keyOf = (v: Pick<Version, "project" | "agentName" | "version">) =>
  `${v.project}/${v.agentName}/${v.version}`;
