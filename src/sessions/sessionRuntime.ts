import { randomBytes } from "node:crypto";
import { lstat, mkdir } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { RunPlan } from "../build/codeRuntime.js";
import { buildLogMessages } from "../build/buildLog.js";
import { parseCpu, parseMemoryBytes } from "../contract/definitions.js";
import type {
  Session,
  SessionStatus,
  Termination,
  TerminationReason,
  Version,
} from "../domain/model.js";
import { AppError, isDiskFull, notFound } from "../domain/errors.js";
import type { Clock, LiveSessions, SessionRepository } from "../domain/ports.js";
import type { Exit, Sandbox, SandboxDriver } from "../sandbox/driver.js";
import { UidPool, type UidRange } from "../sandbox/uidPool.js";
import { linkTree, removeTree, visitTree } from "../trees/agentTree.js";
import { waitUntilReady } from "./agentSocket.js";
import type { HomeVolumes } from "./homeVolume.js";
import { SessionHome, type HomeLedger } from "./sessionFiles.js";
import { LogBudget, SessionLog, type LogLimits } from "./sessionLog.js";
import { WarmPool } from "./warmPool.js";
import type { SessionTokens } from "../gateway/sessionTokens.js";

export interface SessionRuntimeOptions {
  /** `<data>/sessions`: `<project>/<agent>/<id>/{home,console.log}`. */
  sessionsDir: string;
  /** `<data>/sandbox/pool`. */
  poolDir: string;
  /** Host uids for session sandboxes: each running sandbox has its own. */
  uidRange: UidRange;
  warmPoolSize: number;
  network: "none" | "egress";
  pidsLimit: number;
  startTimeoutMs: number;
  stopGraceMs: number;
  /** Caps every version's `idle_timeout_seconds`. */
  maxIdleSeconds?: number;
  /** `expires_at` is this long after the last activity. */
  ttlSeconds: number;
  logMaxBytes: number;
  /** Memory and read rate of the consoles. */
  logLimits?: LogLimits;
  /**
   * Each launched sandbox's token (bound to its session) for the service's OpenAI data plane,
   * reached through the sandbox's relay; revoked when the sandbox ends.
   */
  tokens?: SessionTokens;
  /** How homes are held to their quota (their own filesystems, or plain directories). */
  volumes: HomeVolumes;
  log: Logger;
}

/** What a session's sandbox runs; from the version's build. */
export type PlanOf = (version: Version) => RunPlan | { error: string };

interface Running {
  session: Session;
  sandbox?: Sandbox;
  /** Settles when the agent answers (or rejects with why it never will). */
  ready: Promise<void>;
  /** Settles when the sandbox is gone and its end recorded. */
  done: Promise<void>;
  /** Set when the service ends the sandbox, so its exit is not taken for a crash. */
  stopping?: Termination;
  idleTimer?: NodeJS.Timeout;
  idleMs: number;
  /** The agent has answered its readiness check. */
  answered?: boolean;
  inFlight: number;
  log: SessionLog;
  /** Settles once the session's home is in place (file operations wait for it). */
  homeReady: Promise<void>;
  /** A warm pool directory this sandbox came from, removed with it. */
  slotDir?: string;
  /** The sandbox's host uid, reserved until it ends. */
  uid?: number;
  /** Settles once a warm slot's home has become the session's (rejects if it could not). */
  homeMoved?: Promise<void>;
}

const defaultIdleSeconds = 900;
/** A home mounted for a file operation of a stopped session stays mounted this long. */
const homeLingerMs = 30_000;
/** How the status reads after each way a sandbox ends. */
const statusAfter: Record<TerminationReason, SessionStatus> = {
  user_stop: "idle",
  idle_timeout: "idle",
  service_stopped: "idle",
  agent_deleted: "idle",
  expired: "expired",
  oom: "failed",
  crash: "failed",
  start_failed: "failed",
  budget: "failed",
};

