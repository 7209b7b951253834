import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, readdir, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** What a sandbox may use: the definition's `cpu` and `memory`, plus a process count. */
export interface Limits {
  /** CPU cores, e.g. 0.5. */
  cpu: number;
  memoryBytes: number;
  pids: number;
}

/** One sandbox's control group(s): limits, placement, OOM accounting and a provable kill. */
export interface Cgroup {
  /** Sets (or changes) the limits; a warm sandbox gets its agent's limits when launched. */
  setLimits(limits: Limits): Promise<void>;
  /** Moves a process (and the threads it has) into the group. */
  add(pid: number): Promise<void>;
  /** Process ids in the group. */
  procs(): Promise<number[]>;
  /** How many times the kernel's OOM killer struck in the group. */
  oomKills(): Promise<number>;
  /** SIGKILLs every process in the group and resolves when it is empty. */
  killAll(): Promise<void>;
  /** Removes the group; it must be empty. */
  remove(): Promise<void>;
}

export interface CgroupHost {
  readonly layout: "v1" | "v2";
  create(name: string): Promise<Cgroup>;
  /** Kills and removes every group this host created earlier (e.g. before a restart). */
  sweep(): Promise<number>;
  /** Sweeps, then removes the parent group(s) too (on shutdown). */
  dispose(): Promise<void>;
}

const root = "/sys/fs/cgroup";
const cpuPeriodUs = 100_000;
const quotaUs = (limits: Limits) => Math.max(1000, Math.round(limits.cpu * cpuPeriodUs));

/** The cgroup paths of this process, by controller ("" = the v2 hierarchy). */
function ownPaths(procSelf = "/proc/self/cgroup"): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of readFileSync(procSelf, "utf8").trim().split("\n")) {
    const [, controllers, where] = line.split(":");
    for (const c of controllers!.split(",")) paths.set(c, where!);
  }
  return paths;
}

/**
 * Finds how this host lays out cgroups and where this service may create its groups:
 * - v2 ("unified") with the memory, cpu and pids controllers: one tree;
 * - v1 or hybrid: memory, cpu and pids in their own trees, plus the v2 core files
 *   (`cgroup.kill`, `cgroup.events`) when a v2 hierarchy is mounted beside them.
 * Groups go under this process's own group, in a parent named `group`, so that they stay
 * inside the service's own limits and services on one host never touch each other's.
 * Returns the reason when neither works.
 */
export function detectCgroups(group: string): CgroupHost | { unavailable: string } {
  const own = ownPaths();
  const v2Controllers = path.join(root, "cgroup.controllers");
  if (existsSync(v2Controllers)) {
    const available = readFileSync(v2Controllers, "utf8").split(/\s+/);
    const missing = ["memory", "cpu", "pids"].filter((c) => !available.includes(c));
    if (missing.length > 0)
      return { unavailable: `the cgroup v2 hierarchy lacks the ${missing.join(", ")} controller` };
    return new V2Host(path.join(root, own.get("") ?? "/", group));
  }
  const dirs: Record<"memory" | "cpu" | "pids", string> = { memory: "", cpu: "", pids: "" };
  for (const c of ["memory", "cpu", "pids"] as const) {
    const mount = path.join(root, c);
    if (!existsSync(path.join(mount, "cgroup.procs")))
      return { unavailable: `no cgroup v1 ${c} controller is mounted at ${mount}` };
    dirs[c] = path.join(mount, own.get(c) ?? "/", group);
  }
  const unified = path.join(root, "unified");
  const core = existsSync(path.join(unified, "cgroup.procs"))
    ? path.join(unified, own.get("") ?? "/", group)
    : undefined;
  return new V1Host(dirs, core);
}

async function readProcs(dir: string): Promise<number[]> {
  const text = await readFile(path.join(dir, "cgroup.procs"), "utf8").catch(() => "");
  return text.split("\n").filter(Boolean).map(Number);
}

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Kills until the group is empty: processes may fork while they are being killed. */
async function killUntilEmpty(dir: string, coreKill?: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const pids = await readProcs(dir);
    if (pids.length === 0) return;
    if (coreKill && attempt === 0) await writeFile(coreKill, "1").catch(() => killPids(pids));
    else killPids(pids);
    if (attempt > 500) throw new Error(`cgroup ${dir} did not empty: ${pids.join(" ")}`);
    await sleep(attempt < 10 ? 1 : 10);
  }
}

/** rmdir of an emptied cgroup can race the kernel's last exit; retry briefly. */
async function removeDir(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EBUSY" || attempt > 200) throw err;
      await sleep(5);
    }
  }
}

