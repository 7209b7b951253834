import type { Duplex } from "node:stream";
import type { ExecEvent, ExecProcess, ExecSpec } from "./driver.js";

/*
 * The host's end of a sandbox's exec channel: a socket pair whose other end only the
 * sandbox's exec helper (sandbox/exec_helper.py) holds. Everything read from it is treated as
 * hostile: frames are bounded, frames of unknown or finished commands are dropped, a
 * malformed frame breaks the channel (every running command ends with an error), and no
 * command's output is taken beyond the credit the host granted it (the helper stops reading
 * the command's pipes until it gets more, so the command waits in its own writes).
 */

const header = 9;
/** The largest payload either side may send. */
export const maxExecPayloadBytes = 256 * 1024;
const maxPayload = maxExecPayloadBytes;
/** What the helper may send before the first grant (its WINDOW). */
export const execWindowBytes = 256 * 1024;
/** Output taken by the consumer is granted back in grants of at least this (or when it caught up). */
const grantBytes = 64 * 1024;
/** ERROR frames one command may send (the helper sends one); past it the channel breaks. */
const maxErrorsPerExec = 2;
/**
 * What the host may have written and the helper not yet read: the starts' own frames (START
 * and stdin, 512 KiB each at most) and credit. A helper that leaves more unread breaks the
 * channel.
 */
const maxUnreadBytes = 4 * 1024 * 1024;

const type = {
  start: 1,
  stdin: 2,
  stdinEnd: 3,
  kill: 4,
  credit: 5,
  started: 10,
  stdout: 11,
  stderr: 12,
  error: 13,
  exit: 14,
} as const;

interface Pending {
  queue: ExecEvent[];
  /** Output bytes received and not yet granted back: never more than the window. */
  owed: number;
  /** Output bytes the consumer took and the helper was not yet granted. */
  ungranted: number;
  /** ERROR frames received. */
  errors: number;
  wake?: () => void;
  ended: boolean;
  /** Nobody reads the events any more: output is dropped as it comes (and owed nothing). */
  discard?: boolean;
}

export class ExecChannel {
  private buffer: Buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly running = new Map<number, Pending>();
  private broken: string | undefined;

  constructor(private readonly socket: Duplex) {
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", () => this.fail("the sandbox's exec helper is gone"));
    socket.on("close", () => this.fail("the sandbox's exec helper is gone"));
  }

  /** Why no command can be started, or undefined while the channel works. */
  get unavailable(): string | undefined {
    return this.broken;
  }

  get count(): number {
    return this.running.size;
  }

  start(spec: ExecSpec): ExecProcess {
    if (this.broken) throw new Error(this.broken);
    const { stdin, ...rest } = spec;
    const start = Buffer.from(JSON.stringify(rest));
    if (start.length > maxPayload)
      throw new Error(`the command and its environment take more than ${maxPayload} bytes`);
    const id = this.nextId++;
    const pending: Pending = { queue: [], owed: 0, ungranted: 0, errors: 0, ended: false };
    this.running.set(id, pending);
    this.send(id, type.start, start);
    for (let at = 0; stdin && at < stdin.length; at += 64 * 1024)
      this.send(id, type.stdin, stdin.subarray(at, at + 64 * 1024));
    this.send(id, type.stdinEnd);
    return {
      events: this.drain(id, pending),
      kill: () => this.send(id, type.kill),
      detach: () => {
        pending.discard = true;
        pending.queue = pending.queue.filter((e) => e.type === "exit");
        pending.owed = 0;
      },
      abandon: () => {
        this.send(id, type.kill);
        this.running.delete(id);
        this.push(pending, { type: "exit", code: null, signal: null });
      },
    };
  }

