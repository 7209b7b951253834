import { readFile } from "node:fs/promises";
import type { FollowedLog } from "../domain/ports.js";
import { LogBudget, SessionLog } from "../sessions/sessionLog.js";

/** A build log's file stops growing here (a last line says so); the stream still goes on. */
export const maxBuildLogBytes = 8 * 1024 * 1024;
/**
 * Install output past this many bytes is only counted, not split into lines, so a flood
 * costs nothing more; below the file's cap, so the count itself still reaches the file.
 */
export const maxInstallOutputBytes = 6 * 1024 * 1024;
/** What of a failed build's last output goes into `status_reason.message`, at most. */
const tailLines = 20;
const tailChars = 3000;

/** Builds of all versions together hold at most this much log history in memory. */
const buildLogLimits = {
  sessionMemoryBytes: 1024 * 1024,
  totalMemoryBytes: 16 * 1024 * 1024,
  sessionBytesPerSecond: 1024 * 1024,
};

interface Entry {
  log: SessionLog;
  /** Resolves with the stream's last status line once the build has ended. */
  ended: Promise<string>;
  end?: (message: string) => void;
  /** Streams reading it now. */
  readers: number;
  /** A build writes it (queued or running). */
  live: boolean;
}

/**
 * The build logs of code-based versions: one `SessionLog` per version (the same console as a
 * session's: lines numbered for `Last-Event-ID`, long lines split, control characters shown,
 * the file and the memory bounded), written by its build and followed by any number of log
 * streams. A build's log is held from the moment it is queued until it has ended and its last
 * reader has left; a finished build's log is read back from its file while someone reads it.
 */
export class BuildLogs {
  private readonly entries = new Map<string, Entry>();
  private readonly budget = new LogBudget(buildLogLimits);

  constructor(private readonly onWriteError: (err: unknown) => void = () => {}) {}

  /** The log a queued build will write, kept from here on (an earlier attempt's lines stay). */
  start(key: string, file: string): SessionLog {
    this.entries.get(key)?.log.end(); // readers of a finished build of the same key
    const log = new SessionLog(file, maxBuildLogBytes, this.budget, this.onWriteError);
    let end!: (message: string) => void;
    const ended = new Promise<string>((resolve) => (end = resolve));
    this.entries.set(key, { log, ended, end, readers: 0, live: true });
    return log;
  }

  /** True while a build writes the log (queued or running). */
  isLive(key: string): boolean {
    return this.entries.get(key)?.live === true;
  }

  /** The build has ended (its status recorded): its streams get `message` last and close. */
  finish(key: string, message: string): void {
    const entry = this.entries.get(key);
    if (!entry?.live) return;
    entry.live = false;
    entry.end!(message);
    if (entry.readers === 0) this.drop(key, entry);
  }

  /**
   * A reader of the log: the live one of a build that has not ended, else the file's (shared
   * by its readers). `finalStatus` is asked only when no build writes it: the last status line
   * of the stream, or undefined when it is still to come. `release` when done reading.
   */
  follow(key: string, file: string, finalStatus: () => string | undefined): FollowedLog {
    let entry = this.entries.get(key);
    if (!entry) {
      const status = finalStatus();
      const log = new SessionLog(file, maxBuildLogBytes, this.budget, this.onWriteError);
      entry = {
        log,
        ended: status === undefined ? new Promise<string>(() => {}) : Promise.resolve(status),
        readers: 0,
        live: false,
      };
      this.entries.set(key, entry);
    }
    const held = entry;
    held.readers++;
    let released = false;
    return {
      log: held.log,
      ended: held.ended,
      release: () => {
        if (released) return;
        released = true;
        held.readers--;
        if (held.readers === 0 && !held.live && this.entries.get(key) === held)
          this.drop(key, held);
      },
    };
  }

  /** The version is gone: its streams end now and its log leaves memory. */
  discard(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    entry.log.end();
  }

  /**
   * The service stops: the streams of a build still to end get `message` last (once they have
   * sent what is left); every other stream ends now.
   */
  close(message: string): void {
    for (const [key, entry] of this.entries) {
      if (entry.live) {
        entry.live = false;
        entry.end!(message);
        if (entry.readers === 0) this.drop(key, entry);
      } else {
        this.entries.delete(key);
        entry.log.end();
      }
    }
  }

  private drop(key: string, entry: Entry): void {
    this.entries.delete(key);
    entry.log.release();
  }
}

/**
 * A failed build's reason with the last lines of its install output, cut to a few thousand
 * characters (the end kept: it says what went wrong).
 */
export function withLastLines(message: string, log: SessionLog): string {
  const lines = log.tailOutput(tailLines);
  if (lines.length === 0) return message;
  let tail = lines.join("\n");
  if (tail.length > tailChars) tail = `…${tail.slice(-tailChars)}`;
  return `${message} Last lines of the build log:\n${tail}`;
}

/** The last status line of a build's log stream: how the version came out. */
export function endOfBuild(status: string, reason: { code: string } | null): string {
  return status === "active" ? "build ended: active" : `build ended: ${status} (${reason?.code})`;
}

/**
 * The messages of a build log file, oldest first (for a new session's console). A line that
 * is not JSON (a log written before logs were JSON lines) is taken as it is.
 */
export async function buildLogMessages(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      try {
        return String((JSON.parse(line) as { message: unknown }).message);
      } catch {
        return line;
      }
    });
}
