import { useEffect, useState } from "preact/hooks";
import { call, projectPath, type Session } from "../api.js";
import { ErrorBox } from "./ErrorBox.js";
import type { Agent, Page, Version } from "../types.js";

export function AgentPage({ session, name }: { session: Session; name: string }) {
  const [agent, setAgent] = useState<Agent>();
  const [versions, setVersions] = useState<Version[]>([]);
  const [selected, setSelected] = useState<string>();
  const [error, setError] = useState<unknown>();
  const [split, setSplit] = useState<Record<string, string>>({});
  const [splitError, setSplitError] = useState<unknown>();
  const [saved, setSaved] = useState(false);
  const path = (rest = "", query: Record<string, string> = {}) =>
    projectPath(session.project, `/agents/${encodeURIComponent(name)}${rest}`, query);

  const showAgent = (a: Agent) => {
    setAgent(a);
    const rules = a.agent_endpoint?.version_selector?.version_selection_rules ?? [];
    setSplit(Object.fromEntries(rules.map((r) => [r.agent_version, String(r.traffic_percentage)])));
  };

  useEffect(() => {
    setError(undefined);
    Promise.all([
      call<Agent>(session.key, path()),
      call<Page<Version>>(session.key, path("/versions", { include_drafts: "true", limit: "100" })),
    ]).then(([a, v]) => {
      showAgent(a);
      setVersions(v.data);
      setSelected((s) => s ?? a.versions.latest.version);
    }, setError);
  }, [session, name]);

  const setState = async (verb: "enable" | "disable") => {
    setError(undefined);
    try {
      await call(session.key, path(`:${verb}`), { method: "POST" });
      showAgent(await call<Agent>(session.key, path()));
    } catch (err) {
      setError(err);
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
  return (
    <section>
      <h1>Agent {name}</h1>
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
            </button>
          </p>
          <h2>Versions</h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Status</th>
                <th scope="col">Draft</th>
                <th scope="col">Definition</th>
              </tr>
            </thead>
            <tbody>
              {versions.map((v) => (
                <tr key={v.version}>
                  <td>{v.version}</td>
                  <td>{v.status ?? "active"}</td>
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
                </tr>
              ))}
            </tbody>
          </table>
          {shown && (
            <>
              <h2>Definition of version {shown.version}</h2>
              <pre tabIndex={0} aria-label={`Definition of version ${shown.version}`}>
                {JSON.stringify(shown.definition, null, 2)}
              </pre>
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
