import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";

/** How long a connection may take for each step, and how many may be open at once. */
export interface ConnectionLimits {
  /** Open connections of every kind; kept below the process's descriptor limit. */
  maxConnections: number;
  /** Connections still in their TLS handshake; past it the oldest of them is dropped. */
  maxHandshakes: number;
  handshakeTimeoutMs: number;
  /** From the connection (or the previous response) to the end of the request's headers. */
  headersTimeoutMs: number;
  /** From the connection to the end of the request's body (uploads included). */
  requestTimeoutMs: number;
  /** An idle kept-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
}

/** Timeouts that a client on a slow link still meets and an idle attacker does not outlast. */
export function connectionLimits(fileLimit: number): ConnectionLimits {
  return {
    // Descriptors are also needed for the database, sandboxes' pipes and sockets, and files.
    maxConnections: fileLimit - Math.min(4096, Math.floor(fileLimit / 2)),
    maxHandshakes: 1024,
    handshakeTimeoutMs: 5_000,
    headersTimeoutMs: 15_000,
    requestTimeoutMs: 600_000,
    keepAliveTimeoutMs: 5_000,
  };
}

/**
 * A Fastify `serverFactory`: Node's HTTP(S) server with the limits applied, for the main
 * server and every extra address (`localhost` is two). Connections that never finish their
 * TLS handshake cannot crowd out the ones that do: past `maxHandshakes`, the oldest pending
 * one is dropped, and none waits longer than `handshakeTimeoutMs`.
 */
export function limitedServerFactory(
  tls: { cert: string; key: string } | undefined,
  limits: ConnectionLimits,
) {
  // Shared by every server of the service (`localhost` is two): one cap, one handshake queue.
  let open = 0;
  const pending = new Map<string, Socket>();
  return (handler: http.RequestListener): http.Server => {
    const options = {
      // The timeouts below are checked this often (Node's default is 30 s).
      connectionsCheckingInterval: 1_000,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
    };
    const server = tls
      ? https.createServer(
          { ...options, ...tls, handshakeTimeout: limits.handshakeTimeoutMs },
          handler,
        )
      : http.createServer(options, handler);
    server.on("connection", (socket: Socket) => {
      if (open >= limits.maxConnections) return void socket.destroy();
      open++;
      socket.once("close", () => open--);
    });
    if (tls) dropOldestHandshakes(server as https.Server, pending, limits.maxHandshakes);
    return server;
  };
}

function dropOldestHandshakes(
  server: https.Server,
  pending: Map<string, Socket>,
  max: number,
): void {
  // A connection is known by its addresses and ports, unique while it is open.
  const keyOf = (s: Socket) =>
    `${s.localAddress} ${s.localPort} ${s.remoteAddress} ${s.remotePort}`;
  server.on("connection", (socket: Socket) => {
    const key = keyOf(socket);
    pending.set(key, socket);
    socket.once("close", () => {
      if (pending.get(key) === socket) pending.delete(key);
    });
    if (pending.size > max) {
      const [oldestKey, oldest] = pending.entries().next().value!;
      pending.delete(oldestKey);
      oldest.destroy();
    }
  });
  server.on("secureConnection", (socket: Socket) => pending.delete(keyOf(socket)));
}
