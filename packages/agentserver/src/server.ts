import http from "node:http";
import type { AddressInfo } from "node:net";
import { agentEnvironment, type AgentEnvironment, type Context } from "./context.js";
import { HttpError, sendError, sendJson } from "./http.js";
import {
  InvocationsProtocol,
  type InvocationRecord,
  type InvocationsHandler,
  type InvocationsResult,
} from "./invocations.js";
import { ResponsesProtocol, type ResponsesHandler } from "./responses.js";
import { WorkTracker } from "./work.js";

export interface ServeOptions {
  /** Serves `POST /responses` and its `GET`/`cancel`/`DELETE`/`input_items` routes. */
  responses?: ResponsesHandler;
  /** Serves `POST /invocations` (and `GET`/`cancel` of an invocation by id). */
  invocations?: InvocationsHandler;
  /** Answers `GET /invocations/{id}` instead of the built-in status record. */
  getInvocation?: (
    id: string,
    record: InvocationRecord | undefined,
    context: Context,
  ) => InvocationsResult;
  /** Called on `POST /invocations/{id}/cancel`, after the invocation's signal is aborted. */
  cancelInvocation?: (
    id: string,
    record: InvocationRecord | undefined,
    context: Context,
  ) => InvocationsResult | Promise<InvocationsResult>;
  /** The OpenAPI document served at `GET /invocations/docs/openapi.json`. */
  openapi?: Record<string, unknown>;
  /** Whether the agent is ready (`GET /readiness` answers 503 until it is); default ready. */
  ready?: () => boolean | Promise<boolean>;
  /** The TCP port; default `PORT`, else 8088. */
  port?: number;
  /** The address; default `0.0.0.0`. */
  host?: string;
  /** A Unix socket to listen on instead of a port. */
  socketPath?: string;
  /** How long a shutdown waits for work in flight; default `AGENTSERVER_DRAIN_SECONDS` or 8 s. */
  drainSeconds?: number;
  /** Whether SIGTERM and SIGINT shut the server down and exit the process; default true. */
  handleSignals?: boolean;
  /** The largest request body; default 16 MiB. */
  maxBodyBytes?: number;
  /** How many finished responses and invocations are kept for their routes; default 1000. */
  maxStored?: number;
  /** Where the server's own lines go; default `console.log` (stdout: the session's log). */
  log?: (line: string) => void;
  /** The environment to read the contract's variables from; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** A running agent server. */
export interface AgentServer {
  /** The Node HTTP server. */
  server: http.Server;
  /** The port it listens on (0 on a Unix socket). */
  port: number;
  /** The contract's environment, as read at start. */
  env: AgentEnvironment;
  /**
   * Stops accepting, waits for the work in flight up to the drain deadline, aborts what is
   * left and closes every connection. Resolves `true` when everything finished in time.
   */
  close(drainSeconds?: number): Promise<boolean>;
}

/** Starts an agent server for the container contract; resolves once it listens. */
export async function serve(options: ServeOptions): Promise<AgentServer> {
  if (!options.responses && !options.invocations)
    throw new TypeError("serve() needs a `responses` or an `invocations` handler");
  const env = agentEnvironment(options.env ?? process.env);
  const log = options.log ?? ((line: string) => console.log(line));
  const work = new WorkTracker();
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024 * 1024;
  const maxStored = options.maxStored ?? 1000;
  const responses = options.responses
    ? new ResponsesProtocol(options.responses, env, work, {
        maxBodyBytes,
        maxStored,
        maxReplayBytes: 8 * 1024 * 1024,
        keepAliveMs: 15_000,
      })
    : undefined;
  const invocations = options.invocations
    ? new InvocationsProtocol(
        {
          handler: options.invocations,
          get: options.getInvocation,
          cancel: options.cancelInvocation,
          openapi: options.openapi,
        },
        env,
        { maxBodyBytes, maxStored },
      )
    : undefined;
  const drainEnv = Number((options.env ?? process.env).AGENTSERVER_DRAIN_SECONDS);
  const defaultDrain =
    options.drainSeconds ?? (Number.isFinite(drainEnv) && drainEnv >= 0 ? drainEnv : 8);

  const server = http.createServer(async (req, res) => {
    if (work.draining) {
      res.setHeader("connection", "close");
      sendError(res, new HttpError(503, "shutting_down", "the agent is shutting down"));
      return;
    }
    const request = work.begin();
    res.on("close", request.end);
    try {
      const url = new URL(req.url ?? "/", "http://agent");
      if (url.pathname === "/readiness") {
        if (req.method !== "GET") throw new HttpError(405, "method_not_allowed", "use GET");
        const ready = options.ready ? await options.ready() : true;
        sendJson(res, ready ? 200 : 503, { status: ready ? "ready" : "starting" });
        return;
      }
      if (responses && (await responses.route(req, res, url, request))) return;
      if (invocations && (await invocations.route(req, res, url, request))) return;
      throw new HttpError(404, "not_found", `no route ${req.method} ${url.pathname}`);
    } catch (e) {
      if (e instanceof HttpError) sendError(res, e);
      else {
        log(`agentserver: ${req.method} ${req.url}: ${e instanceof Error ? e.stack : String(e)}`);
        sendError(res, new HttpError(500, "server_error", "the agent failed to answer"));
      }
    }
  });
  server.requestTimeout = 0; // answers may take as long as they take
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const listening = () => {
      server.off("error", reject);
      resolve();
    };
    if (options.socketPath) server.listen(options.socketPath, listening);
    else server.listen(options.port ?? env.port, options.host ?? "0.0.0.0", listening);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? (address as AddressInfo).port : 0;

  let closing: Promise<boolean> | undefined;
  const close = (drainSeconds = defaultDrain) =>
    (closing ??= (async () => {
      const drainedInTime = work.drain(drainSeconds * 1000);
      server.close();
      server.closeIdleConnections();
      const inTime = await drainedInTime;
      if (!inTime) {
        log(`agentserver: drain deadline (${drainSeconds} s): aborting ${work.size} in flight`);
        work.abortAll(new Error("the agent is shutting down"));
        await new Promise((r) => setTimeout(r, 100));
      }
      server.closeAllConnections();
      return inTime;
    })());

  if (options.handleSignals ?? true) {
    const onSignal = (signal: NodeJS.Signals) => {
      log(`agentserver: ${signal}: finishing ${work.size} in flight`);
      void close().then((inTime) => {
        log(`agentserver: stopped${inTime ? "" : " at the drain deadline"}`);
        process.exit(0);
      });
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    server.on("close", () => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    });
  }
  log(
    `agentserver: listening on ${options.socketPath ?? `${options.host ?? "0.0.0.0"}:${port}`}` +
      ` (${[responses && "responses", invocations && "invocations"].filter(Boolean).join(", ")})`,
  );
  return { server, port, env, close };
}
