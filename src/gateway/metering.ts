import { AppError } from "../domain/errors.js";
import type { Caller } from "../domain/keyService.js";
import type { AgentRepository, Clock, SessionRepository } from "../domain/ports.js";
import type { Logger } from "pino";
import type { UsageRecord, UsageRepository } from "../responses/ports.js";
import type { ChatCompletionChunk, ChatRequest, ModelGateway } from "./modelGateway.js";

/*
 * Token usage and budgets, at the gateway: every model call is recorded with who made it, and
 * a call past its scope's budget is refused. The scope is a hosted session (its sandbox's
 * calls and its responses) or a prompt agent's conversation.
 */

export interface Budget {
  /** Total tokens (input + output); 0 = no limit. */
  tokens: number;
  /** Seconds since the scope began; 0 = no limit. */
  wallClockSeconds: number;
}

export interface Attribution {
  project: string;
  owner: string;
  agentName: string | null;
  agentVersion: number | null;
  sessionId: string | null;
  conversationId: string | null;
  responseId: string | null;
  /** The scope the budget counts over, when there is one. */
  budget?: Budget & { startedAt: number };
}

/**
 * A version's own budget, over the service's defaults: its metadata `budget_tokens` and
 * `budget_wall_clock_seconds` (strings, as metadata is; the official clients keep it).
 */
export function budgetOf(
  version: { metadata: Record<string, string> } | undefined,
  defaults: Budget,
): Budget {
  const pick = (v: string | undefined, d: number) => {
    const n = v === undefined ? NaN : Number(v);
    return Number.isFinite(n) && n >= 0 ? n : d;
  };
  return {
    tokens: Math.floor(pick(version?.metadata.budget_tokens, defaults.tokens)),
    wallClockSeconds: pick(version?.metadata.budget_wall_clock_seconds, defaults.wallClockSeconds),
  };
}

export interface MeterDeps {
  usage: UsageRepository;
  sessions: SessionRepository;
  agents: AgentRepository;
  /** The service's budgets; a version's metadata (`budget_tokens`, …) overrides them. */
  defaults: Budget;
  clock: Clock;
  /** Called when a hosted session's budget is spent (the runtime ends it). */
  sessionSpent?: (a: Attribution, why: string) => void;
  log?: Logger;
}

export class Meter {
  private readonly usage: UsageRepository;
  private readonly clock: Clock;
  private readonly pending: UsageRecord[] = [];
  private flushing: NodeJS.Immediate | undefined;
  constructor(private readonly deps: MeterDeps) {
    this.usage = deps.usage;
    this.clock = deps.clock;
  }

  get defaults(): Budget {
    return this.deps.defaults;
  }

  /**
   * Who a call counts for: a sandbox's calls (by its session's token) count for that session,
   * under the session version's budget from the session's start; a key's calls for the key.
   */
  async forCaller(caller: Caller, project: string): Promise<Attribution> {
    const base: Attribution = {
      project,
      // A sandbox's calls count for the identity that owns its session.
      owner: caller.session?.owner ?? caller.subject,
      agentName: null,
      agentVersion: null,
      sessionId: null,
      conversationId: null,
      responseId: null,
    };
    const s = caller.session;
    if (!s) return base;
    const [session, version] = await Promise.all([
      this.deps.sessions.get(project, s.agentName, s.id),
      this.deps.agents.getVersion(project, s.agentName, s.version),
    ]);
    return {
      ...base,
      agentName: s.agentName,
      agentVersion: s.version,
      sessionId: s.id,
      budget: {
        ...budgetOf(version, this.deps.defaults),
        startedAt: session?.createdAt ?? this.clock(),
      },
    };
  }

  /** A completion through the gateway, checked against the budget first and recorded after. */
  async *complete(
    gateway: ModelGateway,
    a: Attribution,
    deployment: string,
    request: ChatRequest,
    signal?: AbortSignal,
  ): AsyncGenerator<ChatCompletionChunk> {
    await this.check(a);
    for await (const chunk of gateway.complete(a.project, deployment, request, signal)) {
      if (chunk.usage)
        await this.record(a, deployment, {
          input_tokens: chunk.usage.prompt_tokens ?? 0,
          output_tokens: chunk.usage.completion_tokens ?? 0,
        });
      yield chunk;
    }
  }

  /** Throws `budget_exceeded` when the scope has nothing left. */
  async check(a: Attribution): Promise<void> {
    const why = await this.spent(a);
    if (!why) return;
    if (a.sessionId) this.deps.sessionSpent?.(a, why);
    throw new AppError("budget_exceeded", why);
  }

  /**
   * Records a call's tokens. Rows are written in batches, after the answer has gone on (a
   * commit is an fsync); budgets count the rows not yet written too.
   */
  async record(
    a: Attribution,
    deployment: string,
    tokens: { input_tokens: number; output_tokens: number },
  ): Promise<void> {
    this.pending.push({
      project: a.project,
      agentName: a.agentName,
      agentVersion: a.agentVersion,
      sessionId: a.sessionId,
      conversationId: a.conversationId,
      owner: a.owner,
      deployment,
      responseId: a.responseId,
      inputTokens: tokens.input_tokens,
      outputTokens: tokens.output_tokens,
      createdAt: this.clock(),
    });
    this.flushing ??= setImmediate(() => void this.flush());
  }

  /** Writes what is pending (also at shutdown). */
  async flush(): Promise<void> {
    if (this.flushing) clearImmediate(this.flushing);
    this.flushing = undefined;
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    try {
      await this.usage.add(batch);
    } catch (err) {
      this.deps.log?.error({ err, rows: batch.length }, "usage rows could not be written");
    }
  }

  /** Tokens of the scope's rows not yet written. */
  private pendingTokens(a: Attribution): number {
    let sum = 0;
    for (const r of this.pending)
      if (
        a.sessionId
          ? r.sessionId === a.sessionId && r.agentName === a.agentName && r.project === a.project
          : r.conversationId === a.conversationId
      )
        sum += r.inputTokens + r.outputTokens;
    return sum;
  }

  private async spent(a: Attribution): Promise<string | undefined> {
    const budget = a.budget;
    if (!budget) return undefined;
    const scope = a.sessionId ? "session" : "conversation";
    if (budget.wallClockSeconds > 0 && this.clock() - budget.startedAt >= budget.wallClockSeconds)
      return `The ${scope} has used its wall-clock budget of ${budget.wallClockSeconds} s.`;
    if (budget.tokens <= 0) return undefined;
    const totals = a.sessionId
      ? await this.usage.totals({
          project: a.project,
          agentName: a.agentName ?? "",
          sessionId: a.sessionId,
        })
      : a.conversationId
        ? await this.usage.totals({ conversationId: a.conversationId })
        : undefined;
    if (!totals) return undefined;
    const used = totals.inputTokens + totals.outputTokens + this.pendingTokens(a);
    if (used >= budget.tokens)
      return `The ${scope} has used its budget of ${budget.tokens} tokens (${used} used).`;
    return undefined;
  }
}
