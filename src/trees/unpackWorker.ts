import fs from "node:fs";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import type { ZipFile } from "yauzl";
import { readAll, walk, type CheckedEntry, type ZipLimits } from "../build/zipArchive.js";
import { closeFd } from "./agentTree.js";
import { createFileAt, linkLeavesTree, makeDirsAt, symlinkAt } from "./unpackWrites.js";

/*
 * The unpack worker: a child process started by `unpackZip`, with the zip open on fd 3 and
 * the empty code directory open on fd 4. Once its modules are loaded (as the service's user,
 * who can read them wherever the service is installed), it drops to the sandbox uid for good
 * (groups, gid, uid: no capability is left) before it reads a byte of the zip. It writes the
 * entries descriptor-relative (see agentTree.ts), checks every link against the tree as
 * built, and prints one JSON line: {"ok":true,"bytes":N} or {"ok":false,"message":"…"}.
 */

const zipFd = 3;
const rootFd = 4;

async function unpack(limits: ZipLimits): Promise<number> {
  let bytes = 0;
  const links: { parts: string[]; target: string; name: string }[] = [];
  const openStream = (zip: ZipFile, c: CheckedEntry) =>
    promisify(zip.openReadStream.bind(zip))(c.entry);
  await walk(zipFd, limits, async (zip, c) => {
    const parts = c.name.split("/").filter((p) => p !== "" && p !== ".");
    if (parts.length === 0) return;
    const where = (err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      const why =
        code === "ELOOP" || code === "ENOTDIR"
          ? "its path goes through a symlink or a file of the zip"
          : code === "EEXIST"
            ? "the zip holds that name twice"
            : (err as Error).message;
      return new Error(`the entry '${c.name}' cannot be written: ${why}.`);
    };
    const dir = await makeDirsAt(rootFd, c.kind === "dir" ? parts : parts.slice(0, -1)).catch(
      (err: unknown) => {
        throw where(err);
      },
    );
    try {
      if (c.kind === "dir") return;
      const name = parts.at(-1)!;
      const stream = await openStream(zip, c);
      if (c.kind === "symlink") {
        const target = (await readAll(stream, 4096)).toString("utf8");
        await symlinkAt(dir, name, target).catch((err: unknown) => {
          throw where(err);
        });
        links.push({ parts, target, name: c.name });
        return;
      }
      const fd = await createFileAt(dir, name, c.executable ? 0o555 : 0o444).catch(
        (err: unknown) => {
          throw where(err);
        },
      );
      const out = fs.createWriteStream("", { fd, highWaterMark: 1024 * 1024 });
      await pipeline(stream, out);
      bytes += out.bytesWritten;
    } finally {
      await closeFd(dir).catch(() => {});
    }
  });
  // Links are judged once the whole tree stands: a later entry may turn a step into a link.
  for (const link of links) {
    const why = await linkLeavesTree(rootFd, link.parts, link.target);
    if (why)
      throw new Error(
        `the symlink '${link.name}' → '${link.target}' would lead out of the code directory: ${why}.`,
      );
  }
  return bytes;
}

/** Becomes `uid` (and gid) with no supplementary groups, irreversibly, or exits. */
function dropTo(uid: number): void {
  if (process.getuid?.() === 0) {
    process.setgroups?.([]);
    process.setgid?.(uid);
    process.setuid?.(uid);
  }
  if (process.getuid?.() !== uid || process.geteuid?.() !== uid || process.getegid?.() !== uid) {
    process.stdout.write(
      `${JSON.stringify({ ok: false, message: `could not become uid ${uid}` })}\n`,
    );
    process.exit(1);
  }
}

const limits = JSON.parse(process.argv[2] ?? "{}") as ZipLimits;
const uid = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
if (uid !== undefined) dropTo(uid);
unpack(limits).then(
  (bytes) => process.stdout.write(`${JSON.stringify({ ok: true, bytes })}\n`),
  (err: unknown) => {
    process.stdout.write(`${JSON.stringify({ ok: false, message: (err as Error).message })}\n`);
    process.exitCode = 1;
  },
);