const keyOf = (s: Pick<Session, "project" | "agentName" | "id">) =>
  `${s.project}/${s.agentName}/${s.id}`;

/**
 * Runs sessions: one sandbox per live session, started from the warm pool when it can,
 * watched until it ends, stopped after its idle timeout and started again (same home) on the
 * next use. Every end is recorded with its reason.
 */
export class SessionRuntime implements LiveSessions {
  private readonly running = new Map<string, Running>();
  /** Consoles of the sessions seen since the service started (kept for subscribers). */
  private readonly logs = new Map<string, SessionLog>();
  private readonly logBudget: LogBudget;
  private readonly pool: WarmPool;
  private readonly uids: UidPool;
  /** Homes of stopped sessions mounted for file operations, released by these timers. */
  private readonly lingering = new Map<string, NodeJS.Timeout>();
  private sweeper?: NodeJS.Timeout;
  private closing = false;
  /** Sessions whose files are being deleted: no file operation may recreate their home. */
  private readonly removing = new Set<string>();
  /** Usage of each home as this service counted it; cleared when its session starts. */
  private readonly ledgers = new Map<string, HomeLedger>();
  /** Homes whose crash leftovers were swept this run (once, before their first use). */
  private readonly swept = new Map<string, Promise<void>>();

  constructor(
    private readonly sessions: SessionRepository,
    private readonly driver: SandboxDriver,
    private readonly planOf: PlanOf,
    private readonly clock: Clock,
    private readonly options: SessionRuntimeOptions,
  ) {
    this.uids = new UidPool(options.uidRange);
    this.logBudget = new LogBudget(options.logLimits);
    this.pool = new WarmPool(driver, {
      dir: options.poolDir,
      size: options.warmPoolSize,
      uids: this.uids,
      limits: { cpu: 1, memoryBytes: 512 * 1024 * 1024, pids: options.pidsLimit },
      network: options.network,
      volumes: options.volumes,
      log: options.log,
    });
  }

  /**
   * The uid a session's files belong to: its running sandbox's, else its home's owner, else
   * one no running sandbox has (the sandbox then keeps it when it starts, if still free).
   */
  async homeUid(s: Pick<Session, "project" | "agentName" | "id">): Promise<number> {
    const uid = this.running.get(keyOf(s))?.uid;
    if (uid !== undefined) return uid;
    const owner = await lstat(this.homeOf(s)).catch(() => undefined);
    return owner && this.uids.includes(owner.uid) ? owner.uid : this.uids.pick();
  }

  get driverName(): string {
    return this.driver.name;
  }

  /**
   * After a restart: sandboxes of the previous run are killed (they die with the service;
   * this catches a crash mid-start), sessions that were running become idle and start again
   * on their next use. Then the pool fills and the expiry sweeper starts.
   */
  async open(runtimes: { language: "python" | "node"; interpreter: string }[]): Promise<void> {
    // First nothing of the earlier run may still be writing: its sandboxes are killed.
    const swept = await this.driver.sweep();
    if (swept > 0)
      this.options.log.warn({ sandboxes: swept }, "killed sandboxes left by an earlier run");
    // Then the homes it left mounted are let go: nothing is deleted through a mount.
    const mounts = await this.options.volumes.sweep([
      this.options.sessionsDir,
      this.options.poolDir,
    ]);
    if (mounts > 0) this.options.log.warn({ mounts }, "unmounted homes left by an earlier run");
    // Whatever an earlier run's sandboxes left in their slots never keeps the service down.
    await removeTree(this.options.poolDir).catch((err: unknown) =>
      this.options.log.error({ err }, "could not remove the old warm pool directory"),
    );
    await mkdir(this.options.poolDir, { recursive: true, mode: 0o711 });
    const now = this.clock();
    for (const s of await this.sessions.withStatus(["creating", "active"])) {
      await this.sessions.update(s.project, s.agentName, s.id, {
        status: "idle",
        stoppedAt: now,
        termination: {
          reason: "service_stopped",
          message: "The service stopped; the session starts again on its next use.",
        },
      });
    }
    this.pool.fill(runtimes);
    const every = Math.max(1, Math.min(60, this.options.ttlSeconds / 4)) * 1000;
    this.sweeper = setInterval(
      () =>
        void this.expire().catch((err: unknown) =>
          this.options.log.error({ err }, "expiry sweep failed"),
        ),
      every,
    );
    this.sweeper.unref();
  }

