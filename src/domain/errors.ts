import type { ErrorCode } from "../contract/errorCodes.js";

/**
 * A failure the caller can act on. It carries a code (never an HTTP status) and, where one
 * field is to blame, that field's name as `param`.
 */
export class AppError extends Error {
  override readonly name = "AppError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly param?: string,
  ) {
    super(message);
  }
}

export const notFound = (what: string, param?: string) =>
  new AppError("not_found", `${what} was not found.`, param);

/** errno and SQLite codes of a full disk (or a quota reached). */
const diskFullCodes = new Set(["ENOSPC", "EDQUOT", "SQLITE_FULL"]);

/** True when `err` (or an error it wraps) says the disk is full. */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 4; e = (e as Error).cause, depth++)
    if (diskFullCodes.has(String((e as NodeJS.ErrnoException).code))) return true;
  return false;
}

export const diskFull = () =>
  new AppError(
    "insufficient_storage",
    "The service's disk is full: nothing was written. Reads still work; repeat once space is freed.",
  );
