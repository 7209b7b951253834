import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { Limits } from "../sandbox/cgroups.js";
import type { Language, Sandbox, SandboxDriver } from "../sandbox/driver.js";
import type { UidPool } from "../sandbox/uidPool.js";
import { removeTree } from "../trees/agentTree.js";
import type { HomeVolumes } from "./homeVolume.js";

/** A booted sandbox waiting for an agent: its empty home and code directories are its own. */
export interface WarmSandbox {
  sandbox: Sandbox;
  /** `<pool>/<id>`: `home/` becomes the session's home, `app/` receives the code. */
  dir: string;
  /** The sandbox's own host uid (the home's owner); the session that takes it releases it. */
  uid: number;
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
  private readonly refills = new Set<Promise<void>>();
  private readonly runtimes = new Map<string, Runtime>();
  private closed = false;

  constructor(
    private readonly driver: SandboxDriver,
    private readonly options: {
      dir: string;
      size: number;
      uids: UidPool;
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
    for (const runtime of this.runtimes.values()) {
      const refill = this.refill(runtime);
      this.refills.add(refill);
      void refill.finally(() => this.refills.delete(refill));
    }
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
    const uid = this.options.uids.take();
    let sandbox: Sandbox;
    try {
      await this.options.volumes.prepare(path.join(dir, "home"), uid);
      sandbox = await this.driver.start({
        id,
        ...runtime,
        homeDir: path.join(dir, "home"),
        appDir: path.join(dir, "app"),
        limits: this.options.limits,
        network: this.options.network,
        preload: true,
        uid,
      });
    } catch (err) {
      this.options.uids.release(uid);
      await this.removeSlot(dir);
      throw err;
    }
    const slot = { sandbox, dir, uid };
    // A warm sandbox that dies (it should not) leaves the pool.
    const leave = () => {
      const slots = this.ready.get(runtime.interpreter);
      const i = slots?.indexOf(slot) ?? -1;
      if (i >= 0) {
        slots!.splice(i, 1);
        this.options.uids.release(uid);
        void this.removeSlot(dir);
      }
    };
    void sandbox.exited.then(leave, (err: unknown) => {
      this.options.log.error({ err, slot: id }, "a warm sandbox's exit failed");
      leave();
    });
    return slot;
  }

  async close(): Promise<void> {
    this.closed = true;
    // A slot booting now (its home being mounted) is discarded by its refill: wait for it.
    await Promise.all(this.refills);
    const slots = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.all(slots.map((slot) => this.discard(slot)));
  }

  /** Stops a slot that no session took, frees its uid and removes its directory; never fails. */
  async discard(slot: WarmSandbox): Promise<void> {
    try {
      await slot.sandbox.stop(0);
    } catch (err) {
      this.options.log.error(
        { err, slot: path.basename(slot.dir) },
        "could not stop a warm pool slot",
      );
    }
    this.options.uids.release(slot.uid);
    await this.removeSlot(slot.dir);
  }

  /** Removes a slot's directory, its home unmounted first; never fails (a failure is logged). */
  private async removeSlot(dir: string): Promise<void> {
    try {
      await this.options.volumes.release(path.join(dir, "home"));
      await removeTree(dir);
    } catch (err) {
      this.options.log.error({ err, dir }, "could not remove a warm pool slot");
    }
  }
}
