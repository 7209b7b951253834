import type { ChatCompletion } from "openai/resources/chat/completions";
import type { Caller } from "../domain/keyService.js";
import { collectCompletion } from "./collectCompletion.js";
import type { Meter } from "./metering.js";
import type { ChatCompletionChunk, ChatRequest, ModelGateway } from "./modelGateway.js";

/** A Chat Completions request as a caller sends it (checked for its shape by the route). */
export interface ChatCompletionBody {
  model: string;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  [field: string]: unknown;
}

export type ChatCompletionAnswer =
  | { completion: ChatCompletion }
  /** Started: the first chunk has come. Ending the iteration early closes the upstream. */
  | { chunks: AsyncIterableIterator<ChatCompletionChunk> };

/**
 * `POST /openai/v1/chat/completions`: a caller's chat completion through the gateway, metered
 * for whoever the caller is (a key, or a hosted session's sandbox, under its budget).
 */
export class ChatCompletions {
  constructor(
    private readonly gateway: ModelGateway,
    private readonly meter: Meter,
  ) {}

  /**
   * One ChatCompletion, or (with `stream`) the chunks as the upstream sends them, the usage
   * chunk only when `stream_options.include_usage` asks for it. Everything but `model` and
   * the stream fields goes to the upstream as sent. Whatever fails before the first chunk
   * (an unknown deployment, a spent budget, the upstream) is thrown from here; what fails
   * later, from the iteration.
   */
  async complete(
    caller: Caller,
    project: string,
    body: ChatCompletionBody,
    signal?: AbortSignal,
  ): Promise<ChatCompletionAnswer> {
    const { model, stream, stream_options, ...rest } = body;
    const attribution = await this.meter.forCaller(caller, project);
    const chunks = this.meter.complete(
      this.gateway,
      attribution,
      model,
      rest as unknown as ChatRequest,
      signal,
    );
    if (!stream) return { completion: await collectCompletion(chunks) };
    // Usage is always asked of the upstream; the caller sees it when it asked too.
    const includeUsage = stream_options?.include_usage === true;
    const shown = async function* () {
      for await (const chunk of chunks) if (includeUsage || chunk.choices.length > 0) yield chunk;
    };
    return { chunks: await started(shown()) };
  }
}

/** `source` with its first item already read (so that a failure before it is thrown here). */
async function started<T>(source: AsyncIterator<T>): Promise<AsyncIterableIterator<T>> {
  let first: IteratorResult<T> | undefined = await source.next();
  const it: AsyncIterableIterator<T> = {
    [Symbol.asyncIterator]: () => it,
    async next() {
      const head = first;
      first = undefined;
      return head ?? source.next();
    },
    async return(value?: unknown) {
      first = undefined;
      await source.return?.();
      return { done: true, value };
    },
  };
  return it;
}
