import { Ajv, type ValidateFunction } from "ajv";
import { RE2JS, RE2JSSyntaxException } from "re2js";
import { canonicalJson } from "../lib/canonicalJson.js";
import { AppError } from "./errors.js";
import type { JsonObject } from "./model.js";

/**
 * A manifest is a named, versioned template of an agent definition with declared parameters.
 * Each parameter is a JSON schema (`type`, `enum`, `minimum`, …, `default`, `description`); one
 * without a default is required. In the template a string that is exactly `{{name}}` becomes the
 * parameter's value (any JSON type); `{{name}}` inside a longer string is replaced by its text.
 */
export interface Manifest {
  project: string;
  name: string;
  version: number;
  description: string;
  parameters: Record<string, JsonObject>;
  definition: JsonObject;
  createdAt: number;
  builtin: boolean;
}

const placeholder = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;
const whole = /^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$/;

/**
 * Parameter schemas come from callers, so nothing in them may cost more than linear time:
 * `pattern` and `patternProperties` run on RE2 (no backtracking; lookarounds and
 * backreferences are refused when the manifest is registered), a schema is at most
 * `maxSchemaBytes`, and `uniqueItems` (a pairwise comparison for anything but scalars) only
 * applies to arrays of scalars.
 */
const linearRegExp = Object.assign((pattern: string) => RE2JS.compile(pattern), { code: "re2js" });
const ajv = new Ajv({ allErrors: false, strict: false, code: { regExp: linearRegExp } });
const maxSchemaBytes = 16 * 1024;
const maxParameters = 64;
const scalarTypes = new Set(["string", "number", "integer", "boolean", "null"]);

/** Compiled validators by canonical schema: compiled once, and Ajv's own cache not grown. */
const compiled = new Map<string, ValidateFunction>();
const maxCompiled = 512;

/** The schema's validator; an AppError naming `param` when it does not compile. */
function validatorOf(schema: JsonObject, name: string): ValidateFunction {
  const key = canonicalJson(schema);
  let validate = compiled.get(key);
  if (!validate) {
    try {
      validate = ajv.compile(schema);
    } catch (err) {
      const why =
        err instanceof RE2JSSyntaxException
          ? `a pattern is not accepted (patterns run on RE2 in linear time: no lookarounds or backreferences): ${err.message}`
          : (err as Error).message;
      throw new AppError(
        "invalid_parameter",
        `Parameter '${name}' is not a valid JSON schema: ${why}`,
        `parameters.${name}`,
      );
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

/** Throws unless every placeholder is declared and every parameter schema compiles. */
export function checkManifest(
  parameters: Record<string, JsonObject>,
  definition: JsonObject,
): void {
  if (Object.keys(parameters).length > maxParameters) {
    throw new AppError(
      "invalid_parameter",
      `A manifest declares at most ${maxParameters} parameters.`,
      "parameters",
    );
  }
  for (const [name, schema] of Object.entries(parameters)) {
    const refuse = (why: string) =>
      new AppError(
        "invalid_parameter",
        `Parameter '${name}' is not accepted: ${why}.`,
        `parameters.${name}`,
      );
    if (Buffer.byteLength(JSON.stringify(schema)) > maxSchemaBytes)
      throw refuse(`its schema is larger than ${maxSchemaBytes} bytes`);
    const why = superLinear(schema);
    if (why) throw refuse(why);
    validatorOf(schema, name);
  }
  for (const used of placeholders(definition)) {
    if (!(used in parameters)) {
      throw new AppError(
        "invalid_parameter",
        `The template uses '{{${used}}}', which is not a declared parameter.`,
        "definition",
      );
    }
  }
}

/** The definition with the parameter values (validated, defaults applied) substituted. */
export function renderManifest(manifest: Manifest, values: Record<string, unknown>): JsonObject {
  for (const name of Object.keys(values)) {
    if (!(name in manifest.parameters)) {
      throw new AppError(
        "invalid_parameter",
        `Manifest '${manifest.name}' has no parameter '${name}'.`,
        `parameter_values.${name}`,
      );
    }
  }
  const resolved: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(manifest.parameters)) {
    const value = name in values ? values[name] : schema.default;
    if (value === undefined) {
      throw new AppError(
        "missing_parameter",
        `Manifest '${manifest.name}' needs parameter '${name}'.`,
        `parameter_values.${name}`,
      );
    }
    const validate = validatorOf(schema, name);
    if (!validate(value)) {
      const e = validate.errors?.[0];
      throw new AppError(
        "invalid_parameter",
        `Parameter '${name}' ${e?.message ?? "is invalid"}${e?.instancePath ? ` at ${e.instancePath}` : ""}.`,
        `parameter_values.${name}`,
      );
    }
    resolved[name] = value;
  }
  return substitute(manifest.definition, resolved) as JsonObject;
}

function substitute(value: unknown, values: Record<string, unknown>): unknown {
  if (typeof value === "string") {
    const m = whole.exec(value);
    if (m) return values[m[1]!];
    return value.replace(placeholder, (_all, name: string) => {
      const v = values[name];
      return typeof v === "string" ? v : JSON.stringify(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, values));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, values)]));
  }
  return value;
}

function placeholders(value: unknown, found = new Set<string>()): Set<string> {
  if (typeof value === "string") for (const m of value.matchAll(placeholder)) found.add(m[1]!);
  else if (Array.isArray(value)) value.forEach((v) => placeholders(v, found));
  else if (value !== null && typeof value === "object")
    Object.values(value).forEach((v) => placeholders(v, found));
  return found;
}

/** Manifests every project has. */
export const builtinManifests: Omit<Manifest, "project" | "createdAt">[] = [
  {
    name: "prompt-agent",
    version: 1,
    builtin: true,
    description: "A prompt agent: a model with instructions.",
    parameters: {
      model: { type: "string", minLength: 1, description: "Model deployment name." },
      instructions: {
        type: "string",
        default: "You are a helpful assistant.",
        description: "System instructions.",
      },
      temperature: { type: "number", minimum: 0, maximum: 2, default: 1 },
    },
    definition: {
      kind: "prompt",
      model: "{{model}}",
      instructions: "{{instructions}}",
      temperature: "{{temperature}}",
    },
  },
  {
    name: "python-hosted-agent",
    version: 1,
    builtin: true,
    description:
      "A code-based hosted Python agent (`python main.py`). Import it onto an agent whose code is uploaded: the new version keeps that code.",
    parameters: {
      runtime: {
        type: "string",
        enum: ["python_3_11", "python_3_12", "python_3_13", "python_3_14"],
        default: "python_3_12",
      },
      entry_file: { type: "string", pattern: "\\.py$", default: "main.py" },
      cpu: { type: "string", default: "0.5" },
      memory: { type: "string", default: "1Gi" },
      idle_timeout_seconds: { type: "integer", minimum: 120, maximum: 3600, default: 900 },
      environment_variables: {
        type: "object",
        additionalProperties: { type: "string" },
        default: {},
      },
    },
    definition: {
      kind: "hosted",
      cpu: "{{cpu}}",
      memory: "{{memory}}",
      code_configuration: {
        runtime: "{{runtime}}",
        entry_point: ["python", "{{entry_file}}"],
        dependency_resolution: "remote_build",
      },
      protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
      environment_variables: "{{environment_variables}}",
      session_configuration: { idle_timeout_seconds: "{{idle_timeout_seconds}}" },
    },
  },
];
