import { createParser, type EventSourceMessage } from "eventsource-parser";
/** The console's one way to the API: same origin, `Authorization: Bearer <key>`. */
const keySlot = "agenthost.key";
const projectSlot = "agenthost.project";

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    /** The request field the API named (`param` of its error), when it named one. */
    readonly param?: string,
  ) {
    super(message);
  }
}

/** The API's error envelope (or what a non-JSON answer says) as an ApiError. */
export function errorOf(status: number, statusText: string, text: string): ApiError {
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  const error = (
    body as { error?: { code?: string; message?: string; param?: string } } | undefined
  )?.error;
  return new ApiError(
    error?.code ?? `http_${status}`,
    error?.message ?? (text.slice(0, 200) || statusText),
    status,
    error?.param ?? undefined,
  );
}

export interface Session {
  key: string;
  project: string;
  admin: boolean;
}

export function loadSession(): Session | undefined {
  const key = sessionStorage.getItem(keySlot);
  const stored = sessionStorage.getItem(projectSlot);
  if (!key || !stored) return undefined;
  const { project, admin } = JSON.parse(stored) as { project: string; admin: boolean };
  return { key, project, admin };
}

export function saveSession(session: Session) {
  sessionStorage.setItem(keySlot, session.key);
  sessionStorage.setItem(
    projectSlot,
    JSON.stringify({ project: session.project, admin: session.admin }),
  );
}

export function clearSession() {
  sessionStorage.removeItem(keySlot);
  sessionStorage.removeItem(projectSlot);
}

export async function call<T>(
  key: string,
  path: string,
  init: { method?: string; body?: unknown; contentType?: string } = {},
): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      method: init.method ?? "GET",
      headers: {
        authorization: `Bearer ${key}`,
        accept: "application/json",
        ...(init.body !== undefined
          ? { "content-type": init.contentType ?? "application/json" }
          : {}),
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  } catch (err) {
    throw new ApiError("network_error", `The service could not be reached: ${String(err)}`, 0);
  }
  const text = await response.text();
  if (!response.ok) throw errorOf(response.status, response.statusText, text);
  try {
    return (text ? JSON.parse(text) : undefined) as T;
  } catch {
    throw new ApiError(
      "invalid_response",
      `The service answered with no JSON: ${text.slice(0, 200)}`,
      response.status,
    );
  }
}

/**
 * A request with a body through XMLHttpRequest, which (unlike fetch) tells how much of the body
 * has been sent: `onProgress(sent, total)`. Resolves with the answer's JSON (undefined for none).
 */
export function upload<T>(
  key: string,
  path: string,
  body: XMLHttpRequestBodyInit,
  request: { method: "POST" | "PUT"; headers?: Record<string, string> },
  onProgress: (sent: number, total: number) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(request.method, path);
    xhr.setRequestHeader("authorization", `Bearer ${key}`);
    xhr.setRequestHeader("accept", "application/json");
    for (const [name, value] of Object.entries(request.headers ?? {}))
      xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onerror = () =>
      reject(new ApiError("network_error", "The service could not be reached.", 0));
    xhr.onload = () => {
      if (xhr.status < 200 || xhr.status >= 300)
        return reject(errorOf(xhr.status, xhr.statusText, xhr.responseText));
      try {
        resolve((xhr.responseText ? JSON.parse(xhr.responseText) : undefined) as T);
      } catch {
        reject(new ApiError("invalid_response", "The service answered with no JSON.", xhr.status));
      }
    };
    xhr.send(body);
  });
}

/**
 * Feeds a server-sent event body to `onEvent` as it arrives (eventsource-parser), calling
 * `afterRead` after each network read; resolves when the body ends.
 */
export async function readEvents(
  body: ReadableStream<BufferSource>,
  onEvent: (event: EventSourceMessage) => void,
  afterRead: () => void = () => {},
): Promise<void> {
  const parser = createParser({ onEvent });
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    parser.feed(value);
    afterRead();
  }
}

/**
 * Reads a server-sent event stream with the Authorization header (EventSource cannot send
 * one): fetch's body, parsed by eventsource-parser. Resolves when the stream ends.
 */
export async function streamEvents(
  key: string,
  path: string,
  onEvent: (event: { event?: string; data: string; id?: string }) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await fetch(path, {
    headers: { authorization: `Bearer ${key}`, accept: "text/event-stream" },
    signal,
  });
  if (!response.ok || !response.body)
    throw errorOf(response.status, response.statusText, await response.text());
  await readEvents(response.body, onEvent);
}

/** A GET of bytes (e.g. a version's code) as a Blob, or the API's error. */
export async function download(key: string, path: string): Promise<Blob> {
  const response = await fetch(path, { headers: { authorization: `Bearer ${key}` } });
  if (!response.ok) throw errorOf(response.status, response.statusText, await response.text());
  return response.blob();
}

export const projectPath = (project: string, rest: string, query: Record<string, string> = {}) =>
  `/api/projects/${encodeURIComponent(project)}${rest}?${new URLSearchParams({ "api-version": "v1", ...query })}`;

/**
 * A POST whose answer may be server-sent events (a streamed response): each event's JSON goes
 * to `onEvent` as it arrives; an answer of plain JSON (a hosted agent that does not stream)
 * goes to `onJson`. Resolves with the answer's headers once the body has ended.
 */
export async function streamCall(
  key: string,
  path: string,
  body: unknown,
  handlers: { onEvent: (data: unknown) => void; onJson: (data: unknown) => void },
  signal?: AbortSignal,
): Promise<Headers> {
  let response: Response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: {
        authorization: `Bearer ${key}`,
        accept: "text/event-stream, application/json",
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    throw new ApiError("network_error", `The service could not be reached: ${String(err)}`, 0);
  }
  const type = response.headers.get("content-type") ?? "";
  if (!response.ok || !type.startsWith("text/event-stream") || !response.body) {
    const text = await response.text();
    if (!response.ok) throw errorOf(response.status, response.statusText, text);
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    handlers.onJson(parsed ?? { output_text: text });
    return response.headers;
  }
  await readEvents(response.body, (event) => {
    if (event.data === "[DONE]") return;
    try {
      handlers.onEvent(JSON.parse(event.data));
    } catch {
      // Not JSON: nothing a response stream sends; ignored.
    }
  });
  return response.headers;
}

export const openaiPath = (project: string, rest: string, query: Record<string, string> = {}) => {
  const search = new URLSearchParams(query).toString();
  return `/api/projects/${encodeURIComponent(project)}/openai/v1${rest}${search ? `?${search}` : ""}`;
};

/** Saves a blob as a file download named `name`. */
export function saveBlob(blob: Blob, name: string) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
