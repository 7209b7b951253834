import type { ValidateFunction } from "ajv";
import type { ChatCompletionTool } from "openai/resources/chat/completions";
import { AppError } from "../domain/errors.js";
import type { JsonObject } from "../domain/model.js";
import type { ChatRequest, ModelGateway } from "../gateway/modelGateway.js";
import type { McpToolConfig, McpToolInfo, McpTools } from "../tools/mcp.js";
import { mcpFunctionName, newId, toMessages } from "./items.js";
import type { Item } from "./ports.js";

/*
 * One response, computed: the model is called through the gateway, its stream becomes
 * Responses output items and events, MCP tools run here, function tools go back to the caller.
 */

export interface FunctionTool {
  type: "function";
  name: string;
  description?: string | null;
  parameters?: Record<string, unknown> | null;
  strict?: boolean | null;
}

/** Everything a turn needs, resolved by the service. */
export interface Turn {
  project: string;
  deployment: string;
  instructions: string[];
  /** Earlier items of the thread (chain or conversation). */
  history: Item[];
  /** This call's input items. */
  input: Item[];
  functions: FunctionTool[];
  mcp: McpToolConfig[];
  toolChoice: unknown;
  parallelToolCalls: boolean;
  temperature?: number | null;
  topP?: number | null;
  maxOutputTokens?: number | null;
  /** json_schema output: the validator the answer must pass. */
  schema?: { name: string; schema: Record<string, unknown>; validate: ValidateFunction };
  jsonObject?: boolean;
}

export interface TurnUsage {
  input_tokens: number;
  output_tokens: number;
}

/** What the engine tells its caller as it goes. */
export interface TurnSink {
  /** A stream event without `sequence_number` (the run numbers them). */
  event(event: JsonObject): void;
  /** After every model call (usage is attributed and budgets checked per call). */
  usage(deployment: string, usage: TurnUsage): Promise<void>;
  /** Before every model call: throws `budget_exceeded` when nothing more may be spent. */
  beforeCall(): Promise<void>;
}

export interface TurnResult {
  output: Item[];
  usage: TurnUsage;
}

const maxModelCalls = 16;
/** Characters of text and tool arguments one response may gather from its model calls. */
const maxOutputChars = 4 * 1024 * 1024;

export class Engine {
  constructor(
    private readonly gateway: ModelGateway,
    private readonly mcp: McpTools,
  ) {}

