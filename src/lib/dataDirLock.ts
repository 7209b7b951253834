import { spawnSync } from "node:child_process";
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import path from "node:path";

/**
 * One service per data directory: an exclusive flock(2) on `agenthost.lock` in it, held for
 * the life of the process. The kernel releases it when the process ends, however it ends
 * (a kill -9 included), so no stale lock outlives a crash. The lock file holds the holder's
 * pid, for the message of whoever finds the directory taken.
 *
 * Node has no flock of its own: util-linux `flock` takes the lock on a descriptor this
 * process opened and hands it over, then exits. A flock belongs to the open file, not the
 * process that took it, so the lock stays held as long as this process keeps the file open.
 * The descriptor is close-on-exec, so sandboxes and other children never inherit it.
 */
export class DataDirLock {
  private constructor(
    readonly file: string,
    private fd: number | undefined,
  ) {}

  static file = (dataDir: string) => path.join(dataDir, "agenthost.lock");

  /** Takes the lock, or says who holds it. Throws on anything but a lock held elsewhere. */
  static acquire(dataDir: string): DataDirLock | { heldBy: number | undefined; file: string } {
    const file = DataDirLock.file(dataDir);
    // Not truncated on open: a holder's pid stays readable until this process holds the lock.
    const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
    let held = false;
    try {
      const result = spawnSync(
        "flock",
        ["--exclusive", "--nonblock", "--conflict-exit-code", "75", "3"],
        {
          stdio: ["ignore", "ignore", "pipe", fd],
        },
      );
      if (result.error)
        throw new Error(
          `cannot lock the data directory: ${result.error.message} (agenthost needs util-linux flock)`,
        );
      if (result.status === 75) {
        const pid = Number.parseInt(readFileSync(file, "utf8"), 10);
        return { heldBy: Number.isSafeInteger(pid) && pid > 0 ? pid : undefined, file };
      }
      if (result.status !== 0)
        throw new Error(
          `cannot lock ${file}: flock exited with ${result.status ?? result.signal}: ${result.stderr.toString().trim()}`,
        );
      held = true;
      try {
        ftruncateSync(fd, 0);
        writeSync(fd, `${process.pid}\n`, 0);
      } catch {
        // The pid only serves messages; a full disk must not stop a start.
      }
      return new DataDirLock(file, fd);
    } finally {
      if (!held) closeSync(fd);
    }
  }

  /** Releases the lock (a process that ends releases it anyway). */
  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
