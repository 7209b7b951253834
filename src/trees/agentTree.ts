import fs, { constants } from "node:fs";
import {
  chmod,
  lchown,
  link,
  mkdir,
  readdir,
  readlink,
  rmdir,
  symlink,
  unlink,
} from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

/*
 * Every operation the service (root) makes on a tree an agent, an install or an upload can
 * influence: session homes, run directories, warm pool slots, build directories. Such a tree
 * may hold symlinks planted anywhere, directories swapped for links while it is walked, and
 * chains thousands of levels deep. So nothing here resolves a path string inside the tree:
 * each directory is opened from its parent's descriptor (`/proc/self/fd/<dir>/<name>`, like
 * openat) with O_NOFOLLOW, and the last name is acted on relative to its parent's descriptor.
 * Walks are iterative and keep a bounded number of descriptors open, so no depth or path
 * length makes them fail.
 */

// Plain descriptors (not FileHandles, which close themselves when collected).
export const openFd = promisify(fs.open);
export const closeFd = promisify(fs.close);
export const fstat = promisify(fs.fstat);
const lstatP = promisify(fs.lstat);

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;

/** The directory an open descriptor names, as a path that resolves from it (like openat). */
export const viaFd = (fd: number, name?: string) =>
  name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;

/** Opens without following a final symlink (ELOOP for a link). */
export function openNoFollow(file: string, flags: number, mode?: number): Promise<number> {
  return openFd(file, flags | O_NOFOLLOW, mode);
}

/** Opens the real directory `name` inside an open directory; ELOOP/ENOTDIR for anything else. */
export function openDirAt(fd: number, name: string): Promise<number> {
  return openNoFollow(viaFd(fd, name), O_RDONLY | O_DIRECTORY);
}

/**
 * Opens the directory `parts` below `root` (a host-owned path), one component at a time from
 * its parent's descriptor. With `create`, missing directories are made (owned by `create.uid`).
 * A symlink on the way fails (ELOOP). The caller closes the descriptor.
 */
export async function openPath(
  root: string,
  parts: string[],
  create?: { uid: number; mode: number },
): Promise<number> {
  let fd = await openNoFollow(root, O_RDONLY | O_DIRECTORY);
  try {
    for (const part of parts) {
      let next: number;
      try {
        next = await openDirAt(fd, part);
      } catch (err) {
        if (!create || (err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        await mkdir(viaFd(fd, part), { mode: create.mode }).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== "EEXIST") throw e;
        });
        await lchown(viaFd(fd, part), create.uid, create.uid);
        next = await openDirAt(fd, part);
      }
      await closeFd(fd);
      fd = next;
    }
    return fd;
  } catch (err) {
    await closeFd(fd).catch(() => {});
    throw err;
  }
}

/** Descriptors one walk keeps open at most (besides the one it was given). */
const openWindow = 16;

interface Frame {
  /** Open while the frame is within `openWindow` of the deepest one. */
  fd: number | undefined;
  dev: number;
  ino: number;
  /** Name in the parent directory. */
  name: string;
  entries: fs.Dirent[];
  next: number;
}

/** The tree was changed under a walk in a way it cannot follow (a directory moved away). */
export class TreeChangedError extends Error {
  readonly code = "ETREECHANGED";
  constructor() {
    super("The directory tree changed while it was being walked.");
  }
}

interface Visitor {
  /** A non-directory entry (or one that is no longer a directory). */
  leaf(dir: number, entry: fs.Dirent): Promise<void>;
  /** A directory just opened (its descriptor valid during the call), before its contents. */
  entered?(fd: number, stat: fs.Stats): Promise<void>;
  /** A directory whose contents were all visited. */
  left?(parent: number, name: string): Promise<void>;
}

/**
 * Visits everything below the open directory `root`, depth first, without following a link
 * and without recursion: a directory is entered from its parent's descriptor; once a chain is
 * deeper than `openWindow`, the ancestors' descriptors are closed and reopened on the way back
 * through `..`, checked to be the same directory (device and inode) as on the way down.
 */
