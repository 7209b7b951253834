import type { FastifyInstance } from "fastify";
import { activityQuery } from "../../contract/activity.js";
import { parse } from "../../contract/validate.js";
import type { AgentService } from "../../domain/agentService.js";
import { notFound } from "../../domain/errors.js";
import { clientHeadersOf } from "../../forwarder/sessionForwarder.js";
import type { ActivityService } from "../../protocols/activity/activityService.js";
import { projectOf } from "../auth.js";
import { protocolGate } from "./protocolGate.js";
import { sendHosted } from "./responseRoutes.js";

const base = "/agents/:name/endpoint/protocols/activity";

/**
 * An agent's `activity` endpoint (Bot Framework activities), for agents that list
 * `activity`: `POST …/activity/messages` answered by the agent (a hosted agent's own answer
 * passed on with the container protocol's headers).
 */
export function activityRoutes(
  app: FastifyInstance,
  agents: AgentService,
  activities: ActivityService,
) {
  const gate = protocolGate(agents, "activity");
  app.post(`${base}/messages`, { onRequest: gate.onRequest }, async (request, reply) => {
    const query = parse(activityQuery, request.query);
    const gone = new AbortController();
    reply.raw.once("close", () => gone.abort());
    const answer = await activities.handle({
      caller: request.caller,
      project: projectOf(request),
      agent: gate.agentOf(request),
      body: request.body,
      sessionId: query.agent_session_id,
      clientHeaders: clientHeadersOf(request.headers),
      signal: gone.signal,
    });
    if (answer.kind === "activity") return answer.activity;
    return sendHosted(reply, answer);
  });
  const none = { onRequest: gate.onRequest };
  const missing = async (request: { method: string; url: string }) => {
    throw notFound(`Route '${request.method} ${request.url.split("?")[0]}'`);
  };
  app.all(base, none, missing);
  app.all(`${base}/*`, none, missing);
}
