import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { errorCodes } from "../../contract/errorCodes.js";
import { AppError } from "../../domain/errors.js";
import { ChatCompletions } from "../../gateway/chatCompletions.js";
import type { ChatCompletionChunk, ModelGateway } from "../../gateway/modelGateway.js";
import type { Meter } from "../../gateway/metering.js";
import { projectOf } from "../auth.js";
import { parse } from "../../contract/validate.js";
import { sendEvents } from "../sse.js";

/** What is checked of a chat completion; the rest goes to the upstream as it came. */
const chatCompletionBody = z.looseObject({
  model: z.string().min(1),
  messages: z.array(z.looseObject({ role: z.string() })).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
});

/** The OpenAI-compatible data plane of a project, under `{project}/openai/v1`. */
export function openaiRoutes(app: FastifyInstance, gateway: ModelGateway, meter: Meter) {
  const chat = new ChatCompletions(gateway, meter);
  // What `model` may name: the project's deployments (`openai.models.list()`).
  app.get("/models", async (request) => ({
    object: "list",
    data: (await gateway.deployments(projectOf(request))).map((id) => ({
      id,
      object: "model",
      created: 0,
      owned_by: "agenthost",
    })),
  }));

  // A pass-through to the deployment `model` names: streamed as it arrives, or one answer.
  app.post("/chat/completions", async (request, reply) => {
    const body = parse(chatCompletionBody, request.body);
    const gone = new AbortController();
    reply.raw.once("close", () => gone.abort());
    const answer = await chat.complete(request.caller, projectOf(request), body, gone.signal);
    if ("completion" in answer) return answer.completion;
    return streamChunks(request, reply, answer.chunks, gone.signal);
  });
}

/**
 * Server-sent chunks, ending in `data: [DONE]`; a failure (after the first chunk: one before
 * it was an ordinary error answer) is a last `data: {"error":…}`.
 */
function streamChunks(
  request: FastifyRequest,
  reply: FastifyReply,
  chunks: AsyncIterableIterator<ChatCompletionChunk>,
  gone: AbortSignal,
) {
  return sendEvents(
    reply,
    (async function* () {
      try {
        for await (const chunk of chunks) yield dataFrame(chunk);
        yield "data: [DONE]\n\n";
      } catch (err) {
        if (gone.aborted) return;
        const known = err instanceof AppError ? err : undefined;
        if (!known) request.log.error({ err }, "chat completion stream failed");
        const code = known?.code ?? "internal_error";
        yield dataFrame({
          error: {
            code,
            message: known?.message ?? "An internal error occurred.",
            param: known?.param ?? null,
            type: errorCodes[code].status >= 500 ? "server_error" : "invalid_request_error",
          },
        });
      } finally {
        await chunks.return?.();
      }
    })(),
  );
}

const dataFrame = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;
