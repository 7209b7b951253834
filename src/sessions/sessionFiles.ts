import { randomBytes } from "node:crypto";
import fs, { constants, createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { lchown, lstat, mkdir, readdir, rename, rmdir, statfs, unlink } from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { AppError } from "../domain/errors.js";

// Plain descriptors (not FileHandles, which close themselves when collected).
const openFd = promisify(fs.open);
const close = promisify(fs.close);
const fstat = promisify(fs.fstat);
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

/** The directory an open descriptor names, as a path that resolves from it (like openat). */
const viaFd = (fd: number, name?: string) =>
  name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;

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
  ) {}

  /**
   * Opens the directory of `parts` (all of them), creating missing ones when asked. The
   * caller closes the descriptor.
   */
  private async openDir(parts: string[], create = false): Promise<number> {
    let fd = await openNoFollow(this.root, O_RDONLY | O_DIRECTORY);
    try {
      for (const part of parts) {
        let next: number;
        try {
          next = await openNoFollow(viaFd(fd, part), O_RDONLY | O_DIRECTORY);
        } catch (err) {
          if (!create || (err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
          await mkdir(viaFd(fd, part), { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
            if (e.code !== "EEXIST") throw e;
          });
          await lchown(viaFd(fd, part), this.uid, this.uid);
          next = await openNoFollow(viaFd(fd, part), O_RDONLY | O_DIRECTORY);
        }
        await close(fd);
        fd = next;
      }
      return fd;
    } catch (err) {
      await close(fd).catch(() => {});
      throw pathError(err);
    }
  }

  /**
   * Streams `source` into `parts` (parents created): a temp file beside it, renamed into
   * place when complete, so a reader never sees half a file. Past `maxBytes` nothing is left.
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
    const dir = await this.openDir(parts.slice(0, -1), true).catch((err) => this.full(err));
    const name = parts.at(-1)!;
    const temp = `.agenthost-upload-${randomBytes(6).toString("hex")}`;
    let written = 0;
    try {
      const existing = await lstat(viaFd(dir, name)).catch(() => undefined);
      if (existing?.isDirectory())
        throw new AppError("conflict", `'${parts.join("/")}' is a directory.`, "path");
      const fd = await openFd(viaFd(dir, temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
      await fchown(fd, this.uid, this.uid);
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
        await pipeline(
          source,
          count,
          createWriteStream("", { fd, autoClose: false, highWaterMark: 1024 * 1024 }),
        );
        await fsync(fd);
      } catch (err) {
        await unlink(viaFd(dir, temp)).catch(() => {});
        throw err;
      } finally {
        await close(fd).catch(() => {});
      }
      await rename(viaFd(dir, temp), viaFd(dir, name)).catch(async (err) => {
        await unlink(viaFd(dir, temp)).catch(() => {});
        throw pathError(err); // e.g. the agent made a directory of that name meanwhile
      });
      return written;
    } catch (err) {
      return await this.full(err);
    } finally {
      await close(dir).catch(() => {});
    }
  }

  /** Rethrows `err`, as the quota's answer when it is the home's own filesystem filling up. */
  private async full(err: unknown): Promise<never> {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === "ENOSPC" || code === "EDQUOT") && (await this.freeBytes()) !== undefined)
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
      if (!s.isDirectory()) return await unlink(viaFd(dir, name));
      const child = await openNoFollow(viaFd(dir, name), O_RDONLY | O_DIRECTORY);
      try {
        if ((await readdir(viaFd(child))).length > 0) {
          if (!recursive)
            throw new AppError(
              "directory_not_empty",
              `'${parts.join("/")}' is not empty; repeat with recursive=true.`,
              "recursive",
            );
          await emptyDir(child);
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
   * Bytes still free in the home when it is a filesystem of its own (its quota, enforced by
   * the kernel: see homeVolume.ts), from one statfs; undefined for a plain directory.
   */
  async freeBytes(): Promise<number | undefined> {
    const [home, parent] = await Promise.all([lstat(this.root), lstat(path.dirname(this.root))]);
    if (home.dev === parent.dev) return undefined;
    const s = await statfs(this.root);
    return s.bavail * s.bsize;
  }

  /** Bytes used by regular files in the home (symlinks not followed). */
  async usage(): Promise<number> {
    const dir = await this.openDir([]);
    try {
      return await sizeOf(dir);
    } finally {
      await close(dir).catch(() => {});
    }
  }
}

function openNoFollow(file: string, flags: number): Promise<number> {
  return openFd(file, flags | O_NOFOLLOW);
}

/**
 * Runs `fn` on the child directory `name` of an open directory, opened without following a
 * link and closed afterwards. Undefined when it is not (or no longer) a real directory.
 */
async function inChildDir<T>(fd: number, name: string, fn: (child: number) => Promise<T>) {
  const child = await openNoFollow(viaFd(fd, name), O_RDONLY | O_DIRECTORY).catch(() => undefined);
  if (child === undefined) return undefined;
  try {
    return await fn(child);
  } finally {
    await close(child).catch(() => {});
  }
}

/** Deletes everything in an open directory, walking by descriptors only. */
async function emptyDir(fd: number): Promise<void> {
  for (const name of await readdir(viaFd(fd))) {
    const s = await lstat(viaFd(fd, name)).catch(() => undefined);
    const emptied = s?.isDirectory()
      ? await inChildDir(fd, name, async (child) => (await emptyDir(child), true))
      : undefined;
    if (emptied) await rmdir(viaFd(fd, name)).catch(() => {});
    // A file, a link, or a directory swapped for a link meanwhile: unlinked, never followed.
    else if (s) await unlink(viaFd(fd, name)).catch(() => {});
  }
}

/** Bytes of the regular files under an open directory (links not followed). */
async function sizeOf(fd: number): Promise<number> {
  let total = 0;
  for (const name of await readdir(viaFd(fd))) {
    const s = await lstat(viaFd(fd, name)).catch(() => undefined);
    if (s?.isDirectory()) total += (await inChildDir(fd, name, sizeOf)) ?? 0;
    else if (s?.isFile()) total += s.size;
  }
  return total;
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
  if (code === "ENOTEMPTY")
    return new AppError(
      "directory_not_empty",
      "The directory is not empty (it changed meanwhile).",
      "path",
    );
  if (code === "ENAMETOOLONG")
    return new AppError("invalid_parameter", "The path is too long.", "path");
  return err;
}
