import type { UsageRepository, UsageTotals } from "../responses/ports.js";
import { randomBytes } from "node:crypto";
import type { CreateSessionBody, ExecSessionBody } from "../contract/requests.js";
import { startExec, type ExecStreamEvent } from "../exec/sessionExec.js";
import { AppError, notFound } from "../domain/errors.js";
import { pickVersion, trafficRules } from "../domain/trafficRules.js";
import type { Caller } from "../domain/keyService.js";
import type { Page, PageRequest, Session, SessionStatus, Version } from "../domain/model.js";
import type { AgentRepository, Clock, SessionRef, SessionRepository } from "../domain/ports.js";
import type { Sandbox } from "../sandbox/driver.js";
import type { SessionRuntime } from "./sessionRuntime.js";
import type { SessionHome } from "./sessionFiles.js";
import type { SessionLog } from "./sessionLog.js";

export interface SessionLimits {
  /** Running (creating or active) sessions one identity may have in a project. */
  perIdentity: number;
  /** Running sessions one agent may have. */
  perAgent: number;
}

export interface SessionServiceDeps {
  agents: AgentRepository;
  sessions: SessionRepository;
  /** The sandbox runtime, or why this host has none. */
  runtime: SessionRuntime | { unavailable: string };
  limits: SessionLimits;
  ttlSeconds: number;
  diskQuotaBytes: number;
  /** Tokens each session's model calls used. */
  usage: Pick<UsageRepository, "totals">;
  clock: Clock;
}

/** Admin keys see every session, unless they act for an end user. */
const seesAll = (caller: Caller) => caller.key.admin && caller.userIdentity === undefined;

/**
 * Sessions of hosted agents (contract §3.5): who may create and see which, the limits, and
 * the checks before a sandbox starts. The runtime does the running.
 */
export class SessionService {
  constructor(private readonly deps: SessionServiceDeps) {}

  private get runtime(): SessionRuntime {
    const r = this.deps.runtime;
    if ("unavailable" in r)
      throw new AppError(
        "sandbox_unavailable",
        `Sessions cannot run on this host: ${r.unavailable}.`,
      );
    return r;
  }

  async create(
    caller: Caller,
    project: string,
    agentName: string,
    body: CreateSessionBody,
  ): Promise<Session> {
    const agent = await this.deps.agents.get(project, agentName);
    if (!agent) throw notFound(`Agent '${agentName}'`, "agent_name");
    if (agent.state === "disabled")
      throw new AppError(
        "agent_disabled",
        `Agent '${agentName}' is disabled; enable it to start sessions.`,
      );
    const number = Number(body.version_indicator.agent_version);
    const version = await this.deps.agents.getVersion(project, agentName, number);
    if (!version)
      throw notFound(
        `Version '${number}' of agent '${agentName}'`,
        "version_indicator.agent_version",
      );
    this.checkRunnable(version);
    const runtime = this.runtime;
    const { perIdentity, perAgent } = this.deps.limits;
    if ((await this.deps.sessions.countLive({ project, owner: caller.subject })) >= perIdentity)
      throw new AppError(
        "too_many_sessions",
        `At most ${perIdentity} running sessions per identity; stop or delete one first.`,
      );
    if ((await this.deps.sessions.countLive({ project, agentName })) >= perAgent)
      throw new AppError(
        "too_many_sessions",
        `Agent '${agentName}' already has ${perAgent} running sessions, the most allowed.`,
      );
    const now = this.deps.clock();
    const session: Session = {
      project,
      agentName,
      id: body.agent_session_id ?? `sess_${randomBytes(12).toString("hex")}`,
      version: number,
      owner: caller.subject,
      status: "creating",
      createdAt: now,
      lastAccessedAt: now,
      expiresAt: now + this.deps.ttlSeconds,
      stoppedAt: null,
      termination: null,
    };
    if (!(await this.deps.sessions.insert(session)))
      throw new AppError(
        "session_exists",
        `Agent '${agentName}' already has a session '${session.id}'.`,
        "agent_session_id",
      );
    runtime.start(session, version);
    return session;
  }

  private checkRunnable(version: Version): void {
    const where = `Version '${version.version}' of agent '${version.agentName}'`;
    if (version.definition.kind !== "hosted")
      throw new AppError(
        "agent_not_hosted",
        `${where} is a '${String(version.definition.kind)}' agent; only hosted agents have sessions.`,
        "version_indicator.agent_version",
      );
    if (version.status !== "active")
      throw new AppError(
        "version_not_ready",
        `${where} is '${version.status}'${version.statusReason ? `: ${version.statusReason.message}` : ""}.`,
        "version_indicator.agent_version",
      );
  }

