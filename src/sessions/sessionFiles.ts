import { randomBytes } from "node:crypto";
import fs, { constants, createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { lstat, readdir, rename, rmdir, statfs, unlink } from "node:fs/promises";
import path from "node:path";
import { PassThrough, Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { AppError, isDiskFull } from "../domain/errors.js";
import {
  closeFd as close,
  emptyDir,
  fstat,
  openFd,
  openNoFollow,
  openPath,
  usageOf,
  viaFd,
} from "../trees/agentTree.js";

const fchown = promisify(fs.fchown);
const fsync = promisify(fs.fsync);

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_WRONLY, O_CREAT, O_EXCL } = constants;

export interface DirectoryEntry {
  name: string;
  size: number;
  isDirectory: boolean;
  /** Unix seconds. */
  modifiedTime: number;
}

/** A home's usage as last counted (undefined: count it again). */
export interface HomeLedger {
  bytes?: number;
}

/** Names of upload temp files (reserved: never listed, swept after a crash). */
export const uploadTempPrefix = ".agenthost-upload-";

/** Longest path and name accepted (Linux's own limits). */
const maxPathBytes = 4096;
const maxNameBytes = 255;

/**
 * A relative path in a session's home, as its components. A leading "/" means the home;
 * "." segments and repeated slashes are dropped; "..", NUL and over-long names are refused.
 */
export function splitHomePath(raw: string, param = "path"): string[] {
  if (raw.includes("\0")) throw new AppError("invalid_parameter", "The path contains NUL.", param);
  if (Buffer.byteLength(raw) > maxPathBytes)
    throw new AppError(
      "invalid_parameter",
      `The path is longer than ${maxPathBytes} bytes.`,
      param,
    );
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  for (const part of parts) {
    if (part === "..")
      throw new AppError("invalid_parameter", "The path may not contain '..'.", param);
    if (Buffer.byteLength(part) > maxNameBytes)
      throw new AppError(
        "invalid_parameter",
        `A name is longer than ${maxNameBytes} bytes.`,
        param,
      );
  }
  return parts;
}

/**
 * File operations in a session's home that never leave it. The agent owns the home and may
 * plant symlinks or swap directories while the service works, so no path is ever resolved
 * as a string: each directory is opened from the one before it (through its descriptor, with
 * O_NOFOLLOW), and the last name is acted on relative to its parent's descriptor. A symlink
 * anywhere on the way is refused. What the service creates belongs to the sandbox uid.
 */
export class SessionHome {
  constructor(
    private readonly root: string,
    private readonly uid: number,
    /** The home's usage, shared by every SessionHome of one session (see `usage`). */
    private readonly ledger: HomeLedger = {},
  ) {}

  /**
   * Opens the directory of `parts` (all of them), creating missing ones when asked. The
   * caller closes the descriptor.
   */
  private async openDir(parts: string[], create = false): Promise<number> {
    return openPath(this.root, parts, create ? { uid: this.uid, mode: 0o755 } : undefined).catch(
      (err: unknown) => {
        throw pathError(err);
      },
    );
  }

  /**
   * Streams `source` into `parts` (parents created): a temp file at the top of the home,
   * renamed into place when complete, so a reader never sees half a file. Past `maxBytes`
   * nothing is left. (A temp file a crash left is found at the top and swept: `sweepTemp`.)
   */
  async write(
    parts: string[],
    source: Readable,
    maxBytes: number,
    tooLarge: () => AppError = () =>
      new AppError("payload_too_large", `Session files are at most ${maxBytes} bytes.`),
  ): Promise<number> {
    if (parts.length === 0)
      throw new AppError("invalid_parameter", "The path names the home directory itself.", "path");
    const top = await this.openDir([]).catch((err) => this.full(err));
    let dir: number;
    try {
      dir = await this.openDir(parts.slice(0, -1), true);
    } catch (err) {
      await close(top).catch(() => {});
      return await this.full(err);
    }
    const name = parts.at(-1)!;
    const temp = `${uploadTempPrefix}${randomBytes(6).toString("hex")}`;
    let written = 0;
    try {
      const existing = await lstat(viaFd(dir, name)).catch(() => undefined);
      if (existing?.isDirectory())
        throw new AppError("conflict", `'${parts.join("/")}' is a directory.`, "path");
      // The home may be deleted meanwhile (the session with it): ENOENT, answered 404.
      const fd = await openFd(
        viaFd(top, temp),
        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
        0o644,
      ).catch((err: unknown) => {
        throw pathError(err);
      });
      // Large buffers: one write per MiB instead of one per network chunk.
      const count = new Transform({
        highWaterMark: 1024 * 1024,
        transform(chunk: Buffer, _encoding, done) {
          written += chunk.length;
          if (written > maxBytes) done(tooLarge());
          else done(null, chunk);
        },
      });
      try {
        await fchown(fd, this.uid, this.uid);
        await pipeline(
          borrowed(source),
          count,
          createWriteStream("", { fd, autoClose: false, highWaterMark: 1024 * 1024 }),
        );
        await fsync(fd);
      } catch (err) {
        await unlink(viaFd(top, temp)).catch(() => {});
        throw pathError(err);
      } finally {
        await close(fd).catch(() => {});
      }
      await rename(viaFd(top, temp), viaFd(dir, name)).catch(async (err) => {
        await unlink(viaFd(top, temp)).catch(() => {});
        throw pathError(err); // e.g. the agent made a directory of that name meanwhile
      });
      if (this.ledger.bytes !== undefined)
        this.ledger.bytes += written - (existing?.isFile() ? existing.size : 0);
      return written;
    } catch (err) {
      return await this.full(err);
    } finally {
      await close(dir).catch(() => {});
      await close(top).catch(() => {});
    }
  }

  /**
   * Rethrows `err`, as the quota's answer when it is the home's own filesystem that is full
   * (bytes or inodes); a full host disk under a home with room left stays what it is (507).
   */
  private async full(err: unknown): Promise<never> {
    if (isDiskFull(err) && (await this.ownFilesystemFull()))
      throw new AppError(
        "session_disk_quota_exceeded",
        "The session's home is full (its disk or file quota is used up); delete files first.",
      );
    throw err;
  }

  /** A read stream of the file at `parts` and its size; 400 for a directory. */
  async read(parts: string[]): Promise<{ stream: ReadStream; size: number }> {
    const dir = await this.openDir(parts.slice(0, -1));
    try {
      if (parts.length === 0) throw isDirectory(parts);
      // O_NONBLOCK: a FIFO the agent made must not hold the request (and a thread) forever.
      const fd = await openNoFollow(viaFd(dir, parts.at(-1)!), O_RDONLY | O_NONBLOCK).catch(
        (err) => {
          throw pathError(err);
        },
      );
      try {
        const stat = await fstat(fd);
        if (stat.isDirectory()) throw isDirectory(parts);
        if (!stat.isFile())
          throw new AppError(
            "invalid_parameter",
            `'${parts.join("/")}' is not a regular file.`,
            "path",
          );
        return {
          stream: createReadStream("", { fd, highWaterMark: 1024 * 1024 }),
          size: stat.size,
        };
      } catch (err) {
        await close(fd).catch(() => {});
        throw err;
      }
    } finally {
      await close(dir).catch(() => {});
    }
  }

  /** The immediate children of the directory at `parts`, sorted by name. */
  async list(parts: string[]): Promise<DirectoryEntry[]> {
    const dir = await this.openDir(parts);
    try {
      const entries: DirectoryEntry[] = [];
      for (const name of await readdir(viaFd(dir))) {
        if (name.startsWith(uploadTempPrefix)) continue; // an upload in progress, or a crash's
        const s = await lstat(viaFd(dir, name)).catch(() => undefined);
        if (!s) continue; // deleted meanwhile
        entries.push({
          name,
          size: s.isDirectory() ? 0 : s.size,
          isDirectory: s.isDirectory(),
          modifiedTime: Math.floor(s.mtimeMs / 1000),
        });
      }
      return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } finally {
      await close(dir).catch(() => {});
    }
  }

  /** Deletes a file, or a directory (empty unless `recursive`). The home itself stays. */
  async remove(parts: string[], recursive: boolean): Promise<void> {
    if (parts.length === 0)
      throw new AppError(
        "invalid_parameter",
        "The home directory itself cannot be deleted.",
        "path",
      );
    const dir = await this.openDir(parts.slice(0, -1));
    try {
      const name = parts.at(-1)!;
      const s = await lstat(viaFd(dir, name)).catch((err) => {
        throw pathError(err);
      });
      if (!s.isDirectory()) {
        await unlink(viaFd(dir, name));
        if (this.ledger.bytes !== undefined && s.isFile()) this.ledger.bytes -= s.size;
        return;
      }
      const child = await openNoFollow(viaFd(dir, name), O_RDONLY | O_DIRECTORY);
      try {
        if ((await readdir(viaFd(child))).length > 0) {
          if (!recursive)
            throw new AppError(
              "directory_not_empty",
              `'${parts.join("/")}' is not empty; repeat with recursive=true.`,
              "recursive",
            );
          const freed = { bytes: 0 };
          try {
            await emptyDir(child, this.ledger.bytes === undefined ? undefined : freed);
          } finally {
            if (this.ledger.bytes !== undefined) this.ledger.bytes -= freed.bytes;
          }
        }
      } finally {
        await close(child).catch(() => {});
      }
      await rmdir(viaFd(dir, name));
    } catch (err) {
      throw pathError(err); // e.g. the agent added files while they were being deleted
    } finally {
      await close(dir).catch(() => {});
    }
  }

  /**
   * Removes the temp files uploads left at the top of the home when the service was killed
   * mid-upload. Only safe before this run's first upload into the home (the runtime sweeps
   * each home once per run, before its first use).
   */
  async sweepTemp(): Promise<number> {
    const top = await this.openDir([]);
    let swept = 0;
    try {
      for (const name of await readdir(viaFd(top))) {
        if (!name.startsWith(uploadTempPrefix)) continue;
        swept++;
        await unlink(viaFd(top, name)).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== "EISDIR") return;
          const child = await openNoFollow(viaFd(top, name), O_RDONLY | O_DIRECTORY);
          try {
            await emptyDir(child);
          } finally {
            await close(child).catch(() => {});
          }
          await rmdir(viaFd(top, name)).catch(() => {});
        });
      }
      return swept;
    } finally {
      await close(top).catch(() => {});
    }
  }

  /**
   * Bytes still free in the home when it is a filesystem of its own (its quota, enforced by
   * the kernel: see homeVolume.ts), from one statfs; undefined for a plain directory.
   */
  async freeBytes(): Promise<number | undefined> {
    const own = await this.ownFilesystem();
    return own && own.bavail * own.bsize;
  }

  /** The filesystem's counts when the home is a filesystem of its own (its image). */
  private async ownFilesystem() {
    const [home, parent] = await Promise.all([lstat(this.root), lstat(path.dirname(this.root))]);
    return home.dev === parent.dev ? undefined : statfs(this.root);
  }

  /** The home is a filesystem of its own with (almost) no bytes or no inodes left. */
  private async ownFilesystemFull(): Promise<boolean> {
    const own = await this.ownFilesystem().catch(() => undefined);
    return own !== undefined && (own.bavail * own.bsize < 1024 * 1024 || own.ffree === 0);
  }

  /**
   * Bytes the home holds, without a walk per upload. When the home is a filesystem of its own
   * (a per-session image), the filesystem's own count (statfs). Otherwise the ledger: the
   * bytes of regular files found by one walk, then kept up to date by this service's uploads
   * and deletes; the runtime clears it at every start of the session (the agent writes too),
   * so a home is walked at most once per session start.
   */
  async usage(): Promise<number> {
    const own = await this.ownFilesystem().catch(() => undefined);
    if (own) return (own.blocks - own.bfree) * own.bsize;
    const dir = await this.openDir([]);
    try {
      this.ledger.bytes ??= (await usageOf(dir)).bytes;
      return Math.max(0, this.ledger.bytes);
    } finally {
      await close(dir).catch(() => {});
    }
  }
}

