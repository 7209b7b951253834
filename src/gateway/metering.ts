import { AppError } from "../domain/errors.js";
import type { Clock } from "../domain/ports.js";
import type { UsageRepository } from "../responses/ports.js";

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

/** A version's own budget (`definition.budget`), over the service's defaults. */
export function budgetOf(definition: Record<string, unknown>, defaults: Budget): Budget {
  const own = (definition.budget ?? {}) as { tokens?: unknown; wall_clock_seconds?: unknown };
  const pick = (v: unknown, d: number) =>
    typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : d;
  return {
    tokens: pick(own.tokens, defaults.tokens),
    wallClockSeconds: pick(own.wall_clock_seconds, defaults.wallClockSeconds),
  };
}

export class Meter {
  constructor(
    private readonly usage: UsageRepository,
    private readonly clock: Clock,
    /** Called when a hosted session's budget is spent (the runtime ends it). */
    private readonly sessionSpent: (a: Attribution, why: string) => void = () => {},
  ) {}

  /** Throws `budget_exceeded` when the scope has nothing left. */
  async check(a: Attribution): Promise<void> {
    const why = await this.spent(a);
    if (!why) return;
    if (a.sessionId) this.sessionSpent(a, why);
    throw new AppError("budget_exceeded", why);
  }

  async record(
    a: Attribution,
    deployment: string,
    tokens: { input_tokens: number; output_tokens: number },
  ): Promise<void> {
    await this.usage.add({
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
    if (totals && totals.inputTokens + totals.outputTokens >= budget.tokens)
      return `The ${scope} has used its budget of ${budget.tokens} tokens (${totals.inputTokens + totals.outputTokens} used).`;
    return undefined;
  }
}
