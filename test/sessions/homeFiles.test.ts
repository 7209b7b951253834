import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chownSync,
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, it } from "node:test";
import { setImmediate as nextTurn, setTimeout as sleep } from "node:timers/promises";
import type { ErrorCode } from "../../src/contract/errorCodes.js";
import { AppError } from "../../src/domain/errors.js";
import { SessionHome, splitHomePath } from "../../src/sessions/sessionFiles.js";
import { removeDir, tempDir } from "../helpers/server.js";

/*
 * A session's home belongs to a hostile agent: it may plant symlinks (relative, absolute,
 * chained) and swap directories for symlinks while the service streams a file. Every test sets
 * up a home beside an `outside/` tree that stands for the host's files, snapshots that tree and
 * checks it afterwards: not written, created, deleted, renamed, nor (where the filesystem keeps
 * atimes) read.
 */

const sandboxUid = 65534;
const skip = process.getuid?.() === 0 ? false : "needs root (to chown the home to the sandbox uid)";

const KiB = 1024;
const MiB = 1024 * KiB;
/** A fixed, old mtime for the outside tree: any write there shows. */
const fixedMtime = 1_600_000_000;
const secretText = "top secret";
const uploadPrefix = ".agenthost-upload-";

interface Fixture {
  dir: string;
  home: string;
  outside: string;
  secret: string;
  victim: string;
  files: SessionHome;
  /** The host side (everything in `dir` but the home) before the attack. */
  before: Record<string, string>;
}

let f: Fixture;

beforeEach(() => {
  if (!skip) f = setUp();
});
afterEach(() => {
  if (!skip) removeDir(f.dir);
});

function setUp(): Fixture {
  const dir = tempDir("agenthost-homefiles-");
  const home = path.join(dir, "home");
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, sandboxUid, sandboxUid);
  const outside = path.join(dir, "outside");
  const victim = path.join(outside, "victim");
  const secret = path.join(outside, "secret.txt");
  mkdirSync(path.join(victim, "nested"), { recursive: true });
  writeFileSync(secret, secretText);
  writeFileSync(path.join(victim, "a.txt"), "victim a");
  writeFileSync(path.join(victim, "b.bin"), randomBytes(100 * KiB));
  writeFileSync(path.join(victim, "nested", "c.txt"), "deep");
  // An atime older than the mtime: with relatime, the next read of a file updates its atime.
  for (const p of [dir, outside, victim, secret, ...walk(victim)]) utimesSync(p, 0, fixedMtime);
  return {
    dir,
    home,
    outside,
    secret,
    victim,
    files: new SessionHome(home, sandboxUid),
    before: hostSnapshot(dir),
  };
}

function walk(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).map((p) => path.join(dir, p));
}

/**
 * Everything in `dir` except the home's contents, one line per entry: type, owner, mode, inode,
 * mtime, and for files size, atime and SHA-256 (read with O_NOATIME, so the snapshot itself
 * leaves atimes alone). Directory atimes are left out: listing them updates them.
 */
function hostSnapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (rel: string) => {
    const abs = path.join(dir, rel);
    const s = lstatSync(abs, { bigint: true });
    const meta = `mode=${s.mode.toString(8)} uid=${s.uid} gid=${s.gid} ino=${s.ino} mtime=${s.mtimeNs}`;
    if (s.isDirectory()) {
      const names = readdirSync(abs).sort();
      out[rel || "."] = `dir ${meta} [${names.join(", ")}]`;
      for (const name of names) if (!(rel === "" && name === "home")) visit(path.join(rel, name));
    } else if (s.isFile()) {
      out[rel] = `file ${meta} size=${s.size} atime=${s.atimeNs} sha256=${hashFile(abs)}`;
    } else if (s.isSymbolicLink()) {
      out[rel] = `symlink ${meta} -> ${readlinkSync(abs)}`;
    } else out[rel] = `other ${meta}`;
  };
  visit("");
  return out;
}

function hashFile(file: string): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOATIME | constants.O_NOFOLLOW);
  try {
    return createHash("sha256").update(readFileSync(fd)).digest("hex");
  } finally {
    closeSync(fd);
  }
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** The host files are as they were before the attack. */
function assertHostIntact(fixture = f) {
  assert.deepStrictEqual(hostSnapshot(fixture.dir), fixture.before, "the host side changed");
}

