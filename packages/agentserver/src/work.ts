/**
 * The work in flight (open requests, running background responses), so a shutdown can wait
 * for it and, at its deadline, abort what is left.
 */
/** One piece of work: aborted at the drain deadline; `end` when it is done. */
export interface Work {
  controller: AbortController;
  end: () => void;
}

export class WorkTracker {
  private readonly running = new Set<AbortController>();
  private readonly waiters = new Set<() => void>();
  private stopping = false;

  /** Whether a shutdown began (new requests are refused). */
  get draining(): boolean {
    return this.stopping;
  }

  /** How much work is in flight. */
  get size(): number {
    return this.running.size;
  }

  /** Begins one piece of work: its controller (aborted at the deadline) and its end. */
  begin(): Work {
    const controller = new AbortController();
    this.running.add(controller);
    let ended = false;
    return {
      controller,
      end: () => {
        if (ended) return;
        ended = true;
        this.running.delete(controller);
        if (this.running.size === 0) for (const wake of [...this.waiters]) wake();
      },
    };
  }

  /** Marks the shutdown; resolves once nothing is in flight, or `false` at `deadlineMs`. */
  drain(deadlineMs: number): Promise<boolean> {
    this.stopping = true;
    if (this.running.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        resolve(false);
      }, deadlineMs);
      this.waiters.add(wake);
    });
  }

  /** Aborts everything still in flight (the drain deadline passed). */
  abortAll(reason: Error): void {
    for (const c of this.running) c.abort(reason);
  }
}

/** Rejects when `signal` aborts: raced against a handler that might never settle. */
export function whenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

/** `promise`, or a rejection as soon as `signal` aborts. */
export function raced<T>(promise: T | Promise<T>, signal: AbortSignal): Promise<T> {
  const aborted = whenAborted(signal);
  aborted.catch(() => {});
  return Promise.race([Promise.resolve(promise), aborted]);
}