async function oomCounter(file: string, key: string): Promise<number> {
  const text = await readFile(file, "utf8").catch(() => "");
  const m = new RegExp(`^${key} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

class V1Host implements CgroupHost {
  readonly layout = "v1";

  constructor(
    private readonly parents: Record<"memory" | "cpu" | "pids", string>,
    /** The v2 core hierarchy (kill and empty-notification only), when mounted. */
    private readonly core: string | undefined,
  ) {}

  async create(name: string): Promise<Cgroup> {
    const dirs = {
      memory: path.join(this.parents.memory, name),
      cpu: path.join(this.parents.cpu, name),
      pids: path.join(this.parents.pids, name),
    };
    const core = this.core && path.join(this.core, name);
    for (const dir of [...Object.values(dirs), core])
      if (dir) await mkdir(dir, { recursive: true });
    const all = [...Object.values(dirs), ...(core ? [core] : [])];
    return {
      setLimits: async (limits) => {
        // memsw (memory + swap) must stay ≥ the memory limit, so the order depends on direction;
        // the memsw file exists only where swap accounting is on.
        const memory = path.join(dirs.memory, "memory.limit_in_bytes");
        const memsw = path.join(dirs.memory, "memory.memsw.limit_in_bytes");
        const bytes = String(limits.memoryBytes);
        await writeFile(memory, bytes).catch(() => {});
        await writeFile(memsw, bytes).catch(() => {});
        await writeFile(memory, bytes);
        await writeFile(path.join(dirs.cpu, "cpu.cfs_period_us"), String(cpuPeriodUs));
        await writeFile(path.join(dirs.cpu, "cpu.cfs_quota_us"), String(quotaUs(limits)));
        await writeFile(path.join(dirs.pids, "pids.max"), String(limits.pids));
      },
      add: async (pid) => {
        for (const dir of all) await writeFile(path.join(dir, "cgroup.procs"), String(pid));
      },
      procs: () => readProcs(dirs.pids),
      oomKills: () => oomCounter(path.join(dirs.memory, "memory.oom_control"), "oom_kill"),
      killAll: () => killUntilEmpty(dirs.pids, core && path.join(core, "cgroup.kill")),
      remove: async () => {
        for (const dir of all) await removeDir(dir);
      },
    };
  }

  async dispose(): Promise<void> {
    await this.sweep();
    for (const parent of [...Object.values(this.parents), this.core])
      if (parent) await removeDir(parent).catch(() => {});
  }

  async sweep(): Promise<number> {
    const names = await readdir(this.parents.pids, { withFileTypes: true }).catch(() => []);
    let swept = 0;
    for (const entry of names) {
      if (!entry.isDirectory()) continue;
      await killUntilEmpty(path.join(this.parents.pids, entry.name));
      for (const parent of [...Object.values(this.parents), this.core])
        if (parent) await removeDir(path.join(parent, entry.name));
      swept++;
    }
    return swept;
  }
}

class V2Host implements CgroupHost {
  async dispose(): Promise<void> {
    await this.sweep();
    await removeDir(this.parent).catch(() => {});
  }

  readonly layout = "v2";
  private prepared = false;

  constructor(private readonly parent: string) {}

  /** Controllers can only be handed down by a group without processes of its own. */
  private async prepare(): Promise<void> {
    if (this.prepared) return;
    await mkdir(this.parent, { recursive: true });
    await writeFile(path.join(this.parent, "cgroup.subtree_control"), "+memory +cpu +pids");
    this.prepared = true;
  }

  async create(name: string): Promise<Cgroup> {
    await this.prepare();
    const dir = path.join(this.parent, name);
    await mkdir(dir, { recursive: true });
    return {
      setLimits: async (limits) => {
        await writeFile(path.join(dir, "memory.max"), String(limits.memoryBytes));
        await writeFile(path.join(dir, "memory.swap.max"), "0").catch(() => {});
        await writeFile(path.join(dir, "cpu.max"), `${quotaUs(limits)} ${cpuPeriodUs}`);
        await writeFile(path.join(dir, "pids.max"), String(limits.pids));
      },
      add: (pid) => writeFile(path.join(dir, "cgroup.procs"), String(pid)),
      procs: () => readProcs(dir),
      oomKills: () => oomCounter(path.join(dir, "memory.events"), "oom_kill"),
      killAll: () => killUntilEmpty(dir, path.join(dir, "cgroup.kill")),
      remove: () => removeDir(dir),
    };
  }

  async sweep(): Promise<number> {
    const names = await readdir(this.parent, { withFileTypes: true }).catch(() => []);
    let swept = 0;
    for (const entry of names) {
      if (!entry.isDirectory()) continue;
      const dir = path.join(this.parent, entry.name);
      await killUntilEmpty(dir, path.join(dir, "cgroup.kill"));
      await removeDir(dir);
      swept++;
    }
    return swept;
  }
}
