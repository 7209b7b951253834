import { request } from "node:https";
import { Readable } from "node:stream";
import { SendMessageRequest, type AgentCard } from "@a2a-js/sdk";
import {
  Client,
  ClientFactory,
  DefaultAgentCardResolver,
  JsonRpcTransportFactory,
} from "@a2a-js/sdk/client";
import { LegacyJsonRpcTransport } from "@a2a-js/sdk/compat/v0_3/client";
import type { TestServer } from "./server.js";

/**
 * A fetch for the A2A SDK's clients: node:https trusting the test server's CA (Node's own
 * fetch reads extra CAs only at process start), with the caller's key as a bearer token.
 */
export function a2aFetch(server: Pick<TestServer, "caPem">, key: string): typeof fetch {
  return ((url: string | URL | Request, init: RequestInit = {}) =>
    new Promise<Response>((resolve, reject) => {
      const headers = Object.fromEntries(new Headers(init.headers).entries());
      const req = request(
        String(url instanceof Request ? url.url : url),
        {
          method: init.method ?? "GET",
          headers: { ...headers, authorization: `Bearer ${key}` },
          ca: server.caPem,
          signal: init.signal ?? undefined,
        },
        (res) => {
          const h = new Headers();
          for (const [name, value] of Object.entries(res.headers))
            for (const v of Array.isArray(value) ? value : [value ?? ""]) h.append(name, v);
          resolve(
            new Response(Readable.toWeb(res) as ReadableStream, {
              status: res.statusCode,
              headers: h,
            }),
          );
        },
      );
      req.on("error", reject);
      req.end(typeof init.body === "string" ? init.body : undefined);
    })) as typeof fetch;
}

/** An agent's A2A endpoint and its card URL on a test server. */
export const a2aUrls = (server: Pick<TestServer, "endpoint">, agent: string) => {
  const base = `${server.endpoint}/agents/${agent}/endpoint/protocols/a2a`;
  return {
    endpoint: `${base}?api-version=v1`,
    card: `${base}/.well-known/agent-card.json?api-version=v1`,
  };
};

/** The SDK's v1.0 client, made from the agent's card as the SDK fetches it. */
export function a2aClient(
  server: Pick<TestServer, "endpoint" | "caPem">,
  agent: string,
  key: string,
) {
  const fetchImpl = a2aFetch(server, key);
  const factory = new ClientFactory({
    transports: [new JsonRpcTransportFactory({ fetchImpl })],
    cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
  });
  return factory.createFromUrl(a2aUrls(server, agent).card, "");
}

/** The SDK's v0.3 JSON-RPC transport (`message/send`, `tasks/get`, …) behind its client. */
export function legacyA2aClient(
  server: Pick<TestServer, "endpoint" | "caPem">,
  agent: string,
  key: string,
  card: AgentCard,
) {
  const transport = new LegacyJsonRpcTransport({
    endpoint: a2aUrls(server, agent).endpoint,
    fetchImpl: a2aFetch(server, key),
  });
  return new Client(transport, card);
}

/** A user's text message, optionally continuing a context. */
export const userText = (text: string, contextId?: string, returnImmediately = false) =>
  SendMessageRequest.fromJSON({
    message: {
      messageId: `m-${Math.random().toString(36).slice(2)}`,
      role: "ROLE_USER",
      parts: [{ text }],
      ...(contextId ? { contextId } : {}),
    },
    ...(returnImmediately ? { configuration: { returnImmediately: true } } : {}),
  });
