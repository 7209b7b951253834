import { useRef, useState } from "preact/hooks";
import { call, projectPath, type Session } from "../api.js";
import { queryClient, useQuery } from "../query.js";
import { useVirtualRows } from "../virtual.js";
import { ErrorBox } from "./ErrorBox.js";
import type { AgentSession, Page } from "../types.js";

/** Sessions the list reads (pages of 100); more are counted but not shown. */
const maxSessions = 10_000;
const rowHeight = 40;
const statuses = ["", "creating", "active", "idle", "failed", "expired"];

const when = (seconds: number | undefined) =>
  seconds ? new Date(seconds * 1000).toLocaleString() : "";

export const sessionPath = (session: Session, agent: string, id: string, rest = "") =>
  projectPath(
    session.project,
    `/agents/${encodeURIComponent(agent)}/endpoint/sessions/${encodeURIComponent(id)}${rest}`,
  );

async function loadAll(session: Session, agent: string | undefined) {
  const rows: AgentSession[] = [];
  let after: string | undefined;
  let more: boolean;
  const path = agent ? `/agents/${encodeURIComponent(agent)}/endpoint/sessions` : "/sessions";
  do {
    const page = await call<Page<AgentSession>>(
      session.key,
      projectPath(session.project, path, { limit: "100", ...(after ? { after } : {}) }),
    );
    for (const s of page.data) rows.push(agent ? { ...s, agent_name: agent } : s);
    more = page.has_more;
    after = page.last_id ?? undefined;
  } while (more && after && rows.length < maxSessions);
  rows.sort((a, b) => b.last_accessed_at - a.last_accessed_at);
  return { rows, more };
}

/** Stops or deletes a session, then reloads the lists. */
export async function sessionAction(
  session: Session,
  s: { agent: string; id: string },
  action: "stop" | "delete",
) {
  if (action === "stop")
    await call(session.key, sessionPath(session, s.agent, `${s.id}:stop`), { method: "POST" });
  else await call(session.key, sessionPath(session, s.agent, s.id), { method: "DELETE" });
  await queryClient.invalidateQueries({ queryKey: ["sessions", session.project] });
}

/**
 * Sessions, most recently active first: an agent's (`name`), or the project's across agents.
 * Rows are virtualised, so thousands scroll as smoothly as ten.
 */
