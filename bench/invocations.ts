import { readdirSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { WebSocket } from "ws";
import { deployFixture } from "../test/helpers/agents.js";
import { removeDir, sdk, startServer, type TestServer } from "../test/helpers/server.js";
import { envInt, fixed, quantile, renderSection, verdict, type Section } from "./report.js";

/*
 * A hosted agent's `invocations` and `invocations_ws` through the service (HTTPS, bearer key,
 * the protocol gate, the session lookup, the forwarder) against the same agent's Unix socket
 * called directly, in the same run, with the echo-python fixture in a real sandbox:
 *
 * 1. Added latency of one small invocation (256 bytes echoed), sequential, kept-alive.
 * 2. Added latency of one WebSocket message (a 64-byte text frame echoed), sequential.
 * 3. WebSocket messages per second, 64 in flight, relay vs direct.
 *
 *   node --import tsx bench/invocations.ts   (BENCH_CALLS, BENCH_MESSAGES)
 */

const targets = { addedP50Ms: 1 };
const agentName = "invocations-bench";

interface Rig {
  server: TestServer;
  sessionId: string;
  socketPath: string;
  agent: https.Agent;
}

async function withRig<T>(work: (rig: Rig) => Promise<T>): Promise<T> {
  const server = await startServer({ env: { AGENTHOST_WARM_POOL_SIZE: "0" } });
  const agent = new https.Agent({ keepAlive: true, ca: server.caPem });
  try {
    const client = sdk(server, server.adminKey);
    await deployFixture(client, agentName, "echo-python");
    await client.agents.updateAgent(agentName, {
      agentEndpoint: { protocol_configuration: { invocations: {}, invocations_ws: {} } },
    });
    const first = await call(viaService(server, agent, undefined), Buffer.from("x"));
    const sessionId = first.session;
    const sockets = readdirSync(path.join(server.dataDir, "sandbox/sock"));
    if (sockets.length !== 1) throw new Error(`expected one agent socket, found ${sockets.length}`);
    const socketPath = path.join(server.dataDir, "sandbox/sock", sockets[0]!);
    return await work({ server, sessionId, socketPath, agent });
  } finally {
    agent.destroy();
    await server.stop();
    removeDir(server.dataDir);
  }
}

type Caller = (body: Buffer) => http.ClientRequest;

function viaService(server: TestServer, agent: https.Agent, sessionId: string | undefined) {
  const query = sessionId ? `&agent_session_id=${sessionId}` : "";
  const url = `${server.endpoint}/agents/${agentName}/endpoint/protocols/invocations?api-version=v1${query}`;
  return (body: Buffer) =>
    https.request(url, {
      method: "POST",
      agent,
      headers: {
        authorization: `Bearer ${server.adminKey}`,
        "content-type": "application/octet-stream",
        "content-length": body.length,
      },
    });
}

function direct(socketPath: string, sessionId: string, agent: http.Agent): Caller {
  return (body: Buffer) =>
    http.request({
      socketPath,
      agent,
      method: "POST",
      path: "/invocations",
      headers: {
        "content-type": "application/octet-stream",
        "content-length": body.length,
        "x-agent-session-id": sessionId,
        "x-agent-user-id": "bench",
        "x-agent-foundry-call-id": "call_bench",
      },
    });
}

function call(make: Caller, body: Buffer): Promise<{ ms: number; session: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = make(body);
    req.once("response", (res) => {
      let n = 0;
      res.on("data", (c: Buffer) => (n += c.length));
      res.once("end", () => {
        if (res.statusCode !== 200 || n !== body.length)
          return reject(new Error(`answered ${res.statusCode} with ${n} bytes`));
        resolve({
          ms: performance.now() - started,
          session: String(res.headers["x-agent-session-id"]),
        });
      });
    });
    req.once("error", reject);
    req.end(body);
  });
}

/** ms of one `GET /agents/{name}`: what any call through the service costs (TLS, key, a row). */
function apiCall(server: TestServer, agent: https.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = https.request(`${server.endpoint}/agents/${agentName}?api-version=v1`, {
      agent,
      headers: { authorization: `Bearer ${server.adminKey}` },
    });
    req.once("response", (res) => {
      res.resume();
      res.once("end", () =>
        res.statusCode === 200
          ? resolve(performance.now() - started)
          : reject(new Error(`GET /agents/${agentName} answered ${res.statusCode}`)),
      );
    });
    req.once("error", reject);
    req.end();
  });
}

async function latencies(make: Caller, calls: number): Promise<number[]> {
  const body = Buffer.alloc(256, 97);
  for (let i = 0; i < 20; i++) await call(make, body);
  const out: number[] = [];
  for (let i = 0; i < calls; i++) out.push((await call(make, body)).ms);
  return out;
}

