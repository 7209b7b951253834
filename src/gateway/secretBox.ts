import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, openSync, readFileSync, writeSync, closeSync } from "node:fs";
import path from "node:path";

/** Seals secrets (deployment API keys) for storage, and opens them again. */
export interface Secrets {
  /** `context` binds the ciphertext to its row: it opens under the same context only. */
  seal(plaintext: string, context: string): string;
  open(ciphertext: string, context: string): string;
}

const version = "v1";

/**
 * AES-256-GCM with one 32-byte key kept in the data directory (`secret.key`, mode 0600,
 * created once). A ciphertext is `v1.<iv>.<tag>.<data>` (base64url), with the context as
 * additional authenticated data, so a sealed key copied to another row does not open.
 */
export class SecretBox implements Secrets {
  private constructor(private readonly key: Buffer) {}

  /** Reads `<dataDir>/secret.key`, creating it when absent (never overwriting one). */
  static open(dataDir: string): SecretBox {
    const file = path.join(dataDir, "secret.key");
    try {
      const fd = openSync(file, "wx", 0o600);
      try {
        writeSync(fd, randomBytes(32));
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    chmodSync(file, 0o600);
    const key = readFileSync(file);
    if (key.length !== 32)
      throw new Error(`${file} is not a 32-byte key; restore it from a backup`);
    return new SecretBox(key);
  }

  seal(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(context));
    const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return [version, iv, cipher.getAuthTag(), data]
      .map((p) => (typeof p === "string" ? p : p.toString("base64url")))
      .join(".");
  }

  open(ciphertext: string, context: string): string {
    const [v, iv, tag, data] = ciphertext.split(".");
    if (v !== version || iv === undefined || tag === undefined || data === undefined)
      throw new Error("not a sealed secret");
    const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([
      decipher.update(Buffer.from(data, "base64url")),
      decipher.final(),
    ]).toString("utf8");
  }
}
