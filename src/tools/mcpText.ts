import type { McpToolConfig } from "./mcpTool.js";

/** How an MCP server's answers and errors become text for the model and for messages. */

/** Cuts `text` to `max` UTF-8 bytes (never inside a character), saying so at its end. */
export function capBytes(text: string, max: number): string {
  const size = Buffer.byteLength(text);
  if (size <= max) return text;
  const note = `\n[truncated: ${size} bytes, limit ${max}]`;
  const room = Buffer.byteLength(note) <= max ? max - Buffer.byteLength(note) : max;
  const { read } = new TextEncoder().encodeInto(text, new Uint8Array(room));
  return text.slice(0, read) + (room < max ? note : "");
}

/** A tool result as text: text contents (and embedded text resources) joined, else structuredContent. */
export function render(result: { content?: unknown[]; structuredContent?: unknown }): string {
  const parts: string[] = [];
  for (const item of (result.content ?? []) as Record<string, unknown>[]) {
    const resource = item.resource as { text?: unknown; uri?: unknown } | undefined;
    if (item.type === "text" && typeof item.text === "string") parts.push(item.text);
    else if (item.type === "resource" && typeof resource?.text === "string")
      parts.push(resource.text);
    else if (item.type === "resource_link") parts.push(`[resource: ${String(item.uri)}]`);
    else parts.push(`[${String(item.type)}${item.mimeType ? `: ${String(item.mimeType)}` : ""}]`);
  }
  if (parts.length === 0 && result.structuredContent !== undefined)
    return JSON.stringify(result.structuredContent);
  return parts.join("\n");
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** An error's message on one line, short, with every configured header value cut out. */
export function redact(config: McpToolConfig, err: unknown): string {
  let text = message(err);
  for (const value of Object.values(config.headers ?? {}))
    if (value.length >= 4) text = text.split(value).join("[redacted]");
  return text.replace(/\s+/g, " ").slice(0, 300);
}
