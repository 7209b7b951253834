import { visitTree } from "../trees/agentTree.js";

/** Gives the tree (and `root`) to `uid`: what a dependency install may write. */
export async function handOver(root: string, uid: number): Promise<void> {
  await visitTree(root, (e) => e.chown(uid, uid));
}

/**
 * Makes the tree read-only for the sandboxes and private to them: owned by root and the
 * sandbox group, directories 0750, files 0640 (0750 when executable), no setuid, setgid or
 * sticky bit, nothing for other host users. Run it only when nothing else writes the tree.
 * (A service not running as root keeps the owner: it has no sandboxes anyway.)
 */
export async function seal(root: string, gid: number): Promise<void> {
  const root0 = process.getuid?.() === 0;
  await visitTree(root, async (e) => {
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
  await visitTree(root, async ({ st }) => {
    bytes += Math.max(st.blocks * 512, 4096);
  });
  return bytes;
}
