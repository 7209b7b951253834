import type { JsonObject } from "../domain/model.js";

/**
 * A response being computed: its numbered events (kept so that a stream can be followed from
 * any point while it runs), the latest snapshot, and the way to cancel it.
 */
export class Run {
  readonly events: JsonObject[] = [];
  readonly abort = new AbortController();
  private ended = false;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly id: string,
    readonly project: string,
    readonly owner: string,
  ) {}

  get done(): boolean {
    return this.ended;
  }

  emit(event: JsonObject): JsonObject {
    const numbered = { ...event, sequence_number: this.events.length };
    this.events.push(numbered);
    this.wake();
    return numbered;
  }

  end() {
    this.ended = true;
    this.wake();
  }

  private wake() {
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  /** Every event after `startingAfter` (a sequence number), then the new ones until the end. */
  async *follow(startingAfter = -1, signal?: AbortSignal): AsyncGenerator<JsonObject> {
    let next = startingAfter + 1;
    while (!signal?.aborted) {
      while (next < this.events.length) yield this.events[next++]!;
      if (this.ended) return;
      // One listener per wait, removed on waking: a long stream would otherwise pile them up.
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiters.delete(wake);
          signal?.removeEventListener("abort", wake);
          resolve();
        };
        this.waiters.add(wake);
        signal?.addEventListener("abort", wake, { once: true });
      });
    }
  }
}

/** The runs of this process, by response id. */
export class Runs {
  private readonly runs = new Map<string, Run>();

  private readonly perOwner = new Map<string, number>();

  /** A new run of `owner`'s, or undefined when the owner already has `limit` running. */
  start(id: string, project: string, owner: string, limit: number): Run | undefined {
    const running = this.perOwner.get(owner) ?? 0;
    if (running >= limit) return undefined;
    this.perOwner.set(owner, running + 1);
    const run = new Run(id, project, owner);
    this.runs.set(id, run);
    return run;
  }

  get(id: string): Run | undefined {
    return this.runs.get(id);
  }

  finish(run: Run) {
    run.end();
    if (this.runs.delete(run.id)) {
      const left = (this.perOwner.get(run.owner) ?? 1) - 1;
      if (left > 0) this.perOwner.set(run.owner, left);
      else this.perOwner.delete(run.owner);
    }
  }

  /** Cancels every run (at shutdown). */
  cancelAll() {
    for (const run of this.runs.values()) run.abort.abort();
  }

  get size() {
    return this.runs.size;
  }
}
