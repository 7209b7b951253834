import { AppError } from "../domain/errors.js";
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsStreaming,
} from "openai/resources/chat/completions";

/**
 * The model gateway's port: one chat completion from a project's deployment, streamed.
 * Everything that calls a model (the Responses engine, `/openai/v1/chat/completions`, a
 * hosted agent through its sandbox's relay) goes through it.
 */

/** A Chat Completions request without what the gateway sets itself. */
export type ChatRequest = Omit<
  ChatCompletionCreateParamsStreaming,
  "model" | "stream" | "stream_options"
>;

export interface ModelGateway {
  /** The names of the project's deployments (what `model` may name), sorted. */
  deployments(project: string): Promise<string[]>;
  /**
   * Streams the completion of `request` by the project's deployment `deployment`. The last
   * chunk carries `usage`. Fails with AppError `not_found` (param `model`) for an unknown
   * deployment, `upstream_error` when the upstream refuses or cannot be reached (after the
   * bounded retries) and `upstream_timeout` when it is silent past the deadline — before the
   * first chunk or between two.
   */
  complete(
    project: string,
    deployment: string,
    request: ChatRequest,
    signal?: AbortSignal,
  ): AsyncIterable<ChatCompletionChunk>;
}

export type { ChatCompletionChunk };

/** A gateway with no deployments (a store without any, or tests of the control plane). */
export const noModels: ModelGateway = {
  deployments: async () => [],
  // eslint-disable-next-line require-yield
  async *complete(_project, deployment) {
    throw new AppError("not_found", `Deployment '${deployment}' was not found.`, "model");
  },
};