  homeOf(s: Pick<Session, "project" | "agentName" | "id">): string {
    return path.join(this.dirOf(s), "home");
  }

  private dirOf(s: Pick<Session, "project" | "agentName" | "id">): string {
    return path.join(this.options.sessionsDir, s.project, s.agentName, s.id);
  }

  private consoleLogOf(s: Pick<Session, "project" | "agentName" | "id">): string {
    return path.join(this.dirOf(s), "console.log");
  }

  /** The session's console, read back from its file the first time. */
  logOf(s: Pick<Session, "project" | "agentName" | "id">): SessionLog {
    const key = keyOf(s);
    let log = this.logs.get(key);
    if (!log) {
      log = new SessionLog(this.consoleLogOf(s), this.options.logMaxBytes, this.logBudget, (err) =>
        this.options.log.warn({ err, session: s.id }, "console log not written"),
      );
      this.logs.set(key, log);
    }
    return log;
  }

  /**
   * Once per home and run, before the home's first use: removes the upload temp files a
   * killed service left in it. Never fails (a failure is logged).
   */
  sweepHome(s: Pick<Session, "project" | "agentName" | "id">, uid: number): Promise<void> {
    const key = keyOf(s);
    let done = this.swept.get(key);
    if (!done) {
      done = new SessionHome(this.homeOf(s), uid).sweepTemp().then(
        (n) => {
          if (n > 0) this.options.log.info({ session: s.id, files: n }, "swept upload leftovers");
        },
        (err: NodeJS.ErrnoException) => {
          if (err instanceof AppError && err.code === "not_found") return; // no home yet
          this.options.log.warn(
            { err, session: s.id },
            "could not sweep a home's upload leftovers",
          );
        },
      );
      this.swept.set(key, done);
    }
    return done;
  }

  /** The session's home, for file operations (its usage shared between them). */
  filesOf(s: Pick<Session, "project" | "agentName" | "id">, uid: number): SessionHome {
    const key = keyOf(s);
    let ledger = this.ledgers.get(key);
    if (!ledger) this.ledgers.set(key, (ledger = {}));
    return new SessionHome(this.homeOf(s), uid, ledger);
  }

  /**
   * The session's home for a file operation, in place (mounted) once a starting session has
   * it; a stopped session's home is mounted for a while after its last file operation.
   */
  async openHome(s: Pick<Session, "project" | "agentName" | "id">): Promise<string> {
    const key = keyOf(s);
    await this.running.get(key)?.homeReady;
    if (this.removing.has(key)) throw notFound(`Session '${s.id}'`, "agent_session_id");
    const home = this.homeOf(s);
    clearTimeout(this.lingering.get(key));
    await this.options.volumes.prepare(home, this.uids.pick());
    // A home from before uids per session (its owner outside the range) is given one, once.
    const owner = await lstat(home).catch(() => undefined);
    if (owner && !this.uids.includes(owner.uid) && !this.running.has(key)) {
      const uid = this.uids.pick();
      await visitTree(home, (e) => e.chown(uid, uid));
    }
    const timer = setTimeout(() => {
      this.lingering.delete(key);
      if (!this.running.has(key)) void this.releaseHome(s);
    }, homeLingerMs);
    timer.unref();
    this.lingering.set(key, timer);
    return home;
  }

