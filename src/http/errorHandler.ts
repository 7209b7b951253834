import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { errorCodes, type ErrorCode } from "../contract/errorCodes.js";
import { AppError, diskFull, isDiskFull } from "../domain/errors.js";
import { lingerAfterAnswer } from "./connections.js";

/**
 * The one error boundary. Every failure leaves as the contract's envelope
 * `{"error":{code,message,param,type,details,additionalInfo}}`; anything unexpected is logged
 * with the request id and becomes a generic 500.
 */
export function installErrorHandling(
  app: FastifyInstance,
  /** Answers an unknown path first when it returns true (the web console's page). */
  fallback?: (request: FastifyRequest, reply: FastifyReply) => boolean,
): void {
  app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
    const known = err instanceof AppError ? err : fromFramework(err as FastifyError);
    if (known) return sendError(reply, request, known);
    // A full disk (files or SQLite) is the one system failure a caller can act on.
    if (isDiskFull(err)) {
      request.log.warn({ err }, "disk full");
      return sendError(reply, request, diskFull());
    }
    request.log.error({ err }, "unhandled error");
    return sendError(reply, request, new AppError("internal_error", "An internal error occurred."));
  });
  app.setNotFoundHandler((request, reply) =>
    fallback?.(request, reply)
      ? reply
      : sendError(
          reply,
          request,
          new AppError("not_found", `No route for ${request.method} ${request.url.split("?")[0]}.`),
        ),
  );
}

export function sendError(reply: FastifyReply, request: FastifyRequest, err: AppError) {
  const status = errorCodes[err.code].status;
  // A body left unread (a failed upload) leaves the connection unfit for another request.
  if (!request.raw.complete) {
    reply.header("connection", "close");
    lingerAfterAnswer(request.raw);
  }
  // The `openai` client retries 409 and 429 unless told not to: these stay as they are.
  if (status === 409 || err.code === "budget_exceeded") reply.header("x-should-retry", "false");
  return reply
    .code(status)
    .type("application/json")
    .send({
      error: {
        code: err.code,
        message: err.message,
        param: err.param ?? null,
        type: errorType(status),
        details: [],
        additionalInfo: { request_id: request.id },
      },
    });
}

/** Foundry's own 403s (preview_feature_required) are typed invalid_request_error too. */
function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** Fastify's own 4xx errors (body parsing, limits) in our vocabulary. */
function fromFramework(err: FastifyError): AppError | undefined {
  const byCode: Record<string, [ErrorCode, string]> = {
    FST_ERR_CTP_BODY_TOO_LARGE: ["payload_too_large", "The request body is too large."],
    FST_ERR_CTP_INVALID_MEDIA_TYPE: ["unsupported_media_type", "Unsupported content type."],
    FST_ERR_CTP_INVALID_CONTENT_LENGTH: [
      "invalid_parameter",
      "Content-Length does not match the body.",
    ],
    FST_ERR_CTP_EMPTY_JSON_BODY: ["invalid_json", "The JSON body is empty."],
  };
  const mapped = err.code ? byCode[err.code] : undefined;
  if (mapped)
    return new AppError(
      mapped[0],
      mapped[1],
      mapped[0] === "unsupported_media_type" ? "content-type" : undefined,
    );
  // A body that did not parse (Fastify marks its parser's SyntaxError 400); any other
  // SyntaxError is the service's own fault, not the caller's JSON.
  const unparsed = err instanceof SyntaxError && err.statusCode === 400;
  if (unparsed || err.code === "FST_ERR_CTP_INVALID_JSON_BODY") {
    return new AppError("invalid_json", `The request body is not valid JSON: ${err.message}`);
  }
  const status = err.statusCode ?? 500;
  if (status === 413) return new AppError("payload_too_large", err.message);
  if (status >= 400 && status < 500) return new AppError("invalid_parameter", err.message);
  return undefined;
}
