import assert from "node:assert/strict";
import { readFileSync, symlinkSync, unlinkSync } from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { LogBudget, SessionLog, type LogLine } from "../../src/sessions/sessionLog.js";
import { removeDir, tempDir } from "../helpers/server.js";

/*
 * A session's console under a flood: 80 MB of control characters (the output that once ran
 * the V8 heap out) leave at most the budget in memory, evictions are counted, the reading is
 * paced, and lines a full disk did not take are counted in the file once it takes lines again.
 */

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const dir = tempDir("agenthost-sessionlog-");
after(() => removeDir(dir));
let unique = 0;
const fileOf = () => path.join(dir, `s${++unique}`, "console.log");

const mib = 1024 * 1024;
/** 8,191 control characters and a newline: one line that grows 3× as JSON. */
const floodLine = Buffer.concat([Buffer.alloc(8191, 0x01), Buffer.from("\n")]);
const fileLines = (file: string) =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((t) => JSON.parse(t) as LogLine);

describe("a session's console", () => {
  it("keeps at most its byte budget of 80 MB of control characters, and counts what it let go", async () => {
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    // The pacing is not under test here: a rate high enough that no wait is left behind.
    const budget = new LogBudget({
      sessionMemoryBytes: mib,
      totalMemoryBytes: 64 * mib,
      sessionBytesPerSecond: 1024 * mib,
    });
    const file = fileOf();
    const log = new SessionLog(file, 10 * mib, budget);
    let seen = 0;
    log.subscribe((line) => void (line && seen++));
    const chunk = Buffer.concat(Array.from({ length: 8 }, () => floodLine)); // 64 KiB, as a pipe reads
    for (let i = 0; i < 10_000 / 8; i++) void log.write("stdout", chunk);
    assert.equal(seen, 10_000, "every line reached the subscriber");
    assert.ok(log.historyBytes <= mib, `history holds ${log.historyBytes} bytes`);
    assert.ok(budget.bytes <= mib);
    const kept = log.since(0, Infinity);
    assert.ok(kept.length > 0 && kept.length < 10_000);
    assert.equal(kept.at(-1)!.id, 10_000, "the newest lines are kept");
    assert.equal(log.firstId - 1 + kept.length, 10_000, "the evicted lines are counted by id");
    assert.equal(kept[0]!.message, "?".repeat(8191), "control characters are replaced");
    await log.settled();
    gc();
    const grown = process.memoryUsage().heapUsed - heapBefore;
    assert.ok(grown < 16 * mib, `the heap grew by ${(grown / mib).toFixed(1)} MiB`);
    // The file: JSON lines, what the disk could take in the burst, and the count of the rest.
    const lines = fileLines(file);
    const gap = lines.find((l) => /^\d+ lines not written: the disk is too slow$/.test(l.message));
    assert.ok(gap, "the lines the writer could not keep up with are counted");
    assert.equal(
      lines.filter((l) => l.stream === "stdout").length + Number(gap.message.split(" ")[0]),
      10_000,
    );
  });

  it("shares one budget: the largest histories give up their oldest lines first", () => {
    const budget = new LogBudget({
      sessionMemoryBytes: mib,
      totalMemoryBytes: 2 * mib,
      sessionBytesPerSecond: 1024 * mib,
    });
    const [a, b, small] = [1, 2, 3].map(() => new SessionLog(fileOf(), 10 * mib, budget));
    for (let i = 0; i < 200; i++) a!.write("stdout", floodLine);
    for (let i = 0; i < 200; i++) b!.write("stdout", floodLine);
    for (let i = 0; i < 100; i++) small!.write("stdout", Buffer.from(`short line ${i}\n`));
    assert.ok(budget.bytes <= 2 * mib, `all histories hold ${budget.bytes} bytes`);
    assert.equal(small!.firstId, 1, "the small history lost nothing");
    assert.equal(small!.since(0, Infinity).length, 100);
    assert.ok(a!.firstId > 1 && b!.firstId > 1, "the large ones gave up their oldest lines");
    a!.end();
    assert.equal(a!.historyBytes, 0);
    assert.equal(budget.bytes, b!.historyBytes + small!.historyBytes, "an ended log holds nothing");
  });

  it("paces the reading: past the burst, the reader is told to wait", async () => {
    const log = new SessionLog(
      fileOf(),
      10 * mib,
      new LogBudget({
        sessionMemoryBytes: mib,
        totalMemoryBytes: 64 * mib,
        sessionBytesPerSecond: 64 * 1024,
      }),
    );
    const small = Buffer.alloc(1024, 0x61);
    assert.equal(log.write("stdout", small), undefined, "within the burst: no wait");
    const t0 = performance.now();
    let waits = 0;
    for (let sent = 1024; sent < 80 * 1024; sent += 16 * 1024) {
      const wait = log.write("stdout", Buffer.alloc(16 * 1024, 0x61));
      if (wait) {
        waits++;
        await wait;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    assert.ok(waits > 0);
    // 80 KiB at 64 KiB/s with a 6.4 KiB burst: about a second.
    assert.ok(seconds > 0.8 && seconds < 3, `${seconds.toFixed(2)} s`);
    log.end();
  });

  it("counts the lines a full disk did not take, and writes the count once it takes lines again", async () => {
    const file = fileOf();
    const errors: unknown[] = [];
    const log = new SessionLog(file, 10 * mib, new LogBudget(), (err) => errors.push(err));
    log.status("before");
    await log.settled();
    unlinkSync(file);
    symlinkSync("/dev/full", file); // every write: ENOSPC
    for (let i = 0; i < 30; i++) log.write("stdout", Buffer.from(`lost ${i}\n`));
    await log.settled();
    log.write("stdout", Buffer.from("lost 30\n"));
    await log.settled();
    assert.equal(errors.length, 1, "told once per gap");
    assert.equal((errors[0] as NodeJS.ErrnoException).code, "ENOSPC");
    unlinkSync(file); // space is back
    log.write("stdout", Buffer.from("after\n"));
    await log.settled();
    const lines = fileLines(file);
    assert.deepEqual(
      lines.map((l) => l.message),
      ["after", "31 lines not written: disk full"],
    );
    // The live history kept every line all along.
    assert.equal(log.since(0, Infinity).filter((l) => l.message.startsWith("lost")).length, 31);
  });
});