  /** The session, if the caller may see it: 404 when absent, 403 when another's. */
  async get(caller: Caller, project: string, agentName: string, id: string): Promise<Session> {
    const session = await this.deps.sessions.get(project, agentName, id);
    if (!session) {
      if (!(await this.deps.agents.get(project, agentName)))
        throw notFound(`Agent '${agentName}'`, "agent_name");
      throw notFound(`Session '${id}' of agent '${agentName}'`, "agent_session_id");
    }
    if (!seesAll(caller) && session.owner !== caller.subject)
      throw new AppError(
        "session_not_accessible",
        `Session '${id}' belongs to another identity.`,
        "agent_session_id",
      );
    return session;
  }

  /** The session with the tokens its model calls have used. */
  async describe(
    caller: Caller,
    project: string,
    agentName: string,
    id: string,
  ): Promise<{ session: Session; usage: UsageTotals }> {
    const session = await this.get(caller, project, agentName, id);
    return { session, usage: await this.deps.usage.totals({ project, agentName, sessionId: id }) };
  }

  async list(
    caller: Caller,
    project: string,
    agentName: string,
    page: PageRequest,
    filter: { status?: SessionStatus; version?: number },
  ): Promise<Page<Session>> {
    if (!(await this.deps.agents.get(project, agentName)))
      throw notFound(`Agent '${agentName}'`, "agent_name");
    if (!seesAll(caller) && (filter.status || filter.version))
      throw new AppError(
        "forbidden",
        "Only an admin key may filter sessions by status or version.",
        filter.status ? "status" : "agent_version",
      );
    return this.deps.sessions.list(
      { project, agentName, ...filter, owner: seesAll(caller) ? undefined : caller.subject },
      page,
    );
  }

  /**
   * A project's sessions across its agents: every one for an admin key, the caller's own
   * otherwise; filters by status, version and owner are an admin key's only.
   */
  async listProject(
    caller: Caller,
    project: string,
    page: Omit<PageRequest, "after" | "before"> & { after?: SessionRef; before?: SessionRef },
    filter: { agentName?: string; status?: SessionStatus; version?: number; owner?: string },
  ): Promise<Page<Session>> {
    const all = seesAll(caller);
    const adminOnly = filter.status ? "status" : filter.version ? "agent_version" : "owner";
    if (!all && (filter.status || filter.version || filter.owner))
      throw new AppError(
        "forbidden",
        "Only an admin key may filter sessions by status, version or owner.",
        adminOnly,
      );
    return this.deps.sessions.listProject(
      { project, ...filter, owner: all ? filter.owner : caller.subject },
      page,
    );
  }

  async stop(caller: Caller, project: string, agentName: string, id: string): Promise<void> {
    const session = await this.get(caller, project, agentName, id);
    await this.runtime.stop(session, {
      reason: "user_stop",
      message: "Stopped by request; files are kept and the next use starts it again.",
    });
  }

  /** 204 also when absent (the contract's idempotent delete). */
  async delete(caller: Caller, project: string, agentName: string, id: string): Promise<void> {
    const session = await this.deps.sessions.get(project, agentName, id);
    if (!session) return;
    if (!seesAll(caller) && session.owner !== caller.subject)
      throw new AppError(
        "session_not_accessible",
        `Session '${id}' belongs to another identity.`,
        "agent_session_id",
      );
    try {
      await this.runtime.remove(session, "user_stop", "Deleted by request.");
      await this.deps.sessions.delete(project, agentName, id);
    } finally {
      this.runtime.forget(session);
    }
  }

  /**
   * A request to the session's agent: starts the sandbox again if it is not running, waits
   * until the agent answers. `release` must be called when the request is over.
   */
  async open(
    caller: Caller,
    project: string,
    agentName: string,
    id: string,
  ): Promise<{
    session: Session;
    sandbox: Sandbox;
    release: () => void;
    /** Writes a status line in the session's console log. */
    note: (message: string) => void;
  }> {
    const session = await this.get(caller, project, agentName, id);
    if (session.status === "expired")
      throw new AppError(
        "session_not_ready",
        `Session '${id}' has expired; create a new one.`,
        "agent_session_id",
      );
    if (session.termination?.reason === "budget")
      throw new AppError(
        "budget_exceeded",
        `Session '${id}' ended when it had used its budget; create a new one.`,
        "agent_session_id",
      );
    const version = await this.deps.agents.getVersion(project, agentName, session.version);
    if (!version) throw notFound(`Version '${session.version}' of agent '${agentName}'`);
    try {
      return { session, ...(await this.runtime.use(session, version)) };
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError(
        "session_not_ready",
        `The agent of session '${id}' did not start: ${(err as Error).message}`,
        "agent_session_id",
      );
    }
  }

