import { useEffect, useRef, useState } from "preact/hooks";
import { call, openaiPath, type Session } from "../api.js";
import { queryClient, useQuery } from "../query.js";
import { ErrorBox } from "./ErrorBox.js";
import type { ApiKey, Deployment, UsageRow } from "../types.js";
import "uplot/dist/uPlot.min.css";

/** What a project key sees instead of an admin page. */
function AdminOnly({ session, what }: { session: Session; what: string }) {
  if (session.admin) return null;
  return (
    <p class="empty" role="note">
      {what} are managed with an admin key (the one `agenthost keys create --admin` makes, or the
      service's first key). This key belongs to project {session.project}: sign out and sign in with
      an admin key to see them.
    </p>
  );
}

export function AdminNav() {
  return (
    <nav aria-label="Admin" class="filters">
      <a href="/manage/keys">API keys</a>
      <a href="/manage/deployments">Deployments</a>
      <a href="/manage/usage">Usage</a>
    </nav>
  );
}

export function KeysPage({ session }: { session: Session }) {
  const [name, setName] = useState("");
  const [project, setProject] = useState(session.project);
  const [actForUsers, setActForUsers] = useState(false);
  const [created, setCreated] = useState<ApiKey>();
  const [copied, setCopied] = useState(false);
  const [error, setError] = useState<unknown>();
  const listKey = ["keys"];
  const keys = useQuery({
    queryKey: listKey,
    enabled: session.admin,
    queryFn: () => call<{ data: ApiKey[] }>(session.key, "/admin/keys"),
  });
  const create = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setCopied(false);
    try {
      setCreated(
        await call<ApiKey>(session.key, "/admin/keys", {
          method: "POST",
          body: {
            project: project.trim(),
            ...(name.trim() ? { name: name.trim() } : {}),
            ...(actForUsers ? { act_for_users: true } : {}),
          },
        }),
      );
      setName("");
      await queryClient.invalidateQueries({ queryKey: listKey });
    } catch (err) {
      setError(err);
    }
  };
  const revoke = async (k: ApiKey) => {
    if (!confirm(`Revoke key ${k.name || k.id}? Clients using it stop working.`)) return;
    setError(undefined);
    try {
      await call(session.key, `/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
      if (created?.id === k.id) setCreated(undefined);
      await queryClient.invalidateQueries({ queryKey: listKey });
    } catch (err) {
      setError(err);
    }
  };
  const copy = async () => {
    if (!created?.key) return;
    await navigator.clipboard.writeText(created.key).then(
      () => setCopied(true),
      () => setCopied(false),
    );
  };
  return (
    <section>
      <h1>API keys</h1>
      <AdminNav />
      <AdminOnly session={session} what="API keys" />
      {session.admin && (
        <>
          <form class="split" onSubmit={create} aria-label="Create a key">
            <label>
              Project
              <input required value={project} onInput={(e) => setProject(e.currentTarget.value)} />
            </label>
            <label>
              Name
              <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <label class="check">
              <input
                type="checkbox"
                checked={actForUsers}
                onChange={(e) => setActForUsers(e.currentTarget.checked)}
              />
              May act for end users
            </label>
            <button type="submit">Create key</button>
          </form>
          <ErrorBox error={error ?? keys.error} />
          {created?.key && (
            <div class="secret" role="status">
              <p>
                Key <strong>{created.name || created.id}</strong> created. It is shown this once:
                copy it now.
              </p>
              <code data-testid="new-key">{created.key}</code>{" "}
              <button type="button" onClick={() => void copy()}>
                Copy key
              </button>{" "}
              <button type="button" onClick={() => setCreated(undefined)}>
                Done
              </button>
              {copied && <span> Copied.</span>}
            </div>
          )}
          {keys.data && keys.data.data.length === 0 ? (
            <p class="empty">No keys yet: create one above.</p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Id</th>
                  <th scope="col">Project</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Created</th>
                  <th scope="col">Revoke</th>
                </tr>
              </thead>
              <tbody>
                {(keys.data?.data ?? []).map((k) => (
                  <tr key={k.id}>
                    <td>{k.name}</td>
                    <td>
                      <code>{k.id}</code>
                    </td>
                    <td>{k.project}</td>
                    <td>{k.admin ? "admin" : k.act_for_users ? "acts for users" : "project"}</td>
                    <td>{k.created_at ? new Date(k.created_at * 1000).toLocaleString() : ""}</td>
                    <td>
                      <button
                        type="button"
                        aria-label={`Revoke ${k.name || k.id}`}
                        onClick={() => void revoke(k)}
                      >
                        Revoke
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}

interface TestResult {
  name: string;
  ok: boolean;
  text: string;
}

export function DeploymentsPage({ session }: { session: Session }) {
  const [form, setForm] = useState({ name: "", model: "", base_url: "", api_key: "", env: "" });
  const [error, setError] = useState<unknown>();
  const [tested, setTested] = useState<TestResult>();
  const [testing, setTesting] = useState<string>();
  const base = `/admin/projects/${encodeURIComponent(session.project)}/deployments`;
  const listKey = ["deployments", session.project];
  const list = useQuery({
    queryKey: listKey,
    enabled: session.admin,
    queryFn: () => call<{ data: Deployment[] }>(session.key, base),
  });
  const set = (field: keyof typeof form) => (e: Event) =>
    setForm({ ...form, [field]: (e.currentTarget as HTMLInputElement).value });
  const add = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      await call(session.key, `${base}/${encodeURIComponent(form.name.trim())}`, {
        method: "PUT",
        body: {
          model: form.model.trim(),
          base_url: form.base_url.trim(),
          ...(form.api_key ? { api_key: form.api_key } : {}),
          ...(form.env.trim() ? { api_key_env: form.env.trim() } : {}),
        },
      });
      // The key leaves the page once sent: it is never shown back.
      setForm({ name: "", model: "", base_url: "", api_key: "", env: "" });
      await queryClient.invalidateQueries({ queryKey: listKey });
    } catch (err) {
      setError(err);
    }
  };
  const remove = async (d: Deployment) => {
    if (!confirm(`Remove deployment ${d.name}?`)) return;
    setError(undefined);
    try {
      await call(session.key, `${base}/${encodeURIComponent(d.name)}`, { method: "DELETE" });
      await queryClient.invalidateQueries({ queryKey: listKey });
    } catch (err) {
      setError(err);
    }
  };
  // A small call through the gateway: a one-word chat completion with the deployment.
  const test = async (d: Deployment) => {
    setTesting(d.name);
    setTested(undefined);
    try {
      const answer = await call<{
        choices?: { message?: { content?: string } }[];
        usage?: { total_tokens?: number };
      }>(session.key, openaiPath(session.project, "/chat/completions"), {
        method: "POST",
        body: {
          model: d.name,
          messages: [{ role: "user", content: "Say OK." }],
          max_tokens: 16,
        },
      });
      setTested({
        name: d.name,
        ok: true,
        text: `Answered: ${answer.choices?.[0]?.message?.content ?? "(no text)"}${
          answer.usage?.total_tokens !== undefined ? ` (${answer.usage.total_tokens} tokens)` : ""
        }`,
      });
    } catch (err) {
      const e = err as { code?: string; message?: string };
      setTested({ name: d.name, ok: false, text: `${e.code ?? "error"}: ${e.message ?? ""}` });
    } finally {
      setTesting(undefined);
    }
  };
  const rows = list.data?.data ?? [];
  return (
    <section>
      <h1>Deployments of {session.project}</h1>
      <AdminNav />
      <AdminOnly session={session} what="Deployments" />
      {session.admin && (
        <>
          <form class="split" onSubmit={add} aria-label="Add a deployment">
            <label>
              Name
              <input required value={form.name} onInput={set("name")} />
            </label>
            <label>
              Model
              <input required value={form.model} onInput={set("model")} />
            </label>
            <label>
              Base URL
              <input
                required
                type="url"
                placeholder="https://…/v1"
                value={form.base_url}
                onInput={set("base_url")}
              />
            </label>
            <label>
              API key (stored encrypted)
              <input
                type="password"
                autocomplete="off"
                value={form.api_key}
                onInput={set("api_key")}
              />
            </label>
            <label>
              or key variable
              <input placeholder="OPENAI_API_KEY" value={form.env} onInput={set("env")} />
            </label>
            <button type="submit">Add deployment</button>
          </form>
          <ErrorBox error={error ?? list.error} />
          {tested && (
            <p role="status" class={tested.ok ? "" : "error"} data-testid="test-result">
              Test of {tested.name}: {tested.text}
            </p>
          )}
          {list.data && rows.length === 0 ? (
            <p class="empty">
              No deployments in {session.project}: add one above (an OpenAI-compatible server's /v1
              URL and model).
            </p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Model</th>
                  <th scope="col">Base URL</th>
                  <th scope="col">Key</th>
                  <th scope="col">Source</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((d) => (
                  <tr key={d.name}>
                    <td>{d.name}</td>
                    <td>{d.model}</td>
                    <td>{d.base_url}</td>
                    <td>{d.api_key_env ? `from ${d.api_key_env}` : d.api_key ? "set" : "none"}</td>
                    <td>{d.source ?? "stored"}</td>
                    <td>
                      <button
                        type="button"
                        disabled={testing !== undefined}
                        aria-label={`Test ${d.name}`}
                        onClick={() => void test(d)}
                      >
                        Test
                      </button>{" "}
                      <button
                        type="button"
                        aria-label={`Remove ${d.name}`}
                        onClick={() => void remove(d)}
                      >
                        Remove
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}

const ranges = { "1 hour": [3600, 60], "1 day": [86_400, 3600], "30 days": [2_592_000, 86_400] };

const seriesOf = (r: UsageRow) => (r.agent ? `${r.agent} v${r.version ?? "-"}` : "model alone");

function UsageChart({
  rows,
  bucket,
  from,
  to,
}: {
  rows: UsageRow[];
  bucket: number;
  from: number;
  to: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el || rows.length === 0) return;
    let chart: { destroy(): void } | undefined;
    let cancelled = false;
    void import("uplot").then(({ default: UPlot }) => {
      if (cancelled) return;
      const times = [...new Set(rows.map((r) => Number(r.time)))].sort((a, b) => a - b);
      const series = [...new Set(rows.map((r) => seriesOf(r)))];
      const at = new Map(times.map((t, i) => [t, i]));
      const data: number[][] = [times];
      for (const name of series) {
        const values = times.map(() => 0);
        for (const r of rows)
          if (seriesOf(r) === name) values[at.get(Number(r.time))!] += r.total_tokens;
        data.push(values);
      }
      const colors = ["#0b5ea8", "#b35900", "#2e7d32", "#8e24aa", "#c62828", "#00838f"];
      chart = new UPlot(
        {
          width: Math.max(280, el.clientWidth),
          height: 260,
          series: [
            {},
            ...series.map((label, i) => ({
              label,
              stroke: colors[i % colors.length],
              width: 2,
              points: { show: true },
            })),
          ],
          // The whole period asked for, however few buckets have calls.
          // (each bucket drawn at its start; the last one fits in).
          scales: {
            x: { time: true, range: [from, to + bucket] },
            y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] },
          },
          axes: [{}, { label: "tokens" }],
        },
        data as [number[], ...number[][]],
        el,
      );
    });
    return () => {
      cancelled = true;
      chart?.destroy();
    };
  }, [rows, bucket, from, to]);
  return <div ref={box} class="chart" role="img" aria-label="Tokens per bucket by agent version" />;
}

export function UsagePage({ session }: { session: Session }) {
  const [range, setRange] = useState<keyof typeof ranges>("1 day");
  const [seconds, bucket] = ranges[range];
  const usage = useQuery({
    queryKey: ["usage", session.project, range],
    enabled: session.admin,
    queryFn: () => {
      const now = Math.floor(Date.now() / 1000);
      const since = now - seconds;
      const q = new URLSearchParams({
        group_by: "agent,version,time",
        bucket: String(bucket),
        project: session.project,
        since: String(since),
      });
      return call<{ data: UsageRow[] }>(session.key, `/admin/usage?${q}`).then((r) => ({
        ...r,
        period: [since, now] as const,
      }));
    },
  });
  const rows = usage.data?.data ?? [];
  const totals = new Map<string, UsageRow>();
  for (const r of rows) {
    const k = `${r.agent ?? ""}\u0000${r.version ?? ""}`;
    const t = totals.get(k);
    totals.set(
      k,
      t
        ? {
            ...t,
            input_tokens: t.input_tokens + r.input_tokens,
            output_tokens: t.output_tokens + r.output_tokens,
            total_tokens: t.total_tokens + r.total_tokens,
            calls: t.calls + r.calls,
          }
        : r,
    );
  }
  return (
    <section>
      <h1>Usage of {session.project}</h1>
      <AdminNav />
      <AdminOnly session={session} what="Usage totals" />
      {session.admin && (
        <>
          <div class="filters">
            <label>
              Period
              <select
                value={range}
                onChange={(e) => setRange(e.currentTarget.value as keyof typeof ranges)}
              >
                {Object.keys(ranges).map((r) => (
                  <option key={r}>{r}</option>
                ))}
              </select>
            </label>
          </div>
          <ErrorBox error={usage.error} />
          {usage.data && rows.length === 0 ? (
            <p class="empty">
              No model calls in {session.project} in the last {range}: call an agent (the playground
              will do) and come back.
            </p>
          ) : (
            <>
              <UsageChart
                rows={rows}
                bucket={bucket}
                from={usage.data?.period[0] ?? 0}
                to={usage.data?.period[1] ?? 0}
              />
              <table aria-label="Totals by agent version">
                <thead>
                  <tr>
                    <th scope="col">Agent</th>
                    <th scope="col">Version</th>
                    <th scope="col">Calls</th>
                    <th scope="col">Input tokens</th>
                    <th scope="col">Output tokens</th>
                    <th scope="col">Total</th>
                  </tr>
                </thead>
                <tbody>
                  {[...totals.values()].map((r) => (
                    <tr key={`${r.agent}-${r.version}`}>
                      <td>{r.agent ?? "(model alone)"}</td>
                      <td>{r.version ?? ""}</td>
                      <td>{r.calls}</td>
                      <td>{r.input_tokens}</td>
                      <td>{r.output_tokens}</td>
                      <td>{r.total_tokens}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
        </>
      )}
    </section>
  );
}
