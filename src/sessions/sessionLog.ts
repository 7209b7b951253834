import { appendFileSync, mkdirSync, statSync } from "node:fs";
import path from "node:path";

export type LogStream = "stdout" | "stderr" | "status";

export interface LogLine {
  /** Ever-increasing within the session (the SSE event id). */
  id: number;
  timestamp: string;
  stream: LogStream;
  message: string;
}

/** Longest line kept whole; longer output is split. */
const maxLineBytes = 8192;

/**
 * A session's console: the agent's stdout and stderr split into lines, plus status lines
 * from the service, appended to `console.log` (JSON lines) so that the output of a sandbox
 * that died is still there. Past `maxBytes` the file takes no more output, only a note.
 */
export class SessionLog {
  private nextId: number;
  private bytes: number;
  private capped = false;
  private readonly partial: Record<"stdout" | "stderr", string> = { stdout: "", stderr: "" };
  private readonly recent: LogLine[] = [];

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.bytes = sizeOf(file);
    this.nextId = Date.now() * 1000; // ids stay increasing across restarts of the service
  }

  /** Raw output of the agent; complete lines are logged, a trailing fragment waits. */
  write(stream: "stdout" | "stderr", chunk: Buffer): void {
    const text = this.partial[stream] + chunk.toString("utf8").replace(/\0/g, "\uFFFD");
    const lines = text.split("\n");
    this.partial[stream] = lines.pop()!;
    if (this.partial[stream].length > maxLineBytes) {
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

  /** The last lines logged by this object, oldest first. */
  tail(n: number): LogLine[] {
    return this.recent.slice(-n);
  }

  private append(stream: LogStream, message: string): void {
    const line: LogLine = {
      id: this.nextId++,
      timestamp: new Date().toISOString(),
      stream,
      message: message.replace(/\r$/, ""),
    };
    this.recent.push(line);
    if (this.recent.length > 200) this.recent.shift();
    if (this.capped) return;
    let text = `${JSON.stringify(line)}\n`;
    if (this.bytes + text.length > this.maxBytes) {
      this.capped = true;
      text = `${JSON.stringify({ ...line, stream: "status", message: `log limit of ${this.maxBytes} bytes reached; later output is not kept` })}\n`;
    }
    this.bytes += text.length;
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

function split(line: string): string[] {
  if (line.length <= maxLineBytes) return [line];
  const pieces: string[] = [];
  for (let i = 0; i < line.length; i += maxLineBytes) pieces.push(line.slice(i, i + maxLineBytes));
  return pieces;
}