export function SessionList({ session, name }: { session: Session; name?: string }) {
  const [status, setStatus] = useState("");
  const [version, setVersion] = useState("");
  const [owner, setOwner] = useState("");
  const [agentFilter, setAgentFilter] = useState("");
  const [actionError, setActionError] = useState<unknown>();
  const scroller = useRef<HTMLDivElement>(null);
  const { data, error, isFetching } = useQuery({
    queryKey: ["sessions", session.project, name ?? "*"],
    queryFn: () => loadAll(session, name),
  });
  const project = name === undefined;
  const rows = (data?.rows ?? []).filter(
    (s) =>
      (!status || s.status === status) &&
      (!version.trim() || s.version_indicator.agent_version === version.trim()) &&
      (!owner.trim() || (s.owner ?? "").includes(owner.trim())) &&
      (!agentFilter.trim() || (s.agent_name ?? "").includes(agentFilter.trim())),
  );
  const virtual = useVirtualRows({
    count: rows.length,
    rowHeight,
    scrollElement: () => scroller.current,
  });
  const act = async (s: AgentSession, action: "stop" | "delete") => {
    setActionError(undefined);
    if (action === "delete" && !confirm(`Delete session ${s.agent_session_id} and its files?`))
      return;
    try {
      await sessionAction(session, { agent: s.agent_name!, id: s.agent_session_id }, action);
    } catch (err) {
      setActionError(err);
    }
  };
  const columns = project
    ? ["Session", "Agent", "Version", "Status", "Last activity", "Owner", "Actions"]
    : ["Session", "Version", "Status", "Last activity", "Created", "Actions"];
  const grid = project ? "sessions-grid project" : "sessions-grid";

  return (
    <section>
      {project ? (
        <h1>Sessions in project {session.project}</h1>
      ) : (
        <>
          <p>
            <a href={`/agents/${encodeURIComponent(name)}`}>Agent {name}</a>
          </p>
          <h1>Sessions of agent {name}</h1>
        </>
      )}
      <div class="filters">
        <label>
          Status
          <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            {statuses.map((s) => (
              <option value={s}>{s || "any"}</option>
            ))}
          </select>
        </label>
        <label>
          Version
          <input
            inputMode="numeric"
            size={6}
            value={version}
            onInput={(e) => setVersion(e.currentTarget.value)}
          />
        </label>
        {project && (
          <label>
            Agent name contains
            <input value={agentFilter} onInput={(e) => setAgentFilter(e.currentTarget.value)} />
          </label>
        )}
        {project && session.admin && (
          <label>
            Owner contains
            <input value={owner} onInput={(e) => setOwner(e.currentTarget.value)} />
          </label>
        )}
        <button
          type="button"
          disabled={isFetching}
          onClick={() =>
            void queryClient.invalidateQueries({ queryKey: ["sessions", session.project] })
          }
        >
          Refresh
        </button>
      </div>
      <ErrorBox error={error ?? actionError} />
      {data && (
        <p class="hint" data-testid="session-count">
          {rows.length} of {data.rows.length} sessions
          {data.more ? ` (only the first ${maxSessions} are read)` : ""}, most recently active
          first.
        </p>
      )}
      {data && data.rows.length === 0 && (
        <p class="empty">
          No sessions {project ? `in project ${session.project}` : `of agent ${name}`} yet. Start
          one with <code>POST …/agents/&lt;name&gt;/endpoint/sessions</code> or by calling a hosted
          agent; it shows up here.
        </p>
      )}
      {data && data.rows.length > 0 && rows.length === 0 && (
        <p class="empty">No session matches these filters. Clear a filter to see more.</p>
      )}
      {rows.length > 0 && (
        <div role="table" aria-label="Sessions" aria-rowcount={rows.length + 1}>
          <div role="rowgroup">
            <div role="row" class={`${grid} head`} aria-rowindex={1}>
              {columns.map((c) => (
                <span role="columnheader">{c}</span>
              ))}
            </div>
          </div>
          <div
            ref={scroller}
            class="sessions-scroll"
            role="rowgroup"
            tabIndex={0}
            aria-label="Session rows (scrolls)"
            data-testid="session-rows"
          >
            <div style={{ height: `${virtual.getTotalSize()}px`, position: "relative" }}>
              {virtual.getVirtualItems().map((item) => {
                const s = rows[item.index]!;
                const agent = s.agent_name!;
                const href = `/agents/${encodeURIComponent(agent)}/sessions/${encodeURIComponent(s.agent_session_id)}`;
                return (
                  <div
                    key={`${agent}/${s.agent_session_id}`}
                    role="row"
                    aria-rowindex={item.index + 2}
                    class={grid}
                    style={{
                      position: "absolute",
                      top: 0,
                      left: 0,
                      right: 0,
                      height: `${rowHeight}px`,
                      transform: `translateY(${item.start}px)`,
                    }}
                  >
                    <span role="cell">
                      <a href={href}>{s.agent_session_id}</a>
                    </span>
                    {project && <span role="cell">{agent}</span>}
                    <span role="cell">{s.version_indicator.agent_version}</span>
                    <span role="cell">
                      {s.status}
                      {s.termination_reason ? ` (${s.termination_reason})` : ""}
                    </span>
                    <span role="cell">{when(s.last_accessed_at)}</span>
                    <span role="cell">{project ? (s.owner ?? "you") : when(s.created_at)}</span>
                    <span role="cell" class="actions">
                      <button
                        type="button"
                        aria-label={`Stop session ${s.agent_session_id}`}
                        disabled={s.status !== "active" && s.status !== "creating"}
                        onClick={() => act(s, "stop")}
                      >
                        Stop
                      </button>
                      <button
                        type="button"
                        class="danger"
                        aria-label={`Delete session ${s.agent_session_id}`}
                        onClick={() => act(s, "delete")}
                      >
                        Delete
                      </button>
                    </span>
                  </div>
                );
              })}
            </div>
          </div>
        </div>
      )}
    </section>
  );
}
