import assert from "node:assert/strict";
import path from "node:path";
import { after, describe, it } from "node:test";
import { BuildLogs, withLastLines } from "../../src/build/buildLog.js";
import type { LogLine } from "../../src/domain/ports.js";
import { removeDir, tempDir } from "../helpers/server.js";

/* BuildLogs directly: one log per build, followed live and read back after, on a real file. */

const dir = tempDir("agenthost-buildlogs-");
after(() => removeDir(dir));
let unique = 0;
const fileOf = () => path.join(dir, String(++unique), "build.log");

const collect = (log: { subscribe(l: (line: LogLine | null) => void): () => void }) => {
  const seen: (string | null)[] = [];
  log.subscribe((line) => seen.push(line && line.message));
  return seen;
};

describe("BuildLogs", () => {
  it("a reader of a running build sees its lines and the end; a later one reads the file", async () => {
    const logs = new BuildLogs();
    const file = fileOf();
    const log = logs.start("k", file);
    const live = logs.follow("k", file, () => assert.fail("a live build needs no status"));
    const seen = collect(live.log);
    log.status("unpacking");
    log.write("stdout", Buffer.from("ERROR: \u001b[31mno such package\r\n"));
    assert.deepEqual(seen, ["unpacking", "ERROR: ?[31mno such package"]);
    await log.settled();
    let last: string | undefined;
    void live.ended.then((m) => (last = m));
    logs.finish("k", "build ended: failed (dependency_install_failed)");
    await live.ended;
    assert.equal(last, "build ended: failed (dependency_install_failed)");
    assert.equal(logs.isLive("k"), false);
    // The reader still holds it; once it lets go, the next reader reads the file.
    assert.equal(live.log.since(0, 10).length, 2);
    live.release();
    const later = logs.follow("k", file, () => "build ended: active");
    assert.notEqual(later.log, live.log);
    assert.deepEqual(
      later.log.since(0, 10).map((l) => [l.id, l.stream, l.message]),
      [
        [1, "status", "unpacking"],
        [2, "stdout", "ERROR: ?[31mno such package"],
      ],
    );
    assert.equal(await later.ended, "build ended: active");
    later.release();
  });

  it("a build not ended and not being built (stopping) never ends its stream by itself", async () => {
    const logs = new BuildLogs();
    const reader = logs.follow("k", fileOf(), () => undefined);
    const outcome = await Promise.race([
      reader.ended,
      new Promise((resolve) => setTimeout(() => resolve("open"), 50)),
    ]);
    assert.equal(outcome, "open");
    const seen = collect(reader.log);
    logs.close("stopping");
    assert.deepEqual(seen, [null], "closing the service ends it");
  });

  it("discarding a version ends its streams; closing gives running builds a last line", async () => {
    const logs = new BuildLogs();
    const gone = logs.start("gone", fileOf());
    const reader = logs.follow("gone", fileOf(), () => undefined);
    const seen = collect(reader.log);
    gone.status("x");
    logs.discard("gone");
    assert.deepEqual(seen, ["x", null]);

    logs.start("running", fileOf());
    const running = logs.follow("running", fileOf(), () => undefined);
    logs.close("build interrupted: the service is stopping");
    assert.equal(await running.ended, "build interrupted: the service is stopping");
  });

  it("a failed build's reason carries the end of its output, bounded", () => {
    const logs = new BuildLogs();
    const log = logs.start("t", fileOf());
    assert.equal(withLastLines("It failed.", log), "It failed.", "no output, no tail");
    for (let i = 0; i < 100; i++) log.write("stdout", Buffer.from(`${"x".repeat(500)} ${i}\n`));
    log.status("not output");
    const reason = withLastLines("It failed.", log);
    assert.match(reason, /^It failed\. Last lines of the build log:\n…/);
    assert.ok(reason.endsWith(" 99"), reason.slice(-40));
    assert.ok(reason.length < 3100, `${reason.length}`);
    assert.ok(!reason.includes("not output"));
  });
});
