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
