import { constants, type Stats } from "node:fs";
import { chmod, lchown, lstat, open, readdir, type FileHandle } from "node:fs/promises";

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;

/** Deeper trees are refused: no dependency install nests this far. */
export const maxTreeDepth = 256;

const viaFd = (fd: number, name?: string) =>
  name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;

/** One entry of a walk: change its owner or mode without following a link. */
interface Entry {
  st: Stats;
  chown(uid: number, gid: number): Promise<void>;
  chmod(mode: number): Promise<void>;
}

const dirEntry = async (dir: FileHandle): Promise<Entry> => ({
  st: await dir.stat(),
  chown: (uid, gid) => dir.chown(uid, gid),
  chmod: (mode) => dir.chmod(mode),
});

/**
 * Visits `root` and every entry under it without following a symlink: each directory is
 * opened with O_NOFOLLOW relative to its parent's descriptor, so neither a link nor the
 * length of a path can take the walk anywhere else; directories are changed through their
 * descriptor, other entries through their parent's. Throws past `maxTreeDepth` levels.
 */
async function walkTree(root: string, visit: (entry: Entry) => Promise<void>): Promise<void> {
  const top = await open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  const walkDir = async (dir: FileHandle, depth: number): Promise<void> => {
    if (depth > maxTreeDepth)
      throw new Error(`the build tree is more than ${maxTreeDepth} directories deep`);
    for (const name of await readdir(viaFd(dir.fd))) {
      const where = viaFd(dir.fd, name);
      let st: Stats;
      try {
        st = await lstat(where);
      } catch {
        continue; // gone meanwhile
      }
      if (st.isDirectory()) {
        let child: FileHandle;
        try {
          child = await open(where, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        } catch {
          continue; // replaced meanwhile by something that is not a directory
        }
        try {
          await visit(await dirEntry(child));
          await walkDir(child, depth + 1);
        } finally {
          await child.close();
        }
      } else {
        await visit({
          st,
          chown: (uid, gid) => lchown(where, uid, gid),
          // Only ever called for what lstat saw as not a link, with no writer left.
          chmod: (mode) => chmod(where, mode),
        });
      }
    }
  };
  try {
    await visit(await dirEntry(top));
    await walkDir(top, 1);
  } finally {
    await top.close();
  }
}

/** Gives the tree (and `root`) to `uid`: what a dependency install may write. */
export async function handOver(root: string, uid: number): Promise<void> {
  await walkTree(root, (e) => e.chown(uid, uid));
}

/**
 * Makes the tree read-only for the sandboxes and private to them: owned by root and the
 * sandbox group, directories 0750, files 0640 (0750 when executable), no setuid, setgid or
 * sticky bit, nothing for other host users. Run it only when nothing else writes the tree.
 * (A service not running as root keeps the owner: it has no sandboxes anyway.)
 */
export async function seal(root: string, gid: number): Promise<void> {
  const root0 = process.getuid?.() === 0;
  await walkTree(root, async (e) => {
    if (root0) await e.chown(0, gid);
    if (e.st.isSymbolicLink()) return; // a link has no mode of its own
    await e.chmod(e.st.isDirectory() || (e.st.mode & 0o111) !== 0 ? 0o750 : 0o640);
  });
}

/**
 * Disk the tree takes: allocated bytes, each entry counted as at least one 4 KiB block (so
 * that a million empty files cost something too).
 */
export async function treeUsage(root: string): Promise<number> {
  let bytes = 0;
  await walkTree(root, async ({ st }) => {
    bytes += Math.max(st.blocks * 512, 4096);
  });
  return bytes;
}
