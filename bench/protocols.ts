import { randomUUID } from "node:crypto";
import { readdirSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { deployFixture } from "../test/helpers/agents.js";
import { removeDir, sdk, startServer, type TestServer } from "../test/helpers/server.js";
import { envInt, fixed, quantile, renderSection, verdict, type Section } from "./report.js";

/*
 * The endpoint protocols a hosted agent answers through its `/responses` (hosted `responses`,
 * `mcp` `tools/call`, `a2a` `message/send`) and `activity` (its `/activity/messages`), each
 * through the service (HTTPS, bearer key, kept-alive, one session continued) against the
 * same agent's socket called directly with the body the service sends it, in the same run,
 * rounds alternated. Fixtures echo-python (responses, mcp, a2a) and activity-python.
 *
 *   node --import tsx bench/protocols.ts   (BENCH_CALLS: calls per protocol and path, default 1000)
 */

const targets = { addedP50Ms: 1 };
const echoAgent = "protocols-bench";
const activityAgent = "protocols-bench-activity";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Send = () => Promise<Answer>;

function send(make: () => http.ClientRequest, body: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = make();
    req.once("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.once("error", reject);
    req.end(body);
  });
}

/** A JSON POST through the service (HTTPS, the bearer key). */
function viaService(server: TestServer, agent: https.Agent, route: string, body: unknown): Send {
  const raw = JSON.stringify(body);
  const url = `${server.endpoint}/agents/${route}`;
  return () =>
    send(
      () =>
        https.request(url, {
          method: "POST",
          agent,
          headers: {
            authorization: `Bearer ${server.adminKey}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "content-length": Buffer.byteLength(raw),
          },
        }),
      raw,
    );
}

/** A JSON POST on a session's agent socket as root, with the container protocol's headers. */
function direct(
  socketPath: string,
  sessionId: string,
  agent: http.Agent,
  route: string,
  body: unknown,
): Send {
  const raw = JSON.stringify(body);
  return () =>
    send(
      () =>
        http.request({
          socketPath,
          agent,
          method: "POST",
          path: route,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(raw),
            "x-agent-session-id": sessionId,
            "x-agent-user-id": "bench",
            "x-agent-foundry-call-id": `call_${randomUUID()}`,
          },
        }),
      raw,
    );
}

/** Times `send`, checking each answer with `ok` (a wrong answer stops the benchmark). */
async function latencies(
  what: string,
  call: Send,
  ok: (a: Answer) => boolean,
  calls: number,
  warmup = 5,
) {
  const out: number[] = [];
  for (let i = 0; i < warmup + calls; i++) {
    const started = performance.now();
    const answer = await call();
    const ms = performance.now() - started;
    if (!ok(answer))
      throw new Error(`${what}: answered ${answer.status} ${answer.body.slice(0, 300)}`);
    if (i >= warmup) out.push(ms);
  }
  return out;
}

const sockDir = (server: TestServer) => path.join(server.dataDir, "sandbox/sock");
const sockets = (server: TestServer) =>
  new Set(readdirSync(sockDir(server)).filter((n) => !n.startsWith(".")));

/** Runs `start` (which makes one new session) and returns the socket that appeared with it. */
async function newSocket<T>(server: TestServer, start: () => Promise<T>) {
  const before = sockets(server);
  const value = await start();
  const added = [...sockets(server)].filter((n) => !before.has(n));
  if (added.length !== 1) throw new Error(`expected one new agent socket, found ${added.length}`);
  return { value, socketPath: path.join(sockDir(server), added[0]!) };
}

const json = (a: Answer): Record<string, unknown> => {
  try {
    return JSON.parse(a.body) as Record<string, unknown>;
  } catch {
    return {};
  }
};
const echoed = (a: Answer) => a.status === 200 && a.body.includes("echo: bench");

interface Case {
  what: string;
  service: Send;
  serviceOk: (a: Answer) => boolean;
  direct: Send;
  directOk: (a: Answer) => boolean;
}

async function cases(server: TestServer, agent: https.Agent, unix: http.Agent): Promise<Case[]> {
  const q = "?api-version=v1";
  const input = "bench " + "x".repeat(200);
  const responsesRoute = `${echoAgent}/endpoint/protocols/openai/responses${q}`;

  // Hosted responses: a first call makes the session the others name.
  const first = await newSocket(server, () =>
    viaService(server, agent, responsesRoute, { input })(),
  );
  const sessionId = String(first.value.headers["x-agent-session-id"]);
  const echoSocket = first.socketPath;
  // What the service sends the agent for every one of these (mcp and a2a build the same).
  const agentBody = { input, store: false, agent_session_id: sessionId };
  const echoDirect = direct(echoSocket, sessionId, unix, "/responses", agentBody);

  // MCP: stateless, a tools/call names the session.
  const mcpCall = viaService(server, agent, `${echoAgent}/endpoint/protocols/mcp${q}`, {
    jsonrpc: "2.0",
    id: 1,
    method: "tools/call",
    params: { name: echoAgent, arguments: { input, agent_session_id: sessionId } },
  });
  const mcpOk = (a: Answer) => {
    const result = json(a).result as { isError?: boolean; content?: { text?: string }[] };
    return a.status === 200 && !result?.isError && !!result?.content?.[0]?.text?.includes("echo");
  };

  // A2A: the first message makes a context (one session of its own); the others continue it.
  const a2aRoute = `${echoAgent}/endpoint/protocols/a2a${q}`;
  const message = (contextId?: string) => ({
    jsonrpc: "2.0",
    id: 1,
    method: "message/send",
    params: {
      message: {
        kind: "message",
        role: "user",
        messageId: randomUUID(),
        parts: [{ kind: "text", text: input }],
        ...(contextId ? { contextId } : {}),
      },
    },
  });
  const a2aOk = (a: Answer) => {
    const task = json(a).result as { status?: { state?: string } } | undefined;
    return a.status === 200 && task?.status?.state === "completed";
  };
  const a2aFirst = await newSocket(server, () => viaService(server, agent, a2aRoute, message())());
  if (!a2aOk(a2aFirst.value)) throw new Error(`a2a: ${a2aFirst.value.body.slice(0, 300)}`);
  const task = json(a2aFirst.value).result as {
    contextId: string;
    metadata?: Record<string, unknown>;
  };
  const a2aSession = String(task.metadata?.agent_session_id);
  const a2aDirect = direct(a2aFirst.socketPath, a2aSession, unix, "/responses", {
    input,
    store: false,
    agent_session_id: a2aSession,
  });
  // Each call a new messageId, as a client sends.
  const a2aCall: Send = () => viaService(server, agent, a2aRoute, message(task.contextId))();

  // Activity: the first activity makes the session, `agent_session_id` names it after.
  const activity = {
    type: "message",
    id: "act_1",
    channelId: "bench",
    serviceUrl: "https://bench.invalid/",
    from: { id: "user-1" },
    recipient: { id: "bot-1" },
    conversation: { id: "conv-bench" },
    text: input,
  };
  const activityRoute = `${activityAgent}/endpoint/protocols/activity/messages${q}`;
  const activityFirst = await newSocket(server, () =>
    viaService(server, agent, activityRoute, activity)(),
  );
  const activitySession = String(activityFirst.value.headers["x-agent-session-id"]);
  const activityOk = (a: Answer) => a.status === 200 && a.body.includes("activity: bench");

  return [
    {
      what: "hosted `responses` (agent's `…/openai/responses`)",
      service: viaService(server, agent, responsesRoute, { input, agent_session_id: sessionId }),
      serviceOk: echoed,
      direct: echoDirect,
      directOk: echoed,
    },
    {
      what: "`mcp` `tools/call` (raw JSON-RPC POST)",
      service: mcpCall,
      serviceOk: mcpOk,
      direct: echoDirect,
      directOk: echoed,
    },
    {
      what: "`a2a` `message/send` (one context)",
      service: a2aCall,
      serviceOk: a2aOk,
      direct: a2aDirect,
      directOk: echoed,
    },
    {
      what: "`activity` `POST …/activity/messages`",
      service: viaService(
        server,
        agent,
        `${activityRoute}&agent_session_id=${activitySession}`,
        activity,
      ),
      serviceOk: activityOk,
      direct: direct(
        activityFirst.socketPath,
        activitySession,
        unix,
        "/activity/messages",
        activity,
      ),
      directOk: activityOk,
    },
  ];
}

export async function protocolsBench(): Promise<Section[]> {
  const calls = envInt("BENCH_CALLS", 1000);
  const rounds = 10;
  const server = await startServer({ env: { AGENTHOST_WARM_POOL_SIZE: "0" } });
  const agent = new https.Agent({ keepAlive: true, ca: server.caPem });
  const unix = new http.Agent({ keepAlive: true });
  try {
    const client = sdk(server, server.adminKey);
    await deployFixture(client, echoAgent, "echo-python");
    await client.agents.updateAgent(echoAgent, {
      agentEndpoint: { protocol_configuration: { responses: {}, mcp: {}, a2a: {} } },
    });
    await deployFixture(client, activityAgent, "activity-python");
    await client.agents.updateAgent(activityAgent, {
      agentEndpoint: { protocol_configuration: { activity: {} } },
    });
    const all = await cases(server, agent, unix);
    // Rounds alternate, service then direct, and go through every protocol in each round, so
    // that drift on a shared machine falls on every path alike.
    const through = all.map((): number[] => []);
    const straight = all.map((): number[] => []);
    const perRound = Math.max(1, Math.floor(calls / rounds));
    for (let round = 0; round < rounds; round++) {
      for (const [i, c] of all.entries()) {
        through[i]!.push(...(await latencies(c.what, c.service, c.serviceOk, perRound)));
        straight[i]!.push(...(await latencies(c.what, c.direct, c.directOk, perRound)));
      }
    }
    const rows = all.map((c, i) => {
      const added = quantile(through[i]!, 0.5) - quantile(straight[i]!, 0.5);
      return [
        c.what,
        fixed(quantile(through[i]!, 0.5)),
        fixed(quantile(through[i]!, 0.99)),
        fixed(quantile(straight[i]!, 0.5)),
        fixed(quantile(straight[i]!, 0.99)),
        fixed(added),
        verdict(added <= targets.addedP50Ms),
      ];
    });
    return [
      {
        title: "Endpoint protocols through a hosted agent: added latency",
        table: {
          header: [
            `what (${calls} calls each way)`,
            "service p50 ms",
            "service p99 ms",
            "direct p50 ms",
            "direct p99 ms",
            "added p50 ms",
            `≤ ${targets.addedP50Ms} ms`,
          ],
          rows,
        },
        notes: [
          "Service: HTTPS with the bearer key, kept-alive, one session continued (`agent_session_id` for responses, mcp and activity; one `contextId` for a2a). Direct: the session's agent socket as root, the container headers, the body the service sends (`/responses` for responses, mcp and a2a; `/activity/messages` for activity).",
          "Fixtures echo-python (responses, mcp, a2a) and activity-python, each in its bwrap sandbox. Rounds alternate (service, direct) and each round goes through all four protocols, ×10.",
        ],
      },
    ];
  } finally {
    agent.destroy();
    unix.destroy();
    await server.stop();
    removeDir(server.dataDir);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  for (const section of await protocolsBench()) process.stdout.write(renderSection(section) + "\n");
}
