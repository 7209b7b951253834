import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionMessageFunctionToolCall,
} from "openai/resources/chat/completions";

/**
 * The one ChatCompletion a streamed completion adds up to, as a non-streamed call would
 * have answered: text and refusals joined, tool calls assembled by index, the finish reason
 * and the usage of the last chunks.
 */
export async function collectCompletion(
  chunks: AsyncIterable<ChatCompletionChunk>,
): Promise<ChatCompletion> {
  let head: ChatCompletionChunk | undefined;
  let usage: ChatCompletion["usage"];
  const choices = new Map<
    number,
    {
      content: string;
      refusal: string;
      finish: ChatCompletion.Choice["finish_reason"] | null;
      tools: Map<number, ChatCompletionMessageFunctionToolCall>;
    }
  >();
  for await (const chunk of chunks) {
    head ??= chunk;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      let choice = choices.get(c.index);
      if (!choice) {
        choice = { content: "", refusal: "", finish: null, tools: new Map() };
        choices.set(c.index, choice);
      }
      choice.content += c.delta.content ?? "";
      choice.refusal += c.delta.refusal ?? "";
      if (c.finish_reason) choice.finish = c.finish_reason;
      for (const t of c.delta.tool_calls ?? []) {
        const call = choice.tools.get(t.index) ?? {
          id: "",
          type: "function" as const,
          function: { name: "", arguments: "" },
        };
        if (t.id) call.id = t.id;
        if (t.function?.name) call.function.name += t.function.name;
        call.function.arguments += t.function?.arguments ?? "";
        choice.tools.set(t.index, call);
      }
    }
  }
  return {
    id: head?.id ?? "",
    object: "chat.completion",
    created: head?.created ?? Math.floor(Date.now() / 1000),
    model: head?.model ?? "",
    ...(head?.system_fingerprint ? { system_fingerprint: head.system_fingerprint } : {}),
    choices: [...choices.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, c]) => ({
        index,
        message: {
          role: "assistant" as const,
          content: c.content || null,
          refusal: c.refusal || null,
          ...(c.tools.size > 0
            ? { tool_calls: [...c.tools.entries()].sort(([a], [b]) => a - b).map(([, t]) => t) }
            : {}),
        },
        finish_reason: c.finish ?? "stop",
        logprobs: null,
      })),
    ...(usage ? { usage } : {}),
  };
}
