import { useState } from "preact/hooks";
import { call, projectPath, type Session } from "../api.js";
import { queryClient, useQuery } from "../query.js";
import { ErrorBox } from "./ErrorBox.js";
import type { Agent, Page } from "../types.js";

const kinds = ["", "prompt", "hosted", "workflow", "external"];

export function AgentList({ session }: { session: Session }) {
  const [kind, setKind] = useState("");
  const [search, setSearch] = useState("");
  const [cursor, setCursor] = useState<string[]>([]);
  const after = cursor.at(-1);
  const query: Record<string, string> = { limit: "20", include: "live_session_count" };
  if (kind) query.kind = kind;
  if (after) query.after = after;
  const options = {
    queryKey: ["agents", session.project, query],
    queryFn: () => call<Page<Agent>>(session.key, projectPath(session.project, "/agents", query)),
  };
  // The first page's request goes out with the first render, not after the first paint (when
  // the query's observer subscribes); the observer then shares the request in flight.
  useState(() => void queryClient.prefetchQuery(options));
  const { data: page, error } = useQuery(options);
  const shown = (page?.data ?? []).filter((a) =>
    a.name.toLowerCase().includes(search.trim().toLowerCase()),
  );
  return (
    <section>
      <h1>Agents</h1>
      <p class="actions">
        <a href="/create-agent">Create a prompt agent</a>
        <a href="/deploy">Deploy a hosted agent</a>
      </p>
      <div class="filters">
        <label>
          Kind
          <select
            value={kind}
            onChange={(e) => {
              setKind(e.currentTarget.value);
              setCursor([]);
            }}
          >
            {kinds.map((k) => (
              <option value={k}>{k || "any"}</option>
            ))}
          </select>
        </label>
        <label>
          Search by name
          <input type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
      </div>
      <ErrorBox error={error} />
      {page && page.data.length === 0 && (
        <p class="empty">
          {kind ? (
            <>
              No {kind} agents in project {session.project}. Choose another kind.
            </>
          ) : (
            <>
              No agents in project {session.project} yet.{" "}
              <a href="/create-agent">Create a prompt agent</a>,{" "}
              <a href="/deploy">deploy a hosted one</a>, or use the API or an official client (
              <code>POST /api/projects/{session.project}/agents</code>); it shows up here.
            </>
          )}
        </p>
      )}
      {page && page.data.length > 0 && shown.length === 0 && (
        <p class="empty">No agent on this page has a name containing “{search.trim()}”.</p>
      )}
      {page && page.data.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Kind</th>
              <th scope="col">State</th>
              <th scope="col">Latest version</th>
              <th scope="col">Live sessions</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((a) => (
              <tr key={a.name}>
                <td>
                  <a href={`/agents/${encodeURIComponent(a.name)}`}>{a.name}</a>
                </td>
                <td>{a.versions.latest.definition.kind}</td>
                <td>{a.state}</td>
                <td>{a.versions.latest.version}</td>
                <td>{a.live_session_count ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="pager">
        <button
          type="button"
          disabled={cursor.length === 0}
          onClick={() => setCursor(cursor.slice(0, -1))}
        >
          Previous page
        </button>
        <button
          type="button"
          disabled={!page?.has_more}
          onClick={() => page?.last_id && setCursor([...cursor, page.last_id])}
        >
          Next page
        </button>
      </div>
    </section>
  );
}