  /** Unmounts a home nothing uses: no sandbox, no recent file operation. */
  private async releaseHome(s: Pick<Session, "project" | "agentName" | "id">): Promise<void> {
    if (this.running.has(keyOf(s)) || this.lingering.has(keyOf(s))) return;
    await this.options.volumes
      .release(this.homeOf(s))
      .catch((err: unknown) =>
        this.options.log.error({ err, session: s.id }, "could not unmount a session's home"),
      );
  }

  /** Starts the sandbox of a new (or resumed) session; readiness is awaited by `use`. */
  start(session: Session, version: Version): void {
    const key = keyOf(session);
    if (this.running.has(key) || this.closing || this.removing.has(key)) return;
    const log = this.logOf(session);
    let finish!: () => void;
    const entry: Running = {
      session,
      ready: Promise.resolve(),
      done: new Promise<void>((resolve) => (finish = resolve)),
      idleMs:
        1000 *
        Math.min(
          (
            version.definition.session_configuration as
              { idle_timeout_seconds?: number } | undefined
          )?.idle_timeout_seconds ?? defaultIdleSeconds,
          this.options.maxIdleSeconds ?? Infinity,
        ),
      inFlight: 0,
      log,
      homeReady: Promise.resolve(),
    };
    let homeReady!: () => void;
    entry.homeReady = new Promise<void>((resolve) => (homeReady = resolve));
    this.running.set(key, entry);
    // Once this start is over (either way), the pool boots replacements.
    entry.ready = this.boot(session, version, entry, finish, homeReady).finally(() => {
      homeReady();
      this.pool.replenish();
    });
    entry.ready.catch(() => {}); // observed by `use`
  }

