import { useCallback, useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { call, projectPath, type Session } from "../api.js";
import { useQuery } from "../query.js";
import { ErrorBox } from "./ErrorBox.js";
import { FileBrowser } from "./FileBrowser.js";
import { LiveConsole } from "./LiveConsole.js";
import { sessionAction, sessionPath } from "./SessionList.js";
import type { AgentSession, LogLine } from "../types.js";

/** Status lines the history keeps (the newest). */
const maxHistory = 200;

const when = (seconds: number | undefined) =>
  seconds ? new Date(seconds * 1000).toLocaleString() : "—";

/** A session: its status and history, its live console, and its files. */
export function SessionPage({ session, name, id }: { session: Session; name: string; id: string }) {
  const { route } = useLocation();
  const [history, setHistory] = useState<LogLine[]>([]);
  const [actionError, setActionError] = useState<unknown>();
  const query = useQuery({
    queryKey: ["sessions", session.project, name, id],
    queryFn: () => call<AgentSession>(session.key, sessionPath(session, name, id)),
    refetchInterval: 2_000,
  });
  const s = query.data;
  const onStatus = useCallback((line: LogLine) => {
    // The stream's own notes (connected, keep-alive) are not the session's history.
    if (/^(Connected to|No logs since)/.test(line.message)) return;
    setHistory((h) => [...h, line].slice(-maxHistory));
  }, []);
  const act = async (action: "stop" | "delete") => {
    setActionError(undefined);
    if (action === "delete" && !confirm(`Delete session ${id} and its files?`)) return;
    try {
      await sessionAction(session, { agent: name, id }, action);
      if (action === "delete") route(`/agents/${encodeURIComponent(name)}/sessions`);
      else await query.refetch();
    } catch (err) {
      setActionError(err);
    }
  };
  const logPath = s
    ? projectPath(
        session.project,
        `/agents/${encodeURIComponent(name)}/versions/${encodeURIComponent(s.version_indicator.agent_version)}/sessions/${encodeURIComponent(id)}:logstream`,
      )
    : undefined;
  return (
    <section>
      <p>
        <a href={`/agents/${encodeURIComponent(name)}`}>Agent {name}</a> ›{" "}
        <a href={`/agents/${encodeURIComponent(name)}/sessions`}>Sessions</a>
      </p>
      <h1>Session {id}</h1>
      <ErrorBox error={query.error ?? actionError} />
      {s && (
        <>
          <dl class="facts">
            <dt>Status</dt>
            <dd data-testid="session-status">{s.status}</dd>
            <dt>Version</dt>
            <dd>{s.version_indicator.agent_version}</dd>
            <dt>Created</dt>
            <dd>{when(s.created_at)}</dd>
            <dt>Last activity</dt>
            <dd>{when(s.last_accessed_at)}</dd>
            <dt>Expires</dt>
            <dd>{when(s.expires_at)}</dd>
            {s.stopped_at !== undefined && (
              <>
                <dt>Stopped</dt>
                <dd>{when(s.stopped_at)}</dd>
              </>
            )}
            {s.termination_reason && (
              <>
                <dt>Termination reason</dt>
                <dd data-testid="termination-reason">{s.termination_reason}</dd>
                <dt>Termination message</dt>
                <dd>
                  <pre class="inline">{s.termination_message}</pre>
                </dd>
              </>
            )}
          </dl>
          <p class="filters">
            <button
              type="button"
              disabled={s.status !== "active" && s.status !== "creating"}
              onClick={() => act("stop")}
            >
              Stop session
            </button>
            <button type="button" class="danger" onClick={() => act("delete")}>
              Delete session
            </button>
          </p>
          <h2>History</h2>
          <ol class="history" data-testid="history">
            <li>
              <time>{when(s.created_at)}</time> created
            </li>
            {history.map((h) => (
              <li>
                <time>{new Date(h.timestamp).toLocaleString()}</time> {h.message}
              </li>
            ))}
            {s.termination_reason && (
              <li>
                <time>{when(s.stopped_at)}</time> ended: {s.termination_reason}
              </li>
            )}
          </ol>
          <p class="hint">
            The history is the status lines of the console log (sandbox start, warm or cold, ready,
            ended) still held by the service.
          </p>
          <h2>Console</h2>
          {logPath && <LiveConsole apiKey={session.key} path={logPath} onStatus={onStatus} />}
          <h2>Files</h2>
          <FileBrowser session={session} agent={name} id={id} />
        </>
      )}
    </section>
  );
}