async function walk(root: number, visitor: Visitor): Promise<void> {
  const rootStat = await fstat(root);
  const stack: Frame[] = [
    {
      fd: root,
      dev: rootStat.dev,
      ino: rootStat.ino,
      name: "",
      entries: await readdir(viaFd(root), { withFileTypes: true }),
      next: 0,
    },
  ];
  try {
    while (stack.length > 0) {
      const top = stack.at(-1)!;
      const fd = top.fd!;
      if (top.next < top.entries.length) {
        const entry = top.entries[top.next++]!;
        if (!entry.isDirectory()) {
          await visitor.leaf(fd, entry);
          continue;
        }
        const child = await openDirAt(fd, entry.name).catch(() => undefined);
        if (child === undefined) {
          // Gone, or swapped for a link or a file meanwhile: a leaf, never followed.
          await visitor.leaf(fd, entry);
          continue;
        }
        let frame: Frame;
        try {
          const s = await fstat(child);
          if (visitor.entered) await visitor.entered(child, s);
          frame = {
            fd: child,
            dev: s.dev,
            ino: s.ino,
            name: entry.name,
            entries: await readdir(viaFd(child), { withFileTypes: true }),
            next: 0,
          };
        } catch (err) {
          await closeFd(child).catch(() => {});
          throw err;
        }
        stack.push(frame);
        const far = stack[stack.length - 1 - openWindow];
        if (stack.length - 1 - openWindow > 0 && far?.fd !== undefined) {
          await closeFd(far.fd);
          far.fd = undefined;
        }
        continue;
      }
      // Done with `top`: back to its parent (reopened through `..` when it was closed).
      stack.pop();
      const parent = stack.at(-1);
      if (!parent) break;
      if (parent.fd === undefined) {
        try {
          const up = await openNoFollow(viaFd(fd, ".."), O_RDONLY | O_DIRECTORY);
          const s = await fstat(up).catch(() => undefined);
          if (s?.dev !== parent.dev || s.ino !== parent.ino) {
            await closeFd(up);
            throw new TreeChangedError();
          }
          parent.fd = up;
        } catch (err) {
          await closeFd(fd).catch(() => {});
          throw err;
        }
      }
      await closeFd(fd);
      if (visitor.left) await visitor.left(parent.fd, top.name);
    }
  } finally {
    for (const frame of stack.slice(1))
      if (frame.fd !== undefined) await closeFd(frame.fd).catch(() => {});
  }
}

/**
 * Deletes everything in an open directory (which stays); links are removed, never followed.
 * With `freed`, the bytes of the regular files deleted are added to `freed.bytes`.
 */
export async function emptyDir(fd: number, freed?: { bytes: number }): Promise<void> {
  await walk(fd, {
    leaf: async (dir, entry) => {
      if (freed && entry.isFile())
        freed.bytes += (await lstatP(viaFd(dir, entry.name)).catch(() => undefined))?.size ?? 0;
      await unlink(viaFd(dir, entry.name)).catch(async (err: NodeJS.ErrnoException) => {
        // A directory that appeared under a file's name meanwhile.
        if (err.code === "EISDIR" || err.code === "EPERM") {
          const child = await openDirAt(dir, entry.name).catch(() => undefined);
          if (child === undefined) return;
          try {
            await emptyDir(child);
          } finally {
            await closeFd(child).catch(() => {});
          }
          await rmdir(viaFd(dir, entry.name)).catch(() => {});
        }
      });
    },
    left: (parent, name) => rmdir(viaFd(parent, name)).catch(() => {}),
  });
}

/**
 * Removes `target` and everything below it, like `rm -rf` (absent is fine), but with no
 * depth or path-length limit and never through a link. The directories leading to `target`
 * must be the host's own; `target` itself and all below may be hostile.
 */
export async function removeTree(target: string): Promise<void> {
  // The parent is the host's own path (it may itself be reached through a link of the host).
  const parent = await openFd(path.dirname(target), O_RDONLY | O_DIRECTORY).catch(
    (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    },
  );
  if (parent === undefined) return;
  const name = path.basename(target);
  try {
    for (let attempt = 1; ; attempt++) {
      const dir = await openDirAt(parent, name).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return null;
        if (err.code === "ELOOP" || err.code === "ENOTDIR") return undefined;
        throw err;
      });
      if (dir === null) return;
      if (dir === undefined) {
        await unlink(viaFd(parent, name)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== "ENOENT") throw err;
        });
        return;
      }
      try {
        await emptyDir(dir);
      } catch (err) {
        // Something still runs in the tree and moved a directory: walk it again.
        if (!(err instanceof TreeChangedError) || attempt >= 5) throw err;
        continue;
      } finally {
        await closeFd(dir).catch(() => {});
      }
      try {
        await rmdir(viaFd(parent, name));
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") return;
        if (code !== "ENOTEMPTY" || attempt >= 5) throw err;
      }
    }
  } finally {
    await closeFd(parent).catch(() => {});
  }
}

export interface TreeUsage {
  /** Bytes of regular files (links not followed, hard links counted once per name). */
  bytes: number;
  /** Entries of every kind, directories included. */
  entries: number;
}

