import { once } from "node:events";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { errorCodes } from "../../contract/errorCodes.js";
import { AppError } from "../../domain/errors.js";
import { collectCompletion } from "../../gateway/collectCompletion.js";
import type { ChatCompletionChunk, ChatRequest, ModelGateway } from "../../gateway/modelGateway.js";
import type { Meter } from "../../gateway/metering.js";
import { projectOf } from "../auth.js";
import { parse } from "../../contract/validate.js";

/** What is checked of a chat completion; the rest goes to the upstream as it came. */
const chatCompletionBody = z.looseObject({
  model: z.string().min(1),
  messages: z.array(z.looseObject({ role: z.string() })).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
});

/** The OpenAI-compatible data plane of a project, under `{project}/openai/v1`. */
export function openaiRoutes(app: FastifyInstance, gateway: ModelGateway, meter: Meter) {
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
    const { model, stream, stream_options, ...rest } = parse(chatCompletionBody, request.body);
    const gone = new AbortController();
    reply.raw.once("close", () => gone.abort());
    const attribution = await meter.forCaller(request.caller, projectOf(request));
    const chunks = meter.complete(
      gateway,
      attribution,
      model,
      rest as unknown as ChatRequest,
      gone.signal,
    );
    if (!stream) return collectCompletion(chunks);
    return streamChunks(
      request,
      reply,
      chunks,
      stream_options?.include_usage === true,
      gone.signal,
    );
  });
}

/**
 * Server-sent chunks as the upstream sends them, ending in `data: [DONE]`. A failure before
 * the first chunk is an ordinary error answer; one after it is a last `data: {"error":…}`.
 */
async function streamChunks(
  request: FastifyRequest,
  reply: FastifyReply,
  chunks: AsyncIterable<ChatCompletionChunk>,
  includeUsage: boolean,
  gone: AbortSignal,
) {
  const it = chunks[Symbol.asyncIterator]();
  let next = await it.next();
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    "x-request-id": request.id,
  });
  const send = async (data: unknown) => {
    if (!res.write(`data: ${JSON.stringify(data)}\n\n`)) await once(res, "drain", { signal: gone });
  };
  try {
    for (; !next.done; next = await it.next()) {
      // Usage is always asked of the upstream; the caller sees it when it asked too.
      if (!includeUsage && next.value.choices.length === 0) continue;
      await send(next.value);
    }
    res.write("data: [DONE]\n\n");
  } catch (err) {
    if (!gone.aborted) {
      const known = err instanceof AppError ? err : undefined;
      if (!known) request.log.error({ err }, "chat completion stream failed");
      const code = known?.code ?? "internal_error";
      await send({
        error: {
          code,
          message: known?.message ?? "An internal error occurred.",
          param: known?.param ?? null,
          type: errorCodes[code].status >= 500 ? "server_error" : "invalid_request_error",
        },
      }).catch(() => {});
    }
  } finally {
    await it.return?.();
    res.end();
  }
}