function openSocket(url: string, options: ConstructorParameters<typeof WebSocket>[2]) {
  const ws = new WebSocket(url, options);
  return new Promise<WebSocket>((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

async function wsLatencies(ws: WebSocket, messages: number): Promise<number[]> {
  const text = "m".repeat(64);
  const once = () =>
    new Promise<number>((resolve) => {
      const started = performance.now();
      ws.once("message", () => resolve(performance.now() - started));
      ws.send(text);
    });
  for (let i = 0; i < 50; i++) await once();
  const out: number[] = [];
  for (let i = 0; i < messages; i++) out.push(await once());
  return out;
}

/** Messages echoed per second with `window` in flight. */
function wsRate(ws: WebSocket, messages: number, window = 64): Promise<number> {
  const text = "r".repeat(64);
  return new Promise((resolve) => {
    let sent = 0;
    let received = 0;
    const started = performance.now();
    ws.on("message", function onMessage() {
      received++;
      if (sent < messages) {
        sent++;
        ws.send(text);
      }
      if (received === messages) {
        ws.off("message", onMessage);
        resolve(messages / ((performance.now() - started) / 1000));
      }
    });
    for (; sent < Math.min(window, messages); sent++) ws.send(text);
  });
}

export async function invocationsBench(): Promise<Section[]> {
  const calls = envInt("BENCH_CALLS", 1000);
  const messages = envInt("BENCH_MESSAGES", 2000);
  return withRig(async ({ server, sessionId, socketPath, agent }) => {
    const unixAgent = new http.Agent({ keepAlive: true });
    const service = viaService(server, agent, sessionId);
    const agentDirect = direct(socketPath, sessionId, unixAgent);
    // Alternate rounds, so that drift on a shared machine falls on both.
    const through: number[] = [];
    const straight: number[] = [];
    const api: number[] = [];
    for (let round = 0; round < 4; round++) {
      through.push(...(await latencies(service, calls / 4)));
      straight.push(...(await latencies(agentDirect, calls / 4)));
      for (let i = 0; i < calls / 4; i++) api.push(await apiCall(server, agent));
    }
    unixAgent.destroy();

    const wsService = await openSocket(
      `${server.endpoint.replace(/^https/, "wss")}/agents/${agentName}/endpoint/protocols/invocations_ws?api-version=v1&agent_session_id=${sessionId}`,
      { ca: server.caPem, headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    const wsDirect = await openSocket(`ws+unix://${socketPath}:/invocations_ws`, {
      headers: { "x-agent-session-id": sessionId, "x-agent-user-id": "bench" },
    });
    const wsThrough: number[] = [];
    const wsStraight: number[] = [];
    for (let round = 0; round < 4; round++) {
      wsThrough.push(...(await wsLatencies(wsService, messages / 4)));
      wsStraight.push(...(await wsLatencies(wsDirect, messages / 4)));
    }
    const rateThrough = await wsRate(wsService, messages * 5);
    const rateStraight = await wsRate(wsDirect, messages * 5);
    wsService.close();
    wsDirect.close();

    const row = (what: string, a: number[], b: number[], target = true) => {
      const added = quantile(a, 0.5) - quantile(b, 0.5);
      return [
        what,
        fixed(quantile(a, 0.5)),
        fixed(quantile(a, 0.99)),
        fixed(quantile(b, 0.5)),
        fixed(quantile(b, 0.99)),
        fixed(added),
        target ? verdict(added <= targets.addedP50Ms) : "—",
      ];
    };
    return [
      {
        title: "Invocations and invocations_ws: added latency",
        table: {
          header: [
            "what",
            "service p50 ms",
            "service p99 ms",
            "direct p50 ms",
            "direct p99 ms",
            "added p50 ms",
            `≤ ${targets.addedP50Ms} ms`,
          ],
          rows: [
            row(`invocation, 256 B echoed (${calls} calls)`, through, straight),
            row(`WebSocket text message, 64 B echoed (${messages})`, wsThrough, wsStraight),
            // For scale: a call that reaches no agent, against the same direct invocation.
            row(`for scale: GET /agents/{name}, no agent (${calls})`, api, straight, false),
          ],
        },
        notes: [
          "Service: HTTPS with the bearer key, `agent_session_id` named, kept-alive; direct: HTTP (and ws+unix) on the session's agent socket as root, the same headers. The echo-python fixture answers both, in its bwrap sandbox.",
          "Rounds alternate (service, direct, API call, ×4) so drift on the shared machine falls on all.",
          "The last row is the floor of anything through the service (TLS, the key, one agent row), compared with the direct invocation: what the invocation adds beyond it is the forwarding.",
        ],
      },
      {
        title: "invocations_ws: messages per second",
        table: {
          header: ["path", "messages/s (64 in flight, 64 B)"],
          rows: [
            ["through the service", fixed(rateThrough, 0)],
            ["the agent's socket directly", fixed(rateStraight, 0)],
          ],
        },
        notes: [`${messages * 5} messages each; the fixture's Python echo is the ceiling of both.`],
      },
    ];
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  for (const section of await invocationsBench())
    process.stdout.write(renderSection(section) + "\n");
}