  private async boot(
    session: Session,
    version: Version,
    entry: Running,
    finish: () => void,
    homeReady: () => void,
  ): Promise<void> {
    const key = keyOf(session);
    /** Records the failed start; `homeLater`: the home is released by whoever still has it. */
    const fail = async (message: string, homeLater = false) => {
      entry.log.status(`start failed: ${message}`);
      const output = entry.log.tailOutput(20);
      const detail = output.length > 0 ? ` Last output:\n${output.join("\n")}` : "";
      await this.record(session, {
        reason: "start_failed",
        message: `${message}${detail}`.slice(0, 4000),
      }).catch((err: unknown) =>
        this.options.log.error({ err, session: session.id }, "could not record a failed start"),
      );
      this.running.delete(key);
      if (!homeLater) await this.releaseHome(session);
      finish();
      throw new Error(message);
    };
    const plan = this.planOf(version);
    if ("error" in plan) return fail(plan.error);
    // A new session's console starts with how its version was built.
    if (entry.log.empty) {
      for (const line of await buildLogMessages(plan.buildLog)) entry.log.status(`build: ${line}`);
    }
    const home = this.homeOf(session);
    this.ledgers.delete(key); // the agent is about to write: the next upload counts again
    const t0 = performance.now();
    let warmStart = false;
    let sandbox: Sandbox;
    /** A uid this start reserved (a warm sandbox brings its own). */
    let coldUid: number | undefined;
    try {
      const volumes = this.options.volumes;
      // A session with a home resumes it (cold); file operations wait for `homeReady` meanwhile.
      let warm = (await volumes.exists(home)) ? undefined : this.pool.take(plan);
      if (warm) {
        try {
          await linkTree(plan.appDir, path.join(warm.dir, "app"));
        } catch (err) {
          // A code tree the copy refuses (e.g. nested past its depth) still starts, cold.
          this.options.log.warn({ err, session: session.id }, "warm start refused the code tree");
          void this.pool.discard(warm);
          warm = undefined;
        }
      }
      entry.log.status(
        `starting sandbox (${this.driver.name}${warm ? ", warm" : ""}) for version ${version.version}`,
      );
      if (warm) {
        entry.uid = warm.uid;
        // The slot's home (its sandbox sees it already) becomes the session's while the agent
        // launches; the start fails if it cannot.
        const slotHome = path.join(warm.dir, "home");
        entry.homeMoved = volumes.move(slotHome, home).then(homeReady, async (err: unknown) => {
          await volumes.release(slotHome);
          throw err;
        });
        entry.homeMoved.catch(() => {});
        sandbox = warm.sandbox;
        entry.slotDir = warm.dir;
        warmStart = true;
      } else {
        const step = { now: "mounting its home" };
        const cold = (async () => {
          // The sandbox keeps the uid its home belongs to, unless a running one has it: then
          // the home (its sandbox is not running) is given to a new uid.
          await volumes.prepare(home, this.uids.pick());
          const owner = await lstat(home);
          const uid = this.uids.take(owner.uid);
          coldUid = entry.uid = uid;
          step.now = "giving its home to the sandbox's uid";
          if (owner.uid !== uid) await visitTree(home, (e) => e.chown(uid, uid));
          step.now = "sweeping its home";
          await this.sweepHome(session, uid);
          homeReady();
          step.now = "setting up the sandbox";
          return this.driver.start({
            id: randomBytes(8).toString("hex"),
            language: plan.language,
            interpreter: plan.interpreter,
            homeDir: home,
            appDir: plan.appDir,
            limits: this.limitsOf(version),
            network: this.options.network,
            uid,
          });
        })();
        const stalled = await pendingAfter(cold, this.options.startTimeoutMs);
        if (stalled) {
          // The step may still end: what it made is undone then, and only then are its uid
          // (a sandbox may hold it) and home let go.
          void cold
            .then(
              (late) => late.stop(0),
              () => {}, // nothing was made
            )
            .then(
              () => {
                if (coldUid !== undefined) this.uids.release(coldUid);
                void this.releaseHome(session);
              },
              (err: unknown) =>
                this.options.log.error(
                  { err, session: session.id },
                  "a sandbox made after its start had failed could not be stopped: its uid stays taken",
                ),
            );
          return fail(
            `the sandbox was not created within ${this.options.startTimeoutMs / 1000} s (stalled ${step.now})`,
            true,
          );
        }
        sandbox = await cold;
      }
    } catch (err) {
      if (coldUid !== undefined) this.uids.release(coldUid);
      return fail(`the sandbox could not be created: ${(err as Error).message}`);
    }
    entry.sandbox = sandbox;
    sandbox.onOutput((stream, chunk) => entry.log.write(stream, chunk));
    void sandbox.exited
      .catch((err: unknown): Exit => {
        this.options.log.error({ err, session: session.id }, "a sandbox's exit failed");
        return { code: null, signal: null, oomKilled: false };
      })
      .then((exit) => this.ended(session, entry, exit, finish))
      .catch((err: unknown) => {
        this.options.log.error({ err, session: session.id }, "a sandbox's end was not recorded");
        this.running.delete(key);
        finish();
      });
    if (entry.stopping) {
      await sandbox.stop(0);
      throw new Error("the session was stopped while it started");
    }
    const t1 = performance.now();
    let t2: number;
    try {
      // A launch refused (e.g. a memory limit below what the warm sandbox holds) fails the start.
      await sandbox.launch({
        argv: plan.argv,
        env: this.envOf(session, version, sandbox),
        limits: this.limitsOf(version),
      });
      t2 = performance.now();
      const ready = waitUntilReady(
        sandbox.socketPath,
        Date.now() + this.options.startTimeoutMs,
        sandbox.exited,
      );
      ready.catch(() => {}); // observed below, unless the home's move fails first
      await entry.homeMoved;
      await ready;
    } catch (err) {
      entry.stopping ??= { reason: "start_failed", message: (err as Error).message };
      await sandbox.stop(0);
      await entry.done;
      throw err;
    }
    entry.answered = true;
    entry.log.status("agent is ready");
    const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
    this.options.log.debug(
      {
        session: session.id,
        warm: warmStart,
        sandboxMs: ms(t0, t1),
        launchMs: ms(t1, t2),
        readyMs: ms(t2, performance.now()),
      },
      "session started",
    );
    await this.sessions.update(session.project, session.agentName, session.id, {
      status: "active",
      stoppedAt: null,
      termination: null,
    });
    this.armIdle(session, entry);
  }

