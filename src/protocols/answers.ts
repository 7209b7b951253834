import { Readable } from "node:stream";
import { parseSseStream } from "@a2a-js/sdk";
import type { JsonObject } from "../domain/model.js";
import { isObject } from "../lib/isObject.js";
import type { Created } from "../responses/responseService.js";

/*
 * A response as a sequence of Responses events, whoever computed it: the service's own run
 * (already events), or a hosted agent's answer (one JSON response, or its server-sent events),
 * read within limits — the agent's bytes are not trusted. Every endpoint protocol that asks
 * an agent (a2a, mcp, activity) reads its answer here.
 */

/** Largest hosted answer (a JSON body, or one event of a stream) that is read. */
export const maxAnswerBytes = 4 * 1024 * 1024;
/** Largest error body of a hosted agent that is read for its message. */
const maxErrorBytes = 16 * 1024;

export class AnswerFailure extends Error {}

/** `limit`: the largest JSON answer, or one event of a stream, that is read. */
export async function* eventsOf(
  created: Created,
  limit = maxAnswerBytes,
): AsyncGenerator<JsonObject> {
  if (created.kind === "stream") {
    yield* created.events;
    return;
  }
  if (created.kind === "response") {
    yield final(created.response);
    return;
  }
  const { answer, body } = created;
  if (answer.status < 200 || answer.status >= 300) {
    const text = await readUpTo(body, maxErrorBytes, false);
    throw new AnswerFailure(
      `The agent answered with status ${answer.status}${messageOf(text) ? `: ${messageOf(text)}` : "."}`,
    );
  }
  if (answer.contentType?.startsWith("text/event-stream")) {
    const response = new Response(Readable.toWeb(body) as ReadableStream);
    for await (const event of parseSseStream(response, limit)) {
      const parsed = parseObject(event.data);
      if (parsed) yield parsed;
    }
    return;
  }
  const parsed = parseObject(await readUpTo(body, limit, true));
  if (!parsed) throw new AnswerFailure("The agent's answer is not a JSON response object.");
  yield final(parsed);
}

const final = (response: JsonObject): JsonObject => ({
  type:
    response.status === "completed" || response.status === undefined
      ? "response.completed"
      : "response.failed",
  response,
});

/** The text of a response's `output_text` parts, in order, joined as they are (no separator). */
export function outputText(response: JsonObject | undefined): string {
  const output = Array.isArray(response?.output) ? response.output : [];
  const texts: string[] = [];
  for (const item of output) {
    if (!isObject(item) || item.type !== "message" || !Array.isArray(item.content)) continue;
    for (const part of item.content)
      if (isObject(part) && part.type === "output_text" && typeof part.text === "string")
        texts.push(part.text);
  }
  return texts.join("");
}

/** A failed response's or error event's message. */
export function failureOf(event: JsonObject): string {
  const response = event.response as JsonObject | undefined;
  const error = (response?.error ?? event.error ?? event) as JsonObject;
  return typeof error?.message === "string" ? error.message.slice(0, 2048) : "The response failed.";
}

async function readUpTo(body: Readable, max: number, strict: boolean): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      body.destroy();
      if (strict) throw new AnswerFailure(`The agent's answer is larger than ${max} bytes.`);
      break;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function parseObject(text: string): JsonObject | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return isObject(v) ? (v as JsonObject) : undefined;
  } catch {
    return undefined;
  }
}

export function messageOf(text: string): string | undefined {
  const parsed = parseObject(text);
  const error = parsed?.error as JsonObject | undefined;
  const message = error?.message ?? parsed?.message;
  return typeof message === "string" ? message.slice(0, 2048) : undefined;
}
