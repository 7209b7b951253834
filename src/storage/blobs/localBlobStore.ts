import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AppError } from "../../domain/errors.js";
import type { BlobStore, StoredBlob } from "../../domain/ports.js";

/**
 * Content-addressed blobs in a local directory: `<dir>/sha256/ab/abcdef…`. A blob is written
 * to a temporary file while it is hashed, then renamed into place, so a reader never sees a
 * partial blob and identical content is stored once.
 */
export class LocalBlobStore implements BlobStore {
  constructor(private readonly dir: string) {}

  async put(source: Readable, maxBytes: number): Promise<StoredBlob> {
    const tmpDir = path.join(this.dir, "tmp");
    await mkdir(tmpDir, { recursive: true });
    const tmp = path.join(tmpDir, randomBytes(12).toString("hex"));
    const hash = createHash("sha256");
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) {
          return done(
            new AppError(
              "payload_too_large",
              `The upload is larger than ${maxBytes} bytes.`,
              "code",
            ),
          );
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(
        source,
        meter,
        createWriteStream(tmp, { mode: 0o600, highWaterMark: 1024 * 1024 }),
      );
      const sha256 = hash.digest("hex");
      const final = this.pathOf(sha256);
      await mkdir(path.dirname(final), { recursive: true });
      await rename(tmp, final); // identical content: replaces an equal file, still one copy
      return { sha256, size };
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Removes what uploads a killed service left in `tmp/`. Call before the first upload of a
   * run (at start).
   */
  async removeTemp(): Promise<void> {
    await rm(path.join(this.dir, "tmp"), { recursive: true, force: true });
  }

  async size(sha256: string): Promise<number | undefined> {
    const s = await stat(this.pathOf(sha256)).catch(() => undefined);
    return s?.size;
  }

  open(sha256: string): ReadStream {
    return createReadStream(this.pathOf(sha256), { highWaterMark: 1024 * 1024 });
  }

  pathOf(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return path.join(this.dir, "sha256", sha256.slice(0, 2), sha256);
  }

  async delete(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }
}
