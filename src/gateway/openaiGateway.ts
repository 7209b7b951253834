import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI, { APIConnectionError, APIError, APIUserAbortError } from "openai";
import { AppError } from "../domain/errors.js";
import type { DeploymentService, DeploymentTarget } from "./deploymentService.js";
import type { ChatCompletionChunk, ChatRequest, ModelGateway } from "./modelGateway.js";
import { AnswerTooLarge, nodeFetch } from "../lib/nodeFetch.js";

export interface GatewayOptions {
  /** Longest silence of an upstream: before its first chunk, and between two. */
  timeoutMs: number;
  /** Further attempts after a 429, a 5xx or a connection failure before the first chunk. */
  retries: number;
  /** The first retry's wait; each next one doubles it (default 100 ms). */
  backoffMs?: number;
  /** Largest answer read that is not an event stream (an error body, say); default 16 MiB. */
  maxAnswerBytes?: number;
  /** Largest event of a streamed answer; default 1 MiB. */
  maxEventBytes?: number;
}

/** Longest wait before a retry, whatever an upstream's `retry-after` asks. */
const maxBackoffMs = 1000;

/**
 * The model gateway over OpenAI-compatible upstreams (OpenAI, Azure OpenAI's /v1, Ollama,
 * vLLM, …) through the `openai` client. It always streams from the upstream, with usage in
 * the last chunk; the retries and the deadline are its own (the client's are off), so that
 * nothing is retried once a chunk has gone to the caller.
 */
export class OpenAiGateway implements ModelGateway {
  /** One client per deployment, replaced when the deployment (or its key) changes. */
  private readonly clients = new Map<string, { fingerprint: string; client: OpenAI }>();
  private readonly fetch;

  constructor(
    private readonly catalog: DeploymentService,
    private readonly options: GatewayOptions,
  ) {
    // Deployments are an admin's, and often local (Ollama): no address policy here.
    this.fetch = nodeFetch({
      maxBodyBytes: options.maxAnswerBytes ?? 16 * 1024 * 1024,
      maxEventBytes: options.maxEventBytes ?? 1024 * 1024,
    }).fetch;
  }

  async deployments(project: string): Promise<string[]> {
    return (await this.catalog.list(project)).map((d) => d.name);
  }

  async *complete(
    project: string,
    deployment: string,
    request: ChatRequest,
    signal?: AbortSignal,
  ): AsyncIterable<ChatCompletionChunk> {
    const target = await this.catalog.resolve(project, deployment).catch((err: unknown) => {
      this.clients.delete(`${project}\0${deployment}`); // a deleted deployment's client goes
      throw err;
    });
    const client = this.clientFor(target);
    const body = {
      ...request,
      model: target.deployment.model,
      stream: true as const,
      stream_options: { include_usage: true },
    };
    const say = (what: string) => redact(`Deployment '${deployment}': ${what}`, target.apiKey);
    const timeout = () =>
      new AppError(
        "upstream_timeout",
        say(
          `the model server sent nothing for ${this.options.timeoutMs / 1000} s (upstreamTimeoutSeconds).`,
        ),
      );
    for (let attempt = 0; ; attempt++) {
      const call = new Deadline(this.options.timeoutMs, signal);
      let yielded = false;
      try {
        const stream = await client.chat.completions.create(body, { signal: call.signal });
        for await (const chunk of stream) {
          // The caller's own pace does not count as the upstream's silence.
          call.pause();
          yielded = true;
          yield chunk;
          call.arm();
        }
        // The client ends a stream it was made to abort without an error: say why it ended.
        if (call.timedOut) throw timeout();
        return;
      } catch (err) {
        if (call.timedOut) throw timeout();
        if (signal?.aborted) throw err;
        const failure = describe(err, target.deployment.baseUrl);
        if (!yielded && failure.retryable && attempt < this.options.retries) {
          const backoff = (this.options.backoffMs ?? 100) * 2 ** attempt;
          await sleep(Math.min(maxBackoffMs, failure.retryAfterMs ?? backoff), undefined, {
            signal,
          });
          continue;
        }
        throw new AppError(
          "upstream_error",
          say(failure.message + (attempt > 0 ? ` (after ${attempt + 1} attempts)` : "")),
        );
      } finally {
        call.end();
      }
    }
  }

