import type { ValidateFunction } from "ajv";
import { linearValidator } from "../lib/jsonSchema.js";
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

const maxParameters = 64;

/** The schema's validator; an AppError naming `param` when it is refused. */
function validatorOf(schema: JsonObject, name: string): ValidateFunction {
  const validate = linearValidator(schema);
  if (typeof validate === "string")
    throw new AppError(
      "invalid_parameter",
      `Parameter '${name}' is not accepted: ${validate}.`,
      `parameters.${name}`,
    );
  return validate;
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
  for (const [name, schema] of Object.entries(parameters)) validatorOf(schema, name);
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
