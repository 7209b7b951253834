import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { deleteFileQuery, filePathQuery, listFilesQuery } from "../../contract/requests.js";
import { AppError } from "../../domain/errors.js";
import { splitHomePath, type DirectoryEntry } from "../../sessions/sessionFiles.js";
import type { LogHistory, LogLine } from "../../domain/ports.js";
import type { SessionService } from "../../sessions/sessionService.js";
import { projectOf } from "../auth.js";
import { drain } from "../codeUpload.js";
import { parse } from "../../contract/validate.js";
import { splitVerb } from "./agentRoutes.js";

type SessionParams = { project: string; name: string; id: string };
type LogParams = SessionParams & { version: string };

/** Session files are at most 50 MiB (contract §3.6). */
export const maxSessionFileBytes = 50 * 1024 * 1024;

const shown = (parts: string[]) => parts.join("/") || ".";

/** Session files (contract §3.6) and the console-log stream (§3.7, §6). */
export function sessionFileRoutes(
  app: FastifyInstance,
  sessions: SessionService,
  options: { keepAliveMs: number },
) {
  const base = "/agents/:name/endpoint/sessions/:id/files";
  // Log streams never end on their own: at shutdown each gets a last status frame and ends.
  app.addHook("preClose", (done) => {
    for (const end of streamsOf(app.server)) end("The service is shutting down; this stream ends.");
    done();
  });
  const homeOf = (request: FastifyRequest<{ Params: SessionParams }>) =>
    sessions.home(request.caller, projectOf(request), request.params.name, request.params.id);

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
      const home = await homeOf(request);
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
      // Too large: answered at once (the rest is read and dropped meanwhile), so a client
      // streaming without a Content-Length hears it; otherwise answered after the body.
      const code = err instanceof AppError ? err.code : undefined;
      if (code === "payload_too_large" || code === "session_disk_quota_exceeded")
        void drain(request.raw);
      else await drain(request.raw);
      throw await sessions.explainFileError(
        projectOf(request),
        request.params.name,
        request.params.id,
        err,
      );
    }
  });

  app.get<{ Params: SessionParams }>(`${base}/content`, async (request, reply) => {
    const parts = splitHomePath(parse(filePathQuery, request.query).path);
    const home = await homeOf(request);
    const { stream, size } = await home.read(parts);
    return reply
      .header("content-type", "application/octet-stream")
      .header("content-length", size)
      .send(stream);
  });

  app.get<{ Params: SessionParams }>(base, async (request) => {
    const q = parse(listFilesQuery, request.query);
    const parts = splitHomePath(q.path);
    const home = await homeOf(request);
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
    const home = await homeOf(request);
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
      streamLog(reply, log, lastEventId(request), options.keepAliveMs);
      return reply;
    },
  );
}

/** The id of the last line a resuming client saw (`Last-Event-ID`), when it sent one. */
export function lastEventId(request: FastifyRequest): number | undefined {
  const header = request.headers["last-event-id"];
  return typeof header === "string" && /^\d+$/.test(header) ? Number(header) : undefined;
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

function frameOf(line: Omit<LogLine, "id"> & { id?: number }): string {
  const data = JSON.stringify({
    timestamp: line.timestamp,
    stream: line.stream,
    message: line.message,
  });
  return `${line.id !== undefined ? `id: ${line.id}\n` : ""}event: log\ndata: ${data}\n\n`;
}

/** A history line's frame, built once however many clients it goes to. */
const frames = new WeakMap<LogLine, string>();
function sharedFrame(line: LogLine): string {
  let text = frames.get(line);
  if (text === undefined) {
    text = frameOf(line);
    frames.set(line, text);
  }
  return text;
}

/** The log streams open on one HTTP server (session consoles and builds alike). */
const openStreams = new WeakMap<object, Set<(message: string) => void>>();
function streamsOf(server: object): Set<(message: string) => void> {
  let open = openStreams.get(server);
  if (!open) {
    open = new Set();
    openStreams.set(server, open);
  }
  return open;
}

/**
 * Server-sent events of a log (a session's console, a version's build): the history (after
 * `Last-Event-ID`, when sent), then every new line. Every subscriber reads from the log's one
 * shared history with its own cursor, so none is ever waited for and none holds a copy: a
 * subscriber that falls behind the history is told how many lines it missed. Silence is
 * broken by a status line. When `ended` settles, what is left of the history is sent, then
 * its message as the last status line, and the stream closes; `onClose` runs once at the end.
 */
export function streamLog(
  reply: FastifyReply,
  log: LogHistory,
  after: number | undefined,
  keepAliveMs: number,
  options: { connected?: string; ended?: Promise<string>; onClose?: () => void } = {},
) {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  const status = (message: string) =>
    frameOf({ timestamp: new Date().toISOString(), stream: "status", message });

  /** Id of the last line sent. */
  let cursor = after ?? log.firstId - 1;
  let blocked = false;
  let ended = false;
  /** The last status line, once the log has ended: sent when the history is. */
  let last: string | undefined;
  const write = (text: string) => {
    blocked = !res.write(text);
    keepAlive.refresh();
  };
  /** Sends what the client has not seen yet, while its connection takes more. */
  const pump = () => {
    while (!blocked && !ended) {
      if (cursor + 1 < log.firstId) {
        const missed = log.firstId - cursor - 1;
        cursor = log.firstId - 1;
        write(
          status(`${missed} lines were not sent: this client read too slowly or resumed too late`),
        );
        continue;
      }
      const lines = log.since(cursor, 256);
      if (lines.length === 0) {
        if (last !== undefined) {
          write(status(last));
          finish();
        }
        return;
      }
      cursor = lines.at(-1)!.id;
      write(lines.map(sharedFrame).join(""));
    }
  };
  const keepAlive = setInterval(() => {
    if (!blocked) write(status(`No logs since last ${Math.round(keepAliveMs / 1000)} seconds`));
  }, keepAliveMs);
  const finish = () => {
    if (ended) return;
    ended = true;
    open.delete(endWith);
    clearInterval(keepAlive);
    unsubscribe();
    res.end();
    options.onClose?.();
  };
  /** Sends what is due, then `message` as the last frame, and ends. */
  const endWith = (message: string) => {
    pump();
    if (!ended) res.write(status(message));
    finish();
  };
  const open = streamsOf(reply.server.server);
  open.add(endWith);
  // Lines arriving together are sent together: one write per burst, not per line.
  let scheduled = false;
  const unsubscribe = log.subscribe((line) => {
    if (line === null) {
      pump();
      finish();
    } else if (!scheduled) {
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        pump();
      });
    }
  });
  res.on("drain", () => {
    blocked = false;
    pump();
  });
  res.on("close", finish);
  write(status(options.connected ?? "Connected to the session's console"));
  pump();
  void options.ended?.then((message) => {
    last = message;
    pump();
  });
}
