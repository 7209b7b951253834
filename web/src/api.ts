/** The console's one way to the API: same origin, `Authorization: Bearer <key>`. */
const keySlot = "agenthost.key";
const projectSlot = "agenthost.project";

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
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
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!response.ok) {
    const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(
      error?.code ?? `http_${response.status}`,
      error?.message ?? (text.slice(0, 200) || response.statusText),
      response.status,
    );
  }
  return body as T;
}

export const projectPath = (project: string, rest: string, query: Record<string, string> = {}) =>
  `/api/projects/${encodeURIComponent(project)}${rest}?${new URLSearchParams({ "api-version": "v1", ...query })}`;
