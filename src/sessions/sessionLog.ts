import { closeSync, mkdirSync, openSync, readSync, statSync } from "node:fs";
import { appendFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { StringDecoder } from "node:string_decoder";
import { isDiskFull } from "../domain/errors.js";

export type LogStream = "stdout" | "stderr" | "status";

export interface LogLine {
  /** Ever-increasing within the session (the SSE event id). */
  id: number;
  timestamp: string;
  stream: LogStream;
  message: string;
}

/** Told of every new line; `null` once the log has ended (its session was deleted). */
export type LogListener = (line: LogLine | null) => void;

/** Longest line kept whole; longer output is split. */
const maxLineChars = 8192;
/** How much of the file is read back on open to find the history. */
const tailBytes = 1024 * 1024;
/** Lines waiting for the disk past this many bytes are not written (and counted). */
const maxPendingBytes = 1024 * 1024;
/** All sessions together read at most this many times one session's rate. */
const totalRateSessions = 8;
/** A reader may run this far ahead of its rate (one burst). */
const burstSeconds = 0.1;

export interface LogLimits {
  /** Bytes of history one session keeps in memory (for new subscribers and slow readers). */
  sessionMemoryBytes: number;
  /** Bytes of history all sessions together keep; the largest give up their oldest first. */
  totalMemoryBytes: number;
  /** Bytes of agent output read per second per session; past it the agent's writes wait. */
  sessionBytesPerSecond: number;
}

export const defaultLogLimits: LogLimits = {
  sessionMemoryBytes: 1024 * 1024,
  totalMemoryBytes: 64 * 1024 * 1024,
  sessionBytesPerSecond: 1024 * 1024,
};

/**
 * What a line holds in memory, at most: its text (two bytes a character, as V8 stores text
 * beyond Latin-1), the SSE frame built from it once it is sent, and the object.
 */
const memoryOf = (line: LogLine) => 4 * line.message.length + 200;

/** Credit of bytes refilled at `rate` per second, at most `burst`. */
class Bucket {
  private credit: number;
  private at = performance.now();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.credit = burst;
  }

  /** Spends `n` bytes; how many ms to wait until the credit is back above zero. */
  take(n: number): number {
    const now = performance.now();
    this.credit = Math.min(this.burst, this.credit + ((now - this.at) * this.rate) / 1000);
    this.at = now;
    this.credit -= n;
    return this.credit >= 0 ? 0 : (-this.credit * 1000) / this.rate;
  }
}

/**
 * The memory and read rate every console of the service shares: past `totalMemoryBytes`
 * the largest histories drop their oldest lines; past eight sessions' worth of reading per
 * second, every reader waits.
 */
export class LogBudget {
  private held = 0;
  private readonly logs = new Set<SessionLog>();
  private readonly reading: Bucket;

  constructor(readonly limits: LogLimits = defaultLogLimits) {
    const total = limits.sessionBytesPerSecond * totalRateSessions;
    this.reading = new Bucket(total, total * burstSeconds);
  }

  /** Bytes of history all consoles hold. */
  get bytes(): number {
    return this.held;
  }

  /** @internal A console grew (or shrank, when negative) by `n` bytes. */
  change(log: SessionLog, n: number): void {
    this.held += n;
    if (n > 0) this.logs.add(log);
    if (this.held <= this.limits.totalMemoryBytes) return;
    // A little below the limit, so that the scan for the largest is not run for every line.
    const target = this.limits.totalMemoryBytes - this.limits.totalMemoryBytes / 32;
    while (this.held > target) {
      let largest: SessionLog | undefined;
      for (const l of this.logs) if (!largest || l.historyBytes > largest.historyBytes) largest = l;
      if (!largest || largest.historyBytes === 0) return;
      largest.dropOldest(this.held - target);
    }
  }

  /** @internal The console is let go. */
  forget(log: SessionLog): void {
    this.logs.delete(log);
  }

  /** @internal ms every reader waits after `n` more bytes. */
  read(n: number): number {
    return this.reading.take(n);
  }
}

/**
 * A session's console: the agent's stdout and stderr split into lines, plus status lines from
 * the service. Every line gets the next id, goes to `console.log` (JSON lines, so the output of
 * a sandbox that died is still there after a restart), to the in-memory history and to every
 * subscriber. The history is bounded in bytes (per session and, through the budget, for all
 * sessions); the agent's output is read at a bounded rate (`write` says when to wait). The file
 * is written in batches, off the request path; past `maxBytes` it takes no more lines, only a
 * note. Lines the disk did not take (full, or too slow) are counted, and the count is written
 * once it takes lines again.
 */
