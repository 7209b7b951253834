import { Ajv, type ValidateFunction } from "ajv";
import { RE2JS, RE2JSSyntaxException } from "re2js";
import { canonicalJson } from "./canonicalJson.js";

/**
 * JSON schemas that come from callers (manifest parameters, structured-output formats), so
 * nothing in them may cost more than linear time to check: `pattern` and `patternProperties`
 * run on RE2 (no backtracking; lookarounds and backreferences are refused), a schema is at
 * most `maxSchemaBytes`, and `uniqueItems` (a pairwise comparison for anything but scalars)
 * only applies to arrays of scalars.
 */

const linearRegExp = Object.assign((pattern: string) => RE2JS.compile(pattern), { code: "re2js" });
const ajv = new Ajv({ allErrors: false, strict: false, code: { regExp: linearRegExp } });
export const maxSchemaBytes = 16 * 1024;
const scalarTypes = new Set(["string", "number", "integer", "boolean", "null"]);

/** Compiled validators by canonical schema: compiled once, and Ajv's own cache not grown. */
const compiled = new Map<string, ValidateFunction>();
const maxCompiled = 512;

/** The schema's validator, or why it is refused (a sentence without a final period). */
export function linearValidator(schema: Record<string, unknown>): ValidateFunction | string {
  if (Buffer.byteLength(JSON.stringify(schema)) > maxSchemaBytes)
    return `the schema is larger than ${maxSchemaBytes} bytes`;
  const why = superLinear(schema);
  if (why) return why;
  const key = canonicalJson(schema);
  let validate = compiled.get(key);
  if (!validate) {
    try {
      validate = ajv.compile(schema);
    } catch (err) {
      return err instanceof RE2JSSyntaxException
        ? `a pattern is not accepted (patterns run on RE2 in linear time: no lookarounds or backreferences): ${err.message}`
        : `not a valid JSON schema: ${(err as Error).message}`;
    } finally {
      ajv.removeSchema(schema);
    }
    if (compiled.size >= maxCompiled) compiled.delete(compiled.keys().next().value!);
    compiled.set(key, validate);
  }
  return validate;
}

/** Why a schema could cost more than linear time to check, or undefined. */
function superLinear(schema: unknown): string | undefined {
  if (Array.isArray(schema)) {
    for (const s of schema) {
      const why = superLinear(s);
      if (why) return why;
    }
    return undefined;
  }
  if (schema === null || typeof schema !== "object") return undefined;
  const s = schema as Record<string, unknown>;
  if (s.uniqueItems === true) {
    const items = s.items as { type?: unknown; enum?: unknown } | undefined;
    const type = items?.type;
    const scalar =
      typeof type === "string"
        ? scalarTypes.has(type)
        : Array.isArray(type) && type.length > 0 && type.every((t) => scalarTypes.has(t));
    if (!scalar)
      return "'uniqueItems' is only accepted for arrays whose 'items' have a scalar 'type'";
  }
  for (const [key, value] of Object.entries(s)) {
    // Values under these keys are data, not schemas.
    if (key === "enum" || key === "const" || key === "default" || key === "examples") continue;
    const why = superLinear(value);
    if (why) return why;
  }
  return undefined;
}
