import { createHash, randomBytes } from "node:crypto";
import type {
  ChatCompletionContentPart,
  ChatCompletionMessageParam,
  ChatCompletionMessageToolCall,
} from "openai/resources/chat/completions";
import type { InputItem } from "../contract/responses.js";
import type { Item } from "./ports.js";

/*
 * Responses items ⇄ Chat Completions messages. A thread (instructions, earlier items, this
 * call's input, what this response has produced so far) becomes the messages every
 * OpenAI-compatible server understands.
 */

export const newId = (prefix: string) => `${prefix}_${randomBytes(16).toString("hex")}`;

/**
 * The item of an input entry as stored: a full message with a status, and always an id of
 * the service's (a caller's id is not kept: ids stay unique within a thread).
 */
export function normalizeInput(entry: InputItem | string): Item {
  if (typeof entry === "string")
    return normalizeInput({ type: "message", role: "user", content: entry });
  if (entry.type === undefined || entry.type === "message") {
    const e = entry as { role: string; content: unknown; id?: string };
    const content =
      typeof e.content === "string"
        ? [{ type: e.role === "assistant" ? "output_text" : "input_text", text: e.content }]
        : e.content;
    return {
      ...entry,
      type: "message",
      id: newId("msg"),
      status: "completed",
      role: e.role,
      content,
    } as Item;
  }
  const prefix: Record<string, string> = {
    function_call: "fc",
    function_call_output: "fco",
    mcp_approval_response: "mcpr",
  };
  return { ...entry, id: newId(prefix[entry.type] ?? "item") } as Item;
}

/** The function name an MCP tool gets in the upstream call. */
export function mcpFunctionName(label: string, tool: string): string {
  const name = `mcp__${label}__${tool}`;
  if (name.length <= 64 && /^[A-Za-z0-9_-]+$/.test(name)) return name;
  // Too long (or not a function name): a prefix and a hash, so two tools never share one.
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 12);
  return `${name.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 51)}_${hash}`;
}

const textOf = (content: unknown): string => {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((p: { text?: string; refusal?: string }) => p.text ?? p.refusal ?? "")
    .join("");
};

function userContent(content: unknown): string | ChatCompletionContentPart[] {
  if (!Array.isArray(content)) return textOf(content);
  const hasImage = content.some((p: { type?: string }) => p.type === "input_image");
  if (!hasImage) return textOf(content);
  return content.map((p: { type?: string; text?: string; image_url?: string }) =>
    p.type === "input_image"
      ? { type: "image_url" as const, image_url: { url: p.image_url ?? "" } }
      : { type: "text" as const, text: p.text ?? "" },
  );
}

/**
 * The messages of a thread. Consecutive tool calls join one assistant message (parallel calls);
 * an approval request still waiting, or one denied, is answered for the model with a tool
 * message saying so.
 */
export function toMessages(instructions: string[], items: Item[]): ChatCompletionMessageParam[] {
  const messages: ChatCompletionMessageParam[] = instructions
    .filter((i) => i.length > 0)
    .map((content) => ({ role: "system", content }));
  let calls: ChatCompletionMessageToolCall[] | undefined;
  const pendingOutputs: ChatCompletionMessageParam[] = [];
  const flush = () => {
    calls = undefined;
    messages.push(...pendingOutputs.splice(0));
  };
  const call = (id: string, name: string, args: string) => {
    if (!calls) {
      const last = messages.at(-1);
      // Text and calls of one assistant turn belong to one message.
      if (last?.role === "assistant" && !last.tool_calls && pendingOutputs.length === 0) {
        calls = [];
        last.tool_calls = calls;
      } else {
        calls = [];
        messages.push({ role: "assistant", content: null, tool_calls: calls });
      }
    }
    calls.push({ id, type: "function", function: { name, arguments: args } });
  };
  const approvals = new Map<string, Item>();
  for (const item of items) {
    switch (item.type) {
      case "message": {
        flush();
        const role = item.role as string;
        if (role === "assistant")
          messages.push({ role: "assistant", content: textOf(item.content) });
        else if (role === "user")
          messages.push({ role: "user", content: userContent(item.content) });
        else messages.push({ role: "system", content: textOf(item.content) });
        break;
      }
      case "function_call":
        call(String(item.call_id), String(item.name), String(item.arguments));
        break;
      case "function_call_output":
        if (calls) pendingOutputs.push(toolMessage(item.call_id, textOf(item.output)));
        else messages.push(toolMessage(item.call_id, textOf(item.output)));
        break;
      case "mcp_call":
        call(
          String(item.id),
          mcpFunctionName(String(item.server_label), String(item.name)),
          String(item.arguments),
        );
        pendingOutputs.push(
          toolMessage(
            item.id,
            item.error ? `Error: ${String(item.error)}` : String(item.output ?? ""),
          ),
        );
        break;
      case "mcp_approval_request":
        approvals.set(item.id, item);
        break;
      case "mcp_approval_response": {
        const request = approvals.get(String(item.approval_request_id));
        if (request && !item.approve) {
          call(
            String(request.id),
            mcpFunctionName(String(request.server_label), String(request.name)),
            String(request.arguments),
          );
          pendingOutputs.push(toolMessage(request.id, "The user denied this tool call."));
        }
        break;
      }
      default:
        break; // mcp_list_tools, item references: nothing for the model
    }
  }
  flush();
  return messages;
}

const toolMessage = (id: unknown, content: string): ChatCompletionMessageParam => ({
  role: "tool",
  tool_call_id: String(id),
  content,
});

/** The text of a message item's output_text parts. */
export const messageText = (item: Item): string => textOf(item.content);