  async run(turn: Turn, sink: TurnSink, signal: AbortSignal): Promise<TurnResult> {
    const output: Item[] = [];
    const usage: TurnUsage = { input_tokens: 0, output_tokens: 0 };
    let gathered = 0;
    const gather = (text: string) => {
      gathered += text.length;
      if (gathered > maxOutputChars)
        throw new ResponseFailure(
          "output_too_large",
          `The model's answer passed ${maxOutputChars} characters; it was cut off.`,
        );
    };
    const add = (item: Item) => {
      output.push(item);
      sink.event({
        type: "response.output_item.added",
        output_index: output.length - 1,
        item: { ...item },
      });
      return output.length - 1;
    };
    const done = (index: number) =>
      sink.event({ type: "response.output_item.done", output_index: index, item: output[index] });

    // The MCP servers' tools: listed once per thread (an earlier listing is reused).
    const listings = new Map<string, McpToolInfo[]>();
    for (const item of [...turn.history, ...turn.input])
      if (item.type === "mcp_list_tools" && !item.error)
        listings.set(String(item.server_label), item.tools as McpToolInfo[]);
    for (const server of turn.mcp) {
      if (listings.has(server.server_label)) continue;
      const index = add({
        id: newId("mcpl"),
        type: "mcp_list_tools",
        server_label: server.server_label,
        tools: [],
      });
      sink.event({
        type: "response.mcp_list_tools.in_progress",
        output_index: index,
        item_id: output[index]!.id,
      });
      const tools = await this.mcp.listTools(server, signal);
      output[index]!.tools = tools as unknown as JsonObject[];
      listings.set(server.server_label, tools);
      sink.event({
        type: "response.mcp_list_tools.completed",
        output_index: index,
        item_id: output[index]!.id,
      });
      done(index);
    }
    const mcpByName = new Map<string, { server: McpToolConfig; tool: string }>();
    const functionNames = new Set(turn.functions.map((f) => f.name));
    const tools: ChatCompletionTool[] = turn.functions.map((f) => ({
      type: "function",
      function: {
        name: f.name,
        ...(f.description ? { description: f.description } : {}),
        parameters: f.parameters ?? { type: "object", properties: {} },
        ...(f.strict ? { strict: true } : {}),
      },
    }));
    for (const server of turn.mcp)
      for (const tool of listings.get(server.server_label) ?? []) {
        const name = mcpFunctionName(server.server_label, tool.name);
        mcpByName.set(name, { server, tool: tool.name });
        tools.push({
          type: "function",
          function: {
            name,
            ...(tool.description ? { description: tool.description } : {}),
            parameters: tool.input_schema,
          },
        });
      }

    // Approvals answered in this call's input: run (or refuse) the waiting calls first.
    const thread = [...turn.history, ...turn.input];
    for (const answer of turn.input.filter((i) => i.type === "mcp_approval_response")) {
      const request = thread.find(
        (i) => i.id === answer.approval_request_id && i.type === "mcp_approval_request",
      );
      if (!request)
        throw new AppError(
          "invalid_parameter",
          `No mcp_approval_request '${String(answer.approval_request_id)}' in this thread.`,
          "input",
        );
      if (!answer.approve) continue;
      const server = turn.mcp.find((s) => s.server_label === request.server_label);
      if (!server)
        throw new AppError(
          "invalid_parameter",
          `The MCP server '${String(request.server_label)}' is no longer among the tools.`,
          "tools",
        );
      await this.callMcp(
        server,
        String(request.name),
        String(request.arguments),
        add,
        done,
        output,
        sink,
        signal,
        String(request.id),
      );
    }

    for (let call = 0; call < maxModelCalls; call++) {
      await sink.beforeCall();
      const request: ChatRequest = {
        messages: toMessages(turn.instructions, [...thread, ...output]),
        ...(tools.length > 0
          ? {
              tools,
              tool_choice: chatToolChoice(turn.toolChoice, call),
              parallel_tool_calls: turn.parallelToolCalls,
            }
          : {}),
        ...(turn.temperature != null ? { temperature: turn.temperature } : {}),
        ...(turn.topP != null ? { top_p: turn.topP } : {}),
        ...(turn.maxOutputTokens != null ? { max_tokens: turn.maxOutputTokens } : {}),
        ...(turn.schema
          ? {
              response_format: {
                type: "json_schema",
                json_schema: { name: turn.schema.name, schema: turn.schema.schema, strict: true },
              },
            }
          : turn.jsonObject
            ? { response_format: { type: "json_object" } }
            : {}),
      };
      let message: { index: number; text: string } | undefined;
      const calls = new Map<
        number,
        { id: string; name: string; args: string; index?: number; kind?: "function" | "mcp" }
      >();
      let callUsage: TurnUsage | undefined;
      for await (const chunk of this.gateway.complete(
        turn.project,
        turn.deployment,
        request,
        signal,
      )) {
        if (chunk.usage)
          callUsage = {
            input_tokens: chunk.usage.prompt_tokens ?? 0,
            output_tokens: chunk.usage.completion_tokens ?? 0,
          };
        const delta = chunk.choices?.[0]?.delta;
        if (!delta) continue;
        if (delta.content) {
          if (!message) {
            const index = add({
              id: newId("msg"),
              type: "message",
              status: "in_progress",
              role: "assistant",
              content: [],
            });
            message = { index, text: "" };
            sink.event({
              type: "response.content_part.added",
              item_id: output[index]!.id,
              output_index: index,
              content_index: 0,
              part: { type: "output_text", text: "", annotations: [] },
            });
          }
          gather(delta.content);
          message.text += delta.content;
          sink.event({
            type: "response.output_text.delta",
            item_id: output[message.index]!.id,
            output_index: message.index,
            content_index: 0,
            delta: delta.content,
            logprobs: [],
          });
        }
        for (const piece of delta.tool_calls ?? []) {
          let c = calls.get(piece.index);
          if (!c) {
            c = { id: piece.id ?? newId("call"), name: "", args: "" };
            calls.set(piece.index, c);
          }
          if (piece.function?.name) c.name += piece.function.name;
          const args = piece.function?.arguments ?? "";
          gather(args);
          c.args += args;
          // A client-side function's call is streamed as it arrives.
          if (c.index === undefined && functionNames.has(c.name)) {
            c.kind = "function";
            c.index = add({
              id: newId("fc"),
              type: "function_call",
              status: "in_progress",
              call_id: c.id,
              name: c.name,
              arguments: "",
            });
            if (c.args)
              sink.event({
                type: "response.function_call_arguments.delta",
                item_id: output[c.index]!.id,
                output_index: c.index,
                delta: c.args,
              });
          } else if (c.kind === "function" && args) {
            sink.event({
              type: "response.function_call_arguments.delta",
              item_id: output[c.index!]!.id,
              output_index: c.index,
              delta: args,
            });
          }
        }
      }
      if (callUsage) {
        usage.input_tokens += callUsage.input_tokens;
        usage.output_tokens += callUsage.output_tokens;
        await sink.usage(turn.deployment, callUsage);
      }
      if (message) {
        const item = output[message.index]!;
        const part = { type: "output_text", text: message.text, annotations: [], logprobs: [] };
        sink.event({
          type: "response.output_text.done",
          item_id: item.id,
          output_index: message.index,
          content_index: 0,
          text: message.text,
          logprobs: [],
        });
        sink.event({
          type: "response.content_part.done",
          item_id: item.id,
          output_index: message.index,
          content_index: 0,
          part,
        });
        item.content = [part];
        item.status = "completed";
        done(message.index);
        if (turn.schema || turn.jsonObject) checkStructured(turn, message.text);
      }
      let waiting = false;
      let ranMcp = false;
      for (const c of calls.values()) {
        if (c.kind === "function") {
          const item = output[c.index!]!;
          item.arguments = c.args;
          item.status = "completed";
          sink.event({
            type: "response.function_call_arguments.done",
            item_id: item.id,
            output_index: c.index,
            name: c.name,
            arguments: c.args,
          });
          done(c.index!);
          waiting = true;
          continue;
        }
        const target = mcpByName.get(c.name);
        if (!target)
          throw new ResponseFailure(
            "unknown_tool",
            `The model called '${c.name.slice(0, 64)}', which is none of the response's tools.`,
          );
        if (this.mcp.needsApproval(target.server, target.tool)) {
          done(
            add({
              id: newId("mcpr"),
              type: "mcp_approval_request",
              server_label: target.server.server_label,
              name: target.tool,
              arguments: c.args,
            }),
          );
          waiting = true;
          continue;
        }
        await this.callMcp(target.server, target.tool, c.args, add, done, output, sink, signal);
        ranMcp = true;
      }
      if (waiting || !ranMcp) return { output, usage };
    }
    throw new ResponseFailure(
      "too_many_tool_calls",
      `The model called tools ${maxModelCalls} times in a row without answering.`,
    );
  }

