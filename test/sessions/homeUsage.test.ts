import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, it } from "node:test";
import { SessionHome, type HomeLedger } from "../../src/sessions/sessionFiles.js";
import { removeDir, tempDir } from "../helpers/server.js";

/*
 * Upload accounting without a walk per upload: one walk fills the session's ledger, the
 * service's own uploads and deletes keep it up to date, and a home that is a filesystem of
 * its own is counted by the kernel (statfs).
 */

const sandboxUid = 65534;
const skip = process.getuid?.() === 0 ? false : "needs root (to chown the home, to mount)";

let dir: string;
let home: string;
beforeEach(() => {
  if (skip) return;
  dir = tempDir("agenthost-usage-");
  home = path.join(dir, "home");
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, sandboxUid, sandboxUid);
});
afterEach(() => {
  if (!skip) removeDir(dir);
});

const body = (n: number) => Readable.from([Buffer.alloc(n, 1)]);

describe("home usage", { skip }, () => {
  it("is counted once, then kept by uploads and deletes (what the agent writes waits for the next start)", async () => {
    writeFileSync(path.join(home, "before.bin"), Buffer.alloc(5000));
    const ledger: HomeLedger = {};
    const files = new SessionHome(home, sandboxUid, ledger);
    assert.equal(await files.usage(), 5000);
    // The agent writes behind the service's back: not walked again.
    writeFileSync(path.join(home, "agent.bin"), Buffer.alloc(7000));
    assert.equal(await files.usage(), 5000, "the home was walked again");
    await files.write(["a", "one.bin"], body(1000), 1 << 20);
    assert.equal(await new SessionHome(home, sandboxUid, ledger).usage(), 6000);
    await files.write(["a", "one.bin"], body(10), 1 << 20); // replaced
    assert.equal(await files.usage(), 5010);
    await files.write(["a", "b", "two.bin"], body(300), 1 << 20);
    await files.write(["a", "b", "three.bin"], body(400), 1 << 20);
    assert.equal(await files.usage(), 5710);
    await files.remove(["a", "one.bin"], false);
    assert.equal(await files.usage(), 5700);
    await files.remove(["a"], true);
    assert.equal(await files.usage(), 5000);
    // A new ledger (the session started again) counts everything once more.
    assert.equal(await new SessionHome(home, sandboxUid, {}).usage(), 12000);
  });

  it("of a home that is its own filesystem comes from the filesystem", async (t) => {
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", home]);
    } catch {
      return t.skip("cannot mount a tmpfs here");
    }
    try {
      writeFileSync(path.join(home, "agent.bin"), Buffer.alloc(3 << 20));
      const files = new SessionHome(home, sandboxUid, { bytes: 0 });
      const used = await files.usage();
      assert.ok(used >= 3 << 20 && used < 4 << 20, `statfs says ${used}`);
    } finally {
      execFileSync("umount", [home]);
    }
  });

  it("costs no walk per upload in a home of 50,000 files", async () => {
    for (let d = 0; d < 50; d++) {
      mkdirSync(path.join(home, `d${d}`));
      for (let f = 0; f < 1000; f++) writeFileSync(path.join(home, `d${d}`, `f${f}`), "x");
    }
    const files = new SessionHome(home, sandboxUid, {});
    let t0 = performance.now();
    assert.equal(await files.usage(), 50_000);
    const walkMs = performance.now() - t0;
    t0 = performance.now();
    for (let i = 0; i < 20; i++) {
      await files.usage();
      await files.write([`up${i}.bin`], body(10), 1 << 20);
    }
    const uploadsMs = performance.now() - t0;
    console.log(
      `first count ${walkMs.toFixed(0)} ms; 20 checked uploads ${uploadsMs.toFixed(0)} ms`,
    );
    assert.equal(await files.usage(), 50_200);
    assert.ok(uploadsMs < walkMs, `20 uploads took ${uploadsMs} ms, one walk ${walkMs} ms`);
  });
});
