import type { IncomingMessage } from "node:http";
import { Busboy, type BusboyHeaders } from "@fastify/busboy";
import type { CodeService } from "../domain/codeService.js";
import { AppError } from "../domain/errors.js";
import type { StoredBlob } from "../domain/ports.js";

/** The two parts of a code upload (contract §5), the zip already stored. */
export interface CodeUploadParts {
  metadata: unknown;
  blob: StoredBlob;
}

/**
 * Reads a `multipart/form-data` code upload in a single pass: the `code` part (with or without
 * a filename, in either order) is streamed into the blob store while hashing — never held in
 * memory — and the `metadata` part is parsed as JSON. On any failure the stored zip is released
 * and the rest of the body is drained so the client reads the error instead of a reset.
 */
export async function readCodeUpload(
  request: IncomingMessage,
  code: CodeService,
): Promise<CodeUploadParts> {
  let blob: Promise<StoredBlob> | undefined;
  let metadata: unknown;
  let metadataSeen = false;
  let busboy: InstanceType<typeof Busboy>;
  try {
    busboy = new Busboy({
      headers: request.headers as BusboyHeaders,
      limits: { files: 1, fields: 4, parts: 5, fieldSize: 1024 * 1024 },
      // The official JS client sends `code` without a filename: it is still the file.
      isPartAFile: (fieldName) => fieldName === "code",
    });
  } catch (err) {
    // e.g. no boundary in the content type
    await drain(request);
    throw new AppError(
      "invalid_parameter",
      `Malformed multipart request: ${(err as Error).message}`,
      "content-type",
    );
  }

  const parsed = new Promise<void>((resolve, reject) => {
    busboy.on("file", (field: string, stream: NodeJS.ReadableStream) => {
      if (field !== "code" || blob) return void stream.resume();
      blob = code.receive(stream as never);
      // A refused zip (too large) ends the whole upload at once.
      blob.catch((err: unknown) => {
        stream.resume();
        reject(err);
      });
    });
    busboy.on(
      "field",
      (field: string, value: string, _nameTruncated: boolean, valueTruncated: boolean) => {
        if (field !== "metadata") return;
        metadataSeen = true;
        if (valueTruncated)
          return reject(
            new AppError("payload_too_large", "The metadata part is over 1 MiB.", "metadata"),
          );
        try {
          metadata = JSON.parse(value);
        } catch {
          reject(new AppError("invalid_json", "The metadata part is not valid JSON.", "metadata"));
        }
      },
    );
    busboy.on("finish", resolve);
    busboy.on("error", (err: Error) =>
      reject(new AppError("invalid_parameter", `Malformed multipart body: ${err.message}`)),
    );
  });
  request.pipe(busboy);
  try {
    await parsed;
    if (!blob)
      throw new AppError("missing_parameter", "The multipart body has no 'code' part.", "code");
    const stored = await blob;
    if (!metadataSeen) {
      await code.release(stored);
      throw new AppError(
        "missing_parameter",
        "The multipart body has no 'metadata' part.",
        "metadata",
      );
    }
    return { metadata, blob: stored };
  } catch (err) {
    const stored = await blob?.catch(() => undefined);
    if (stored) await code.release(stored);
    await drain(request);
    throw err;
  }
}

/** Reads and discards what is left of a request body (bounded), so the error can be read. */
export async function drain(request: IncomingMessage, limit = 512 * 1024 * 1024): Promise<void> {
  request.unpipe();
  // Destroyed (e.g. by a pipeline that failed to write it): 'close' has been and gone.
  if (request.readableEnded || request.destroyed) return;
  let seen = 0;
  await new Promise<void>((resolve) => {
    request.on("data", (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limit) {
        request.destroy();
        resolve();
      }
    });
    request.on("end", resolve);
    request.on("close", resolve);
    request.resume();
  });
}
