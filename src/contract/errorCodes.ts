/**
 * Every error code the API can answer with, and its HTTP status. This table is the only
 * place a code meets a status; docs/errors.md lists the same codes (a test keeps them equal).
 */
export const errorCodes = {
  invalid_api_version: { status: 400, summary: "`api-version` is missing or not supported." },
  invalid_json: { status: 400, summary: "The request body is not valid JSON." },
  missing_parameter: {
    status: 400,
    summary: "A required field, query parameter or header is absent.",
  },
  invalid_parameter: {
    status: 400,
    summary: "A field has the wrong type, length, range or format.",
  },
  invalid_user_identity: {
    status: 400,
    summary: "`x-ms-user-identity` is not 1-256 of `[A-Za-z0-9._:-@]`.",
  },
  unauthorized: { status: 401, summary: "No API key, or the key is unknown or revoked." },
  forbidden: { status: 403, summary: "The key may not act on this project or route." },
  user_identity_not_allowed: {
    status: 403,
    summary: "The key sent `x-ms-user-identity` but is not allowed to act for end users.",
  },
  preview_feature_required: {
    status: 403,
    summary: "Strict mode: the request uses a preview feature not named in `Foundry-Features`.",
  },
  session_not_accessible: {
    status: 403,
    summary: "The session belongs to another identity.",
  },
  not_found: { status: 404, summary: "The project, agent, version or route does not exist." },
  agent_has_live_sessions: {
    status: 409,
    summary: "The agent or version has live sessions; repeat with `force=true` to stop them.",
  },
  version_in_use: {
    status: 409,
    summary:
      "The version is named by the agent's traffic rules; change `agent_endpoint` first, or delete with `force=true`.",
  },
  last_published_version: {
    status: 409,
    summary: "Deleting this version would leave the agent with drafts only; delete the agent.",
  },
  conflict: {
    status: 409,
    summary: "The request conflicts with the current state (e.g. a duplicate).",
  },
  session_exists: {
    status: 409,
    summary: "The agent already has a session with this `agent_session_id`.",
  },
  directory_not_empty: {
    status: 409,
    summary: "The directory is not empty; repeat with `recursive=true`.",
  },
  agent_disabled: {
    status: 409,
    summary: "The agent is disabled: it takes no new sessions until it is enabled.",
  },
  version_not_ready: {
    status: 409,
    summary: "The version is still building or failed to build; see its `status_reason`.",
  },
  agent_not_hosted: {
    status: 400,
    summary: "Sessions are for hosted agents; this agent (or version) is of another kind.",
  },
  protocol_not_enabled: {
    status: 404,
    summary:
      "The agent's endpoint does not list this protocol in `agent_endpoint.protocol_configuration`.",
  },
  session_not_running: {
    status: 409,
    summary:
      "The session has no running sandbox (idle, stopped, starting or ended); use it to start it first.",
  },
  exec_unavailable: {
    status: 409,
    summary: "The session's sandbox cannot run commands now (its exec helper is gone).",
  },
  too_many_execs: {
    status: 429,
    summary: "The session already runs as many `:exec` commands at once as the service allows.",
  },
  session_not_ready: {
    status: 424,
    summary: "The session's agent did not start; its log stream and `termination_message` say why.",
  },
  too_many_sessions: {
    status: 429,
    summary: "The identity or the agent has as many running sessions as the service allows.",
  },
  budget_exceeded: {
    status: 429,
    summary: "The session (or conversation) has used its token or wall-clock budget.",
  },
  unsupported_tool: {
    status: 400,
    summary: "A tool of this type cannot be run by this service (it stays storable in a version).",
  },
  upstream_error: {
    status: 502,
    summary: "The deployment's model server refused the call or could not be reached.",
  },
  agent_failed: {
    status: 502,
    summary:
      "The agent could not answer: a failed response, no text, an answer too large, or none in time.",
  },
  upstream_timeout: {
    status: 504,
    summary: "The deployment's model server was silent past the deadline.",
  },
  too_many_responses: {
    status: 429,
    summary: "The identity has as many responses running as the service allows.",
  },
  payload_too_large: { status: 413, summary: "The body is larger than the route accepts." },
  project_code_quota_exceeded: {
    status: 413,
    summary: "The upload would take the project's unpacked code past its quota.",
  },
  session_disk_quota_exceeded: {
    status: 413,
    summary: "The upload would take the session's home past its disk quota.",
  },
  unsupported_media_type: { status: 415, summary: "The route does not accept this content type." },
  sandbox_unavailable: {
    status: 501,
    summary: "This host cannot run sandboxes (see the service's start-up output for why).",
  },
  insufficient_storage: {
    status: 507,
    summary: "The data directory's disk is full; reads still work, writes once space is freed.",
  },
  internal_error: { status: 500, summary: "An unexpected failure; the log has the request id." },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof errorCodes;

export function statusOf(code: ErrorCode): number {
  return errorCodes[code].status;
}
