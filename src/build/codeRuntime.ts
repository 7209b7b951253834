import { createWriteStream } from "node:fs";
import { mkdir, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { Version } from "../domain/model.js";
import type { AgentRepository, BlobStore, HostedCode } from "../domain/ports.js";
import { installStep, runLogged } from "./dependencies.js";
import {
  discoverInterpreters,
  resolveRuntime,
  type Interpreter,
  type RuntimePolicy,
} from "./runtimes.js";
import { unpackZip, type ZipLimits } from "./zipArchive.js";

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
  log: Logger;
  interpreters?: Interpreter[];
}

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

  constructor(
    private readonly agents: AgentRepository,
    private readonly blobs: BlobStore,
    private readonly options: CodeRuntimeOptions,
  ) {
    this.interpreters = options.interpreters;
  }

  async has(contentHash: string): Promise<boolean> {
    return /^[0-9a-f]{64}$/.test(contentHash) && (await this.blobs.size(contentHash)) !== undefined;
  }

  provision(version: Version): void {
    if (this.shutdown.signal.aborted) return;
    this.queue = this.queue
      .then(() => this.build(version))
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
  }

  async discard(versions: Version[]): Promise<void> {
    await this.queue; // never delete under a running build
    for (const v of versions) {
      await rm(this.dirOf(v), { recursive: true, force: true });
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
    if ((await this.agents.countContentReferences(contentHash)) === 0)
      await this.blobs.delete(contentHash);
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

  private async build(version: Version): Promise<void> {
    const dir = this.dirOf(version);
    const appDir = path.join(dir, "app");
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const log = createWriteStream(path.join(dir, "build.log"));
    log.on("error", () => {}); // e.g. a full disk: the build fails below, never the service
    const say = (line: string) => log.write(`[${new Date().toISOString()}] ${line}\n`);
    const finish = async (ok: boolean, code: string, message: string) => {
      say(message);
      await new Promise((resolve) => (log.destroyed ? resolve(0) : log.end(resolve)));
      await this.agents.setVersionStatus(
        version.project,
        version.agentName,
        version.version,
        ok ? "active" : "failed",
        ok ? null : { code, message },
      );
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
      await unpackZip(this.blobs.pathOf(version.contentHash!), appDir, this.options.zipLimits);
      this.interpreters ??= discoverInterpreters();
      const runtime = resolveRuntime(code.runtime, this.interpreters, this.options.runtimePolicy);
      if ("error" in runtime) return await finish(false, "runtime_unavailable", runtime.error);
      if (runtime.warning) say(`warning: ${runtime.warning}`);
      say(`runtime ${code.runtime} → ${runtime.interpreter.path}`);
      if (code.dependency_resolution === "remote_build") {
        const step = installStep(appDir, runtime.interpreter);
        if (!step)
          say(
            "remote_build: no requirements.txt, pyproject.toml or package.json; nothing to install",
          );
        else {
          say(`installing dependencies from ${step.manifest}`);
          const result = await runLogged(step, {
            cwd: appDir,
            log,
            env: {
              PATH: process.env.PATH,
              HOME: dir,
              npm_config_cache: path.join(dir, ".npm-cache"),
            },
            timeoutMs: this.options.buildTimeoutMs,
            signal: this.shutdown.signal,
          });
          // Interrupted by shutdown: leave the version `creating` for the next start.
          if (this.shutdown.signal.aborted) return void log.end();
          await rm(path.join(dir, ".npm-cache"), { recursive: true, force: true });
          if (result.timedOut) {
            return await finish(
              false,
              "build_timeout",
              `Dependency install took longer than ${this.options.buildTimeoutMs} ms.`,
            );
          }
          if (result.code !== 0) {
            return await finish(
              false,
              "dependency_install_failed",
              `Installing dependencies from ${step.manifest} failed (exit ${result.code}); see the build log.`,
            );
          }
        }
      }
      await finish(true, "ready", "build succeeded");
    } catch (err) {
      await finish(false, "build_failed", `The build failed: ${(err as Error).message}`);
    }
  }
}
