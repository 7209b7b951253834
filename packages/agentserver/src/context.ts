import type { IncomingHttpHeaders } from "node:http";

/** What the platform tells the container through its environment (absent ones are undefined). */
export interface AgentEnvironment {
  /** `PORT`: where the container listens (8088 when unset). */
  port: number;
  /** `FOUNDRY_AGENT_NAME`. */
  agentName: string | undefined;
  /** `FOUNDRY_AGENT_VERSION`. */
  agentVersion: string | undefined;
  /** `FOUNDRY_AGENT_ID` (set by Foundry's .NET host; not by agenthost). */
  agentId: string | undefined;
  /** `FOUNDRY_AGENT_SESSION_ID`: the session this process serves. */
  sessionId: string | undefined;
  /** `FOUNDRY_PROJECT_ENDPOINT`. */
  projectEndpoint: string | undefined;
  /** `FOUNDRY_PROJECT_ARM_ID`. */
  projectArmId: string | undefined;
  /** `FOUNDRY_HOSTING_ENVIRONMENT`. */
  hostingEnvironment: string | undefined;
  /** `FOUNDRY_AGENT_INSTANCE_CLIENT_ID`, `FOUNDRY_AGENT_BLUEPRINT_CLIENT_ID`, `FOUNDRY_AGENT_TENANT_ID`. */
  instanceClientId: string | undefined;
  blueprintClientId: string | undefined;
  tenantId: string | undefined;
  /** `APPLICATIONINSIGHTS_CONNECTION_STRING`. */
  applicationInsightsConnectionString: string | undefined;
  /** `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  otlpEndpoint: string | undefined;
  /** `OPENAI_BASE_URL` and `OPENAI_API_KEY` (agenthost's way to the project's models). */
  openaiBaseUrl: string | undefined;
  openaiApiKey: string | undefined;
}

const nonEmpty = (v: string | undefined) => (v ? v : undefined);

/** The contract's environment variables, read from `env` (default `process.env`). */
export function agentEnvironment(env: NodeJS.ProcessEnv = process.env): AgentEnvironment {
  const port = Number(env.PORT);
  return {
    port: Number.isInteger(port) && port > 0 && port < 65536 ? port : 8088,
    agentName: nonEmpty(env.FOUNDRY_AGENT_NAME),
    agentVersion: nonEmpty(env.FOUNDRY_AGENT_VERSION),
    agentId: nonEmpty(env.FOUNDRY_AGENT_ID),
    sessionId: nonEmpty(env.FOUNDRY_AGENT_SESSION_ID),
    projectEndpoint: nonEmpty(env.FOUNDRY_PROJECT_ENDPOINT),
    projectArmId: nonEmpty(env.FOUNDRY_PROJECT_ARM_ID),
    hostingEnvironment: nonEmpty(env.FOUNDRY_HOSTING_ENVIRONMENT),
    instanceClientId: nonEmpty(env.FOUNDRY_AGENT_INSTANCE_CLIENT_ID),
    blueprintClientId: nonEmpty(env.FOUNDRY_AGENT_BLUEPRINT_CLIENT_ID),
    tenantId: nonEmpty(env.FOUNDRY_AGENT_TENANT_ID),
    applicationInsightsConnectionString: nonEmpty(env.APPLICATIONINSIGHTS_CONNECTION_STRING),
    otlpEndpoint: nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT),
    openaiBaseUrl: nonEmpty(env.OPENAI_BASE_URL),
    openaiApiKey: nonEmpty(env.OPENAI_API_KEY),
  };
}

/** What every handler gets besides its request: who asks, in which session, and controls. */
export interface Context {
  /** `x-agent-session-id` of the request, else `FOUNDRY_AGENT_SESSION_ID`, else "". */
  sessionId: string;
  /** `x-agent-user-id`: who asks ("" when absent). */
  userId: string;
  /** `x-agent-foundry-call-id`: this call's id ("" when absent). */
  callId: string;
  /** `x-request-id` (Foundry's .NET host sets it), when present. */
  requestId: string | undefined;
  /** The caller's `x-client-*` headers, by their full lower-case name. */
  clientHeaders: Record<string, string>;
  /** Every request header, lower-case names. */
  headers: IncomingHttpHeaders;
  /** The environment the platform set (read once at `serve`). */
  env: AgentEnvironment;
  /**
   * Aborted when the work should stop: the caller cancelled it (`…/cancel`, `DELETE`), went
   * away (a request that is not a background one), or the drain deadline passed at shutdown.
   */
  signal: AbortSignal;
  /** Adds a header to the answer (before its first byte; the service passes on `x-agent-*`). */
  setHeader(name: string, value: string): void;
}

/** The first value of a header as a string ("" when absent). */
export function header(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? "";
}

/** The parts of the context that come from the request's headers. */
export function fromHeaders(headers: IncomingHttpHeaders, env: AgentEnvironment) {
  const clientHeaders: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers))
    if (name.startsWith("x-client-") && value !== undefined)
      clientHeaders[name] = Array.isArray(value) ? value.join(", ") : value;
  return {
    sessionId: header(headers, "x-agent-session-id") || env.sessionId || "",
    userId: header(headers, "x-agent-user-id"),
    callId: header(headers, "x-agent-foundry-call-id"),
    requestId: header(headers, "x-request-id") || undefined,
    clientHeaders,
    headers,
    env,
  };
}
