import https from "node:https";

/* A tiny HTTPS client for seeding and for sequential timing: one kept-alive socket, real CA. */

export interface Response {
  status: number;
  body: string;
}

export interface HttpsClient {
  request(method: "GET" | "POST" | "PUT", path: string, body?: unknown): Promise<Response>;
  close(): void;
}

export function httpsClient(origin: string, ca: Buffer, bearer: string): HttpsClient {
  // Certificates are verified against the server's CA, unlike autocannon (see agentsHttp.ts).
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
  return {
    request(method, path, body) {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const req = https.request(
          new URL(path, origin),
          {
            method,
            agent,
            headers: {
              authorization: `Bearer ${bearer}`,
              ...(payload ? { "content-type": "application/json" } : {}),
            },
          },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => (text += chunk));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
            res.on("error", reject);
          },
        );
        req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
        req.on("error", reject);
        req.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}

/** Throws unless the response has the expected status; returns the parsed JSON body. */
export function expectJson<T>(response: Response, status = 200): T {
  if (response.status !== status) {
    throw new Error(`expected HTTP ${status}, got ${response.status}: ${response.body}`);
  }
  return JSON.parse(response.body) as T;
}