  private clientFor({ deployment, apiKey }: DeploymentTarget): OpenAI {
    const id = `${deployment.project}\0${deployment.name}`;
    const fingerprint = createHash("sha256")
      .update([deployment.baseUrl, deployment.updatedAt, apiKey ?? ""].join("\0"))
      .digest("hex");
    const cached = this.clients.get(id);
    if (cached?.fingerprint === fingerprint) return cached.client;
    const client = new OpenAI({
      baseURL: deployment.baseUrl,
      // A server that needs no key (Ollama) is sent no Authorization header.
      apiKey: apiKey ?? "none",
      defaultHeaders: apiKey === null ? { authorization: null } : {},
      // Nothing from the service's own environment reaches an upstream.
      organization: null,
      project: null,
      adminAPIKey: null,
      webhookSecret: null,
      fetch: this.fetch,
      maxRetries: 0,
      // The deadline above is the one that applies; this only backs it up.
      timeout: this.options.timeoutMs + 5000,
      logLevel: "off",
    });
    this.clients.set(id, { fingerprint, client });
    return client;
  }
}

/**
 * One attempt's deadline: aborts the upstream request when it has been silent for `ms` while
 * armed (or when the caller's signal aborts), and always at `end()`.
 */
class Deadline {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private readonly onAbort = () => this.controller.abort();
  timedOut = false;

  constructor(
    private readonly ms: number,
    private readonly caller?: AbortSignal,
  ) {
    caller?.addEventListener("abort", this.onAbort, { once: true });
    if (caller?.aborted) this.controller.abort();
    this.arm();
  }

  get signal() {
    return this.controller.signal;
  }

  arm() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.ms);
  }

  pause() {
    clearTimeout(this.timer);
  }

  end() {
    clearTimeout(this.timer);
    this.caller?.removeEventListener("abort", this.onAbort);
    // A stream left before its end (a caller gone) closes the upstream connection.
    this.controller.abort();
  }
}

interface Failure {
  message: string;
  retryable: boolean;
  retryAfterMs?: number;
}

function describe(err: unknown, baseUrl: string): Failure {
  const tooLarge = causeOf(err, AnswerTooLarge);
  if (tooLarge)
    return {
      message: `the model server's answer was larger than ${tooLarge.limit} bytes${tooLarge.perEvent ? " in one event" : ""}.`,
      retryable: false,
    };
  if (err instanceof APIConnectionError && !(err instanceof APIUserAbortError)) {
    return {
      message: `the model server at ${baseUrl} could not be reached (${causeCode(err) ?? err.message}).`,
      retryable: true,
    };
  }
  if (err instanceof APIError) {
    const upstream = (err.error as { message?: unknown } | undefined)?.message;
    const text = String(typeof upstream === "string" ? upstream : err.message).slice(0, 1000);
    if (err.status === undefined)
      return { message: `the model server failed mid-answer: ${text}`, retryable: false };
    const retryAfter = Number(err.headers?.get("retry-after"));
    return {
      message: `the model server answered ${err.status}: ${text}`,
      retryable: err.status === 429 || err.status >= 500,
      retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined,
    };
  }
  // A broken stream (the connection cut mid-answer) or a body that is not JSON.
  return {
    message: `the model server's answer broke off (${causeCode(err) ?? (err as Error).message}).`,
    retryable: true,
  };
}

function causeOf<E extends Error>(
  err: unknown,
  type: abstract new (...args: never[]) => E,
): E | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as Error).cause, depth++)
    if (e instanceof type) return e;
  return undefined;
}

function causeCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as Error).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/** An upstream's message never carries the deployment's key back to a caller. */
function redact(text: string, key: string | null): string {
  return key && key.length >= 4 ? text.split(key).join("[redacted]") : text;
}