  /**
   * A command in the session's running sandbox (`:exec`): the owner's, or an admin key's, never
   * a sandbox's own token. A session that is not running answers 409 (it is not started for
   * the command: exec looks into the agent as it runs). Events stream until the command ends;
   * `signal` aborting kills it.
   */
  async exec(
    caller: Caller,
    project: string,
    agentName: string,
    id: string,
    body: ExecSessionBody,
    signal: AbortSignal,
  ): Promise<AsyncIterable<ExecStreamEvent>> {
    if (caller.session)
      throw new AppError("forbidden", "A sandbox may not run commands in a session.");
    const session = await this.get(caller, project, agentName, id);
    const runtime = this.runtime;
    const live = session.status === "active" ? await runtime.live(session) : undefined;
    if (!live)
      throw new AppError(
        "session_not_running",
        `Session '${id}' is not running (it is '${session.status}'); send it a request to start it, then run the command.`,
        "agent_session_id",
      );
    // The identity, and the key it came with when that is not the identity itself.
    const who =
      caller.subject === caller.key.id
        ? caller.subject
        : `${caller.subject} (key ${caller.key.id})`;
    return startExec(live, who, body, signal);
  }

  /**
   * The session's home for a file operation (contract §3.6): the caller must own the session;
   * any state but `expired` will do (the home is on disk); the operation counts as activity.
   */
  async home(caller: Caller, project: string, agentName: string, id: string): Promise<SessionHome> {
    const session = await this.get(caller, project, agentName, id);
    if (session.status === "expired")
      throw notFound(`Session '${id}' has expired and its files`, "agent_session_id");
    const runtime = this.runtime;
    const gone = () => notFound(`Session '${id}' of agent '${agentName}'`, "agent_session_id");
    if (!runtime.hasHome(session)) throw gone();
    await runtime.touch(session);
    if (!runtime.hasHome(session)) throw gone();
    try {
      await runtime.openHome(session);
    } catch (err) {
      // Deleted meanwhile (the session with it).
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw gone();
      throw err;
    }
    const uid = await runtime.homeUid(session);
    await runtime.sweepHome(session, uid);
    return runtime.filesOf(session, uid);
  }

  /**
   * A file operation's failure as the caller should hear it: when the session was deleted
   * meanwhile, 404 for the session (not a missing path, nor the raw filesystem error).
   */
  async explainFileError(
    project: string,
    agentName: string,
    id: string,
    err: unknown,
  ): Promise<unknown> {
    if (err instanceof AppError && err.code !== "not_found") return err;
    const session = await this.deps.sessions.get(project, agentName, id);
    const runtime = this.deps.runtime;
    if (!session || ("hasHome" in runtime && !runtime.hasHome(session)))
      return notFound(`Session '${id}' of agent '${agentName}'`, "agent_session_id");
    return err;
  }

  /** Bytes an upload may still add to a home, or the error when the quota is used up. */
  async quotaLeft(home: SessionHome, declared: number | undefined): Promise<number> {
    const left = (await home.freeBytes()) ?? this.deps.diskQuotaBytes - (await home.usage());
    if (left <= 0 || (declared !== undefined && declared > left)) throw this.quotaError();
    return left;
  }

  quotaError(): AppError {
    return new AppError(
      "session_disk_quota_exceeded",
      `A session's home holds at most ${this.deps.diskQuotaBytes} bytes; delete files first.`,
    );
  }

  /** The console of a session of this version (contract §3.7); 404 for another version. */
  async log(
    caller: Caller,
    project: string,
    agentName: string,
    version: string,
    id: string,
  ): Promise<SessionLog> {
    const session = await this.get(caller, project, agentName, id);
    if (String(session.version) !== version)
      throw notFound(
        `Session '${id}' of version '${version}' of agent '${agentName}'`,
        "session_id",
      );
    return this.runtime.logOf(session);
  }

  /**
   * The version a new session gets when a request names none: drawn by the endpoint's
   * traffic split, else the latest.
   */
  async defaultVersion(project: string, agentName: string): Promise<string> {
    const agent = await this.deps.agents.get(project, agentName);
    if (!agent) throw notFound(`Agent '${agentName}'`, "agent_name");
    return pickVersion(trafficRules(agent.agentEndpoint)) ?? String(agent.latest.version);
  }
}
