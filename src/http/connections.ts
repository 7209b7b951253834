import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";

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
  /**
   * An upgrade (WebSocket) request's answer may wait for a session to start and its agent's
   * handshake, but not longer than this: then its connection is dropped.
   */
  upgradeTimeoutMs: number;
}

/** Timeouts that a client on a slow link still meets and an idle attacker does not outlast. */
export function connectionLimits(fileLimit: number, upgradeTimeoutMs = 155_000): ConnectionLimits {
  return {
    // Descriptors are also needed for the database, sandboxes' pipes and sockets, and files.
    maxConnections: fileLimit - Math.min(4096, Math.floor(fileLimit / 2)),
    maxHandshakes: 1024,
    handshakeTimeoutMs: 5_000,
    headersTimeoutMs: 15_000,
    requestTimeoutMs: 600_000,
    keepAliveTimeoutMs: 5_000,
    upgradeTimeoutMs,
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
    server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      routeUpgrade(handler, req, socket, head, limits.upgradeTimeoutMs),
    );
    return server;
  };
}

/** What may still arrive on a connection after its answer, before it is closed anyway. */
const linger = { bytes: 16 * 1024 * 1024, ms: 2_000 };

/**
 * Makes the close after this request's answer a lingering one, for an answer sent before the
 * body has all arrived. Node destroys the socket as soon as the answer is written; a caller
 * still sending its body then writes into a closed socket, gets a reset, and Node's and most
 * clients report that error instead of the answer waiting unread in their buffer. So, as
 * nginx's lingering close does, the sending side is shut first and the rest is read and
 * dropped until the caller closes its side (what a client does once it has the answer),
 * `linger.bytes` more arrived, or `linger.ms` passed.
 */
export function lingerAfterAnswer(request: http.IncomingMessage) {
  request.unpipe();
  if (!request.readableEnded && !request.destroyed) request.resume();
  const socket = request.socket as Socket;
  socket.destroySoon = () => lingeringClose(socket);
}

function lingeringClose(socket: Socket) {
  if (socket.writable) socket.end();
  const from = socket.bytesRead;
  const deadline = Date.now() + linger.ms;
  const close = () => socket.destroy();
  const check = setInterval(() => {
    if (socket.bytesRead - from > linger.bytes || Date.now() > deadline) close();
  }, 25).unref();
  socket.once("end", close);
  socket.once("close", () => clearInterval(check));
  socket.resume();
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

const upgrades = new WeakMap<http.IncomingMessage, { socket: Duplex; head: Buffer }>();

/**
 * The connection and first bytes of an upgrade request (a WebSocket handshake), for the route
 * that takes it over (`reply.hijack()`); undefined for an ordinary request.
 */
export function upgradeOf(req: http.IncomingMessage) {
  return upgrades.get(req);
}

/**
 * An upgrade request goes through the app's routing like any other (its hooks: auth, the
 * protocol gate), answered over its socket; a route that takes it over completes the handshake
 * within `timeoutMs` or the connection is dropped. Any other answer ends the connection.
 * Only a WebSocket handshake is routed: a `GET` with `Upgrade: websocket` and no body (Node
 * does not read an upgrade request's body); anything else is answered 400 here.
 */
function routeUpgrade(
  handler: http.RequestListener,
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  timeoutMs: number,
) {
  socket.on("error", () => socket.destroy());
  if (!isWebSocketHandshake(req)) return refuseUpgrade(socket);
  upgrades.set(req, { socket, head });
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once("finish", () => socket.end());
  const timer = setTimeout(() => {
    if (upgrades.has(req)) socket.destroy();
  }, timeoutMs);
  socket.once("close", () => clearTimeout(timer));
  handler(req, res);
}

/** The route took the connection over (it is a WebSocket now): no deadline, no answer here. */
export function upgraded(req: http.IncomingMessage) {
  upgrades.delete(req);
}

function isWebSocketHandshake(req: http.IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return (
    req.method === "GET" &&
    req.headers.upgrade?.toLowerCase() === "websocket" &&
    req.headers["transfer-encoding"] === undefined &&
    (length === undefined || length === "0")
  );
}

/** The contract's envelope, written by hand: this request never reaches the app. */
function refuseUpgrade(socket: Duplex) {
  const body = JSON.stringify({
    error: {
      code: "invalid_parameter",
      message: "Only a bodyless GET with `Upgrade: websocket` may ask for an upgrade.",
      param: "upgrade",
      type: "invalid_request_error",
      details: [],
      additionalInfo: {},
    },
  });
  socket.end(
    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
