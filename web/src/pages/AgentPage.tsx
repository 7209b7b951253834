import { useEffect, useRef, useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { call, download, projectPath, type Session } from "../api.js";
import { queryClient, useQuery } from "../query.js";
import { ErrorBox } from "./ErrorBox.js";
import { JsonView, VersionDiff } from "./JsonView.js";
import type { Agent, AgentSession, Page, Version } from "../types.js";

const isLive = (s: AgentSession) => s.status === "creating" || s.status === "active";

const splitOf = (a: Agent) =>
  Object.fromEntries(
    (a.agent_endpoint?.version_selector?.version_selection_rules ?? []).map((r) => [
      r.agent_version,
      String(r.traffic_percentage),
    ]),
  );

export function AgentPage({ session, name }: { session: Session; name: string }) {
  const [selected, setSelected] = useState<string>();
  const [actionError, setActionError] = useState<unknown>();
  const [split, setSplit] = useState<Record<string, string>>({});
  const [splitError, setSplitError] = useState<unknown>();
  const [saved, setSaved] = useState(false);
  const [diffFrom, setDiffFrom] = useState("");
  const [diffTo, setDiffTo] = useState("");
  const [liveSessions, setLiveSessions] = useState<AgentSession[]>();
  const [deleteError, setDeleteError] = useState<unknown>();
  const dialog = useRef<HTMLDialogElement>(null);
  const { route } = useLocation();
  const path = (rest = "", query: Record<string, string> = {}) =>
    projectPath(session.project, `/agents/${encodeURIComponent(name)}${rest}`, query);
  const agentKey = ["agent", session.project, name];
  const agentQuery = useQuery({
    queryKey: agentKey,
    queryFn: () => call<Agent>(session.key, path()),
  });
  const versionsQuery = useQuery({
    queryKey: ["versions", session.project, name],
    queryFn: () =>
      call<Page<Version>>(session.key, path("/versions", { include_drafts: "true", limit: "100" })),
  });
  const agent = agentQuery.data;
  const versions = versionsQuery.data?.data ?? [];
  const error = actionError ?? agentQuery.error ?? versionsQuery.error;
  // The editor starts from the split as stored, and again after each save.
  useEffect(() => {
    if (agent) setSplit(splitOf(agent));
  }, [agent]);
  useEffect(() => {
    if (agent) setSelected((s) => s ?? agent.versions.latest.version);
  }, [agent]);
  const showAgent = (a: Agent) => queryClient.setQueryData(agentKey, a);

  // Delete: first the sessions it would end (every page of them), then a confirmation.
  const askDelete = async () => {
    setActionError(undefined);
    setDeleteError(undefined);
    try {
      const live: AgentSession[] = [];
      let after: string | undefined;
      for (let i = 0; i < 50; i++) {
        const page = await call<Page<AgentSession>>(
          session.key,
          path("/endpoint/sessions", { limit: "100", ...(after ? { after } : {}) }),
        );
        live.push(...page.data.filter(isLive));
        if (!page.has_more || !page.last_id) break;
        after = page.last_id;
      }
      setLiveSessions(live);
      dialog.current?.showModal();
    } catch (err) {
      setActionError(err);
    }
  };
  const confirmDelete = async () => {
    setDeleteError(undefined);
    try {
      await call(session.key, path("", { force: "true" }), { method: "DELETE" });
      dialog.current?.close();
      queryClient.removeQueries({ queryKey: agentKey });
      await queryClient.invalidateQueries({ queryKey: ["agents", session.project] });
      route("/agents");
    } catch (err) {
      setDeleteError(err);
    }
  };

  const downloadCode = async (version: string) => {
    setActionError(undefined);
    try {
      const blob = await download(session.key, path("/code:download", { agent_version: version }));
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = `${name}-${version}.zip`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      setActionError(err);
    }
  };

  const setState = async (verb: "enable" | "disable") => {
    setActionError(undefined);
    try {
      await call(session.key, path(`:${verb}`), { method: "POST" });
      showAgent(await call<Agent>(session.key, path()));
      await queryClient.invalidateQueries({ queryKey: ["agents", session.project] });
    } catch (err) {
      setActionError(err);
    }
  };

  const saveSplit = async (e: Event) => {
    e.preventDefault();
    setSplitError(undefined);
    setSaved(false);
    const rules = versions
      .map((v) => ({ version: v.version, value: (split[v.version] ?? "").trim() }))
      .filter((r) => r.value !== "" && Number(r.value) !== 0)
      .map((r) => ({
        type: "FixedRatio",
        agent_version: r.version,
        traffic_percentage: Number(r.value),
      }));
    try {
      showAgent(
        await call<Agent>(session.key, path(), {
          method: "PATCH",
          contentType: "application/merge-patch+json",
          body: { agent_endpoint: { version_selector: { version_selection_rules: rules } } },
        }),
      );
      setSaved(true);
    } catch (err) {
      setSplitError(err);
    }
  };

  const sum = versions.reduce((n, v) => n + (Number(split[v.version]) || 0), 0);
  const shown = versions.find((v) => v.version === selected);
  const from = versions.find((v) => v.version === (diffFrom || versions.at(-1)?.version));
  const to = versions.find((v) => v.version === (diffTo || versions[0]?.version));
  return (
    <section>
      <h1>Agent {name}</h1>
      <p>
        <a href={`/playground?agent=${encodeURIComponent(name)}`}>
          Chat with {name} in the playground
        </a>
      </p>
      <ErrorBox error={error} />
      {agent && (
        <>
          <p>
            State: <strong data-testid="state">{agent.state}</strong>{" "}
            <button
              type="button"
              onClick={() => setState(agent.state === "enabled" ? "disable" : "enable")}
            >
              {agent.state === "enabled" ? "Disable" : "Enable"}
            </button>{" "}
            <button type="button" class="danger" onClick={() => void askDelete()}>
              Delete agent
            </button>
          </p>
          {agent.versions.latest.definition.kind === "hosted" && (
            <p>
              <a href={`/agents/${encodeURIComponent(name)}/sessions`}>Sessions of {name}</a>
            </p>
          )}
          <dialog ref={dialog} aria-labelledby="delete-title">
            <h2 id="delete-title">Delete agent {name}?</h2>
            {liveSessions && liveSessions.length > 0 ? (
              <>
                <p>
                  This stops and deletes its {liveSessions.length} live session
                  {liveSessions.length === 1 ? "" : "s"}:
                </p>
                <ul data-testid="live-sessions">
                  {liveSessions.map((s) => (
                    <li key={s.agent_session_id}>
                      <code>{s.agent_session_id}</code> ({s.status}, version{" "}
                      {s.version_indicator?.agent_version ?? "?"})
                    </li>
                  ))}
                </ul>
              </>
            ) : (
              <p>It has no live sessions.</p>
            )}
            <p>Every version and its code are deleted too. This cannot be undone.</p>
            <ErrorBox error={deleteError} />
            <div class="pager">
              <button type="button" class="danger" onClick={() => void confirmDelete()}>
                Delete {name} and end its sessions
              </button>
              <button type="button" onClick={() => dialog.current?.close()}>
                Cancel
              </button>
            </div>
          </dialog>
          <h2>Versions</h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Status</th>
                <th scope="col">Draft</th>
                <th scope="col">Definition</th>
                <th scope="col">Code</th>
              </tr>
            </thead>
            <tbody>
              {versions.map((v) => (
                <tr key={v.version}>
                  <td>{v.version}</td>
                  <td title={v.status_reason?.message}>
                    {v.status ?? "active"}
                    {v.status_reason ? ` (${v.status_reason.code})` : ""}
                  </td>
                  <td>{v.draft ? "draft" : ""}</td>
                  <td>
                    <button
                      type="button"
                      aria-pressed={v.version === selected}
                      onClick={() => setSelected(v.version)}
                    >
                      Show version {v.version}
                    </button>
                  </td>
                  <td>
                    {v.definition.kind === "hosted" && "code_configuration" in v.definition && (
                      <button type="button" onClick={() => void downloadCode(v.version)}>
                        Download code of version {v.version}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {shown && (
            <>
              <h2>Definition of version {shown.version}</h2>
              <JsonView value={shown.definition} label={`Definition of version ${shown.version}`} />
            </>
          )}
          {versions.length > 1 && from && to && (
            <>
              <h2>Compare versions</h2>
              <div class="filters">
                <label>
                  From version
                  <select
                    aria-label="From version"
                    value={from.version}
                    onChange={(e) => setDiffFrom(e.currentTarget.value)}
                  >
                    {versions.map((v) => (
                      <option value={v.version}>{v.version}</option>
                    ))}
                  </select>
                </label>
                <label>
                  To version
                  <select
                    aria-label="To version"
                    value={to.version}
                    onChange={(e) => setDiffTo(e.currentTarget.value)}
                  >
                    {versions.map((v) => (
                      <option value={v.version}>{v.version}</option>
                    ))}
                  </select>
                </label>
              </div>
              <VersionDiff from={from} to={to} />
            </>
          )}
          <h2>Traffic split</h2>
          <form onSubmit={saveSplit} class="split">
            {versions.map((v) => (
              <label key={v.version}>
                Version {v.version} (%)
                <input
                  type="number"
                  min={0}
                  max={100}
                  step={1}
                  value={split[v.version] ?? ""}
                  onInput={(e) => setSplit({ ...split, [v.version]: e.currentTarget.value })}
                />
              </label>
            ))}
            <p aria-live="polite" class={sum === 100 ? "" : "warn"}>
              Total {sum}%{sum === 100 ? "" : " (must be 100)"}
            </p>
            <ErrorBox error={splitError} />
            {saved && <p role="status">Traffic split saved.</p>}
            <button type="submit">Save traffic split</button>
          </form>
        </>
      )}
    </section>
  );
}
