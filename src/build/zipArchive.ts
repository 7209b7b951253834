import fs from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import yauzl, { type Entry, type ZipFile } from "yauzl";
import { AppError } from "../domain/errors.js";

/** Limits that keep a zip from exhausting disk, memory or time when unpacked. */
export interface ZipLimits {
  maxUncompressedBytes: number;
  maxEntries: number;
  /** Largest uncompressed:compressed ratio of an entry over 1 MiB. */
  maxRatio: number;
}

export const defaultZipLimits: ZipLimits = {
  maxUncompressedBytes: 750 * 1024 * 1024,
  maxEntries: 20_000,
  maxRatio: 200,
};

type Kind = "file" | "dir" | "symlink";

export interface CheckedEntry {
  entry: Entry;
  name: string;
  kind: Kind;
  executable: boolean;
}

const openZip = promisify(yauzl.open) as (file: string, options: yauzl.Options) => Promise<ZipFile>;
const zipFromFd = promisify(yauzl.fromFd) as (
  fd: number,
  options: yauzl.Options,
) => Promise<ZipFile>;

const reject = (message: string) =>
  new AppError("invalid_parameter", `The code zip is refused: ${message}`, "code");

/**
 * Reads the central directory and refuses anything unsafe to unpack: paths leaving the root,
 * device files, symlinks pointing outside, zip bombs (size, count, ratio, overlapping entries).
 * With `entryPoint`, the script it names must be in the zip. Returns the entry names and the
 * bytes the zip unpacks to.
 */
export async function inspectZip(
  file: string,
  limits: ZipLimits,
  entryPoint?: string[],
): Promise<{ names: string[]; unpackedBytes: number }> {
  const entries = await walk(file, limits, async () => {});
  const names = new Set(entries.map((e) => e.name.replace(/\/$/, "")));
  const script = entryPoint && scriptOf(entryPoint);
  if (script && !names.has(path.posix.normalize(script).replace(/^\.\//, ""))) {
    throw new AppError(
      "invalid_parameter",
      `The entry point file '${script}' is not in the code zip.`,
      "definition.code_configuration.entry_point",
    );
  }
  return {
    names: [...names],
    unpackedBytes: entries.reduce((sum, e) => sum + e.entry.uncompressedSize, 0),
  };
}

/** The bytes a stored zip unpacks to, from its central directory alone (no checks). */
export async function unpackedBytesOf(file: string): Promise<number> {
  const zip = await openZip(file, { lazyEntries: true, autoClose: false, strictFileNames: false });
  let total = 0;
  try {
    await new Promise<void>((resolve, fail) => {
      zip.on("error", fail);
      zip.on("end", () => resolve());
      zip.on("entry", (entry: Entry) => {
        total += entry.uncompressedSize;
        zip.readEntry();
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return total;
}

/** The script file an entry point runs: its first element that looks like a source file. */
export function scriptOf(entryPoint: string[]): string | undefined {
  return entryPoint.find((part) => /\.(py|js|mjs|cjs|ts)$/.test(part));
}

/**
 * Reads every entry of a zip (a path, or an open descriptor) with the checks of `inspectZip`,
 * handing each to `visit` in order; the first problem rejects.
 */
export async function walk(
  file: string | number,
  limits: ZipLimits,
  visit: (zip: ZipFile, entry: CheckedEntry) => Promise<void>,
): Promise<CheckedEntry[]> {
  let zip: ZipFile;
  const options = { lazyEntries: true, autoClose: false, strictFileNames: false };
  try {
    zip = typeof file === "number" ? await zipFromFd(file, options) : await openZip(file, options);
  } catch (err) {
    throw reject(`it is not a readable zip archive (${(err as Error).message}).`);
  }
  const zipSize =
    typeof file === "number" ? (await promisify(fs.fstat)(file)).size : (await stat(file)).size;
  if (zip.entryCount > limits.maxEntries) {
    zip.close();
    throw reject(`it has ${zip.entryCount} entries; the limit is ${limits.maxEntries}.`);
  }
  const checked: CheckedEntry[] = [];
  let uncompressed = 0;
  let compressed = 0;
  try {
    await new Promise<void>((resolve, fail) => {
      zip.on("error", (err: Error) =>
        fail(
          reject(
            /relative path|absolute path/.test(err.message)
              ? `an entry would be written outside the code directory (${err.message}).`
              : err.message,
          ),
        ),
      );
      zip.on("end", () => resolve());
      zip.on("entry", (entry: Entry) => {
        const run = async () => {
          const c = await checkEntry(zip, entry);
          uncompressed += entry.uncompressedSize;
          compressed += entry.compressedSize;
          if (uncompressed > limits.maxUncompressedBytes) {
            throw reject(`it unpacks to more than ${limits.maxUncompressedBytes} bytes.`);
          }
          if (compressed > zipSize) throw reject("its entries overlap (a zip bomb).");
          if (
            entry.uncompressedSize > 1024 * 1024 &&
            entry.uncompressedSize > limits.maxRatio * entry.compressedSize
          ) {
            throw reject(`'${c.name}' expands more than ${limits.maxRatio}:1 (a zip bomb).`);
          }
          checked.push(c);
          await visit(zip, c);
        };
        run().then(() => zip.readEntry(), fail);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return checked;
}

async function checkEntry(zip: ZipFile, entry: Entry): Promise<CheckedEntry> {
  const name = entry.fileName;
  const parts = name.split("/");
  if (
    name.includes("\0") ||
    name.includes("\\") ||
    name.startsWith("/") ||
    /^[A-Za-z]:/.test(name) ||
    parts.includes("..") ||
    name.length > 4096
  ) {
    throw reject(`the entry '${name}' would be written outside the code directory.`);
  }
  const mode = (entry.externalFileAttributes >>> 16) & 0o177777;
  const type = mode & 0o170000;
  const isDir = name.endsWith("/") || type === 0o040000;
  let kind: Kind;
  if (type === 0o120000) kind = "symlink";
  else if (isDir) kind = "dir";
  else if (type === 0 || type === 0o100000) kind = "file";
  else throw reject(`the entry '${name}' is a device, pipe or socket.`);
  if (kind === "symlink") {
    const stream = await promisify(zip.openReadStream.bind(zip))(entry);
    const target = (await readAll(stream, 4096)).toString("utf8");
    const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(name), target));
    if (
      target.startsWith("/") ||
      resolved === ".." ||
      resolved.startsWith("../") ||
      target.includes("\0")
    ) {
      throw reject(`the symlink '${name}' points outside the code directory ('${target}').`);
    }
  }
  return { entry, name, kind, executable: (mode & 0o111) !== 0 };
}

export async function readAll(stream: NodeJS.ReadableStream, max = Infinity): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  await pipeline(
    stream,
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > max) return done(reject("a symlink target is too long."));
        chunks.push(chunk);
        done();
      },
    }),
  );
  return Buffer.concat(chunks);
}
