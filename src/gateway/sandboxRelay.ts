import { chmod, chown, rename, rm } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import type { OutboundRelay } from "../sandbox/driver.js";

/** How much one sandbox may hold of its relay, and for how long. */
export interface RelayLimits {
  /** Open connections per sandbox; past it a new one is closed at once. */
  connectionsPerSandbox: number;
  /** From the connection (or the previous response) to the end of a request's headers. */
  headersTimeoutMs: number;
  /** From the connection to the end of a request's body. */
  requestTimeoutMs: number;
  /** An idle kept-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** A connection on which nothing moves either way (e.g. a stalled stream) is closed. */
  idleTimeoutMs: number;
}

export const defaultRelayLimits: RelayLimits = {
  connectionsPerSandbox: 16,
  headersTimeoutMs: 15_000,
  requestTimeoutMs: 120_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 300_000,
};

/** The sandbox each request through a relay came from. */
const origins = new WeakMap<http.IncomingMessage, string>();

/** The id of the sandbox whose relay `request` came through, or undefined (any other way). */
export function relayedFrom(request: http.IncomingMessage): string | undefined {
  return origins.get(request);
}

/**
 * The host side of the sandboxes' outbound relays: one HTTP server per sandbox on a Unix
 * socket of its own (never a TCP port), every request handed to the service's own request
 * handler (`serve`, the Fastify app's routing) marked with the sandbox it came from, so the
 * same routes, auth, body limits and error envelope apply. What a request may do is the
 * auth hooks' business (`relayedFrom`); a sandbox cannot pose as another, as the socket
 * alone says whose a connection is.
 */
export class SandboxRelay implements OutboundRelay {
  private handler: http.RequestListener | undefined;
  private readonly servers = new Set<http.Server>();

  constructor(private readonly limits: RelayLimits = defaultRelayLimits) {}

  /** Where requests go from now on (until then they get a 503). */
  serve(handler: http.RequestListener): void {
    this.handler = handler;
  }

  async listen(id: string, socketPath: string, uid: number): Promise<{ close(): Promise<void> }> {
    const server = http.createServer(
      {
        connectionsCheckingInterval: 1_000,
        headersTimeout: this.limits.headersTimeoutMs,
        requestTimeout: this.limits.requestTimeoutMs,
        keepAliveTimeout: this.limits.keepAliveTimeoutMs,
      },
      (req, res) => {
        origins.set(req, id);
        if (this.handler) return this.handler(req, res);
        res.writeHead(503, { "content-type": "application/json", connection: "close" });
        res.end(
          JSON.stringify({
            error: { code: "internal_error", message: "The service is starting.", param: null },
          }),
        );
      },
    );
    server.maxConnections = this.limits.connectionsPerSandbox;
    server.setTimeout(this.limits.idleTimeoutMs); // without a listener: the socket is destroyed
    server.on("clientError", (_err, socket) => socket.destroy());
    // Bound under a temporary name, given to the sandbox's uid alone, then moved into place:
    // nobody else can connect to it at any moment.
    const bound = path.join(path.dirname(socketPath), `.${path.basename(socketPath)}`);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path: bound, backlog: 64 }, resolve);
    });
    try {
      await chmod(bound, 0o600);
      await chown(bound, uid, uid);
      await rename(bound, socketPath);
    } catch (err) {
      server.close();
      await rm(bound, { force: true });
      throw err;
    }
    this.servers.add(server);
    let closed: Promise<void> | undefined;
    return {
      close: () =>
        (closed ??= (async () => {
          this.servers.delete(server);
          await new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          });
          await rm(socketPath, { force: true });
        })()),
    };
  }

  /** Relays open now (one per sandbox that has one). */
  get open(): number {
    return this.servers.size;
  }
}
