// Placeholder until the MCP tool client lands (same exported API).
import { AppError } from "../domain/errors.js";
export interface McpToolConfig {
  type: "mcp";
  server_label: string;
  server_url: string;
  headers?: Record<string, string>;
  allowed_tools?: string[] | { tool_names?: string[] };
  require_approval?:
    "always" | "never" | { always?: { tool_names?: string[] }; never?: { tool_names?: string[] } };
  server_description?: string;
}
export interface McpToolInfo {
  name: string;
  description?: string;
  input_schema: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}
export class McpTools {
  constructor(readonly options: { timeoutMs: number; maxOutputBytes: number; log?: unknown }) {}
  async listTools(config: McpToolConfig, _signal?: AbortSignal): Promise<McpToolInfo[]> {
    throw new AppError("upstream_error", `MCP ${config.server_label} unavailable`, "tools");
  }
  async callTool(
    _c: McpToolConfig,
    _n: string,
    _a: string,
    _s?: AbortSignal,
  ): Promise<{ output: string } | { error: string }> {
    return { error: "unavailable" };
  }
  needsApproval(_c: McpToolConfig, _n: string): boolean {
    return true;
  }
  async close(): Promise<void> {}
}
export function parseMcpTool(value: unknown, _param: string): McpToolConfig {
  return value as McpToolConfig;
}
