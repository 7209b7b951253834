import type { FastifyRequest } from "fastify";
import { AppError } from "../domain/errors.js";
import type { Caller, KeyService } from "../domain/keyService.js";
import { relayedFrom } from "../gateway/sandboxRelay.js";
import { sessionCaller, type SessionTokens } from "../gateway/sessionTokens.js";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the auth hook on every authenticated route. */
    caller: Caller;
  }
}

/** The API versions accepted in `api-version` (the preview strings are aliases of v1). */
export const apiVersions = new Set(["v1", "2025-11-15-preview", "2025-05-15-preview"]);

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Authenticates the key, then checks it may act on `{project}`, then `api-version` (which the
 * OpenAI-compatible data plane, `/openai/v1`, does without, as the `openai` client sends none).
 * A request through a sandbox's relay is authenticated only where `sessionTokens` are given
 * (the data plane), and only by that sandbox's own session token; elsewhere it is refused.
 */
export function projectAuth(
  keys: KeyService,
  options: { apiVersion: "required" | "none"; sessionTokens?: SessionTokens } = {
    apiVersion: "required",
  },
) {
  return async (request: FastifyRequest) => {
    const sandbox = relayedFrom(request.raw);
    request.caller =
      sandbox === undefined
        ? await keys.authenticate(bearer(request), header(request, "x-ms-user-identity"))
        : relayedCaller(request, sandbox, options.sessionTokens);
    await keys.authorize(request.caller, projectOf(request));
    if (options.apiVersion === "none") return;
    const version = (request.query as Record<string, unknown>)["api-version"];
    if (typeof version !== "string" || !apiVersions.has(version)) {
      throw new AppError(
        "invalid_api_version",
        version === undefined
          ? "The api-version query parameter is required; use api-version=v1."
          : `Unsupported api-version '${String(version)}'; use api-version=v1.`,
        "api-version",
      );
    }
  };
}

/**
 * The caller of a request from a sandbox: its session, by the token the sandbox was given.
 * Nothing else is accepted there — no API key, no other sandbox's token, no end user.
 */
function relayedCaller(
  request: FastifyRequest,
  sandbox: string,
  tokens: SessionTokens | undefined,
): Caller {
  const grant = tokens?.find(bearer(request), sandbox);
  if (!grant)
    throw new AppError(
      "unauthorized",
      tokens
        ? "A sandbox authenticates with its session's token: send 'Authorization: Bearer $OPENAI_API_KEY'."
        : "From a sandbox only the OpenAI data plane (/openai/v1) can be used.",
    );
  if (header(request, "x-ms-user-identity") !== undefined)
    throw new AppError(
      "user_identity_not_allowed",
      "A session's token acts for the session's owner; x-ms-user-identity is refused.",
      "x-ms-user-identity",
    );
  return sessionCaller(grant);
}

/** Admin routes: only admin keys, never from a sandbox. */
export function adminAuth(keys: KeyService) {
  return async (request: FastifyRequest) => {
    if (relayedFrom(request.raw) !== undefined)
      throw new AppError("unauthorized", "From a sandbox only the OpenAI data plane can be used.");
    request.caller = await keys.authenticate(bearer(request), undefined);
    if (!request.caller.key.admin)
      throw new AppError("forbidden", "This route needs an admin key.");
  };
}

/** Routes any key may call about itself (`GET /caller`): authenticated, never from a sandbox. */
export function keyAuth(keys: KeyService) {
  return async (request: FastifyRequest) => {
    if (relayedFrom(request.raw) !== undefined)
      throw new AppError("unauthorized", "From a sandbox only the OpenAI data plane can be used.");
    request.caller = await keys.authenticate(bearer(request), undefined);
  };
}

/** `_project` is the conventional name of the default project. */
export function projectOf(request: FastifyRequest): string {
  const { project } = request.params as { project: string };
  return project === "_project" ? "default" : project;
}