  /** Records how a sandbox ended, from the service's intent or from its exit. */
  private async ended(
    session: Session,
    entry: Running,
    exit: Exit,
    finish: () => void,
  ): Promise<void> {
    if (entry.sandbox) this.options.tokens?.revoke(entry.sandbox.id);
    clearTimeout(entry.idleTimer);
    entry.log.flush();
    const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
    let termination: Termination;
    if (exit.oomKilled)
      termination = { reason: "oom", message: `The agent ran out of memory (${how}).` };
    else if (entry.stopping) termination = entry.stopping;
    else if (!entry.answered)
      termination = { reason: "start_failed", message: "The agent exited before it answered" };
    else termination = { reason: "crash", message: `The agent exited unexpectedly (${how}).` };
    if (termination.reason === "start_failed") {
      const output = entry.log.tailOutput(20);
      if (output.length > 0)
        termination = {
          ...termination,
          message: `${termination.message} (${how}). Last output:\n${output.join("\n")}`.slice(
            0,
            4000,
          ),
        };
    }
    entry.log.status(`sandbox ended (${how}): ${termination.reason}`);
    await entry.homeMoved?.catch(() => {}); // the slot's home is out of its directory first
    try {
      if (entry.slotDir) await removeTree(entry.slotDir);
    } catch (err) {
      // What the agent left in its slot never stops the exit from being recorded.
      this.options.log.error({ err, session: session.id }, "could not remove a sandbox's files");
      termination = {
        ...termination,
        message: `${termination.message} (its sandbox files could not be removed: ${(err as Error).message})`,
      };
    }
    if (entry.uid !== undefined) this.uids.release(entry.uid);
    this.running.delete(keyOf(session));
    await this.releaseHome(session);
    await this.record(session, termination).catch((err: unknown) =>
      this.options.log.error({ err, session: session.id }, "could not record a session's end"),
    );
    finish();
  }

  private async record(session: Session, termination: Termination): Promise<void> {
    await this.sessions.update(session.project, session.agentName, session.id, {
      status: statusAfter[termination.reason],
      stoppedAt: this.clock(),
      termination,
    });
    this.options.log.info(
      { session: session.id, agent: session.agentName, reason: termination.reason },
      "session stopped",
    );
  }

  /**
   * One use of the session (a request to its agent, a file operation): counts as activity,
   * starts the sandbox again when it is not running. Resolves when the agent answers;
   * the returned `release` ends the use.
   */
  async use(
    session: Session,
    version: Version,
  ): Promise<{ sandbox: Sandbox; release: () => void; note: (message: string) => void }> {
    // A session being deleted is not started again (its home is about to go).
    if (this.removing.has(keyOf(session)))
      throw notFound(`Session '${session.id}'`, "agent_session_id");
    await this.touch(session);
    this.start(session, version);
    const entry = this.running.get(keyOf(session));
    if (!entry) throw new Error("The service is shutting down.");
    entry.inFlight++;
    try {
      await entry.ready;
    } catch (err) {
      entry.inFlight--;
      throw err;
    }
    let released = false;
    return {
      sandbox: entry.sandbox!,
      release: () => {
        if (released) return;
        released = true;
        entry.inFlight--;
        this.armIdle(session, entry);
      },
      note: (message) => entry.log.status(message),
    };
  }

