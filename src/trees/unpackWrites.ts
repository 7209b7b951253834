import { constants } from "node:fs";
import { lstat, mkdir, readlink, symlink } from "node:fs/promises";
import { closeFd, openDirAt, openFd, openNoFollow, viaFd } from "./agentTree.js";

const { O_RDONLY, O_DIRECTORY } = constants;

/*
 * Unpacking writes: run by the unpack worker (as the sandbox uid, never root) into a code
 * directory it was handed as a descriptor. No entry is ever written through a link: every
 * directory on an entry's way is opened O_NOFOLLOW from its parent, so a link a previous
 * entry made (`a/l → ..`) stops the next one (`a/l/m`) instead of leading it out.
 */

/** Opens (creating) the directory `parts` below the open directory `root`. ELOOP on a link. */
export async function makeDirsAt(root: number, parts: string[], mode = 0o755): Promise<number> {
  let fd = root;
  try {
    for (const part of parts) {
      await mkdir(viaFd(fd, part), { mode }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "EEXIST") throw err;
      });
      const next = await openDirAt(fd, part);
      if (fd !== root) await closeFd(fd);
      fd = next;
    }
    // A second descriptor of `root` itself (through its /proc magic link, which is ours).
    return fd === root ? await openFd(viaFd(root), O_RDONLY | O_DIRECTORY) : fd;
  } catch (err) {
    if (fd !== root) await closeFd(fd).catch(() => {});
    throw err;
  }
}

/** A new regular file `name` in an open directory, for writing (never an existing name). */
export function createFileAt(dir: number, name: string, mode: number): Promise<number> {
  const { O_WRONLY, O_CREAT, O_EXCL } = constants;
  return openNoFollow(viaFd(dir, name), O_WRONLY | O_CREAT | O_EXCL, mode);
}

/** A new symlink `name` in an open directory. */
export function symlinkAt(dir: number, name: string, target: string): Promise<void> {
  return symlink(target, viaFd(dir, name));
}

/** Links one resolution may pass through (the kernel's own limit). */
const maxLinkHops = 40;

/**
 * Why the link at `linkParts` (below the open directory `root`) with `target` would lead out
 * of the tree as it is built now, or undefined when it stays inside. The target is resolved
 * one component at a time against the tree itself: a link on the way is replaced by its own
 * target, and at no point may the walk climb above the root or meet an absolute target.
 * (The last component may be a link: every link is judged on its own.)
 */
export async function linkLeavesTree(
  root: number,
  linkParts: string[],
  target: string,
): Promise<string | undefined> {
  const at = linkParts.slice(0, -1);
  const steps = split(target);
  if (target.startsWith("/")) return "it is absolute";
  let hops = 0;
  while (steps.length > 0) {
    const step = steps.shift()!;
    if (step === "..") {
      if (at.length === 0) return "it climbs above the code directory";
      at.pop();
      continue;
    }
    at.push(step);
    if (steps.length === 0) break;
    const where = viaFd(root, at.join("/"));
    const s = await lstat(where).catch((err: NodeJS.ErrnoException) =>
      err.code === "ENOENT" || err.code === "ENOTDIR" ? undefined : err,
    );
    if (s instanceof Error) return `it cannot be resolved (${s.message})`;
    if (!s?.isSymbolicLink()) continue;
    if (++hops > maxLinkHops) return "it goes through too many links";
    const next = await readlink(where);
    if (next.startsWith("/")) return `it goes through the absolute link '${at.join("/")}'`;
    at.pop();
    steps.unshift(...split(next));
  }
  return undefined;
}

const split = (target: string) => target.split("/").filter((p) => p !== "" && p !== ".");
