import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { pino } from "pino";
import { HomeVolumes, makeImage } from "../src/sessions/homeVolume.js";
import { removeDir, tempDir } from "./processes.js";
import { envInt, fixed, quantile, type Section } from "./report.js";

/*
 * What a session home of its own costs (src/sessions/homeVolume.ts), with the service's
 * defaults (1 GiB, 100,000 inodes): a new home (sparse image, mkfs.ext4, loop mount), the
 * warm pool's hand-over of a slot's home to its session, an unmount, and a mount of an
 * existing image (a resumed session).
 *
 *   node --import tsx bench/homeVolume.ts      (BENCH_HOMES, default 30)
 */

export async function homeVolumeBench(): Promise<Section> {
  const count = envInt("BENCH_HOMES", 30);
  const dir = tempDir("agenthost-bench-homes-");
  const times = {
    mkfs: [] as number[],
    fresh: [] as number[],
    move: [] as number[],
    release: [] as number[],
  };
  const resume: number[] = [];
  let allocatedKb = 0;
  const volumes = await HomeVolumes.open(dir, {
    images: true,
    quotaBytes: 1024 ** 3,
    inodes: 100_000,
    log: pino({ level: "silent" }),
  });
  if (volumes.kind !== "image") throw new Error("loop-mounted images are unavailable here");
  const timed = async (into: number[], fn: () => Promise<void>) => {
    const t0 = performance.now();
    await fn();
    into.push(performance.now() - t0);
  };
  try {
    for (let i = 0; i < count; i++) {
      const slot = path.join(dir, "pool", String(i), "home");
      const home = path.join(dir, "sessions", String(i), "home");
      await timed(times.mkfs, () =>
        makeImage(path.join(dir, `blank-${i}.img`), 1024 ** 3, 100_000),
      );
      await timed(times.fresh, () => volumes.prepare(slot, 65534));
      await timed(times.move, () => volumes.move(slot, home));
      await timed(times.release, () => volumes.release(home));
      await timed(resume, () => volumes.prepare(home, 65534));
      await volumes.release(home);
      allocatedKb += statSync(path.join(path.dirname(home), "home.img")).blocks / 2;
    }
  } finally {
    await volumes.releaseAll();
    removeDir(dir);
  }
  const row = (name: string, xs: number[]) => [
    name,
    String(xs.length),
    fixed(quantile(xs, 0.5), 1),
    fixed(quantile(xs, 0.95), 1),
  ];
  return {
    title: "A session home of its own: image, mount, hand-over, unmount",
    table: {
      header: ["step", "homes", "p50 ms", "p95 ms"],
      rows: [
        row("blank image: sparse 1 GiB file + mkfs.ext4 (-N 100000)", times.mkfs),
        row("new home: the spare blank image renamed + loop mount + chown", times.fresh),
        row("warm hand-over: link image + mount --move", times.move),
        row("release: umount + rmdir", times.release),
        row("resumed home: loop mount of the existing image + chown", resume),
      ],
    },
    notes: [
      `${spawnSync("mkfs.ext4", ["-V"], { encoding: "utf8" }).stderr.split("\n")[0]}; each step spawns mkfs.ext4, mount or umount from Node. A new home takes the blank image made ahead of time (the next one is made in the background), so mkfs is off the start path unless homes are made faster than one per mkfs.`,
      `An empty home's image takes ${fixed(allocatedKb / count / 1024, 2)} MiB of the host's disk (sparse; inode tables and journal are not written until used).`,
      `Shared 2-vCPU machine: load average (1 min) ${fixed(loadavg()[0]!)} at the end.`,
    ],
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const { renderSection } = await import("./report.js");
  process.stdout.write(renderSection(await homeVolumeBench()));
}