  private async callMcp(
    server: McpToolConfig,
    tool: string,
    args: string,
    add: (item: Item) => number,
    done: (index: number) => void,
    output: Item[],
    sink: TurnSink,
    signal: AbortSignal,
    approvalRequestId?: string,
  ) {
    const index = add({
      id: newId("mcp"),
      type: "mcp_call",
      status: "in_progress",
      server_label: server.server_label,
      name: tool,
      arguments: args,
      output: null,
      error: null,
      ...(approvalRequestId ? { approval_request_id: approvalRequestId } : {}),
    });
    const item = output[index]!;
    sink.event({ type: "response.mcp_call.in_progress", output_index: index, item_id: item.id });
    sink.event({
      type: "response.mcp_call_arguments.done",
      output_index: index,
      item_id: item.id,
      arguments: args,
    });
    let result: { output: string } | { error: string };
    try {
      result = await this.mcp.callTool(server, tool, args, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      result = { error: err instanceof Error ? err.message : String(err) };
    }
    if ("output" in result) {
      item.output = result.output;
      item.status = "completed";
      sink.event({ type: "response.mcp_call.completed", output_index: index, item_id: item.id });
    } else {
      item.error = result.error;
      item.status = "failed";
      sink.event({ type: "response.mcp_call.failed", output_index: index, item_id: item.id });
    }
    done(index);
  }
}

/** The Responses tool_choice as Chat Completions has it; `required` only binds the first call. */
function chatToolChoice(choice: unknown, call: number): ChatRequest["tool_choice"] {
  if (choice === undefined || choice === null || choice === "auto") return "auto";
  if (choice === "none") return "none";
  if (choice === "required") return call === 0 ? "required" : "auto";
  const c = choice as { type: string; name?: string; server_label?: string };
  if (c.type === "function" && c.name)
    return call === 0 ? { type: "function", function: { name: c.name } } : "auto";
  if (c.type === "mcp" && c.server_label && c.name)
    return call === 0
      ? { type: "function", function: { name: mcpFunctionName(c.server_label, c.name) } }
      : "auto";
  return "auto";
}

/** The answer of a structured-output turn must be JSON that passes the schema. */
function checkStructured(turn: Turn, text: string) {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new StructuredOutputError("The model's answer is not JSON.");
  }
  if (turn.schema && !turn.schema.validate(value)) {
    const first = turn.schema.validate.errors?.[0];
    throw new StructuredOutputError(
      `The model's answer does not match the schema '${turn.schema.name}': ${first?.instancePath || "/"} ${first?.message ?? "is invalid"}.`,
    );
  }
}

/** A failed response (not a failed request): its `error.code` and message. */
export class ResponseFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The answer broke `text.format`. */
export class StructuredOutputError extends ResponseFailure {
  constructor(message: string) {
    super("invalid_structured_output", message);
  }
}
