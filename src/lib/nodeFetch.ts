import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { Transform, pipeline, type Readable } from "node:stream";

/** The `fetch` SDK clients (openai, the MCP SDK) are given. */
export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** An answer (a body, or one event of an event stream) passed its byte limit. */
export class AnswerTooLarge extends Error {
  override readonly name = "AnswerTooLarge";
  constructor(
    readonly limit: number,
    readonly perEvent: boolean,
  ) {
    super(`The answer was larger than ${limit} bytes${perEvent ? " in one event" : ""}.`);
  }
}

/** A destination the address policy refused; no connection was made. */
export class AddressRefused extends Error {
  override readonly name = "AddressRefused";
  constructor(
    readonly host: string,
    /** Why, in the policy's words (e.g. "a loopback address"). */
    readonly reason: string,
  ) {
    super(net.isIP(host) ? `${host} is ${reason}` : `${host} resolves to ${reason}`);
  }
}

/** Why `address` (an IP literal) must not be connected to ("a … address"), or undefined. */
export type AddressPolicy = (address: string) => string | undefined;

export interface NodeFetchOptions {
  /** Largest body of an answer, in bytes (an event stream's events are bounded instead). */
  maxBodyBytes?: number;
  /** Largest event of a `text/event-stream` answer, in bytes (default maxBodyBytes). */
  maxEventBytes?: number;
  /** Checked on every address a host name resolves to, at connect time, and on IP literals. */
  addressPolicy?: AddressPolicy;
  /** Told when a limit or the policy stopped a request, with the error it fails with. */
  onRefused?: (err: AnswerTooLarge | AddressRefused) => void;
  /** Sockets per origin (default: no limit). */
  maxSockets?: number;
}

export interface NodeFetch {
  fetch: Fetch;
  /** Closes every socket the fetch holds. */
  destroy(): void;
}

const nullBodyStatuses = new Set([101, 204, 205, 304]);

/**
 * A `fetch` over node:http(s) and keep-alive agents of its own. Unlike Node's built-in fetch:
 * - an abort (a deadline, a caller gone) destroys the connection at once instead of reading
 *   the rest of an answer nobody wants, so an upstream stops and a stalled one holds nothing;
 * - no answer grows without bound in memory: past `maxBodyBytes` (or `maxEventBytes` for one
 *   server-sent event) the body fails with AnswerTooLarge;
 * - an `addressPolicy` is applied to the RESOLVED addresses, so a name that resolves (or
 *   rebinds) to a refused address is caught as surely as an IP literal.
 * Redirects are never followed, answers are read as sent (no compression asked for), and
 * there is no timeout of its own: the caller's signal is the deadline. TLS trusts the
 * system's CAs and NODE_EXTRA_CA_CERTS.
 */