  /**
   * The session's running sandbox for a command beside its agent (`:exec`), without starting
   * it: only a sandbox whose agent has answered and that is not being stopped. Counts as a use
   * until `release`.
   */
  async live(
    session: Session,
  ): Promise<
    { sandbox: Sandbox; release: () => void; note: (message: string) => void } | undefined
  > {
    const entry = this.running.get(keyOf(session));
    if (!entry || !entry.answered || entry.stopping || !entry.sandbox) return undefined;
    if (this.removing.has(keyOf(session))) return undefined;
    entry.inFlight++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      entry.inFlight--;
      this.armIdle(session, entry);
    };
    try {
      await this.touch(session);
    } catch (err) {
      release();
      throw err;
    }
    return { sandbox: entry.sandbox, release, note: (message) => entry.log.status(message) };
  }

  /** Activity: `last_accessed_at` now, `expires_at` a TTL away, the idle timer restarted. */
  async touch(session: Session): Promise<Session> {
    const now = this.clock();
    const entry = this.running.get(keyOf(session));
    if (entry) this.armIdle(session, entry);
    // Timestamps are in seconds: within the same second there is nothing to write (and no
    // fsync on every request to the agent).
    if (session.lastAccessedAt === now) return session;
    try {
      return (
        (await this.sessions.update(session.project, session.agentName, session.id, {
          lastAccessedAt: now,
          expiresAt: now + this.options.ttlSeconds,
        })) ?? session
      );
    } catch (err) {
      // A full disk does not stop the agent from being used; the next use records the time.
      if (!isDiskFull(err)) throw err;
      this.options.log.warn({ err, session: session.id }, "activity not recorded: disk full");
      return session;
    }
  }

  private armIdle(session: Session, entry: Running): void {
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      if (entry.inFlight > 0) return this.armIdle(session, entry);
      void this.stop(session, {
        reason: "idle_timeout",
        message: `No activity for ${entry.idleMs / 1000} s; files are kept and the next use starts the session again.`,
      });
    }, entry.idleMs);
    entry.idleTimer.unref();
  }

  /** Stops the sandbox (SIGTERM, grace, kill of everything left) and records why. */
  async stop(
    session: Pick<Session, "project" | "agentName" | "id">,
    termination: Termination,
  ): Promise<void> {
    const entry = this.running.get(keyOf(session));
    if (!entry) return;
    entry.stopping ??= termination;
    clearTimeout(entry.idleTimer);
    if (entry.sandbox)
      await entry.sandbox
        .stop(this.options.stopGraceMs)
        .catch((err: unknown) =>
          this.options.log.error({ err, session: session.id }, "a sandbox's stop failed"),
        );
    await entry.done;
  }

  /** Stops the session and removes its files; the caller deletes the record. */
  async remove(session: Session, reason: TerminationReason, message: string): Promise<void> {
    const key = keyOf(session);
    this.removing.add(key);
    await this.stop(session, { reason, message });
    const log = this.logs.get(key);
    log?.status(`session deleted (${reason}): ${message}`);
    log?.end();
    await log?.settled(); // no write of it may land after the delete
    this.logs.delete(key);
    this.swept.delete(key);
    this.ledgers.delete(key);
    clearTimeout(this.lingering.get(key));
    this.lingering.delete(key);
    await this.releaseHome(session);
    try {
      await removeTree(this.dirOf(session));
    } catch (err) {
      // Never a failed delete because of what is on disk: the files are logged as left over.
      this.options.log.error(
        { err, session: session.id, dir: this.dirOf(session) },
        "could not delete a session's files",
      );
    }
  }

  /** A removed session's record is gone (or expired): its name may be used again. */
  forget(session: Pick<Session, "project" | "agentName" | "id">): void {
    this.removing.delete(keyOf(session));
  }

  /** False once the session's files are being deleted (a file operation answers 404). */
  hasHome(session: Pick<Session, "project" | "agentName" | "id">): boolean {
    return !this.removing.has(keyOf(session));
  }

  count(project: string, agentName: string, version?: number): Promise<number> {
    return this.sessions.countLive({ project, agentName, version });
  }

  async terminate(project: string, agentName: string, version?: number): Promise<void> {
    for (const s of await this.sessions.all({ project, agentName, version })) {
      await this.remove(s, "agent_deleted", "The agent or version was deleted.");
      await this.sessions.delete(s.project, s.agentName, s.id);
      this.forget(s);
    }
  }

  /** Sessions past `expires_at`: sandbox stopped, files deleted, status `expired`. */
  async expire(): Promise<number> {
    // Consoles nobody writes or reads are let go (they are read back from disk when needed).
    for (const [key, log] of this.logs)
      if (!this.running.has(key) && log.subscribers === 0) {
        log.release();
        this.logs.delete(key);
      }
    const due = await this.sessions.expiring(this.clock());
    for (const s of due) {
      // One session that cannot be expired never holds up the others.
      try {
        await this.remove(
          s,
          "expired",
          "No activity for the session's lifetime; its files were deleted.",
        );
        await this.record(s, {
          reason: "expired",
          message: "No activity for the session's lifetime; its files were deleted.",
        });
      } catch (err) {
        this.options.log.error({ err, session: s.id }, "could not expire a session");
      } finally {
        this.forget(s);
      }
    }
    return due.length;
  }

  /** Graceful shutdown: every sandbox stopped (with its grace), the pool emptied. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    const message = "The service stopped; the session starts again on its next use.";
    await Promise.all([
      this.pool.close(),
      ...[...this.running.values()].map((entry) =>
        this.stop(entry.session, { reason: "service_stopped", message }),
      ),
    ]);
    await Promise.all([...this.logs.values()].map((log) => log.settled()));
    for (const timer of this.lingering.values()) clearTimeout(timer);
    this.lingering.clear();
    await this.options.volumes.releaseAll();
    await this.driver.dispose();
  }

  limitsOf(version: Version) {
    const d = version.definition as { cpu?: string; memory?: string };
    return {
      cpu: d.cpu ? parseCpu(d.cpu) : 1,
      memoryBytes: d.memory ? parseMemoryBytes(d.memory) : 512 * 1024 * 1024,
      pids: this.options.pidsLimit,
    };
  }

  /**
   * The agent's environment. With a relay, a token of the sandbox's own: `OPENAI_BASE_URL`
   * and `OPENAI_API_KEY` (a stock `openai` client works unchanged; the definition's own
   * values win) and `FOUNDRY_PROJECT_ENDPOINT` name the service through the relay's port.
   */
  private envOf(session: Session, version: Version, sandbox: Sandbox): Record<string, string> {
    const own = (version.definition.environment_variables ?? {}) as Record<string, string>;
    const tokens = this.options.tokens;
    const relayed: Record<string, string> = {};
    if (tokens && sandbox.relayPort !== undefined) {
      const endpoint = `http://127.0.0.1:${sandbox.relayPort}/api/projects/${session.project}`;
      const token = tokens.issue({
        project: session.project,
        agentName: session.agentName,
        version: version.version,
        sessionId: session.id,
        owner: session.owner,
        sandboxId: sandbox.id,
        issuedAt: this.clock(),
      });
      Object.assign(relayed, {
        OPENAI_BASE_URL: `${endpoint}/openai/v1`,
        OPENAI_API_KEY: token,
        FOUNDRY_PROJECT_ENDPOINT: endpoint,
      });
    }
    return {
      PORT: "8088",
      ...relayed,
      ...own,
      ...(relayed.FOUNDRY_PROJECT_ENDPOINT
        ? { FOUNDRY_PROJECT_ENDPOINT: relayed.FOUNDRY_PROJECT_ENDPOINT }
        : {}),
      FOUNDRY_AGENT_NAME: session.agentName,
      FOUNDRY_AGENT_VERSION: String(version.version),
      FOUNDRY_AGENT_SESSION_ID: session.id,
    };
  }
}

/** Whether `work` is still pending after `ms` ms (its outcome is left to the caller). */
async function pendingAfter(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), ms)));
  try {
    return await Promise.race([
      work.then(
        () => false,
        () => false,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
