import { z } from "zod";
import { agentName, metadata } from "./requests.js";

/*
 * Request bodies of the OpenAI-compatible data plane: Responses and Conversations (the shapes
 * of the `openai` client). Unknown fields are kept (loose objects); what the service cannot
 * honour is refused by the engine with the field named.
 */

const text = z.string().max(1024 * 1024);

const contentPart = z.looseObject({
  type: z.enum(["input_text", "output_text", "text", "input_image", "input_file", "refusal"]),
  text: text.optional(),
  image_url: z.string().optional(),
  refusal: z.string().optional(),
});

/** A message: the `openai` client's EasyInputMessage (no `type`) or a full one. */
const messageItem = z.looseObject({
  type: z.literal("message").optional(),
  id: z.string().optional(),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([text, z.array(contentPart).max(256)]),
});

const functionCall = z.looseObject({
  type: z.literal("function_call"),
  id: z.string().optional(),
  call_id: z.string().min(1).max(256),
  name: z.string().min(1).max(256),
  arguments: text,
});

const functionCallOutput = z.looseObject({
  type: z.literal("function_call_output"),
  id: z.string().optional(),
  call_id: z.string().min(1).max(256),
  output: z.union([text, z.array(contentPart)]),
});

const mcpApprovalResponse = z.looseObject({
  type: z.literal("mcp_approval_response"),
  id: z.string().optional(),
  approval_request_id: z.string().min(1),
  approve: z.boolean(),
  reason: z.string().max(4096).nullable().optional(),
});

const itemReference = z.looseObject({
  type: z.literal("item_reference"),
  id: z.string().min(1),
});

/**
 * Items a caller may send to a model or prompt agent. What only the service makes (MCP
 * listings, calls and approval requests) is never taken from a caller: an approval answers a
 * request the service itself stored.
 */
export const inputItem = z.union([
  messageItem,
  functionCall,
  functionCallOutput,
  mcpApprovalResponse,
  itemReference,
]);
export type InputItem = z.infer<typeof inputItem>;

/** Any item, as a hosted agent may take it (its own types are its business). */
const anyItem = z.looseObject({ type: z.string().max(64).optional() });

export const input = z.union([text, z.array(anyItem).max(10_000)]);

const agentReference = z.union([
  agentName,
  z.looseObject({
    type: z.literal("agent_reference").optional(),
    name: agentName,
    version: z
      .string()
      .regex(/^[0-9]{1,9}$/, "must be a version number")
      .optional(),
  }),
]);

const textFormat = z.discriminatedUnion("type", [
  z.looseObject({ type: z.literal("text") }),
  z.looseObject({ type: z.literal("json_object") }),
  z.looseObject({
    type: z.literal("json_schema"),
    name: z.string().min(1).max(64),
    schema: z.record(z.string(), z.unknown()),
    strict: z.boolean().nullable().optional(),
    description: z.string().optional(),
  }),
]);

export const toolChoice = z.union([
  z.enum(["auto", "none", "required"]),
  z.looseObject({ type: z.literal("function"), name: z.string().min(1) }),
  z.looseObject({
    type: z.literal("mcp"),
    server_label: z.string().min(1),
    name: z.string().optional(),
  }),
]);

export const createResponseBody = z.looseObject({
  model: z.string().min(1).max(256).optional(),
  agent: agentReference.optional(),
  agent_reference: agentReference.optional(),
  agent_name: agentName.optional(),
  input: input.optional(),
  instructions: text.nullable().optional(),
  previous_response_id: z.string().min(1).max(256).nullable().optional(),
  conversation: z
    .union([z.string().min(1).max(256), z.looseObject({ id: z.string().min(1).max(256) })])
    .nullable()
    .optional(),
  tools: z
    .array(z.looseObject({ type: z.string().min(1) }))
    .max(128)
    .optional(),
  tool_choice: toolChoice.optional(),
  parallel_tool_calls: z.boolean().nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  max_output_tokens: z.number().int().min(1).nullable().optional(),
  text: z.looseObject({ format: textFormat.optional() }).nullable().optional(),
  store: z.boolean().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  background: z.boolean().nullable().optional(),
  metadata: metadata.optional(),
  agent_session_id: z.string().optional(),
});
export type CreateResponseBody = z.infer<typeof createResponseBody>;

export const retrieveResponseQuery = z.looseObject({
  stream: z
    .enum(["true", "false"])
    .optional()
    .transform((v) => v === "true"),
  starting_after: z.coerce.number().int().min(-1).optional(),
});

export const createConversationBody = z
  .looseObject({
    items: z.array(inputItem).max(10_000).nullable().optional(),
    metadata: metadata.optional(),
  })
  .nullable()
  .transform((b) => b ?? {});

export const updateConversationBody = z.looseObject({ metadata });

export const addItemsBody = z.looseObject({ items: z.array(inputItem).min(1).max(10_000) });

export const listItemsQuery = z.looseObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  order: z.enum(["asc", "desc"]).default("desc"),
  after: z.string().min(1).optional(),
  before: z.string().min(1).optional(),
});

export const listConversationsQuery = listItemsQuery.extend({
  agent_name: z.string().min(1).max(256).optional(),
});
