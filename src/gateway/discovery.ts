/**
 * Zero-config models: at start-up, the upstreams the host already has — OpenAI (or a
 * compatible server) named by `OPENAI_API_KEY` / `OPENAI_BASE_URL`, and an Ollama server on its
 * local port — are asked for their models (`GET /models`), which every project then offers as
 * deployments named after the model.
 */

export interface DiscoveredUpstream {
  /** Where the models come from, for the banner and the admin listing. */
  source: string;
  baseUrl: string;
  /** The environment variable holding the upstream's key, or null (Ollama needs none). */
  apiKeyEnv: string | null;
  models: string[];
}

export interface Discovery {
  upstreams: DiscoveredUpstream[];
  /** Upstreams that were expected but did not answer, and why. */
  failures: string[];
}

export async function discoverModels(options: {
  env: NodeJS.ProcessEnv;
  ollamaUrl: string;
  /** For OpenAI (a remote server); Ollama, on this host, gets a fraction of it. */
  timeoutMs?: number;
}): Promise<Discovery> {
  const timeoutMs = options.timeoutMs ?? 3000;
  const found: Discovery = { upstreams: [], failures: [] };
  const openai = async () => {
    const key = options.env.OPENAI_API_KEY;
    if (!key) return;
    const baseUrl = (options.env.OPENAI_BASE_URL || "https://api.openai.com/v1").replace(
      /\/+$/,
      "",
    );
    const models = await listModels(baseUrl, key, timeoutMs);
    if (typeof models === "string") found.failures.push(`OPENAI_API_KEY (${baseUrl}): ${models}`);
    else
      found.upstreams.push({
        source: `OPENAI_API_KEY at ${baseUrl}`,
        baseUrl,
        apiKeyEnv: "OPENAI_API_KEY",
        models,
      });
  };
  const ollama = async () => {
    const baseUrl = options.ollamaUrl.replace(/\/+$/, "");
    const models = await listModels(baseUrl, null, Math.min(timeoutMs, 500));
    // No Ollama here is the usual case, not a failure worth a line.
    if (typeof models !== "string")
      found.upstreams.push({ source: `Ollama at ${baseUrl}`, baseUrl, apiKeyEnv: null, models });
  };
  await Promise.all([openai(), ollama()]);
  // OpenAI's models first, so a name both offer goes to OpenAI.
  found.upstreams.sort((a, b) => Number(b.apiKeyEnv !== null) - Number(a.apiKeyEnv !== null));
  return found;
}

/** The model ids of `GET {baseUrl}/models`, or why there are none. */
async function listModels(
  baseUrl: string,
  key: string | null,
  timeoutMs: number,
): Promise<string[] | string> {
  try {
    const res = await fetch(`${baseUrl}/models`, {
      headers: key ? { authorization: `Bearer ${key}` } : {},
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) {
      await res.body?.cancel();
      return `GET /models answered ${res.status}`;
    }
    const body = (await res.json()) as { data?: { id?: unknown }[] };
    const ids = (body.data ?? [])
      .map((m) => m.id)
      .filter(
        (id): id is string =>
          typeof id === "string" && id.length > 0 && id.length <= 256 && !/[\s\p{Cc}]/u.test(id),
      );
    return [...new Set(ids)].sort();
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return e.name === "TimeoutError"
      ? `no answer within ${timeoutMs} ms`
      : (e.cause?.code ?? e.message);
  }
}