/**
 * The data of `source` as a stream the pipeline may destroy without destroying `source`: an
 * upload refused midway (too large) leaves the request open, so its answer can still be sent.
 */
function borrowed(source: Readable): Readable {
  const copy = new PassThrough({ highWaterMark: 1024 * 1024 });
  const fail = (err?: Error) => copy.destroy(err ?? new Error("The upload was cut off."));
  const cutOff = () => {
    if (!source.readableEnded) fail();
  };
  source.on("error", fail);
  source.on("close", cutOff);
  source.pipe(copy);
  copy.on("close", () => {
    source.unpipe(copy);
    source.off("error", fail);
    source.off("close", cutOff);
  });
  return copy;
}

const isDirectory = (parts: string[]) =>
  new AppError("invalid_parameter", `'${parts.join("/") || "/"}' is a directory.`, "path");

/** Filesystem errors of a path walk, as answers: absent → 404, a symlink or a file in the way → 400. */
function pathError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT")
    return new AppError("not_found", "No such file or directory in the session's home.", "path");
  if (code === "ELOOP" || code === "ENOTDIR")
    return new AppError(
      "invalid_parameter",
      "The path goes through a symbolic link or a file; only real directories of the home are followed.",
      "path",
    );
  if (code === "ENXIO")
    return new AppError(
      "invalid_parameter",
      "The path names a socket or device, not a file.",
      "path",
    );
  if (code === "EISDIR") return new AppError("conflict", "The path names a directory.", "path");
  if (code === "ENOTEMPTY" || code === "ETREECHANGED")
    return new AppError(
      "directory_not_empty",
      "The directory is not empty (it changed meanwhile).",
      "path",
    );
  if (code === "ENAMETOOLONG")
    return new AppError("invalid_parameter", "The path is too long.", "path");
  return err;
}
