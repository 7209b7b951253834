import { request } from "node:https";
import { Readable } from "node:stream";
import OpenAI from "openai";
import type { AIProjectClient } from "@azure/ai-projects";
import type { TestServer } from "./server.js";

/**
 * The unmodified `openai` client against a test server's `/openai/v1`, trusting the server's
 * generated CA. Node's own fetch reads extra CAs only at process start (NODE_EXTRA_CA_CERTS),
 * so the client is handed a fetch over node:https that trusts it; bodies stream through.
 */
export function openaiClient(
  server: Pick<TestServer, "endpoint" | "caPem">,
  apiKey: string,
  options: { project?: string } = {},
) {
  const endpoint = options.project
    ? server.endpoint.replace(/\/default$/, `/${options.project}`)
    : server.endpoint;
  return new OpenAI({
    baseURL: `${endpoint}/openai/v1`,
    apiKey,
    maxRetries: 0,
    fetch: trustingFetch(server.caPem),
  });
}

/**
 * `project.getOpenAIClient()` of the official client, unmodified: for the project's
 * `/openai/v1`, or an agent's endpoint when `agentName` is given. It captures the global
 * fetch when called, so for that moment the global fetch is one trusting the server's CA
 * (what NODE_EXTRA_CA_CERTS does for a whole process).
 */
export function projectOpenAI(
  project: AIProjectClient,
  server: Pick<TestServer, "caPem">,
  agentName?: string,
): OpenAI {
  const original = globalThis.fetch;
  globalThis.fetch = trustingFetch(server.caPem) as typeof fetch;
  try {
    return project.getOpenAIClient({
      maxRetries: 0,
      ...(agentName ? { azureConfig: { agentName, allowPreview: true } } : {}),
    }) as unknown as OpenAI;
  } finally {
    globalThis.fetch = original;
  }
}

/** A fetch over node:https trusting `ca` (string bodies), for clients that take a fetch. */
export function trustingFetch(ca: Buffer) {
  return (url: string | URL | Request, init: RequestInit = {}): Promise<Response> =>
    new Promise((resolve, reject) => {
      const req = request(
        String(url instanceof Request ? url.url : url),
        {
          method: init.method ?? "GET",
          headers: Object.fromEntries(new Headers(init.headers).entries()),
          ca,
          signal: init.signal ?? undefined,
        },
        (res) => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(res.headers))
            for (const v of Array.isArray(value) ? value : [value ?? ""]) headers.append(name, v);
          resolve(
            new Response(Readable.toWeb(res) as ReadableStream, {
              status: res.statusCode,
              headers,
            }),
          );
        },
      );
      req.on("error", reject);
      req.end(typeof init.body === "string" ? init.body : undefined);
    });
}
