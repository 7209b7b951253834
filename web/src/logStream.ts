import { errorOf, readEvents } from "./api.js";
import type { LogLine } from "./types.js";

export interface LogStreamHandlers {
  /** Lines as they arrive, a network read's worth at a time. */
  onLines: (lines: LogLine[]) => void;
  /** The connection state, for the page to show. */
  onState: (state: "connecting" | "open" | "retrying" | "ended", detail?: string) => void;
}

/** Reconnects wait this long, doubling up to `maxRetryMs` while the stream keeps ending. */
const retryMs = 1_000;
const maxRetryMs = 8_000;

/**
 * A session's console stream (server-sent events) read by fetch, since EventSource cannot send
 * the Authorization header. On a dropped connection it reconnects with `Last-Event-ID` (the id
 * of the last line seen), so no line is shown twice; `stop()` ends it.
 */
export function openLogStream(key: string, path: string, handlers: LogStreamHandlers) {
  const abort = new AbortController();
  let lastId: number | undefined;
  let stopped = false;

  const once = async () => {
    handlers.onState("connecting");
    const response = await fetch(path, {
      headers: {
        authorization: `Bearer ${key}`,
        accept: "text/event-stream",
        ...(lastId !== undefined ? { "last-event-id": String(lastId) } : {}),
      },
      signal: abort.signal,
    });
    if (!response.ok || !response.body) {
      const error = errorOf(response.status, response.statusText, await response.text());
      const message = `${error.code}: ${error.message}`;
      // A refusal (gone, not allowed) is not retried.
      if (response.status >= 400 && response.status < 500) {
        stopped = true;
        handlers.onState("ended", message);
        return;
      }
      throw new Error(message);
    }
    handlers.onState("open");
    let batch: LogLine[] = [];
    await readEvents(
      response.body,
      (event) => {
        if (event.event !== "log") return;
        const line = JSON.parse(event.data) as LogLine;
        if (event.id !== undefined && /^\d+$/.test(event.id)) {
          line.id = Number(event.id);
          lastId = line.id;
        }
        batch.push(line);
      },
      () => {
        if (batch.length === 0) return;
        handlers.onLines(batch);
        batch = [];
      },
    );
  };

  void (async () => {
    let wait = retryMs;
    while (!stopped) {
      const seen = lastId;
      try {
        await once();
      } catch (err) {
        if (stopped || abort.signal.aborted) return;
        handlers.onState("retrying", String(err));
      }
      if (stopped) return;
      handlers.onState("retrying", "The stream ended; reconnecting.");
      wait = lastId !== seen ? retryMs : Math.min(wait * 2, maxRetryMs);
      await new Promise((r) => setTimeout(r, wait));
    }
  })();

  return {
    stop() {
      stopped = true;
      abort.abort();
    },
  };
}
