import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  open,
  readFile,
  readdir,
  realpath,
  rename,
  rm,
  rmdir,
  unlink,
} from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import type { Logger } from "pino";

const execFileAsync = promisify(execFile);
/**
 * A mount, unmount or mkfs still running after this is stuck: killed, and its step fails (the
 * home's later operations wait for it, one at a time, so none may wait for good).
 */
const commandTimeoutMs = 60_000;
const run = (command: string, args: string[]) =>
  execFileAsync(command, args, { timeout: commandTimeoutMs, killSignal: "SIGKILL" });

export interface HomeVolumeOptions {
  /** Size of each home's filesystem: what the agent and uploads together may store. */
  quotaBytes: number;
  /** Most files, directories and links in one home (fewer for a small quota: one per 8 KiB). */
  inodes: number;
  log: Logger;
}

/** Where the filesystem image of a home lives: beside it, out of the sandbox's sight. */
export const imageOf = (home: string) => path.join(path.dirname(home), "home.img");

/**
 * Mount options of a home: no set-uid programs and no device nodes take effect, and the
 * kernel does not zero inode tables in the background (the image is sparse: they read as
 * zeros already). Programs in the home may run (agents install tools there).
 */
const mountOptions = "loop,nosuid,nodev,noinit_itable";

/** One inode per this many bytes of quota at most, so that inode tables stay ~3 % of it. */
const bytesPerInode = 8192;

/**
 * Each session's home as a filesystem of its own, so that the kernel holds it to its quota
 * whatever writes it — the agent, an upload, a tool it runs: a sparse ext4 image the size of
 * the quota, with a bounded inode count, loop-mounted on the home while the session runs or
 * its files are used (ENOSPC past either limit; the host's free space drops by at most the
 * quota). Where loop mounts are unavailable (or with the unisolated driver) homes are plain
 * directories and only uploads are held to the quota.
 *
 * Operations on one home run one at a time. The mount point exists only while mounted, so a
 * path that outlives its mount finds nothing instead of writing to the disk beneath.
 */
export class HomeVolumes {
  private readonly mounted = new Set<string>();
  private readonly queues = new Map<string, Promise<unknown>>();
  /** A blank image made ahead of time (mkfs off the start path), where one is kept. */
  private spare?: Promise<string | undefined>;
  private spareDir?: string;

  constructor(
    /** "image": homes are loop-mounted filesystems; "directory": plain directories. */
    readonly kind: "image" | "directory",
    private readonly options: HomeVolumeOptions,
  ) {}

  /**
   * Probes once (an image made and mounted in `scratchDir`) and says at start when homes
   * cannot have a kernel-enforced quota here.
   */
  static async open(
    scratchDir: string,
    options: HomeVolumeOptions & { images: boolean },
  ): Promise<HomeVolumes> {
    const why = options.images ? await probeImages(scratchDir) : "the sandbox driver is process";
    if (why)
      options.log.warn(
        { reason: why },
        "session homes are plain directories: AGENTHOST_SESSION_DISK_QUOTA_BYTES is checked on upload only, and an agent can fill the host's disk",
      );
    const volumes = new HomeVolumes(why ? "directory" : "image", options);
    if (!why) {
      for (const name of await readdir(scratchDir))
        if (/^spare-[0-9a-f]+\.img/.test(name))
          await rm(path.join(scratchDir, name), { force: true });
      volumes.spareDir = scratchDir;
      volumes.spare = volumes.makeSpare();
    }
    return volumes;
  }

  /** A home with files: its image, or (plain directories) the directory. */
  async exists(home: string): Promise<boolean> {
    return (await present(imageOf(home))) || (await present(home));
  }

  /**
   * Puts the home in place: its image mounted on it (made first, and given to `uid`, when the
   * home is new), or the plain directory. An existing home keeps its owner. Idempotent.
   */
  prepare(home: string, uid: number): Promise<void> {
    return this.serial(home, async () => {
      if (this.mounted.has(home)) return;
      if (this.kind === "directory") return plainHome(home, uid);
      const image = imageOf(home);
      await mkdir(path.dirname(home), { recursive: true, mode: 0o711 });
      let fresh = false;
      if (!(await present(image))) {
        if ((await readdir(home).catch(() => [])).length > 0) {
          // A home of an earlier version of the service: kept as it is, unlimited.
          this.options.log.warn({ home }, "a session home without an image is not held to quota");
          return plainHome(home, uid);
        }
        await this.blankImage(image);
        fresh = true;
      }
      await mkdir(home, { mode: 0o700 }).catch(ignore("EEXIST"));
      await run("mount", ["-o", mountOptions, image, home]).catch(async (err: unknown) => {
        await rmdir(home).catch(() => {});
        throw err;
      });
      this.mounted.add(home);
      if (fresh) {
        await rmdir(path.join(home, "lost+found")).catch(() => {});
        await chown(home, uid, uid);
      }
      await chmod(home, 0o700);
    });
  }

  /**
   * Moves a prepared home (a warm pool slot's, whose sandbox already sees it) to `to`, where
   * no home may exist yet. Throws (and leaves `from` as it was) when one does.
   */
  move(from: string, to: string): Promise<void> {
    return this.serial(from, () =>
      this.serial(to, async () => {
        await mkdir(path.dirname(to), { recursive: true, mode: 0o711 });
        if (this.kind === "directory" || !this.mounted.has(from)) return rename(from, to);
        // link, not rename: an image that appeared meanwhile is never replaced.
        await link(imageOf(from), imageOf(to));
        try {
          await mkdir(to, { mode: 0o700 });
          try {
            await run("mount", ["--move", from, to]);
          } catch {
            // A shared parent mount refuses --move: a bind of the same filesystem, then the
            // old mount let go.
            await run("mount", ["--bind", from, to]);
            await umount(from);
          }
        } catch (err) {
          // Nothing of the session's is left: its home must not mount this image a second time.
          await rmdir(to).catch(() => {});
          await unlink(imageOf(to)).catch(() => {});
          throw err;
        }
        this.mounted.delete(from);
        this.mounted.add(to);
        await unlink(imageOf(from)).catch(() => {});
        await rmdir(from).catch(() => {});
      }),
    );
  }

