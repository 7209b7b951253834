import type { FastifyInstance, FastifyRequest } from "fastify";
import { AppError } from "../domain/errors.js";

/** Deeper JSON than any Foundry shape needs; refusing it keeps recursion out of danger. */
export const maxJsonDepth = 64;

/** POST verbs that take no body (`/agents/{name}:disable`, `…/sessions/{id}:stop`). */
const bodylessVerb = /:(enable|disable|stop)$/;

/**
 * True for operations that take no body: every DELETE and the body-less POST verbs. Clients
 * (and proxies) may still send `content-type: application/json` with an empty body there.
 */
export function takesNoBody(request: { method: string; url: string }): boolean {
  if (request.method === "DELETE") return true;
  const path = request.url.split("?", 1)[0]!;
  return request.method === "POST" && bodylessVerb.test(path);
}

/**
 * JSON bodies (application/json and application/merge-patch+json): Fastify's parser (which
 * refuses `__proto__` and `constructor.prototype`) plus a nesting limit. An empty body is no
 * body for an operation that takes none, and 400 `invalid_json` for one that needs one.
 * Other media types are refused with 415 by Fastify, text/plain included.
 */
export function installJsonParsers(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser("error", "error");
  const parseLimited = (
    request: FastifyRequest,
    body: string,
    done: (err: Error | null, value?: unknown) => void,
  ) => {
    if (body.trim() === "" && takesNoBody(request)) return done(null, undefined);
    parse(request, body, (err: Error | null, value?: unknown) => {
      if (err) return done(err);
      if (depthOf(value) > maxJsonDepth) {
        return done(
          new AppError(
            "invalid_json",
            `The JSON body is nested deeper than ${maxJsonDepth} levels.`,
          ),
        );
      }
      done(null, value);
    });
  };
  app.removeContentTypeParser(["application/json", "text/plain"]);
  app.addContentTypeParser(
    ["application/json", "application/merge-patch+json"],
    { parseAs: "string" },
    parseLimited,
  );
  // Code uploads and session files are streamed by their routes, not buffered here.
  app.addContentTypeParser(
    ["multipart/form-data", "application/octet-stream"],
    (_request, _payload, done) => done(null, undefined),
  );
}

/** Nesting depth of a parsed JSON value, without recursion. */
export function depthOf(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    deepest = Math.max(deepest, depth);
    if (deepest > maxJsonDepth) return deepest;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return deepest;
}
