import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { chown, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ZipLimits } from "../build/zipArchive.js";
import { closeFd, openFd, openNoFollow } from "./agentTree.js";

const here = fileURLToPath(import.meta.url);
/** The worker beside this file (`.ts` when run from source, `.js` when built). */
const worker = path.join(path.dirname(here), `unpackWorker${path.extname(here)}`);

/** The module loaders this process runs with (tsx from source), and nothing else of its flags. */
function loaderFlags(argv: string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (/^--(import|loader|experimental-loader|require)=/.test(flag)) kept.push(flag);
    else if (
      /^(--import|--loader|--experimental-loader|--require|-r)$/.test(flag) &&
      i + 1 < argv.length
    )
      kept.push(flag, argv[++i]!);
  }
  return kept;
}

/**
 * Unpacks a checked zip into `dir` (which must not exist yet) in a child process that
 * becomes `uid` before it reads the zip — never root, so no write an entry can steer lands
 * anywhere that uid could not write anyway — and descriptor-relative, so no entry is
 * written through a link. The child sees only the zip and the code directory, as
 * descriptors. Rejects with why the zip cannot
 * be unpacked. Resolves with the bytes written.
 */
export async function unpackZip(
  zipFile: string,
  dir: string,
  limits: ZipLimits,
  uid: number | undefined,
): Promise<number> {
  await mkdir(dir, { mode: 0o755 });
  if (uid !== undefined) await chown(dir, uid, uid);
  const zipFd = await openFd(zipFile, constants.O_RDONLY);
  try {
    const dirFd = await openNoFollow(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      return await runWorker(zipFd, dirFd, limits, uid);
    } finally {
      await closeFd(dirFd).catch(() => {});
    }
  } finally {
    await closeFd(zipFd).catch(() => {});
  }
}

/** The longest an unpack may take (750 MB of entries take seconds). */
const unpackTimeoutMs = 10 * 60_000;

function runWorker(
  zipFd: number,
  dirFd: number,
  limits: ZipLimits,
  uid: number | undefined,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        ...loaderFlags(process.execArgv),
        worker,
        JSON.stringify(limits),
        ...(uid === undefined ? [] : [String(uid)]),
      ],
      {
        stdio: ["ignore", "pipe", "pipe", zipFd, dirFd],
        // Bounded work (the zip's limits), and never left running longer than this.
        timeout: unpackTimeoutMs,
        killSignal: "SIGKILL",
        // From source (tsx): no compile cache to write.
        env: { PATH: "/usr/bin:/bin", TSX_DISABLE_CACHE: "1" },
      },
    );
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-65536)));
    child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4096)));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const line = out.trim().split("\n").at(-1) ?? "";
      let result: { ok: boolean; bytes?: number; message?: string } | undefined;
      try {
        result = JSON.parse(line) as typeof result;
      } catch {
        result = undefined;
      }
      if (result?.ok && code === 0) resolve(result.bytes ?? 0);
      else
        reject(
          new Error(
            result?.message ??
              `the unpack process ended (${signal ?? `exit ${code}`}): ${err.trim().slice(-500)}`,
          ),
        );
    });
  });
}