/** `op` fails with an AppError of one of `codes`; returns that error. */
async function refused(op: Promise<unknown>, ...codes: ErrorCode[]): Promise<AppError> {
  const err = await op.then(
    () => assert.fail(`expected ${codes.join(" or ")}, but the operation succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof AppError, `expected an AppError, got ${String(err)}`);
  assert.ok(
    codes.includes(err.code),
    `expected ${codes.join(" or ")}, got ${err.code}: ${err.message}`,
  );
  return err;
}

function refusedSync(op: () => unknown, code: ErrorCode, label: string) {
  assert.throws(op, (err: unknown) => err instanceof AppError && err.code === code, label);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function readText(files: SessionHome, parts: string[]): Promise<string> {
  return (await readAll((await files.read(parts)).stream)).toString("utf8");
}

/**
 * `data` as a stream of `chunkSize` chunks, `delayMs` apart. `before(i)` runs before chunk `i`
 * is handed over, and once more (with i = number of chunks) after the last one.
 */
function paced(
  data: Buffer,
  options: { chunkSize?: number; delayMs?: number; before?: (index: number) => void } = {},
): Readable {
  const { chunkSize = 64 * KiB, delayMs = 0, before } = options;
  async function* chunks() {
    let index = 0;
    for (let at = 0; at < data.length; at += chunkSize, index++) {
      before?.(index);
      if (delayMs > 0) await sleep(delayMs);
      yield data.subarray(at, at + chunkSize);
    }
    before?.(index);
  }
  return Readable.from(chunks());
}

const upload = (data: string | Buffer) => Readable.from([Buffer.from(data)]);

/** Host path of a home path. */
const inHome = (...parts: string[]) => path.join(f.home, ...parts);

/** Makes a directory in the home as the agent would (owned by the sandbox uid). */
function agentDir(...parts: string[]): string {
  const dir = inHome(...parts);
  mkdirSync(dir, { recursive: true });
  chownSync(dir, sandboxUid, sandboxUid);
  return dir;
}

function agentFile(parts: string[], data: string | Buffer): string {
  const file = inHome(...parts);
  writeFileSync(file, data);
  chownSync(file, sandboxUid, sandboxUid);
  return file;
}

/**
 * The agent's swap: `home/<name>` moves to `home/<name>-moved` and a symlink to `target` takes
 * its place. False when the service recreated `<name>` in between.
 */
function swapForSymlink(name: string, target: string): boolean {
  renameSync(inHome(name), inHome(`${name}-moved`));
  try {
    symlinkSync(target, inHome(name));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}

function assertNoUploadsIn(dir: string) {
  const names = readdirSync(dir, { recursive: true, encoding: "utf8" });
  const leftovers = names.filter((n) => path.basename(n).startsWith(uploadPrefix));
  assert.deepStrictEqual(leftovers, [], `temp files left in ${dir}`);
}

describe("session home files", { skip }, () => {
  it("the host snapshot notices reads, writes, creations and deletions (control)", (t) => {
    readFileSync(f.secret);
    const afterRead = hostSnapshot(f.dir);
    if (afterRead["outside/secret.txt"] === f.before["outside/secret.txt"])
      t.diagnostic("this filesystem does not record reads (noatime): only changes are detected");
    else assert.notDeepStrictEqual(afterRead, f.before);

    writeFileSync(path.join(f.victim, "a.txt"), "victim a"); // same bytes, new mtime
    const afterWrite = hostSnapshot(f.dir);
    assert.notDeepStrictEqual(afterWrite, afterRead);
    writeFileSync(path.join(f.outside, "new.txt"), "");
    const afterCreate = hostSnapshot(f.dir);
    assert.notDeepStrictEqual(afterCreate, afterWrite);
    unlinkSync(path.join(f.victim, "nested", "c.txt"));
    assert.notDeepStrictEqual(hostSnapshot(f.dir), afterCreate);
  });

  describe("splitHomePath", () => {
    it("refuses '..', NUL and over-long names and paths", () => {
      const tooLongPath = "abc/".repeat(1024) + "a"; // 4097 bytes of short names
      assert.equal(Buffer.byteLength(tooLongPath), 4097);
      const cases = [
        "..",
        "../x",
        "a/../../x",
        "a/..",
        "/../etc/passwd",
        "x\0y",
        "x".repeat(256),
        "é".repeat(128), // 256 bytes in 128 characters
        tooLongPath,
      ];
      for (const raw of cases)
        refusedSync(() => splitHomePath(raw), "invalid_parameter", JSON.stringify(raw));
      assert.throws(
        () => splitHomePath("../x", "target"),
        (err: unknown) => err instanceof AppError && err.param === "target",
      );
    });

    it("drops '/', '.' and empty segments and keeps names at the limits", () => {
      assert.deepStrictEqual(splitHomePath("/a//b/./c"), ["a", "b", "c"]);
      assert.deepStrictEqual(splitHomePath("a/b/"), ["a", "b"]);
      assert.deepStrictEqual(splitHomePath("/"), []);
      assert.deepStrictEqual(splitHomePath(""), []);
      assert.deepStrictEqual(splitHomePath("./."), []);
      assert.deepStrictEqual(splitHomePath("...//.x/..y"), ["...", ".x", "..y"]);
      assert.deepStrictEqual(splitHomePath("x".repeat(255)), ["x".repeat(255)]);
      const atLimit = "abc/".repeat(1023) + "abcd"; // 4096 bytes
      assert.equal(splitHomePath(atLimit).length, 1024);
    });
  });

  it("an absolute path means the home, not the host's root", async () => {
    assert.equal(existsSync("/etc/passwd-test"), false);
    const parts = splitHomePath("/etc/passwd-test");
    assert.equal(await f.files.write(parts, upload("in the home"), 1024), 11);
    assert.equal(readFileSync(inHome("etc", "passwd-test"), "utf8"), "in the home");
    assert.equal(existsSync("/etc/passwd-test"), false);
    assert.equal(await readText(f.files, splitHomePath("//etc//passwd-test")), "in the home");
    assert.deepStrictEqual(
      (await f.files.list(splitHomePath("/"))).map((e) => e.name),
      ["etc"],
    );
    assertHostIntact();
  });

  it("a symlink to a host file is neither read nor written through", async () => {
    const link = inHome("link");
    symlinkSync(f.secret, link);
    await refused(f.files.read(["link"]), "invalid_parameter", "not_found");
    await refused(f.files.list(["link"]), "invalid_parameter", "not_found");
    await refused(f.files.write(["link", "x"], upload("x"), 1024), "invalid_parameter");
    assertHostIntact();

    // Observed behaviour: the upload's temp file is renamed over the link, so the link is
    // replaced by a regular file of the home and its target is untouched.
    assert.equal(await f.files.write(["link"], upload("agent data"), 1024), 10);
    const s = lstatSync(link);
    assert.ok(s.isFile(), "the symlink was replaced by a regular file");
    assert.equal(s.uid, sandboxUid);
    assert.equal(readFileSync(link, "utf8"), "agent data");
    assertHostIntact();

    // Deleting a link deletes the link only.
    symlinkSync(f.secret, inHome("link2"));
    await f.files.remove(["link2"], false);
    assert.equal(existsSync(inHome("link2")), false);
    assertHostIntact();
  });

  it("a symlink to /etc is refused for read, list, write and remove", async () => {
    const etcBefore = statSync("/etc", { bigint: true });
    const hostnameBefore = statSync("/etc/hostname", { bigint: true });
    const hostnameText = readFileSync("/etc/hostname");
    assert.equal(existsSync("/etc/x"), false);
    symlinkSync("/etc", inHome("etc-link"));

    await refused(f.files.read(["etc-link", "hostname"]), "invalid_parameter");
    await refused(f.files.list(["etc-link"]), "invalid_parameter");
    await refused(f.files.write(["etc-link", "x"], upload("x"), 1024), "invalid_parameter");
    await refused(f.files.remove(["etc-link", "hostname"], false), "invalid_parameter");
    await refused(f.files.remove(["etc-link", "hostname"], true), "invalid_parameter");

    assert.equal(existsSync("/etc/x"), false);
    assert.deepStrictEqual(readFileSync("/etc/hostname"), hostnameText);
    const hostnameAfter = statSync("/etc/hostname", { bigint: true });
    assert.equal(hostnameAfter.ino, hostnameBefore.ino);
    assert.equal(hostnameAfter.mtimeNs, hostnameBefore.mtimeNs);
    assert.equal(statSync("/etc", { bigint: true }).mtimeNs, etcBefore.mtimeNs);
    assert.equal(readlinkSync(inHome("etc-link")), "/etc");
    assertHostIntact();
  });

  describe("a symlinked directory on the way", () => {
    const variants: { name: string; link: string[]; plant: () => void }[] = [
      {
        name: "relative (dir -> ../outside)",
        link: ["dir"],
        plant: () => symlinkSync("../outside", inHome("dir")),
      },
      {
        name: "absolute (dir -> /tmp/…/outside)",
        link: ["dir"],
        plant: () => symlinkSync(f.outside, inHome("dir")),
      },
      {
        name: "chained (dir -> hop -> outside)",
        link: ["dir"],
        plant: () => {
          symlinkSync(f.outside, inHome("hop"));
          symlinkSync("hop", inHome("dir"));
        },
      },
      {
        name: "nested (real/dir -> ../../outside)",
        link: ["real", "dir"],
        plant: () => {
          agentDir("real");
          symlinkSync("../../outside", inHome("real", "dir"));
        },
      },
      {
        name: "the home's parent (up -> ..), then outside",
        link: ["up", "outside"],
        plant: () => symlinkSync("..", inHome("up")),
      },
    ];

    for (const v of variants) {
      it(v.name, async () => {
        v.plant();
        const under = (name: string) => [...v.link, name];
        await refused(f.files.write(under("new.txt"), upload("x"), 1024), "invalid_parameter");
        await refused(f.files.write(under("secret.txt"), upload("x"), 1024), "invalid_parameter");
        await refused(f.files.read(under("secret.txt")), "invalid_parameter");
        await refused(f.files.list(v.link), "invalid_parameter");
        await refused(f.files.remove(under("secret.txt"), false), "invalid_parameter");
        await refused(f.files.remove(under("victim"), true), "invalid_parameter");
        assertHostIntact();

        // Deleting the link itself (when it is the last name) takes the link, not its target.
        const last = inHome(...v.link);
        for (const recursive of [false, true]) {
          if (lstatSync(last, { throwIfNoEntry: false })?.isSymbolicLink()) {
            await f.files.remove(v.link, recursive);
            assert.equal(lstatSync(last, { throwIfNoEntry: false }), undefined);
          } else {
            await refused(f.files.remove(v.link, recursive), "invalid_parameter");
          }
          assertHostIntact();
          for (const name of readdirSync(f.home)) rmSync(inHome(name), { recursive: true });
          v.plant();
        }
      });
    }
  });

  it("a recursive delete removes symlinks inside, not what they point to", async () => {
    agentDir("work", "sub", "deeper");
    agentFile(["work", "keep.txt"], "k");
    agentFile(["work", "sub", "deeper", "x.txt"], "x");
    symlinkSync(f.victim, inHome("work", "victim-link"));
    symlinkSync("../../../outside/victim", inHome("work", "sub", "rel-victim"));
    symlinkSync(f.secret, inHome("work", "sub", "deeper", "secret-link"));
    symlinkSync(f.outside, inHome("work", "outside-link"));

    await f.files.remove(["work"], true);
    assert.equal(existsSync(inHome("work")), false);
    assert.deepStrictEqual(readdirSync(f.home), []);
    assert.deepStrictEqual(readdirSync(f.victim).sort(), ["a.txt", "b.bin", "nested"]);
    assertHostIntact();
  });

  describe("races with an agent swapping directories for symlinks", () => {
    it("a write whose directory is swapped mid-stream stays in the home", async (t) => {
      const data = randomBytes(4 * 64 * KiB);
      for (let round = 0; round < 20; round++) {
        agentDir("d");
        const swapAt = round % 5; // before chunk 0..3, or after the last one (before the rename)
        let swapped = false;
        const source = paced(data, {
          delayMs: round % 3,
          before: (index) => {
            if (index === swapAt) swapped = swapForSymlink("d", f.outside);
          },
        });
        const written = await f.files.write(["d", "big.bin"], source, 10 * MiB);
        assert.ok(swapped, `round ${round}: the swap happened`);
        assert.equal(written, data.length);
        // The service kept its descriptor of the real directory, now at d-moved.
        assert.deepStrictEqual(readFileSync(inHome("d-moved", "big.bin")), data);
        assert.ok(lstatSync(inHome("d")).isSymbolicLink());
        assert.deepStrictEqual(readdirSync(inHome("d-moved")), ["big.bin"]);
        assertNoUploadsIn(f.outside);
        assert.equal(existsSync(path.join(f.outside, "big.bin")), false);
        assertHostIntact();
        rmSync(inHome("d"));
        rmSync(inHome("d-moved"), { recursive: true });
      }
      t.diagnostic("20 swaps during the stream: every file landed in the moved directory");
    });

    it("a write racing the swap during its path walk is refused or stays in the home", async (t) => {
      const outcomes = new Map<string, number>();
      const data = randomBytes(64 * KiB);
      for (let round = 0; round < 20; round++) {
        agentDir("d", "e");
        const writing = f.files.write(["d", "e", "big.bin"], paced(data), 10 * MiB).then(
          (n) => ({ written: n }),
          (err: unknown) => ({ err }),
        );
        for (let i = 0; i < round % 10; i++) await nextTurn();
        const swapped = swapForSymlink("d", f.outside);
        const result = await writing;
        let outcome: string;
        if ("err" in result) {
          assert.ok(result.err instanceof AppError, `round ${round}: ${String(result.err)}`);
          assert.equal(result.err.code, "invalid_parameter");
          outcome = "refused";
        } else {
          assert.equal(result.written, data.length);
          const landed = [inHome("d-moved", "e", "big.bin"), inHome("d", "e", "big.bin")].filter(
            (p) => lstatSync(p, { throwIfNoEntry: false })?.isFile(),
          );
          assert.equal(landed.length, 1, `round ${round}: one copy in the home`);
          assert.deepStrictEqual(readFileSync(landed[0]!), data);
          outcome = landed[0]!.includes("d-moved") ? "written before the swap" : "written after";
        }
        if (!swapped) outcome += " (service recreated d)";
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        assertNoUploadsIn(f.outside);
        assertHostIntact();
        rmSync(inHome("d"), { recursive: true, force: true });
        rmSync(inHome("d-moved"), { recursive: true, force: true });
      }
      t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    });

    it("a read keeps the file it opened; a read racing the swap never sees outside", async (t) => {
      const outcomes = new Map<string, number>();
      for (let round = 0; round < 20; round++) {
        agentDir("d");
        agentFile(["d", "secret.txt"], "agent data");
        if (round % 2 === 0) {
          // Swap after the open: the stream is of the home's file.
          const { stream, size } = await f.files.read(["d", "secret.txt"]);
          assert.ok(swapForSymlink("d", f.outside));
          assert.equal(size, 10);
          assert.equal((await readAll(stream)).toString(), "agent data");
          outcomes.set("swapped after open", (outcomes.get("swapped after open") ?? 0) + 1);
        } else {
          const reading = f.files.read(["d", "secret.txt"]);
          for (let i = 0; i < round % 8; i++) await nextTurn();
          swapForSymlink("d", f.outside);
          const outcome = await reading.then(
            async ({ stream }) => (await readAll(stream)).toString(),
            (err: unknown) => {
              assert.ok(err instanceof AppError, String(err));
              assert.ok(["invalid_parameter", "not_found"].includes(err.code), err.code);
              return `refused (${err.code})`;
            },
          );
          assert.notEqual(outcome, secretText);
          assert.ok(outcome === "agent data" || outcome.startsWith("refused"), outcome);
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        }
        // After the swap, the path is refused.
        await refused(f.files.read(["d", "secret.txt"]), "invalid_parameter");
        assertHostIntact();
        rmSync(inHome("d"), { recursive: true, force: true });
        rmSync(inHome("d-moved"), { recursive: true, force: true });
      }
      t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    });

    it("a recursive delete racing swaps of its subdirectories never reaches outside", async (t) => {
      const outcomes = new Map<string, number>();
      let swaps = 0;
      let emptiedThroughDescriptor = 0;
      for (let round = 0; round < 20; round++) {
        for (let k = 0; k < 30; k++) {
          agentDir("d", `s${k}`);
          agentFile(["d", `s${k}`, "f.txt"], "agent data");
        }
        let settled = false;
        const removing = f.files
          .remove(["d"], true)
          .then(
            () => "removed",
            (err: unknown) =>
              err instanceof AppError ? err.code : `raw ${(err as NodeJS.ErrnoException).code}`,
          )
          .finally(() => (settled = true));
        for (let i = 0; i < round % 5; i++) await nextTurn();
        for (let k = 0; k < 30 && !settled; k++) {
          const sub = inHome("d", `s${k}`);
          try {
            renameSync(sub, inHome(`stash${k}`));
            swaps++;
            symlinkSync(k % 2 ? f.victim : "../../outside", sub);
          } catch {
            // the service got there first
          }
          await nextTurn();
        }
        const outcome = await removing;
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        assertHostIntact();
        for (const name of readdirSync(f.home)) {
          // A moved directory the service had already opened was emptied where it now is.
          if (name.startsWith("stash") && readdirSync(inHome(name)).length === 0)
            emptiedThroughDescriptor++;
          rmSync(inHome(name), { recursive: true });
        }
      }
      assert.ok(swaps > 0, "the agent swapped directories while the delete ran");
      t.diagnostic(
        `outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}; ${swaps} swaps, ` +
          `${emptiedThroughDescriptor} moved directories emptied through an open descriptor`,
      );
    });
  });

  describe("size limit", () => {
    it("refuses maxBytes + 1 and leaves neither temp nor target", async () => {
      const max = 200_000;
      await refused(
        f.files.write(["big.bin"], paced(randomBytes(max + 1), { chunkSize: 50_000 }), max),
        "payload_too_large",
      );
      assert.deepStrictEqual(readdirSync(f.home), []);

      // In one chunk, into a new subdirectory, with the caller's error.
      const custom = new AppError("session_disk_quota_exceeded", "quota");
      const err = await refused(
        f.files.write(["sub", "big.bin"], upload(randomBytes(max + 1)), max, () => custom),
        "session_disk_quota_exceeded",
      );
      assert.equal(err, custom);
      assert.deepStrictEqual(readdirSync(inHome("sub")), []);

      // Over an existing file: the old one stays.
      agentFile(["keep.bin"], "old");
      await refused(
        f.files.write(["keep.bin"], paced(randomBytes(max + 1)), max),
        "payload_too_large",
      );
      assert.deepStrictEqual(readdirSync(f.home).sort(), ["keep.bin", "sub"]);
      assert.equal(readFileSync(inHome("keep.bin"), "utf8"), "old");
      assertHostIntact();
    });

    it("accepts exactly maxBytes, and nothing", async () => {
      const max = 200_000;
      const data = randomBytes(max);
      assert.equal(
        await f.files.write(["exact.bin"], paced(data, { chunkSize: 30_000 }), max),
        max,
      );
      assert.equal(statSync(inHome("exact.bin")).size, max);
      assert.deepStrictEqual(readFileSync(inHome("exact.bin")), data);
      assert.equal(await f.files.write(["empty"], Readable.from([]), max), 0);
      assert.equal(statSync(inHome("empty")).size, 0);
      assert.deepStrictEqual(readdirSync(f.home).sort(), ["empty", "exact.bin"]);
      assert.equal(await f.files.usage(), max);
    });
  });

  it("what the service creates belongs to the sandbox uid", async () => {
    await f.files.write(["a", "b", "c.txt"], upload("abc"), 1024);
    for (const p of [["a"], ["a", "b"], ["a", "b", "c.txt"]]) {
      const s = statSync(inHome(...p));
      assert.equal(s.uid, sandboxUid, p.join("/"));
      assert.equal(s.gid, sandboxUid, p.join("/"));
      assert.equal(s.mode & 0o022, 0, `${p.join("/")} is not writable by others`);
    }
    // Replacing a file the service's uid owns gives the agent's uid a file too.
    writeFileSync(inHome("root-owned.txt"), "root");
    await f.files.write(["root-owned.txt"], upload("agent"), 1024);
    assert.equal(statSync(inHome("root-owned.txt")).uid, sandboxUid);
    assert.equal(statSync(f.home).uid, sandboxUid);
  });

  describe("write", () => {
    it("refuses the home itself, a directory and a file on the way", async () => {
      agentDir("dir");
      agentFile(["file"], "f");
      await refused(f.files.write([], upload("x"), 1024), "invalid_parameter");
      await refused(f.files.write(["dir"], upload("x"), 1024), "conflict");
      await refused(f.files.write(["file", "x"], upload("x"), 1024), "invalid_parameter");
      assert.deepStrictEqual(readdirSync(f.home).sort(), ["dir", "file"]);
      assert.deepStrictEqual(readdirSync(inHome("dir")), []);
    });
  });

  describe("remove", () => {
    it("keeps a non-empty directory without recursive, removes an empty one", async () => {
      agentDir("full", "inner");
      agentFile(["full", "inner", "f.txt"], "f");
      const err = await refused(f.files.remove(["full"], false), "directory_not_empty");
      assert.equal(err.param, "recursive");
      assert.equal(readFileSync(inHome("full", "inner", "f.txt"), "utf8"), "f");

      await refused(f.files.remove(["full", "inner"], false), "directory_not_empty");
      await f.files.remove(["full", "inner", "f.txt"], false);
      await f.files.remove(["full", "inner"], false);
      assert.deepStrictEqual(readdirSync(inHome("full")), []);
      await f.files.remove(["full"], false);
      assert.deepStrictEqual(readdirSync(f.home), []);
    });

    it("refuses the home itself and answers not_found for what is missing", async () => {
      agentFile(["f.txt"], "f");
      await refused(f.files.remove([], true), "invalid_parameter");
      await refused(f.files.remove([], false), "invalid_parameter");
      assert.ok(existsSync(inHome("f.txt")));
      assert.ok(statSync(f.home).isDirectory());
      await refused(f.files.remove(["missing"], false), "not_found");
      await refused(f.files.remove(["missing", "deeper"], true), "not_found");
      await refused(f.files.remove(["f.txt", "deeper"], true), "invalid_parameter");
    });
  });

  describe("list", () => {
    it("lists entries by name with sizes, kinds and whole-second mtimes", async () => {
      agentFile(["b.txt"], "bbb");
      agentDir("a");
      agentFile(["a", "hidden-inside"], "not listed at this level");
      agentFile(["é"], "e-acute");
      agentFile(["C.md"], "");
      agentFile(["z"], randomBytes(5000));
      utimesSync(inHome("b.txt"), 0, 1_700_000_000.75);
      symlinkSync(f.victim, inHome("link-dir"));
      symlinkSync(f.secret, inHome("link-file"));

      const entries = await f.files.list([]);
      assert.deepStrictEqual(
        entries.map((e) => e.name),
        ["C.md", "a", "b.txt", "link-dir", "link-file", "z", "é"],
      );
      const byName = new Map(entries.map((e) => [e.name, e]));
      assert.deepStrictEqual(byName.get("b.txt"), {
        name: "b.txt",
        size: 3,
        isDirectory: false,
        modifiedTime: 1_700_000_000,
      });
      assert.equal(byName.get("a")?.isDirectory, true);
      assert.equal(byName.get("z")?.size, 5000);
      assert.equal(byName.get("C.md")?.size, 0);
      for (const e of entries) assert.ok(Number.isInteger(e.modifiedTime), e.name);

      // Symlinks show as themselves: not directories, the size of the link.
      assert.equal(byName.get("link-dir")?.isDirectory, false);
      assert.equal(byName.get("link-dir")?.size, Buffer.byteLength(f.victim));
      assert.equal(byName.get("link-file")?.isDirectory, false);
      assert.equal(byName.get("link-file")?.size, Buffer.byteLength(f.secret));
      assert.notEqual(byName.get("link-file")?.size, secretText.length);

      assert.deepStrictEqual(
        (await f.files.list(["a"])).map((e) => e.name),
        ["hidden-inside"],
      );
      // Usage counts the home's regular files, not what links point to (100 KiB in victim).
      assert.equal(await f.files.usage(), 3 + 24 + 7 + 0 + 5000);
      assertHostIntact();
    });

    it("refuses a file and answers not_found for what is missing", async () => {
      assert.deepStrictEqual(await f.files.list([]), []);
      agentFile(["f.txt"], "f");
      await refused(f.files.list(["f.txt"]), "invalid_parameter");
      await refused(f.files.list(["missing"]), "not_found");
      await refused(f.files.read([]), "invalid_parameter");
      await refused(f.files.read(["missing"]), "not_found");
    });
  });

  it("a reader sees the old file or the new one, never a partial file", async (t) => {
    const oldData = randomBytes(3 * MiB);
    const newData = randomBytes(5 * MiB);
    const oldHash = sha256(oldData);
    const newHash = sha256(newData);
    agentFile(["f.bin"], oldData);

    let done = false;
    const writing = f.files
      .write(["f.bin"], paced(newData, { delayMs: 2 }), 10 * MiB)
      .finally(() => (done = true));
    const seen = { old: 0, new: 0 };
    const reader = async () => {
      let sawNew = false;
      for (let last = false; !last;) {
        last = done; // one more read once the write is over
        const { stream, size } = await f.files.read(["f.bin"]);
        const data = await readAll(stream);
        assert.equal(data.length, size, "the size matches what was read");
        const hash = sha256(data);
        assert.ok(hash === oldHash || hash === newHash, `a partial file of ${data.length} bytes`);
        if (hash === newHash) sawNew = true;
        else assert.ok(!sawNew, "the old content came back after the new one");
        seen[hash === oldHash ? "old" : "new"]++;
      }
    };
    await Promise.all([reader(), reader(), reader(), writing]);
    assert.equal(await writing, newData.length);
    assert.ok(seen.old > 0, "the readers overlapped the write");
    assert.equal(sha256(await readAll((await f.files.read(["f.bin"])).stream)), newHash);
    assert.deepStrictEqual(readdirSync(f.home), ["f.bin"]);
    t.diagnostic(`reads during the write: ${seen.old} old, ${seen.new} new`);
  });

  describe("special files and a directory planted at the target", () => {
    it("a read of a FIFO the agent made is refused instead of blocking", async () => {
      const fifo = inHome("pipe");
      execFileSync("mkfifo", [fifo]);
      const reading = f.files.read(["pipe"]).then(
        ({ stream }) => {
          stream.destroy();
          return "opened";
        },
        (err: unknown) => err,
      );
      const first = await Promise.race([reading, sleep(1000, "blocked")]);
      if (first === "blocked") await releaseFifoReader(fifo, reading);
      const outcome = await reading;
      assert.notEqual(first, "blocked", "read() was still blocked in open() after 1 s");
      assert.ok(outcome instanceof AppError, String(outcome));
      assert.equal(outcome.code, "invalid_parameter");
    });

    it("a read of a unix socket the agent made is refused", async () => {
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(inHome("sock"), resolve));
      try {
        await refused(f.files.read(["sock"]), "invalid_parameter");
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it("a write whose target becomes a directory is refused and leaves no temp file", async () => {
      const source = paced(randomBytes(2 * 64 * KiB), {
        before: (index) => {
          if (index === 1) {
            agentDir("f", "inside"); // the agent puts a directory where the file will go
          }
        },
      });
      const outcome = await f.files.write(["f"], source, 1 * MiB).then(
        () => "written",
        (err: unknown) => err,
      );
      assertNoUploadsIn(f.home);
      assert.ok(outcome instanceof AppError, `expected an AppError, got ${String(outcome)}`);
      assert.equal(outcome.code, "conflict");
    });
  });
});

/** Opens the FIFO for writing (so a reader blocked in open() returns), until `done` settles. */
async function releaseFifoReader(fifo: string, done: Promise<unknown>) {
  let settled = false;
  void done.then(() => (settled = true));
  while (!settled) {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENXIO") throw err;
    }
    await sleep(10);
  }
}
