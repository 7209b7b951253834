import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { adminRequest, type TestServer } from "./server.js";

/* eslint-disable @typescript-eslint/no-explicit-any -- request bodies are free-form JSON */

/*
 * TEST DOUBLE: a stand-in for an OpenAI-compatible model server (OpenAI, Ollama, vLLM, …),
 * which cannot run here. It speaks just enough Chat Completions (`POST /v1/chat/completions`,
 * streamed and not, tool calls, usage) and `GET /v1/models` to drive the gateway, and
 * records every request it receives so tests can check what the upstream saw.
 */

export interface ScriptedToolCall {
  id?: string;
  name: string;
  /** JSON text of the arguments. */
  arguments: string;
}

/** One answer of the stand-in. Unset fields get defaults. */
export interface ScriptedAnswer {
  /** The assistant's text; default: `You said: <last user message>`. */
  text?: string;
  /** Tool calls instead of (or besides) text. */
  toolCalls?: ScriptedToolCall[];
  /** Text deltas as streamed; default: the text split into words. */
  chunks?: string[];
  /** Wait between two streamed chunks (and before the first). */
  delayMs?: number;
  /** Answer with this HTTP status and an OpenAI error body instead. */
  status?: number;
  errorMessage?: string;
  /** Accept the request and never answer. */
  silent?: boolean;
  /** Stream this many text deltas, then fall silent (the connection stays open). */
  stallAfterChunks?: number;
  usage?: { prompt_tokens: number; completion_tokens: number };
}

export interface RecordedRequest {
  /** The parsed JSON body of a chat completion. */
  body: Record<string, any>;
  headers: http.IncomingHttpHeaders;
  path: string;
}

export interface StandInModel {
  /** Base URL ending in /v1, as a deployment's `base_url`. */
  baseUrl: string;
  /** Every chat completion request, in order of arrival. */
  requests: RecordedRequest[];
  /** How the next requests are answered (default: echo). */
  answer: (fn: (request: RecordedRequest) => ScriptedAnswer) => void;
  /** Models listed by `GET /v1/models`. */
  models: string[];
  /** Connections open right now (a silent answer holds one). */
  openConnections: () => number;
  close(): Promise<void>;
}

const lastUserText = (body: Record<string, any>): string => {
  const messages = (body.messages ?? []) as { role: string; content: unknown }[];
  const last = [...messages].reverse().find((m) => m.role === "user");
  const content = last?.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p: { text?: string }) => p.text ?? "").join("");
  return "";
};

/** Starts the stand-in on 127.0.0.1 on a free port. */
export async function startStandInModel(
  options: { models?: string[]; apiKey?: string } = {},
): Promise<StandInModel> {
  const requests: RecordedRequest[] = [];
  let script: (request: RecordedRequest) => ScriptedAnswer = () => ({});
  const models = options.models ?? ["stand-in-model"];
  const sockets = new Set<Socket>();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (options.apiKey && req.headers.authorization !== `Bearer ${options.apiKey}`) {
        res.writeHead(401, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            error: { message: "Incorrect API key provided", type: "invalid_request_error" },
          }),
        );
        return;
      }
      if (req.method === "GET" && req.url === "/v1/models") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            object: "list",
            data: models.map((id) => ({ id, object: "model", created: 0, owned_by: "stand-in" })),
          }),
        );
        return;
      }
      if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}` } }));
        return;
      }
      const recorded: RecordedRequest = {
        body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
        headers: req.headers,
        path: req.url,
      };
      requests.push(recorded);
      void respond(recorded, script(recorded), res);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    models,
    answer: (fn) => (script = fn),
    openConnections: () => sockets.size,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function respond(request: RecordedRequest, answer: ScriptedAnswer, res: http.ServerResponse) {
  if (answer.silent) return;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  if (answer.status && answer.status >= 400) {
    if (answer.delayMs) await sleep(answer.delayMs);
    res.writeHead(answer.status, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        error: {
          message: answer.errorMessage ?? `scripted ${answer.status}`,
          type: "server_error",
        },
      }),
    );
    return;
  }
  const body = request.body;
  const text =
    answer.toolCalls && answer.text === undefined
      ? ""
      : (answer.text ?? `You said: ${lastUserText(body)}`);
  const deltas = answer.chunks ?? (text ? text.split(/(?<= )/) : []);
  const toolCalls = (answer.toolCalls ?? []).map((t, i) => ({
    index: i,
    id: t.id ?? `call_${i}_${Math.random().toString(36).slice(2, 10)}`,
    type: "function" as const,
    function: { name: t.name, arguments: t.arguments },
  }));
  const usage = answer.usage ?? {
    prompt_tokens: JSON.stringify(body.messages ?? []).length >> 2,
    completion_tokens: Math.max(1, deltas.length),
  };
  const usageOut = { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens };
  const id = `chatcmpl-${Math.random().toString(36).slice(2, 12)}`;
  const created = Math.floor(Date.now() / 1000);
  const model = body.model as string;
  const finish = toolCalls.length > 0 ? "tool_calls" : "stop";

  if (!body.stream) {
    if (answer.delayMs) await sleep(answer.delayMs);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        id,
        object: "chat.completion",
        created,
        model,
        choices: [
          {
            index: 0,
            message: {
              role: "assistant",
              content: text || null,
              ...(toolCalls.length ? { tool_calls: toolCalls.map(({ index: _, ...t }) => t) } : {}),
            },
            finish_reason: finish,
          },
        ],
        usage: usageOut,
      }),
    );
    return;
  }

  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const send = (chunk: object) =>
    res.write(
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, ...chunk })}\n\n`,
    );
  if (answer.delayMs) await sleep(answer.delayMs);
  send({ choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] });
  for (const [i, delta] of deltas.entries()) {
    if (i === answer.stallAfterChunks) return;
    if (answer.delayMs) await sleep(answer.delayMs);
    if (res.destroyed) return;
    send({ choices: [{ index: 0, delta: { content: delta }, finish_reason: null }] });
  }
  for (const call of toolCalls) {
    // Streamed as OpenAI does: the id and name first, the arguments in two pieces.
    const half = Math.ceil(call.function.arguments.length / 2);
    send({
      choices: [
        {
          index: 0,
          delta: {
            tool_calls: [
              {
                index: call.index,
                id: call.id,
                type: "function",
                function: {
                  name: call.function.name,
                  arguments: call.function.arguments.slice(0, half),
                },
              },
            ],
          },
          finish_reason: null,
        },
      ],
    });
    send({
      choices: [
        {
          index: 0,
          delta: {
            tool_calls: [
              { index: call.index, function: { arguments: call.function.arguments.slice(half) } },
            ],
          },
          finish_reason: null,
        },
      ],
    });
  }
  send({ choices: [{ index: 0, delta: {}, finish_reason: finish }] });
  if (body.stream_options?.include_usage) send({ choices: [], usage: usageOut });
  res.end("data: [DONE]\n\n");
}

/** Makes `model` the default project's deployment `chat`, through the admin API. */
export async function deployStandInModel(server: TestServer, model: StandInModel): Promise<void> {
  const put = await adminRequest(server, "PUT", "/projects/default/deployments/chat", {
    model: "stand-in-model",
    base_url: model.baseUrl,
  });
  assert.equal(put.status, 201, JSON.stringify(put.body));
}
