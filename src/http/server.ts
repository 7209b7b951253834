import { randomUUID } from "node:crypto";
import Fastify, { LogController, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { AgentService } from "../domain/agentService.js";
import type { CodeService } from "../domain/codeService.js";
import type { ManifestService } from "../domain/manifestService.js";
import type { KeyService } from "../domain/keyService.js";
import type { Clock, ProjectRepository } from "../domain/ports.js";
import { fileLimit } from "../lib/fileLimit.js";
import { adminAuth, keyAuth, projectAuth } from "./auth.js";
import { consoleHandler } from "./console.js";
import { callerRoutes } from "./routes/callerRoutes.js";
import { connectionLimits, limitedServerFactory, type ConnectionLimits } from "./connections.js";
import { installErrorHandling } from "./errorHandler.js";
import { installJsonParsers } from "./jsonBody.js";
import type { FeatureMode } from "./features.js";
import { adminRoutes } from "./routes/adminRoutes.js";
import { agentRoutes } from "./routes/agentRoutes.js";
import { manifestRoutes } from "./routes/manifestRoutes.js";
import { codeDownloadRoute, codeUploadHandlers } from "./routes/codeRoutes.js";
import { versionRoutes } from "./routes/versionRoutes.js";
import { sessionRoutes } from "./routes/sessionRoutes.js";
import { sessionFileRoutes } from "./routes/sessionFileRoutes.js";
import type { SessionService } from "../sessions/sessionService.js";
import type { ModelGateway } from "../gateway/modelGateway.js";
import { openaiRoutes } from "./routes/openaiRoutes.js";
import type { Meter } from "../gateway/metering.js";
import type { UsageRepository } from "../responses/ports.js";
import type { SessionTokens } from "../gateway/sessionTokens.js";
import { protocolRoutes, requireResponsesProtocol } from "./routes/protocolRoutes.js";
import { a2aRoutes } from "./routes/a2aRoutes.js";
import type { A2aService } from "../protocols/a2a/a2aService.js";
import { responseRoutes } from "./routes/responseRoutes.js";
import { invocationRoutes } from "./routes/invocationRoutes.js";
import type { InvocationService } from "../protocols/invocations/invocationService.js";
import type { ResponseService } from "../responses/responseService.js";
import type { ConversationService } from "../responses/conversationService.js";
import type { DeploymentService } from "../gateway/deploymentService.js";
import { deploymentAdminRoutes, deploymentRoutes } from "./routes/deploymentRoutes.js";
import type { AgentMcpServer } from "../protocols/mcp/agentMcpServer.js";
import type { ActivityService } from "../protocols/activity/activityService.js";
import { mcpRoutes } from "./routes/mcpRoutes.js";
import { activityRoutes } from "./routes/activityRoutes.js";

export interface HttpServices {
  agents: AgentService;
  code: CodeService;
  manifests: ManifestService;
  keys: KeyService;
  projects: ProjectRepository;
  sessions: SessionService;
  gateway: ModelGateway;
  meter: Meter;
  usage: UsageRepository;
  /** Tokens of running sessions' sandboxes (accepted on the data plane, through their relay). */
  sessionTokens?: SessionTokens;
  responses: ResponseService;
  conversations: ConversationService;
  deployments: DeploymentService;
  /** Each agent's MCP server (`…/endpoint/protocols/mcp`). */
  agentMcp: AgentMcpServer;
  /** The `activity` protocol (`…/endpoint/protocols/activity/messages`). */
  activities: ActivityService;
  a2a: A2aService;
  /** Hosted agents' `invocations` and `invocations_ws` protocols. */
  invocations: InvocationService;
  clock: Clock;
}

export interface HttpOptions {
  https?: { cert: string; key: string };
  /** Timeouts and connection caps (default: sized by the process's open-file limit). */
  connections?: ConnectionLimits;
  foundryFeatures: FeatureMode;
  maxJsonBytes: number;
  /** Silence on a log stream is broken by a status line this often (default 60 s). */
  logKeepAliveMs?: number;
  log: Logger;
  /** The built web console (`web/dist`); a hint to build it is served when it is missing. */
  consoleDir?: string;
}

/** The HTTP transport: routes under /api/projects/{project} and /admin, one error boundary. */
export function buildServer(services: HttpServices, options: HttpOptions): FastifyInstance {
  const limits = options.connections ?? connectionLimits(fileLimit().soft);
  const app = Fastify({
    serverFactory: limitedServerFactory(options.https, limits),
    loggerInstance: options.log,
    // One access-log line per request (onResponse below) instead of two.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.maxJsonBytes,
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    forceCloseConnections: "idle",
  }) as unknown as FastifyInstance;

  installJsonParsers(app);

  // Callback-style hooks: they run on every request, and a promise less each is measurable.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    const clientId = request.headers["x-ms-client-request-id"];
    if (typeof clientId === "string") reply.header("x-ms-client-request-id", clientId);
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    const { method, url } = request;
    request.log.info(
      { method, url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
      "request",
    );
    done();
  });

  const webConsole = consoleHandler(options.consoleDir);
  installErrorHandling(app, webConsole.fallback);

  app.register(
    async (project) => {
      project.addHook("onRequest", projectAuth(services.keys));
      const uploads = codeUploadHandlers(services.code, options.foundryFeatures);
      agentRoutes(project, services.agents, uploads, options.foundryFeatures);
      versionRoutes(project, services.agents, uploads, options.foundryFeatures, {
        keepAliveMs: options.logKeepAliveMs ?? 60_000,
      });
      codeDownloadRoute(project, services.code);
      manifestRoutes(project, services.manifests, services.agents);
      sessionRoutes(project, services.sessions);
      project.register(
        async (agentOpenai) => {
          agentOpenai.addHook("onRequest", requireResponsesProtocol(services.agents));
          responseRoutes(agentOpenai, services.responses, services.conversations);
        },
        { prefix: "/agents/:name/endpoint/protocols/openai" },
      );
      a2aRoutes(project, services.agents, services.a2a);
      invocationRoutes(project, services.agents, services.invocations);
      protocolRoutes(project, services.agents);
      mcpRoutes(project, services.agents, services.agentMcp);
      activityRoutes(project, services.agents, services.activities);
      deploymentRoutes(project, services.deployments);
      sessionFileRoutes(project, services.sessions, {
        keepAliveMs: options.logKeepAliveMs ?? 60_000,
      });
    },
    { prefix: "/api/projects/:project" },
  );

  // The OpenAI-compatible data plane (`project.getOpenAIClient()`, a stock `openai` client);
  // also what a hosted agent reaches through its sandbox's relay, with its session's token.
  app.register(
    async (openai) => {
      openai.addHook(
        "onRequest",
        projectAuth(services.keys, { apiVersion: "none", sessionTokens: services.sessionTokens }),
      );
      openaiRoutes(openai, services.gateway, services.meter);
      responseRoutes(openai, services.responses, services.conversations);
    },
    { prefix: "/api/projects/:project/openai/v1" },
  );

  app.register(
    async (admin) => {
      admin.addHook("onRequest", adminAuth(services.keys));
      adminRoutes(admin, services.keys, services.projects, services.usage, services.clock);
      deploymentAdminRoutes(admin, services.deployments);
    },
    { prefix: "/admin" },
  );

  app.register(async (self) => {
    self.addHook("onRequest", keyAuth(services.keys));
    callerRoutes(self);
  });

  webConsole.routes(app);

  return app;
}
