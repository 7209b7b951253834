import { appendFileSync, closeSync, mkdirSync, openSync, readSync, statSync } from "node:fs";
import path from "node:path";

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
/** Lines kept in memory for new subscribers, resumes and subscribers catching up. */
const historyLines = 10_000;
/** How much of the file is read back on open to find the history. */
const tailBytes = 1024 * 1024;

/**
 * A session's console: the agent's stdout and stderr split into lines, plus status lines from
 * the service. Every line gets the next id, goes to `console.log` (JSON lines, so the output of
 * a sandbox that died is still there after a restart), to the in-memory history and to every
 * subscriber. Past `maxBytes` the file takes no more lines, only a note; subscribers still get
 * them.
 */
export class SessionLog {
  private nextId = 1;
  private bytes: number;
  private capped = false;
  private readonly partial: Record<"stdout" | "stderr", string> = { stdout: "", stderr: "" };
  private readonly history: LogLine[] = [];
  private readonly listeners = new Set<LogListener>();

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.bytes = sizeOf(file);
    this.capped = this.bytes >= maxBytes;
    for (const line of readTail(file, this.bytes)) this.remember(line);
    this.nextId = (this.history.at(-1)?.id ?? 0) + 1;
  }

  /** True when nothing was ever logged (a new session). */
  get empty(): boolean {
    return this.bytes === 0 && this.history.length === 0;
  }

  /** Raw output of the agent; complete lines are logged, a trailing fragment waits. */
  write(stream: "stdout" | "stderr", chunk: Buffer): void {
    const lines = (this.partial[stream] + chunk.toString("utf8")).split("\n");
    this.partial[stream] = lines.pop()!;
    if (this.partial[stream].length > maxLineChars) {
      lines.push(this.partial[stream]);
      this.partial[stream] = "";
    }
    for (const line of lines) for (const piece of split(line)) this.append(stream, piece);
  }

  /** Logs what is left of unfinished lines (when the sandbox exits). */
  flush(): void {
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partial[stream]) this.append(stream, this.partial[stream]);
      this.partial[stream] = "";
    }
  }

  status(message: string): void {
    this.append("status", message);
  }

  /** The last lines of output (not status), oldest first. */
  tailOutput(n: number): string[] {
    return this.history
      .filter((l) => l.stream !== "status")
      .slice(-n)
      .map((l) => l.message);
  }

  /** Calls `listener` for every new line until the returned function is called. */
  subscribe(listener: LogListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Id of the oldest line still in the history (the next id when it is empty). */
  get firstId(): number {
    return this.history[0]?.id ?? this.nextId;
  }

  /** Lines of the history after `id`, at most `max` (ids are consecutive). */
  since(id: number, max: number): LogLine[] {
    const start = Math.max(0, id + 1 - this.firstId);
    return this.history.slice(start, start + max);
  }

  /** The session is gone: subscribers are told and let go. */
  end(): void {
    for (const listener of this.listeners) listener(null);
    this.listeners.clear();
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  private append(stream: LogStream, raw: string): void {
    const line: LogLine = {
      id: this.nextId++,
      timestamp: new Date().toISOString(),
      stream,
      // Control characters other than tab are shown, not obeyed (terminals reading the
      // stream must not be driven by an agent's output).
      // eslint-disable-next-line no-control-regex
      message: raw.replace(/\r$/, "").replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "\uFFFD"),
    };
    this.remember(line);
    this.persist(line);
    for (const listener of this.listeners) listener(line);
  }

  private remember(line: LogLine): void {
    this.history.push(line);
    if (this.history.length > historyLines) this.history.shift();
  }

  private persist(line: LogLine): void {
    if (this.capped) return;
    let text = `${JSON.stringify(line)}\n`;
    if (this.bytes + Buffer.byteLength(text) > this.maxBytes) {
      this.capped = true;
      const note = `log limit of ${this.maxBytes} bytes reached; later lines are streamed but not kept`;
      text = `${JSON.stringify({ ...line, stream: "status", message: note })}\n`;
    }
    this.bytes += Buffer.byteLength(text);
    appendFileSync(this.file, text);
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
      // a line torn by a crash: skipped
    }
  }
  return parsed.slice(-historyLines);
}

function split(line: string): string[] {
  if (line.length <= maxLineChars) return [line];
  const pieces: string[] = [];
  for (let i = 0; i < line.length; i += maxLineChars) pieces.push(line.slice(i, i + maxLineChars));
  return pieces;
}
