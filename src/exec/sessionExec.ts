import { StringDecoder } from "node:string_decoder";
import type { ExecSessionBody } from "../contract/requests.js";
import { AppError } from "../domain/errors.js";
import type { ExecEvent, Sandbox } from "../sandbox/driver.js";

/** Commands one session may run through `:exec` at once. */
export const maxExecsPerSession = 4;
/** Output (stdout and stderr together) an exec streams; past it, a `note` and no more. */
export const maxExecOutputBytes = 4 * 1024 * 1024;
/** After a kill, how long the sandbox has to report the command's end. */
const killGraceMs = 5_000;
/** The command as the session log shows it. */
const shownCommandChars = 200;

/** One event of an exec's stream: an SSE event name and its data. */
export interface ExecStreamEvent {
  event: "started" | "stdout" | "stderr" | "note" | "error" | "exit";
  data: Record<string, unknown>;
}

export interface LiveSandbox {
  sandbox: Sandbox;
  release: () => void;
  note: (message: string) => void;
}

const shown = (argv: string[]) => {
  const text = JSON.stringify(argv);
  return text.length > shownCommandChars ? `${text.slice(0, shownCommandChars)}…` : text;
};

/**
 * Starts a command in a live session's sandbox (behind the agent's walls, through its exec
 * helper) and returns its events: output as it comes (UTF-8 text), at most
 * `maxExecOutputBytes` of it (the command is killed there), then `exit` with the code or
 * signal and whether the timeout struck. The command is killed at `timeout_seconds` and when `signal` aborts (the caller
 * went away). The session's log gets a status line when it starts and one when it ends.
 * Throws (before any event) when the sandbox cannot run it.
 */
export function startExec(
  live: LiveSandbox,
  who: string,
  body: ExecSessionBody,
  signal: AbortSignal,
): AsyncIterable<ExecStreamEvent> {
  const { sandbox } = live;
  const why = sandbox.execUnavailable;
  if (why !== undefined) {
    live.release();
    throw new AppError(
      why.kind === "unsupported" ? "sandbox_unavailable" : "exec_unavailable",
      `The session's sandbox cannot run commands: ${why.message}.`,
    );
  }
  if (sandbox.execCount >= maxExecsPerSession) {
    live.release();
    throw new AppError(
      "too_many_execs",
      `A session runs at most ${maxExecsPerSession} commands at once; wait for one to end.`,
    );
  }
  const command = shown(body.command);
  const started = performance.now();
  let proc: ReturnType<Sandbox["exec"]>;
  try {
    proc = sandbox.exec({
      argv: body.command,
      cwd: sandbox.paths.home,
      env: {
        HOME: sandbox.paths.home,
        PATH: "/usr/local/bin:/usr/bin:/bin",
        LANG: "C.UTF-8",
        TZ: "UTC",
        ...body.env,
      },
      stdin: body.stdin === undefined ? undefined : Buffer.from(body.stdin),
    });
  } catch (err) {
    live.release();
    throw new AppError(
      "exec_unavailable",
      `The session's sandbox cannot run commands: ${(err as Error).message}.`,
    );
  }
  live.note(`exec by ${who}: ${command}`);

  let killedFor: "timeout" | "disconnect" | "output" | undefined;
  let killed!: () => void;
  const killedNow = new Promise<"killed">((resolve) => (killed = () => resolve("killed")));
  /** Settles `killGraceMs` after the kill: the sandbox has that long to report the end. */
  let late: Promise<"late"> = new Promise(() => {});
  const kill = (reason: NonNullable<typeof killedFor>) => {
    if (killedFor) return;
    killedFor = reason;
    proc.kill();
    late = new Promise((resolve) => setTimeout(resolve, killGraceMs, "late").unref());
    killed();
  };
  const timer = setTimeout(() => kill("timeout"), body.timeout_seconds * 1000);
  const onAbort = () => kill("disconnect");
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();

  return (async function* (): AsyncGenerator<ExecStreamEvent> {
    const events = proc.events[Symbol.asyncIterator]();
    const decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
    let sent = 0;
    let truncated = false;
    let exit: Extract<ExecEvent, { type: "exit" }> | undefined;
    let unconfirmed = false;
    try {
      // At once: the caller has the answer's head (and knows the command runs) before output.
      yield {
        event: "started",
        data: { command: body.command, timeout_seconds: body.timeout_seconds },
      };
      for (;;) {
        const next = events.next();
        const first = await Promise.race([next, killedNow]);
        const result = first === "killed" ? await Promise.race([next, late]) : first;
        if (result === "late") {
          unconfirmed = true;
          proc.abandon();
          break;
        }
        if (result.done) break;
        const event = result.value;
        if (event.type === "exit") {
          exit = event;
          break;
        }
        if (event.type === "error") {
          yield { event: "error", data: { message: event.message } };
          continue;
        }
        if (truncated) continue; // read (so the command is not held), not sent
        let data = event.data;
        if (sent + data.length > maxExecOutputBytes) {
          data = data.subarray(0, maxExecOutputBytes - sent);
          truncated = true;
        }
        sent += data.length;
        const text = decoders[event.type].write(data);
        if (text) yield { event: event.type, data: { data: text } };
        if (truncated) {
          // Like a pipe whose reader stopped: nothing more is taken, the command goes.
          kill("output");
          yield {
            event: "note",
            data: {
              message: `Output cut at ${maxExecOutputBytes} bytes; the command is killed.`,
            },
          };
        }
      }
      if (unconfirmed)
        yield {
          event: "error",
          data: { message: "The sandbox did not confirm the command's end after its kill." },
        };
      for (const stream of ["stdout", "stderr"] as const) {
        const rest = truncated ? "" : decoders[stream].end();
        if (rest) yield { event: stream, data: { data: rest } };
      }
      yield {
        event: "exit",
        data: {
          code: exit?.code ?? null,
          signal: exit?.signal ?? null,
          timed_out: killedFor === "timeout",
          output_truncated: truncated,
          duration_ms: Math.round(performance.now() - started),
        },
      };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      if (!exit && !unconfirmed && !killedFor) kill("disconnect");
      proc.detach();
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const end =
        killedFor === "timeout"
          ? `killed at its timeout of ${body.timeout_seconds} s`
          : killedFor === "disconnect"
            ? "killed: the caller went away"
            : killedFor === "output"
              ? `killed: its output passed ${maxExecOutputBytes} bytes`
              : exit?.signal
                ? `ended by ${exit.signal}`
                : `exit ${exit?.code ?? "unknown"}`;
      live.note(`exec by ${who} ended (${end}, ${seconds} s): ${command}`);
      live.release();
    }
  })();
}