/** What the tree below an open directory holds. */
export async function usageOf(fd: number): Promise<TreeUsage> {
  const usage: TreeUsage = { bytes: 0, entries: 0 };
  await walk(fd, {
    leaf: async (dir, entry) => {
      usage.entries++;
      if (!entry.isFile()) return;
      const s = await lstatP(viaFd(dir, entry.name)).catch(() => undefined);
      if (s?.isFile()) usage.bytes += s.size;
    },
    left: async () => void usage.entries++,
  });
  return usage;
}

/** What the tree at `dir` (host-owned path; absent: nothing) holds. */
export async function usageOfPath(dir: string): Promise<TreeUsage> {
  const fd = await openNoFollow(dir, O_RDONLY | O_DIRECTORY).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (fd === undefined) return { bytes: 0, entries: 0 };
  try {
    return await usageOf(fd);
  } finally {
    await closeFd(fd).catch(() => {});
  }
}

/** One entry of `visitTree`: its owner or mode changed without following a link. */
export interface TreeEntry {
  st: fs.Stats;
  chown(uid: number, gid: number): Promise<void>;
  chmod(mode: number): Promise<void>;
}

const fchownP = promisify(fs.fchown);
const fchmodP = promisify(fs.fchmod);
const dirEntry = (fd: number, st: fs.Stats): TreeEntry => ({
  st,
  chown: (uid, gid) => fchownP(fd, uid, gid),
  chmod: (mode) => fchmodP(fd, mode),
});

/**
 * Visits `root` (a host-owned path) and every entry below it, with no depth limit and never
 * through a link: directories are changed through their own descriptor, other entries through
 * their parent's (`lchown`; `chmod` only for what was not a link, so call it only when nothing
 * else writes the tree).
 */
export async function visitTree(root: string, visit: (entry: TreeEntry) => Promise<void>) {
  const top = await openNoFollow(root, O_RDONLY | O_DIRECTORY);
  try {
    await walk(top, {
      entered: (fd, st) => visit(dirEntry(fd, st)),
      leaf: async (dir, entry) => {
        const where = viaFd(dir, entry.name);
        const st = await lstatP(where).catch(() => undefined);
        if (!st) return; // gone meanwhile
        await visit({
          st,
          chown: (uid, gid) => lchown(where, uid, gid),
          chmod: async (mode) => {
            if (!st.isSymbolicLink()) await chmod(where, mode);
          },
        });
      },
    });
    // The root last: a walk cut short is done again (e.g. a home's owner is read from it).
    await visit(dirEntry(top, await fstat(top)));
  } finally {
    await closeFd(top).catch(() => {});
  }
}

/** How deep `linkTree` copies; a code tree deeper than this is refused. */
export const maxLinkDepth = 256;

/**
 * Recreates the tree at `from` in the empty directory `to` with hard links (instant, and the
 * code stays read-only): directories are made, symlinks copied as links (never followed),
 * regular files linked; sockets, FIFOs and devices are left out. `from` may be hostile (an
 * install ran in it), so it is walked by descriptors.
 */
export async function linkTree(from: string, to: string): Promise<void> {
  const source = await openNoFollow(from, O_RDONLY | O_DIRECTORY);
  try {
    const target = await openNoFollow(to, O_RDONLY | O_DIRECTORY);
    try {
      await linkDir(source, target, 0);
    } finally {
      await closeFd(target).catch(() => {});
    }
  } finally {
    await closeFd(source).catch(() => {});
  }
}

async function linkDir(source: number, target: number, depth: number): Promise<void> {
  if (depth > maxLinkDepth)
    throw new Error(`The code directory is nested deeper than ${maxLinkDepth} levels.`);
  for (const entry of await readdir(viaFd(source), { withFileTypes: true })) {
    const name = entry.name;
    if (entry.isDirectory()) {
      const child = await openDirAt(source, name).catch(() => undefined);
      if (child === undefined) continue; // swapped meanwhile: left out
      try {
        await mkdir(viaFd(target, name), { mode: 0o755 });
        const copy = await openDirAt(target, name);
        try {
          await linkDir(child, copy, depth + 1);
        } finally {
          await closeFd(copy).catch(() => {});
        }
      } finally {
        await closeFd(child).catch(() => {});
      }
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(viaFd(source, name)), viaFd(target, name));
    } else if (entry.isFile()) {
      // link(2) does not follow a final symlink, so a file swapped for one is linked as a link.
      await link(viaFd(source, name), viaFd(target, name));
    }
  }
}
