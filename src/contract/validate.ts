import type { z } from "zod";
import { AppError } from "../domain/errors.js";

/**
 * Parses input against a contract schema. The first problem becomes a 400 naming the field
 * (`definition.temperature`, `limit`, …), with `missing_parameter` when it is simply absent.
 */
export function parse<S extends z.ZodType>(schema: S, input: unknown, prefix = ""): z.output<S> {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = prefix + fieldPath(issue.path);
  const missing =
    (issue.code === "invalid_type" && issue.input === undefined) ||
    // A discriminated union whose discriminator (e.g. definition.kind) is absent.
    (issue.code === "invalid_union" &&
      "discriminator" in issue &&
      typeof issue.input === "object" &&
      issue.input !== null &&
      (issue.input as Record<string, unknown>)[String(issue.discriminator)] === undefined);
  const message = missing
    ? `Missing required parameter '${param}'.`
    : `Invalid value for '${param || "body"}': ${issue.message}.`;
  throw new AppError(
    missing ? "missing_parameter" : "invalid_parameter",
    message,
    param || undefined,
  );
}

function fieldPath(path: PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`))
    .join("");
}
