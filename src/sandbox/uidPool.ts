import { readFileSync } from "node:fs";

export interface UidRange {
  first: number;
  last: number;
}

/** "FIRST-LAST" (inclusive), e.g. "1879048192-1879113727"; undefined when malformed. */
export function parseUidRange(text: string): UidRange | undefined {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  if (!m) return undefined;
  const [first, last] = [Number(m[1]), Number(m[2])];
  if (first < 1 || last < first || last >= 2 ** 32 - 1) return undefined;
  return { first, last };
}

/**
 * Why the range cannot hold sandboxes, or undefined when it can: it must not contain an
 * account of this host (/etc/passwd), a subordinate range some user may map (/etc/subuid),
 * or the uid builds run as.
 */
export function checkUidRange(range: UidRange, buildUid: number): string | undefined {
  const inRange = (uid: number) => uid >= range.first && uid <= range.last;
  if (inRange(buildUid)) return `it contains the sandbox uid ${buildUid}`;
  const read = (file: string) => {
    try {
      return readFileSync(file, "utf8").split("\n");
    } catch {
      return [];
    }
  };
  for (const line of read("/etc/passwd")) {
    const [name, , uid] = line.split(":");
    if (uid !== undefined && /^\d+$/.test(uid) && inRange(Number(uid)))
      return `it contains the uid ${uid} of the account ${name} (/etc/passwd)`;
  }
  for (const file of ["/etc/subuid", "/etc/subgid"]) {
    for (const line of read(file)) {
      const [name, start, count] = line.split(":");
      if (!start || !count || !/^\d+$/.test(start) || !/^\d+$/.test(count)) continue;
      const [a, b] = [Number(start), Number(start) + Number(count) - 1];
      if (a <= range.last && b >= range.first)
        return `it overlaps ${name}'s subordinate ids ${a}-${b} (${file})`;
    }
  }
  return undefined;
}

/**
 * Host uids for sandboxes, one per running sandbox: every per-uid kernel limit and quota
 * (keyrings, inotify instances, RLIMIT_NPROC, …) is per sandbox, and one session's files are
 * not another's.
 */
export class UidPool {
  private readonly used = new Set<number>();

  constructor(private readonly range: UidRange) {}

  includes(uid: number): boolean {
    return uid >= this.range.first && uid <= this.range.last;
  }

  /** A uid no running sandbox has, not reserved: for a home made before its sandbox starts. */
  pick(): number {
    const size = this.range.last - this.range.first + 1;
    if (this.used.size >= size) throw new Error("every sandbox uid is in use");
    for (;;) {
      const uid = this.range.first + Math.floor(Math.random() * size);
      if (!this.used.has(uid)) return uid;
    }
  }

  /** Reserves `prefer` when it is in the range and free, else a random free uid. */
  take(prefer?: number): number {
    const uid =
      prefer !== undefined && this.includes(prefer) && !this.used.has(prefer)
        ? prefer
        : this.pick();
    this.used.add(uid);
    return uid;
  }

  release(uid: number): void {
    this.used.delete(uid);
  }
}
