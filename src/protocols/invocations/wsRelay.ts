import { WebSocket, type RawData } from "ws";

/*
 * One WebSocket relayed to another frame for frame (the caller's and the agent's
 * `/invocations_ws`): text stays text and binary binary; a side whose peer is slow to take
 * its frames is paused (no more read from its socket) until the peer has drained; a close
 * code and reason are passed on; idle connections and callers that stop answering pings end.
 */

export interface RelayOptions {
  /** A side is paused while its peer has more than this buffered, unsent. */
  highWaterBytes: number;
  /** No frame either way for this long: both sides are closed (1000, "idle"). */
  idleMs: number;
  /** The caller is pinged this often; one that has not answered the last ping is dropped. */
  pingMs: number;
}

/** Close codes that may be sent on the wire (RFC 6455 §7.4; 1005, 1006 and 1015 may not). */
export const sendableCode = (code: number) =>
  (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
  (code >= 3000 && code <= 4999);

/** Relays until both are closed; resolves then. `caller` is pinged, `agent` is trusted less. */
export function relay(caller: WebSocket, agent: WebSocket, options: RelayOptions): Promise<void> {
  return new Promise((resolve) => {
    let idle: NodeJS.Timeout | undefined;
    let alive = true;
    let pausedSides = 0;
    // Frames still on their way (a side paused, or unsent bytes to the caller): not idle, and
    // a late pong is queued behind them, not missing.
    const busy = () => pausedSides > 0 || caller.bufferedAmount > 0 || agent.bufferedAmount > 0;
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        if (busy()) return touch();
        closeWith(caller, 1000, "idle");
        closeWith(agent, 1000, "idle");
      }, options.idleMs);
    };
    const pinger = setInterval(() => {
      if (!alive && !busy()) return void caller.terminate();
      alive = false;
      if (caller.readyState === WebSocket.OPEN) caller.ping();
    }, options.pingMs);
    caller.on("pong", () => (alive = true));

    const pipe = (from: WebSocket, to: WebSocket) => {
      let paused = false;
      let tooBig = false;
      from.on("message", (data: RawData, isBinary: boolean) => {
        touch();
        if (to.readyState !== WebSocket.OPEN) return;
        to.send(data, { binary: isBinary }, () => {
          if (paused && to.bufferedAmount <= options.highWaterBytes / 2) {
            paused = false;
            pausedSides--;
            from.resume();
          }
        });
        if (!paused && to.bufferedAmount > options.highWaterBytes) {
          paused = true;
          pausedSides++;
          from.pause();
        }
      });
      from.once("close", (code: number, reason: Buffer) => {
        if (paused) pausedSides--;
        paused = false;
        // A message past the limit, either way, is 1009 to both sides. Otherwise what the side
        // said is passed on; a side that just vanished is told by 1011/terminate.
        if (tooBig) closeWith(to, 1009, "message too big");
        else if (sendableCode(code)) closeWith(to, code, reason.toString());
        else if (code === 1005) closeWith(to, 1000, "");
        else if (to === caller) closeWith(to, 1011, "the agent's connection ended");
        else to.terminate();
      });
      // Errors (a frame past the size limit, a protocol violation) end in "close" too.
      from.on("error", (err: Error & { code?: string }) => {
        if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") tooBig = true;
      });
    };
    pipe(caller, agent);
    pipe(agent, caller);

    let closed = 0;
    const onClose = () => {
      if (++closed < 2) return;
      clearTimeout(idle);
      clearInterval(pinger);
      resolve();
    };
    caller.once("close", onClose);
    agent.once("close", onClose);
    touch();
  });
}

/** Closes a socket (once), and drops it if the other end does not finish the closing. */
export function closeWith(socket: WebSocket, code: number, reason: string) {
  if (socket.readyState === WebSocket.CLOSED) return;
  if (socket.readyState === WebSocket.CONNECTING) return void socket.terminate();
  if (socket.readyState === WebSocket.OPEN) {
    // A reason is at most 123 bytes on the wire.
    let text = reason;
    while (Buffer.byteLength(text) > 123) text = text.slice(0, -1);
    socket.close(code, text);
  }
  // ws drops the connection itself 30 s after a close that is not answered.
}
