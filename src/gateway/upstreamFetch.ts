import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";

/**
 * The `fetch` the gateway's openai clients use: node:http(s) with keep-alive agents. Unlike
 * Node's built-in fetch, an abort (a deadline, a caller gone) destroys the connection at once
 * instead of reading the rest of an answer nobody wants, so an upstream stops generating and
 * a stalled one holds nothing. There is no idle timeout of its own: the gateway's deadline
 * is the only one. TLS trusts the system's CAs and NODE_EXTRA_CA_CERTS.
 */
export function upstreamFetch(): typeof fetch {
  const agents = {
    "http:": new http.Agent({ keepAlive: true }),
    "https:": new https.Agent({ keepAlive: true }),
  };
  return (async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : input);
    const agent = agents[url.protocol as keyof typeof agents];
    if (!agent) throw new TypeError(`unsupported protocol ${url.protocol}`);
    const body = init.body;
    if (
      body !== undefined &&
      body !== null &&
      typeof body !== "string" &&
      !(body instanceof Uint8Array)
    )
      throw new TypeError("only string and byte bodies are sent upstream");
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    // Answers are read as sent: no compression to undo.
    delete headers["accept-encoding"];
    const signal = init.signal ?? undefined;
    signal?.throwIfAborted();
    return new Promise<Response>((resolve, reject) => {
      const request = (url.protocol === "https:" ? https : http).request(
        url,
        { method: init.method ?? "GET", headers, agent, signal },
        (res) => {
          const answer = new Headers();
          for (const [name, value] of Object.entries(res.headers))
            for (const v of Array.isArray(value) ? value : [value ?? ""]) answer.append(name, v);
          const status = res.statusCode ?? 502;
          const empty = status === 204 || status === 304;
          if (empty) res.resume();
          resolve(
            new Response(empty ? null : (Readable.toWeb(res) as ReadableStream), {
              status,
              statusText: res.statusMessage,
              headers: answer,
            }),
          );
        },
      );
      request.once("error", reject);
      request.end(body ?? undefined);
    });
  }) as typeof fetch;
}