  private async *drain(id: number, pending: Pending): AsyncGenerator<ExecEvent> {
    for (;;) {
      const event = pending.queue.shift();
      if (!event) {
        await new Promise<void>((resolve) => (pending.wake = resolve));
        pending.wake = undefined;
        continue;
      }
      yield event;
      if (event.type === "exit") return;
      // Taken by the consumer: the helper may read as much again, granted in large grants
      // (or all at once when the consumer has caught up).
      if ((event.type === "stdout" || event.type === "stderr") && !pending.discard) {
        pending.owed -= event.data.length;
        pending.ungranted += event.data.length;
        if (pending.ungranted >= grantBytes || pending.queue.length === 0) {
          const credit = Buffer.alloc(4);
          credit.writeUInt32BE(pending.ungranted);
          pending.ungranted = 0;
          this.send(id, type.credit, credit);
        }
      }
    }
  }

  private send(id: number, kind: number, payload: Buffer = Buffer.alloc(0)): void {
    if (this.broken || !this.running.has(id)) return;
    const head = Buffer.alloc(header);
    head.writeUInt32BE(payload.length, 0);
    head.writeUInt32BE(id, 4);
    head.writeUInt8(kind, 8);
    this.socket.write(Buffer.concat([head, payload]));
    if (this.socket.writableLength > maxUnreadBytes)
      this.fail("the sandbox's exec helper does not read what it is sent");
  }

  private receive(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.buffer.length >= header) {
      const length = this.buffer.readUInt32BE(0);
      if (length > maxPayload) return this.fail("the sandbox sent a malformed exec frame");
      if (this.buffer.length < header + length) return;
      const id = this.buffer.readUInt32BE(4);
      const kind = this.buffer.readUInt8(8);
      const pending = this.running.get(id);
      if (!pending) {
        // A command never started or finished: dropped unread.
        this.buffer = this.buffer.subarray(header + length);
        continue;
      }
      const payload = Buffer.from(this.buffer.subarray(header, header + length));
      this.buffer = this.buffer.subarray(header + length);
      const event = decode(kind, payload);
      if (event === null) return this.fail("the sandbox sent a malformed exec frame");
      if (event === undefined) continue; // `started`
      if (event.type === "error" && ++pending.errors > maxErrorsPerExec)
        return this.fail("the sandbox sent more exec errors than a command has");
      if (event.type === "stdout" || event.type === "stderr") {
        if (pending.discard) continue;
        pending.owed += event.data.length;
        // The helper reads at most a chunk per stream past its credit.
        if (pending.owed > execWindowBytes + 2 * 64 * 1024)
          return this.fail("the sandbox sent more output than it was granted");
      }
      this.push(pending, event);
      if (event.type === "exit") this.running.delete(id);
    }
  }

  private push(pending: Pending, event: ExecEvent): void {
    if (pending.ended) return;
    if (event.type === "exit") pending.ended = true;
    pending.queue.push(event);
    pending.wake?.();
  }

  private fail(why: string): void {
    if (this.broken) return;
    this.broken = why;
    for (const pending of this.running.values()) {
      this.push(pending, { type: "error", message: why });
      this.push(pending, { type: "exit", code: null, signal: null });
    }
    this.running.clear();
    this.socket.destroy();
  }

  /** Ends the channel (the helper then kills what it runs). */
  close(): void {
    this.fail("the sandbox has stopped");
  }
}

/** A frame from the helper as an event; undefined to ignore, null when malformed. */
function decode(kind: number, payload: Buffer): ExecEvent | undefined | null {
  if (kind === type.stdout) return { type: "stdout", data: payload };
  if (kind === type.stderr) return { type: "stderr", data: payload };
  if (kind === type.started) return undefined;
  if (kind !== type.error && kind !== type.exit) return null;
  let value: unknown;
  try {
    value = JSON.parse(payload.toString("utf8"));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const v = value as Record<string, unknown>;
  if (kind === type.error)
    return { type: "error", message: typeof v.message === "string" ? v.message.slice(0, 512) : "" };
  // An exit status is a byte: anything else is a lie.
  const code =
    Number.isInteger(v.code) && (v.code as number) >= 0 && (v.code as number) <= 255
      ? (v.code as number)
      : null;
  const signal =
    typeof v.signal === "string" && /^SIG[A-Z0-9]{1,10}$/.test(v.signal) ? v.signal : null;
  return { type: "exit", code, signal };
}
