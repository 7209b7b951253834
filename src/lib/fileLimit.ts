import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** The process's open-file limit: soft (in force) and hard (the most it may be raised to). */
export function fileLimit(): { soft: number; hard: number } {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    const n = (v: string) => (v === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(v));
    if (m) return { soft: n(m[1]!), hard: n(m[2]!) };
  } catch {
    // not Linux
  }
  return { soft: 1024, hard: 1024 };
}

/**
 * Raises the open-file limit to `target` (root with CAP_SYS_RESOURCE may raise the hard limit up
 * to the kernel's `nr_open`; anyone the soft limit to the hard one) and returns the limit now in
 * force. Where the raise is refused, the limit stays as it was.
 * Node has no setrlimit, so util-linux `prlimit` sets it on this process.
 */
export function raiseFileLimit(target = 65_536): number {
  const { soft, hard } = fileLimit();
  let want = Math.max(hard, target);
  if (process.getuid?.() !== 0) want = hard;
  else {
    const nrOpen = Number(readFileSync("/proc/sys/fs/nr_open", "utf8").trim());
    if (Number.isFinite(nrOpen)) want = Math.min(want, nrOpen);
  }
  if (soft >= want) return soft;
  const set = (limit: number) =>
    spawnSync("prlimit", ["--pid", String(process.pid), `--nofile=${limit}:${limit}`], {
      stdio: "ignore",
      timeout: 5_000,
    }).status === 0;
  if (!set(want) && soft < hard) set(hard);
  return fileLimit().soft;
}
