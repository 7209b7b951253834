import { z } from "zod";
import { AppError } from "../domain/errors.js";

/** An `mcp` tool as it appears in a version's definition.tools or a request's tools (OpenAI Responses shape). */
export interface McpToolConfig {
  type: "mcp";
  server_label: string;
  server_url: string;
  headers?: Record<string, string>;
  /** Tool names, or a filter: `tool_names`, and `read_only` (only tools annotated readOnlyHint). */
  allowed_tools?: string[] | { tool_names?: string[]; read_only?: boolean };
  require_approval?:
    "always" | "never" | { always?: { tool_names?: string[] }; never?: { tool_names?: string[] } };
  server_description?: string;
}

/** Header names the MCP transports set themselves (or HTTP reserves). */
const reservedHeaders = new Set([
  "accept",
  "connection",
  "content-length",
  "content-type",
  "expect",
  "host",
  "keep-alive",
  "last-event-id",
  "mcp-protocol-version",
  "mcp-session-id",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

const toolNames = z.array(z.string().min(1).max(128)).max(1000);
const approvalFilter = z.object({ tool_names: toolNames.nullish() });

const serverUrl = z
  .string()
  .max(2048)
  .superRefine((value, ctx) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return void ctx.addIssue({ code: "custom", message: "not a URL" });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:")
      ctx.addIssue({ code: "custom", message: "the URL must be http:// or https://" });
    else if (url.username || url.password)
      ctx.addIssue({ code: "custom", message: "credentials go in `headers`, not in the URL" });
  });

const headers = z
  .record(
    z
      .string()
      .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/, "not an HTTP header name")
      .refine((name) => !reservedHeaders.has(name.toLowerCase()), "set by the MCP transport"),
    // What node:http accepts in a header value (no CR, LF, NUL or other controls).
    z
      .string()
      .max(8192)
      .regex(/^[\t\x20-\x7e\x80-\xff]*$/, "not a valid header value"),
  )
  .refine((h) => Object.keys(h).length <= 64, "at most 64 headers");

const mcpToolSchema = z.object({
  type: z.literal("mcp"),
  server_label: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "1-64 of [A-Za-z0-9_-]"),
  server_url: serverUrl,
  headers: headers.nullish(),
  allowed_tools: z
    .union([
      toolNames,
      z.object({ tool_names: toolNames.nullish(), read_only: z.boolean().nullish() }),
    ])
    .nullish(),
  require_approval: z
    .union([
      z.enum(["always", "never"]),
      z.object({ always: approvalFilter.nullish(), never: approvalFilter.nullish() }),
    ])
    .nullish(),
  server_description: z.string().max(4096).nullish(),
});

/** Drops the nulls a stored or echoed tool may carry for absent fields. */
function withoutNulls<T>(value: T): T {
  if (Array.isArray(value) || typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => [k, withoutNulls(v)]),
  ) as T;
}

/**
 * Parses/validates an mcp tool object, failing with AppError `missing_parameter` or
 * `invalid_parameter` naming the field (`${param}.server_url`, `${param}.headers.X-Key`, …).
 * Other fields of the OpenAI shape are ignored.
 */
export function parseMcpTool(value: unknown, param: string): McpToolConfig {
  const result = mcpToolSchema.safeParse(value, { reportInput: true });
  if (result.success) return withoutNulls(result.data) as McpToolConfig;
  const issue = result.error.issues[0]!;
  const field = issue.path.reduce<string>(
    (at, p) => (typeof p === "number" ? `${at}[${p}]` : at ? `${at}.${String(p)}` : String(p)),
    param,
  );
  if (issue.code === "invalid_type" && issue.input === undefined)
    throw new AppError("missing_parameter", `Missing required parameter '${field}'.`, field);
  throw new AppError("invalid_parameter", `Invalid value for '${field}': ${issue.message}.`, field);
}

/** Whether the configuration lets the model see (and call) the tool `name`, by name alone. */
export function allowedByName(config: McpToolConfig, name: string): boolean {
  const filter = config.allowed_tools;
  const names = Array.isArray(filter) ? filter : filter?.tool_names;
  return names === undefined || names.includes(name);
}

/** Whether calling `name` needs an approval first; absent, "always" (as OpenAI does). */
export function needsApproval(config: McpToolConfig, name: string): boolean {
  const rule = config.require_approval ?? "always";
  if (rule === "always" || rule === "never") return rule === "always";
  if (rule.always?.tool_names?.includes(name)) return true;
  if (rule.never?.tool_names?.includes(name)) return false;
  return true;
}