export class SessionLog {
  private nextId = 1;
  private bytes: number;
  private capped = false;
  private readonly partial: Record<"stdout" | "stderr", string> = { stdout: "", stderr: "" };
  private readonly decoders = {
    stdout: new StringDecoder("utf8"),
    stderr: new StringDecoder("utf8"),
  };
  /** The history is `lines[head…]`, oldest first. */
  private lines: LogLine[] = [];
  private head = 0;
  private held = 0;
  private readonly listeners = new Set<LogListener>();
  private readonly reading: Bucket;
  private ended = false;
  /** JSON lines waiting for the disk. */
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing: Promise<void> | undefined;
  /** Lines not written since the disk last took one, and why. */
  private unwritten = 0;
  private unwrittenWhy = "";
  /** A failed write may have left half a line: the next one starts on a new line. */
  private torn = false;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
    private readonly budget: LogBudget = new LogBudget(),
    /** Told when the file could not be written (once per gap). */
    private readonly onWriteError: (err: unknown) => void = () => {},
  ) {
    try {
      // Traversable, not listable; the console itself is the service's only (0600).
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o711 });
    } catch (err) {
      onWriteError(err); // e.g. a full disk: the lines are counted as they come
    }
    this.bytes = sizeOf(file);
    this.capped = this.bytes >= maxBytes;
    for (const line of readTail(file, this.bytes)) this.remember(line);
    this.nextId = (this.lines.at(-1)?.id ?? 0) + 1;
    const rate = budget.limits.sessionBytesPerSecond;
    this.reading = new Bucket(rate, rate * burstSeconds);
  }

  /** True when nothing was ever logged (a new session). */
  get empty(): boolean {
    return this.bytes === 0 && this.nextId === 1;
  }

  /** Bytes of memory the history holds (as counted against the budget). */
  get historyBytes(): number {
    return this.held;
  }

  /**
   * Raw output of the agent; complete lines are logged, a trailing fragment waits. Returns a
   * promise when the session has used up its read rate (or all sessions theirs): the caller
   * reads nothing more until it settles, so that the agent's writes wait on the full pipe.
   */
  write(stream: "stdout" | "stderr", chunk: Buffer): Promise<void> | undefined {
    const text = this.decoders[stream].write(scrub(chunk));
    const lines = (this.partial[stream] + text).split("\n");
    this.partial[stream] = lines.pop()!;
    if (this.partial[stream].length > maxLineChars) {
      lines.push(this.partial[stream]);
      this.partial[stream] = "";
    }
    for (const line of lines)
      for (const piece of split(cleanLine(line))) this.append(stream, piece);
    const waitMs = Math.max(this.reading.take(chunk.length), this.budget.read(chunk.length));
    return waitMs > 0 ? new Promise((resolve) => setTimeout(resolve, waitMs)) : undefined;
  }

  /** Logs what is left of unfinished lines (when the sandbox exits). */
  flush(): void {
    for (const stream of ["stdout", "stderr"] as const) {
      const rest = this.partial[stream] + this.decoders[stream].end();
      for (const piece of rest ? split(cleanLine(rest)) : []) this.append(stream, piece);
      this.partial[stream] = "";
    }
  }

  status(message: string): void {
    // eslint-disable-next-line no-control-regex
    this.append("status", message.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "?"));
  }

  /** The last lines of output (not status), oldest first. */
  tailOutput(n: number): string[] {
    const out: string[] = [];
    for (let i = this.lines.length - 1; i >= this.head && out.length < n; i--)
      if (this.lines[i]!.stream !== "status") out.push(this.lines[i]!.message);
    return out.reverse();
  }

  /** Calls `listener` for every new line until the returned function is called. */
  subscribe(listener: LogListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Id of the oldest line still in the history (the next id when it is empty). */
  get firstId(): number {
    return this.lines[this.head]?.id ?? this.nextId;
  }

  /** Lines of the history after `id`, at most `max` (ids are consecutive). */
  since(id: number, max: number): LogLine[] {
    const start = this.head + Math.max(0, id + 1 - this.firstId);
    return this.lines.slice(start, start + max);
  }

  /** The session is gone: subscribers are told and let go, nothing more is written. */
  end(): void {
    this.ended = true;
    for (const listener of this.listeners) listener(null);
    this.listeners.clear();
    this.release();
  }

  /** Nobody uses the console any more: its history leaves memory (the file stays). */
  release(): void {
    this.dropOldest(Infinity);
    this.budget.forget(this);
  }

  /** Resolves once every line so far is on disk (or counted as not written). */
  async settled(): Promise<void> {
    while (this.writing) await this.writing;
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  /** @internal Drops the oldest lines until `bytes` are freed (or the history is empty). */
  dropOldest(bytes: number): void {
    let freed = 0;
    while (freed < bytes && this.head < this.lines.length) {
      freed += memoryOf(this.lines[this.head]!);
      this.lines[this.head++] = undefined as never;
    }
    if (this.head === this.lines.length) {
      this.lines = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.lines.length) {
      this.lines = this.lines.slice(this.head);
      this.head = 0;
    }
    this.held -= freed;
    this.budget.change(this, -freed);
  }

  private append(stream: LogStream, message: string): void {
    const line: LogLine = {
      id: this.nextId++,
      timestamp: new Date().toISOString(),
      stream,
      message,
    };
    this.remember(line);
    this.persist(line);
    for (const listener of this.listeners) listener(line);
  }

  private remember(line: LogLine): void {
    if (this.ended) return;
    const bytes = memoryOf(line);
    this.lines.push(line);
    this.held += bytes;
    if (this.held > this.budget.limits.sessionMemoryBytes)
      this.dropOldest(this.held - this.budget.limits.sessionMemoryBytes);
    this.budget.change(this, bytes);
  }

  private persist(line: LogLine): void {
    if (this.capped || this.ended) return;
    let text = `${JSON.stringify(line)}\n`;
    let size = Buffer.byteLength(text);
    if (this.bytes + size > this.maxBytes) {
      this.capped = true;
      const note = `log limit of ${this.maxBytes} bytes reached; later lines are streamed but not kept`;
      text = `${JSON.stringify({ ...line, stream: "status", message: note })}\n`;
      size = Buffer.byteLength(text);
    }
    if (this.pendingBytes + size > maxPendingBytes) {
      this.unwritten++;
      this.unwrittenWhy ||= "the disk is too slow";
      if (this.capped) this.capped = false; // the note was not written either
      return;
    }
    this.bytes += size;
    this.pending.push(text);
    this.pendingBytes += size;
    this.scheduleWrite();
  }

  /** One writer at a time, starting after the lines of this turn of the event loop. */
  private scheduleWrite(): void {
    if (this.writing) return;
    this.writing = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.writeOut())
      .finally(() => {
        this.writing = undefined;
        if (this.pending.length > 0) this.scheduleWrite();
      });
  }

  /** Writes the pending lines, one append per batch, until none are left. */
  private async writeOut(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending;
      const size = this.pendingBytes;
      this.pending = [];
      this.pendingBytes = 0;
      try {
        await appendFile(this.file, (this.torn ? "\n" : "") + batch.join(""), { mode: 0o600 });
        this.torn = false;
        if (this.unwritten > 0 && !this.ended) {
          const note = `${this.unwritten} lines not written: ${this.unwrittenWhy}`;
          this.unwritten = 0;
          this.unwrittenWhy = "";
          this.status(note);
        }
      } catch (err) {
        this.bytes -= size;
        this.torn = true;
        if (this.unwritten === 0) this.onWriteError(err);
        this.unwritten += batch.length;
        this.unwrittenWhy = isDiskFull(err)
          ? "disk full"
          : `${(err as NodeJS.ErrnoException).code ?? "write failed"}`;
      }
    }
  }
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** The complete lines of the file's last `tailBytes`. */
function readTail(file: string, size: number): LogLine[] {
  if (size === 0) return [];
  const length = Math.min(size, tailBytes);
  const buffer = Buffer.alloc(length);
  const fd = openSync(file, "r");
  try {
    readSync(fd, buffer, 0, length, size - length);
  } finally {
    closeSync(fd);
  }
  const lines = buffer.toString("utf8").split("\n");
  if (length < size) lines.shift(); // cut in the middle
  const parsed: LogLine[] = [];
  for (const text of lines) {
    if (!text) continue;
    try {
      parsed.push(JSON.parse(text) as LogLine);
    } catch {
      // a line torn by a crash or a full disk: skipped
    }
  }
  return parsed;
}

/**
 * Control characters other than tab are shown, not obeyed: a terminal reading the stream must
 * not be driven by an agent's output. Each becomes `?` (as `ls` shows them), in one pass over
 * the bytes before they are decoded; carriage returns are left to `cleanLine`. (U+FFFD through
 * a regular expression over the decoded text cost 10 times as much, and twice the memory.)
 */
function scrub(chunk: Buffer): Buffer {
  let out: Buffer | undefined;
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i]!;
    if ((b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) || b === 0x7f) {
      out ??= Buffer.from(chunk);
      out[i] = 0x3f;
    }
  }
  return out ?? chunk;
}

/** A line's end may be CRLF; any other carriage return is shown as `?`. */
function cleanLine(line: string): string {
  const text = line.endsWith("\r") ? line.slice(0, -1) : line;
  return text.includes("\r") ? text.replaceAll("\r", "?") : text;
}

function split(line: string): string[] {
  if (line.length <= maxLineChars) return [line];
  const pieces: string[] = [];
  for (let i = 0; i < line.length; i += maxLineChars) pieces.push(line.slice(i, i + maxLineChars));
  return pieces;
}