export function nodeFetch(options: NodeFetchOptions = {}): NodeFetch {
  const policy = options.addressPolicy;
  const refused = <E extends AnswerTooLarge | AddressRefused>(err: E): E => {
    options.onRefused?.(err);
    return err;
  };
  const agentOptions = {
    keepAlive: true,
    ...(options.maxSockets !== undefined && { maxSockets: options.maxSockets }),
    ...(policy && { lookup: checkedLookup(policy, refused) }),
  };
  const agents = { "http:": new http.Agent(agentOptions), "https:": new https.Agent(agentOptions) };
  const maxBody = options.maxBodyBytes ?? Infinity;
  const maxEvent = options.maxEventBytes ?? maxBody;

  const fetch: Fetch = (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      if (input instanceof Request) return reject(new TypeError("Pass a URL, not a Request."));
      const url = new URL(input);
      const agent = agents[url.protocol as keyof typeof agents];
      if (!agent) return reject(new TypeError(`Unsupported protocol ${url.protocol}`));
      const body = init.body;
      if (
        body !== undefined &&
        body !== null &&
        typeof body !== "string" &&
        !(body instanceof Uint8Array)
      )
        return reject(new TypeError("Only string and byte request bodies are sent."));
      // A literal IP is not looked up: the policy is applied to it here.
      const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
      const why = policy && net.isIP(host) ? policy(host) : undefined;
      if (why) return reject(refused(new AddressRefused(host, why)));
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => (headers[name] = value));
      delete headers["accept-encoding"];
      const send = url.protocol === "https:" ? https.request : http.request;
      let req: http.ClientRequest;
      try {
        req = send(url, {
          method: init.method ?? "GET",
          headers,
          agent,
          signal: init.signal ?? undefined,
        });
      } catch (err) {
        return reject(err as Error);
      }
      req.once("error", reject);
      req.once("response", (res) => {
        try {
          const answer = new Headers();
          for (const [name, value] of Object.entries(res.headers))
            for (const v of Array.isArray(value) ? value : [value ?? ""]) answer.append(name, v);
          const status = res.statusCode ?? 502;
          let stream: ReadableStream<Uint8Array> | null = null;
          if (nullBodyStatuses.has(status) || init.method === "HEAD") res.resume();
          else {
            const events = /^text\/event-stream/i.test(res.headers["content-type"] ?? "");
            const limiter = byteLimit(events ? maxEvent : maxBody, events, refused);
            pipeline(res, limiter, () => {});
            stream = webStream(limiter);
          }
          resolve(new Response(stream, { status, statusText: res.statusMessage, headers: answer }));
        } catch (err) {
          res.destroy();
          reject(err as Error);
        }
      });
      req.end(body ?? undefined);
    });

  return {
    fetch,
    destroy() {
      agents["http:"].destroy();
      agents["https:"].destroy();
    },
  };
}

/** dns.lookup, failing with AddressRefused when any address the name resolves to is refused. */
function checkedLookup(
  policy: AddressPolicy,
  refused: (err: AddressRefused) => AddressRefused,
): net.LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, "", 0);
      for (const { address } of addresses) {
        const why = policy(address);
        if (why) return callback(refused(new AddressRefused(hostname, why)), "", 0);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first)
        return callback(
          Object.assign(new Error(`${hostname}: no address`), { code: "ENOTFOUND" }),
          "",
          0,
        );
      callback(null, first.address, first.family);
    });
  };
}

/**
 * A web stream reading `stream` on demand; cancelling it destroys the stream (and, through
 * the pipeline, the connection). (Node 20's Readable.toWeb throws an uncaught ERR_INVALID_STATE when data arrives after the
 * web stream was cancelled.)
 */
function webStream(stream: Readable): ReadableStream<Uint8Array> {
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { value, done } = await chunks.next();
          if (done) controller.close();
          else controller.enqueue(new Uint8Array(value.buffer, value.byteOffset, value.length));
        } catch (err) {
          controller.error(err);
        }
      },
      cancel() {
        stream.destroy();
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Passes bytes through until `limit` of them: in all, or with `perEvent` since the last blank
 * line (the end of a server-sent event; lines end in LF, CRLF or CR).
 */
function byteLimit(
  limit: number,
  perEvent: boolean,
  refused: (err: AnswerTooLarge) => AnswerTooLarge,
): Transform {
  let size = 0;
  let lineLength = 0;
  let afterCr = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (!perEvent) {
        size += chunk.length;
        return size > limit ? done(refused(new AnswerTooLarge(limit, false))) : done(null, chunk);
      }
      for (const byte of chunk) {
        if (byte === 0x0a && afterCr) {
          afterCr = false;
          continue;
        }
        afterCr = byte === 0x0d;
        if (byte === 0x0a || byte === 0x0d) {
          if (lineLength === 0) size = 0;
          lineLength = 0;
        } else {
          lineLength++;
          if (++size > limit) return done(refused(new AnswerTooLarge(limit, true)));
        }
      }
      done(null, chunk);
    },
  });
}
