import type { FastifyInstance, FastifyReply } from "fastify";
import { deleteFileQuery, filePathQuery, listFilesQuery } from "../../contract/requests.js";
import { AppError } from "../../domain/errors.js";
import { splitHomePath, type DirectoryEntry } from "../../sessions/sessionFiles.js";
import type { LogLine, SessionLog } from "../../sessions/sessionLog.js";
import type { SessionService } from "../../sessions/sessionService.js";
import { projectOf } from "../auth.js";
import { drain } from "../codeUpload.js";
import { parse } from "../validate.js";
import { splitVerb } from "./agentRoutes.js";

type SessionParams = { project: string; name: string; id: string };
type LogParams = SessionParams & { version: string };

/** Session files are at most 50 MiB (contract §3.6). */
export const maxSessionFileBytes = 50 * 1024 * 1024;
/** Lines a slow log subscriber may fall behind before lines are dropped for it. */
const subscriberQueue = 1000;

const shown = (parts: string[]) => parts.join("/") || ".";

/** Session files (contract §3.6) and the console-log stream (§3.7, §6). */
export function sessionFileRoutes(
  app: FastifyInstance,
  sessions: SessionService,
  options: { keepAliveMs: number },
) {
  const base = "/agents/:name/endpoint/sessions/:id/files";

  app.put<{ Params: SessionParams }>(`${base}/content`, async (request, reply) => {
    try {
      const parts = splitHomePath(parse(filePathQuery, request.query).path);
      const declared = request.headers["content-length"];
      const length = declared === undefined ? undefined : Number(declared);
      if (length !== undefined && length > maxSessionFileBytes)
        throw new AppError(
          "payload_too_large",
          `Session files are at most ${maxSessionFileBytes} bytes.`,
        );
      const home = await sessions.home(
        request.caller,
        projectOf(request),
        request.params.name,
        request.params.id,
      );
      const left = await sessions.quotaLeft(home, length);
      const limit = Math.min(maxSessionFileBytes, left);
      const written = await home.write(parts, request.raw, limit, () =>
        limit < maxSessionFileBytes
          ? sessions.quotaError()
          : new AppError(
              "payload_too_large",
              `Session files are at most ${maxSessionFileBytes} bytes.`,
            ),
      );
      return reply.code(201).send({ path: shown(parts), bytes_written: written });
    } catch (err) {
      await drain(request.raw);
      throw err;
    }
  });

  app.get<{ Params: SessionParams }>(`${base}/content`, async (request, reply) => {
    const parts = splitHomePath(parse(filePathQuery, request.query).path);
    const home = await sessions.home(
      request.caller,
      projectOf(request),
      request.params.name,
      request.params.id,
    );
    const { stream, size } = await home.read(parts);
    return reply
      .header("content-type", "application/octet-stream")
      .header("content-length", size)
      .send(stream);
  });

  app.get<{ Params: SessionParams }>(base, async (request) => {
    const q = parse(listFilesQuery, request.query);
    const parts = splitHomePath(q.path);
    const home = await sessions.home(
      request.caller,
      projectOf(request),
      request.params.name,
      request.params.id,
    );
    const all = await home.list(parts);
    const page = pageByName(all, q);
    return {
      path: shown(parts),
      entries: page.items.map((e) => ({
        name: e.name,
        size: e.size,
        is_directory: e.isDirectory,
        modified_time: e.modifiedTime,
      })),
      has_more: page.hasMore,
      first_id: page.items[0]?.name ?? null,
      last_id: page.items.at(-1)?.name ?? null,
    };
  });

  app.delete<{ Params: SessionParams }>(base, async (request, reply) => {
    const q = parse(deleteFileQuery, request.query);
    const parts = splitHomePath(q.path);
    const home = await sessions.home(
      request.caller,
      projectOf(request),
      request.params.name,
      request.params.id,
    );
    await home.remove(parts, q.recursive);
    return reply.code(204).send();
  });

  app.get<{ Params: LogParams }>(
    "/agents/:name/versions/:version/sessions/:id",
    async (request, reply) => {
      const { name: id, verb } = splitVerb(request.params.id);
      if (verb !== "logstream")
        throw new AppError("not_found", `Unknown operation ':${verb ?? ""}'.`);
      const log = await sessions.log(
        request.caller,
        projectOf(request),
        request.params.name,
        request.params.version,
        id,
      );
      const lastEventId = request.headers["last-event-id"];
      const after =
        typeof lastEventId === "string" && /^\d+$/.test(lastEventId)
          ? Number(lastEventId)
          : undefined;
      streamLog(reply, log, after, options.keepAliveMs);
      return reply;
    },
  );
}

/** Entries in name order, paged by name (`after`/`before` are names). */
function pageByName(
  entries: DirectoryEntry[],
  q: { limit: number; order: "asc" | "desc"; after?: string; before?: string },
) {
  let list = q.order === "asc" ? entries : [...entries].reverse();
  const beyond = (a: string, b: string) => (q.order === "asc" ? a > b : a < b);
  if (q.after !== undefined) list = list.filter((e) => beyond(e.name, q.after!));
  if (q.before !== undefined) list = list.filter((e) => beyond(q.before!, e.name));
  // Only `before`: the entries nearest to it.
  const items =
    q.before !== undefined && q.after === undefined
      ? list.slice(Math.max(0, list.length - q.limit))
      : list.slice(0, q.limit);
  return { items, hasMore: list.length > q.limit };
}

/**
 * Server-sent events of a session's console: the history (after `Last-Event-ID`, when sent),
 * then every new line. A subscriber that cannot keep up is never waited for: past a bounded
 * queue its lines are dropped and it is told how many. Silence is broken by a status line.
 */
function streamLog(
  reply: FastifyReply,
  log: SessionLog,
  after: number | undefined,
  keepAliveMs: number,
) {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  const frame = (line: Omit<LogLine, "id"> & { id?: number }) =>
    `${line.id !== undefined ? `id: ${line.id}\n` : ""}event: log\ndata: ${JSON.stringify({
      timestamp: line.timestamp,
      stream: line.stream,
      message: line.message,
    })}\n\n`;
  const status = (message: string) =>
    frame({ timestamp: new Date().toISOString(), stream: "status", message });

  const queue: string[] = [];
  let blocked = false;
  let missed = 0;
  let ended = false;
  const keepAlive = setInterval(
    () => send(status(`No logs since last ${Math.round(keepAliveMs / 1000)} seconds`)),
    keepAliveMs,
  );
  const send = (text: string) => {
    if (ended) return;
    if (blocked) {
      if (queue.length < subscriberQueue) queue.push(text);
      else missed++;
      return;
    }
    blocked = !res.write(text);
    keepAlive.refresh();
  };
  res.on("drain", () => {
    blocked = false;
    while (!blocked && queue.length > 0) blocked = !res.write(queue.shift()!);
    if (!blocked && missed > 0) {
      blocked = !res.write(status(`${missed} lines were not sent: this client read too slowly`));
      missed = 0;
    }
  });
  const finish = () => {
    if (ended) return;
    ended = true;
    clearInterval(keepAlive);
    subscription.close();
    res.end();
  };
  const subscription = log.subscribe((line) => {
    if (line === null) finish();
    else send(frame(line));
  }, after);
  send(status("Connected to the session's console"));
  for (const line of subscription.history) send(frame(line));
  res.on("close", finish);
}
