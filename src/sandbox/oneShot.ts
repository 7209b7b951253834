import type { ChildProcess } from "node:child_process";
import type { Cgroup } from "./cgroups.js";
import type { RunOptions, RunResult } from "./driver.js";

/**
 * Watches one sandboxed command to its end: its output to `onOutput`, a kill of its whole
 * cgroup at the timeout or on abort, and a result only once the group is empty and removed
 * (and the helpers it held, e.g. slirp4netns, are gone).
 *
 * `release` runs the command: it places the processes in the cgroup and lets them go on; it
 * must settle by itself (e.g. when the sandbox exits).
 */
export async function superviseRun(
  child: ChildProcess,
  cgroup: Cgroup,
  options: Pick<RunOptions, "timeoutMs" | "signal" | "onOutput">,
  release: (held: ChildProcess[]) => Promise<void>,
): Promise<RunResult> {
  const held: ChildProcess[] = [];
  for (const stream of child.stdio) stream?.on("error", () => {});
  child.on("error", (err) => options.onOutput(Buffer.from(`${err.message}\n`)));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: null, signal: null })); // it never started
  });
  const closed = Promise.race([once(child, "close"), once(child, "error")]);
  child.stdout?.on("data", (chunk: Buffer) => options.onOutput(chunk));
  child.stderr?.on("data", (chunk: Buffer) => options.onOutput(chunk));
  let timedOut = false;
  let aborted = false;
  // Until its processes are in the group, a kill waits: a sandbox blocked before its start
  // would not die with a killed parent, and would hold the pipes open.
  let placed = false;
  const kill = () => {
    if (!placed) return;
    void cgroup.killAll().catch(() => {});
    child.kill("SIGKILL"); // in case it never made it into the group
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs);
  const onAbort = () => {
    aborted = true;
    kill();
  };
  if (options.signal.aborted) onAbort();
  else options.signal.addEventListener("abort", onAbort, { once: true });
  let failed = false;
  try {
    // A command that never started (or died early) does not leave the placement waiting.
    const early = exit.then(() => Promise.reject(new Error("it exited before its start")));
    early.catch(() => {});
    await Promise.race([release(held), early]);
  } catch (err) {
    options.onOutput(Buffer.from(`sandbox failed: ${(err as Error).message}\n`));
    failed = true;
  }
  placed = true;
  if (failed || aborted || timedOut) kill();
  const { code, signal } = await exit;
  clearTimeout(timer);
  options.signal.removeEventListener("abort", onAbort);
  // Whatever the command left running (a daemonised child) goes with it; then the pipes end.
  await cgroup.killAll();
  await closed;
  const oomKilled = (await cgroup.oomKills()) > 0;
  for (const helper of held) helper.kill("SIGKILL");
  await Promise.all(
    held.map((h) => (h.exitCode !== null || h.signalCode !== null ? 0 : once(h, "close"))),
  );
  await cgroup.remove();
  return { code, signal, oomKilled, timedOut, aborted };
}

function once(emitter: ChildProcess, event: string): Promise<unknown> {
  return new Promise((resolve) => emitter.once(event, resolve));
}