  /**
   * Unmounts the home (its files stay in the image) and removes the mount point. A file
   * operation still holding descriptors in it finishes in the image (a lazy unmount).
   */
  release(home: string): Promise<void> {
    return this.serial(home, async () => {
      if (!this.mounted.has(home)) return;
      await umount(home); // still counted as mounted when this fails: nothing deletes through it
      this.mounted.delete(home);
      await rmdir(home).catch(() => {});
    });
  }

  /** Every home still mounted (at shutdown); the spare image removed. */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.mounted].map((home) => this.release(home)));
    const spare = await this.spare?.catch(() => undefined);
    this.spare = this.spareDir = undefined;
    if (spare) await rm(spare, { force: true });
  }

  /**
   * After a crash of an earlier run: unmounts whatever is mounted below these directories
   * (deepest first), so that nothing is deleted through a mount and every loop device is let go.
   */
  async sweep(dirs: string[]): Promise<number> {
    const roots = await Promise.all(dirs.map((d) => realpath(d).catch(() => path.resolve(d))));
    const points = mountPoints(await readFile("/proc/self/mountinfo", "utf8"))
      .filter((p) => roots.some((root) => p.startsWith(`${root}/`)))
      .sort((a, b) => b.length - a.length);
    for (const point of points) {
      await umount(point).catch((err: unknown) =>
        this.options.log.error({ err, point }, "could not unmount a home left by an earlier run"),
      );
      await rmdir(point).catch(() => {});
      this.mounted.delete(point);
    }
    return points.length;
  }

  /** A blank image at `image`: the spare (and the next spare started), else made now. */
  private async blankImage(image: string): Promise<void> {
    const spare = this.spare;
    this.spare = this.makeSpare();
    const file = await spare?.catch(() => undefined);
    if (file) {
      try {
        return await rename(file, image);
      } catch {
        await rm(file, { force: true }); // e.g. another filesystem: made in place instead
      }
    }
    await this.makeImage(image);
  }

  private makeSpare(): Promise<string | undefined> | undefined {
    if (!this.spareDir) return undefined;
    const file = path.join(this.spareDir, `spare-${randomBytes(6).toString("hex")}.img`);
    const made = this.makeImage(file).then(
      () => file,
      (err: unknown) => {
        this.options.log.warn({ err }, "could not make a spare home image");
        return undefined;
      },
    );
    return made;
  }

  private makeImage(image: string): Promise<void> {
    return makeImage(image, this.options.quotaBytes, this.options.inodes);
  }

  /** Runs `fn` after every earlier operation on `key`. */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.queues.get(key) ?? Promise.resolve();
    const result = before.then(fn, fn);
    const tail = result.catch(() => {});
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return result;
  }
}

/** A sparse image with an empty ext4 filesystem, complete or absent (made aside, renamed). */
export async function makeImage(image: string, quotaBytes: number, inodes: number): Promise<void> {
  const temp = `${image}.${randomBytes(4).toString("hex")}`;
  try {
    const file = await open(temp, "wx", 0o600);
    await file.truncate(quotaBytes).finally(() => file.close());
    await run("mkfs.ext4", [
      ...["-q", "-F", "-m", "0", "-T", "default"],
      ...["-N", String(Math.max(16, Math.min(inodes, Math.floor(quotaBytes / bytesPerInode))))],
      // Never resized; a small journal for a big home (it is carved out of the quota).
      ...["-O", "^resize_inode", ...(quotaBytes >= 512 * 1024 * 1024 ? ["-J", "size=16"] : [])],
      ...["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"],
      temp,
    ]);
    await rename(temp, image);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** A plain directory home; a new one is given to `uid` (an existing one keeps its owner). */
async function plainHome(home: string, uid: number): Promise<void> {
  if ((await mkdir(home, { recursive: true, mode: 0o700 })) !== undefined)
    await chown(home, uid, uid);
}

/** Unmounts; lazily when something (an upload in flight, a dying sandbox) still uses it. */
async function umount(point: string): Promise<void> {
  await run("umount", [point]).catch(() => run("umount", ["-l", point]));
}

/** Mount points in a mountinfo text (field 5, with its octal escapes undone). */
export function mountPoints(mountinfo: string): string[] {
  return mountinfo
    .split("\n")
    .filter(Boolean)
    .map((line) =>
      line
        .split(" ")[4]!
        .replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    );
}

/** Why homes cannot be loop-mounted images here, or undefined when they can. */
async function probeImages(scratchDir: string): Promise<string | undefined> {
  const dir = path.join(scratchDir, `home-probe-${randomBytes(4).toString("hex")}`);
  const home = path.join(dir, "home");
  const volumes = new HomeVolumes("image", {
    quotaBytes: 1024 * 1024,
    inodes: 64,
    log: { warn() {}, error() {} } as unknown as Logger,
  });
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await volumes.prepare(home, 0);
    await volumes.release(home);
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") return "mkfs.ext4 or mount is not installed (e2fsprogs, util-linux)";
    return `a loop-mounted ext4 image could not be mounted: ${(e.stderr || e.message).trim()}`;
  } finally {
    await volumes.releaseAll().catch(() => {});
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

function present(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

const ignore = (code: string) => (err: NodeJS.ErrnoException) => {
  if (err.code !== code) throw err;
};
