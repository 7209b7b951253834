import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";

/** Connections to agents are kept open between requests. */
export const agentConnections = new http.Agent({ keepAlive: true, maxFreeSockets: 4 });

/**
 * Waits until the agent answers HTTP through its socket: GET /readiness answering 2xx, or
 * any answer that shows the agent has no such route (404, 405, 501). Rejects with the reason
 * when `deadline` (ms since epoch) passes or `abort` settles first.
 */
export async function waitUntilReady(
  socketPath: string,
  deadline: number,
  abort: Promise<unknown>,
): Promise<void> {
  let aborted = false;
  void abort.then(() => (aborted = true));
  for (let attempt = 0; ; attempt++) {
    if (aborted) throw new Error("the agent exited before it answered");
    const status = await probe(socketPath).catch(() => 0);
    if ((status >= 200 && status < 300) || [404, 405, 501].includes(status)) return;
    if (Date.now() > deadline)
      throw new Error("the agent did not answer its readiness check in time");
    // Every millisecond for the first 100 ms (a warm agent answers within a few), then slower.
    await sleep(attempt < 100 ? 1 : 25);
  }
}

function probe(socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: "/readiness", agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}
