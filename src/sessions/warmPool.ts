import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { Limits } from "../sandbox/cgroups.js";
import type { Language, Sandbox, SandboxDriver } from "../sandbox/driver.js";
import type { HomeVolumes } from "./homeVolume.js";

/** A booted sandbox waiting for an agent: its empty home and code directories are its own. */
export interface WarmSandbox {
  sandbox: Sandbox;
  /** `<pool>/<id>`: `home/` becomes the session's home, `app/` receives the code. */
  dir: string;
}

export interface Runtime {
  language: Language;
  interpreter: string;
}

/**
 * Sandboxes started ahead of time, `size` per runtime, with the interpreter booted and the
 * usual modules imported. Taking one is immediate; it is replaced in the background.
 */
export class WarmPool {
  private readonly ready = new Map<string, WarmSandbox[]>();
  private readonly filling = new Set<string>();
  private readonly runtimes = new Map<string, Runtime>();
  private closed = false;

  constructor(
    private readonly driver: SandboxDriver,
    private readonly options: {
      dir: string;
      size: number;
      uid: number;
      limits: Limits;
      network: "none" | "egress";
      /** A slot's home is made (its image mounted) before its sandbox boots. */
      volumes: HomeVolumes;
      log: Logger;
    },
  ) {}

  /** Starts filling the pool for these runtimes (off the caller's path). */
  fill(runtimes: Runtime[]): void {
    for (const runtime of runtimes) this.runtimes.set(runtime.interpreter, runtime);
    this.replenish();
  }

  /**
   * A warm sandbox for the runtime, or undefined when none is ready. The pool is not refilled
   * here: booting a replacement would compete for the CPU with the session being started.
   * The caller calls `replenish` once its session answers.
   */
  take(runtime: Runtime): WarmSandbox | undefined {
    this.runtimes.set(runtime.interpreter, {
      language: runtime.language,
      interpreter: runtime.interpreter,
    });
    return this.ready.get(runtime.interpreter)?.shift();
  }

  /** Tops every runtime up to `size`, in the background. */
  replenish(): void {
    if (this.options.size <= 0) return;
    for (const runtime of this.runtimes.values()) void this.refill(runtime);
  }

  private async refill(runtime: Runtime): Promise<void> {
    const key = runtime.interpreter;
    if (this.filling.has(key)) return;
    this.filling.add(key);
    try {
      const slots = this.ready.get(key) ?? [];
      this.ready.set(key, slots);
      while (!this.closed && slots.length < this.options.size) {
        const slot = await this.boot(runtime);
        if (this.closed) await this.discard(slot);
        else slots.push(slot);
      }
    } catch (err) {
      this.options.log.warn({ err, interpreter: key }, "warm pool could not start a sandbox");
    } finally {
      this.filling.delete(key);
    }
  }

  private async boot(runtime: Runtime): Promise<WarmSandbox> {
    const id = randomBytes(8).toString("hex");
    const dir = path.join(this.options.dir, id);
    await mkdir(path.join(dir, "app"), { recursive: true, mode: 0o755 });
    let sandbox: Sandbox;
    try {
      await this.options.volumes.prepare(path.join(dir, "home"), this.options.uid);
      sandbox = await this.driver.start({
        id,
        ...runtime,
        homeDir: path.join(dir, "home"),
        appDir: path.join(dir, "app"),
        limits: this.options.limits,
        network: this.options.network,
        preload: true,
      });
    } catch (err) {
      await this.removeSlot(dir);
      throw err;
    }
    const slot = { sandbox, dir };
    // A warm sandbox that dies (it should not) leaves the pool.
    void sandbox.exited.then(() => {
      const slots = this.ready.get(runtime.interpreter);
      const i = slots?.indexOf(slot) ?? -1;
      if (i >= 0) {
        slots!.splice(i, 1);
        void this.removeSlot(dir);
      }
    });
    return slot;
  }

  async close(): Promise<void> {
    this.closed = true;
    const slots = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.all(slots.map((slot) => this.discard(slot)));
  }

  /** Stops a slot's sandbox and removes its directory (its home unmounted first). */
  private async discard(slot: WarmSandbox): Promise<void> {
    await slot.sandbox.stop(0);
    await this.removeSlot(slot.dir);
  }

  private async removeSlot(dir: string): Promise<void> {
    try {
      await this.options.volumes.release(path.join(dir, "home"));
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      this.options.log.warn({ err, dir }, "could not remove a warm pool slot");
    }
  }
}
