import { useEffect, useRef, useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { call, openaiPath, projectPath, streamCall, type Session } from "../api.js";
import { queryClient, useQuery } from "../query.js";
import { ErrorBox } from "./ErrorBox.js";
import type { Agent, Conversation, Item, Page, ResponseObject, Version } from "../types.js";

/** One call and what came back: the items as they streamed, then the response's totals. */
interface Turn {
  key: number;
  said: string;
  /** The items this call sent (a function's output, an approval). */
  sent: Item[];
  items: Item[];
  response?: ResponseObject;
  error?: unknown;
  busy: boolean;
  /** The version that answered (from the response, or a hosted agent's session). */
  version?: string;
}

const textOf = (item: Item) =>
  typeof item.content === "string"
    ? item.content
    : (item.content ?? []).map((p) => p.text ?? "").join("");

const pretty = (value: unknown) => {
  if (typeof value !== "string") return JSON.stringify(value, null, 2);
  try {
    return JSON.stringify(JSON.parse(value), null, 2);
  } catch {
    return value;
  }
};

/** Applies one streamed event to the turn's items (a copy). */
function applyEvent(turn: Turn, event: Record<string, unknown>): Turn {
  const items = [...turn.items];
  const at = Number(event.output_index ?? -1);
  const type = String(event.type ?? "");
  if (type === "response.output_item.added" || type === "response.output_item.done") {
    items[at] = event.item as Item;
  } else if (type === "response.output_text.delta" && items[at]) {
    const item = { ...items[at]! };
    const parts = Array.isArray(item.content) ? [...item.content] : [];
    const index = Number(event.content_index ?? 0);
    const part = parts[index] ?? { type: "output_text", text: "" };
    parts[index] = { ...part, text: (part.text ?? "") + String(event.delta ?? "") };
    item.content = parts;
    items[at] = item;
  } else if (type === "response.function_call_arguments.delta" && items[at]) {
    items[at] = { ...items[at]!, arguments: (items[at]!.arguments ?? "") + String(event.delta) };
  } else if (
    type === "response.created" ||
    type === "response.completed" ||
    type === "response.failed" ||
    type === "response.incomplete"
  ) {
    const response = event.response as ResponseObject;
    return {
      ...turn,
      items: type === "response.created" ? items : (response.output ?? items),
      response,
      version: response.agent_reference?.version ?? turn.version,
      error:
        type === "response.failed" && response.error
          ? { code: response.error.code, message: response.error.message }
          : turn.error,
    };
  } else if (type === "error") {
    return { ...turn, error: (event.error as object | undefined) ?? event };
  }
  return { ...turn, items };
}

function ItemView({
  item,
  onSend,
  busy,
  answered,
}: {
  item: Item;
  onSend: (input: Item[], said: string) => void;
  busy: boolean;
  /** Ids of the calls and approval requests already answered. */
  answered: Set<string>;
}) {
  const [output, setOutput] = useState("");
  if (item.type === "message")
    return (
      <div class={`msg ${item.role ?? ""}`}>
        <strong>{item.role === "user" ? "You" : "Agent"}:</strong>{" "}
        <span data-testid={item.role === "user" ? undefined : "answer"}>{textOf(item)}</span>
      </div>
    );
  if (item.type === "function_call")
    return (
      <div class="tool">
        <p>
          Function call <code>{item.name}</code> <span class="hint">({item.call_id})</span>
        </p>
        <pre tabIndex={0} aria-label={`Arguments of ${item.name ?? "the call"}`}>
          {pretty(item.arguments ?? "")}
        </pre>
        {answered.has(item.call_id ?? "") ? (
          <p class="hint">Output sent.</p>
        ) : (
          <form
            onSubmit={(e) => {
              e.preventDefault();
              onSend(
                [{ type: "function_call_output", call_id: item.call_id, output }],
                `Output of ${item.name ?? "the call"}: ${output}`,
              );
            }}
          >
            <label>
              Output of {item.name}
              <textarea rows={2} value={output} onInput={(e) => setOutput(e.currentTarget.value)} />
            </label>
            <button type="submit" disabled={busy}>
              Send output
            </button>
          </form>
        )}
      </div>
    );
  if (item.type === "function_call_output")
    return (
      <div class="tool">
        Output sent for <code>{item.call_id}</code>: {String(item.output)}
      </div>
    );
  if (item.type === "mcp_approval_request") {
    const answer = (approve: boolean) =>
      onSend(
        [{ type: "mcp_approval_response", approval_request_id: item.id, approve }],
        `${approve ? "Approved" : "Denied"} ${item.name ?? "the call"}`,
      );
    return (
      <div class="tool">
        <p>
          Approval asked: <code>{item.name}</code> on <code>{item.server_label}</code>
        </p>
        <pre tabIndex={0} aria-label={`Arguments of ${item.name ?? "the call"}`}>
          {pretty(item.arguments ?? "")}
        </pre>
        {answered.has(item.id ?? "") ? (
          <p class="hint">Answered.</p>
        ) : (
          <>
            <button type="button" disabled={busy} onClick={() => answer(true)}>
              Approve
            </button>{" "}
            <button type="button" disabled={busy} onClick={() => answer(false)}>
              Deny
            </button>
          </>
        )}
      </div>
    );
  }
  if (item.type === "mcp_call")
    return (
      <div class="tool">
        <p>
          MCP call <code>{item.name}</code> on <code>{item.server_label}</code>
        </p>
        <pre tabIndex={0} aria-label={`Call of ${item.name ?? "the tool"}`}>
          {pretty(item.arguments ?? "")}
          {"\n→ "}
          {pretty(item.error ?? item.output ?? "")}
        </pre>
      </div>
    );
  if (item.type === "mcp_list_tools")
    return (
      <div class="tool">
        Tools of <code>{item.server_label}</code>:{" "}
        {(item.tools ?? []).map((t) => t.name).join(", ") || "none"}
      </div>
    );
  if (item.type === "mcp_approval_response")
    return <div class="tool">{item.approve ? "Approved" : "Denied"}</div>;
  return (
    <pre tabIndex={0} aria-label={`Item ${item.type}`}>
      {JSON.stringify(item, null, 2)}
    </pre>
  );
}

export function Playground({ session }: { session: Session }) {
  const { query, route } = useLocation();
  const agentName = query.agent ?? "";
  const [version, setVersion] = useState("");
  const [conversation, setConversation] = useState<string>();
  const [history, setHistory] = useState<Item[]>([]);
  const [turns, setTurns] = useState<Turn[]>([]);
  const [text, setText] = useState("");
  const [error, setError] = useState<unknown>();
  const hostedSession = useRef<string | undefined>(undefined);
  const previous = useRef<string | undefined>(undefined);
  const counter = useRef(0);
  // The call in flight: leaving the chat (or the page) stops it, and the service cancels it.
  const inFlight = useRef<AbortController | undefined>(undefined);

  const agents = useQuery({
    queryKey: ["agents-all", session.project],
    queryFn: () =>
      call<Page<Agent>>(session.key, projectPath(session.project, "/agents", { limit: "100" })),
  });
  const agent = agents.data?.data.find((a) => a.name === agentName);
  const hosted = agent?.versions.latest.definition.kind === "hosted";
  const versions = useQuery({
    queryKey: ["versions-published", session.project, agentName],
    enabled: agentName !== "",
    queryFn: () =>
      call<Page<Version>>(
        session.key,
        projectPath(session.project, `/agents/${encodeURIComponent(agentName)}/versions`, {
          limit: "100",
        }),
      ),
  });
  // Pages of 20, newest first; `cursors` are the `after` of each page shown before this one.
  const [cursors, setCursors] = useState<string[]>([]);
  const after = cursors.at(-1);
  const conversationsKey = ["conversations", session.project, agentName];
  const conversations = useQuery({
    queryKey: [...conversationsKey, after ?? ""],
    enabled: agentName !== "" && !hosted,
    queryFn: () =>
      call<Page<Conversation>>(
        session.key,
        openaiPath(session.project, "/conversations", {
          agent_name: agentName,
          limit: "20",
          ...(after ? { after } : {}),
        }),
      ),
  });
  useEffect(() => setCursors([]), [agentName]);

  const reset = () => {
    inFlight.current?.abort();
    setConversation(undefined);
    setHistory([]);
    setTurns([]);
    setError(undefined);
    hostedSession.current = undefined;
    previous.current = undefined;
  };
  useEffect(() => {
    reset();
    return () => inFlight.current?.abort();
  }, [agentName]);
  // Another version is another hosted session; a conversation keeps its thread.
  useEffect(() => {
    hostedSession.current = undefined;
    previous.current = undefined;
  }, [version]);

  const openConversation = async (id: string) => {
    reset();
    setConversation(id);
    try {
      const items = await call<Page<Item>>(
        session.key,
        openaiPath(session.project, `/conversations/${encodeURIComponent(id)}/items`, {
          order: "asc",
          limit: "100",
        }),
      );
      setHistory(items.data);
    } catch (err) {
      setError(err);
    }
  };

  const busy = turns.some((t) => t.busy);
  const answered = new Set<string>();
  const sent = [...history, ...turns.flatMap((t) => t.sent)];
  for (const i of sent) {
    if (i.type === "function_call_output" && i.call_id) answered.add(i.call_id);
    if (i.type === "mcp_approval_response" && i.approval_request_id)
      answered.add(i.approval_request_id);
  }
  const send = async (input: Item[] | string, said: string) => {
    setError(undefined);
    const key = ++counter.current;
    const update = (fn: (t: Turn) => Turn) =>
      setTurns((all) => all.map((t) => (t.key === key ? fn(t) : t)));
    const sentItems = typeof input === "string" ? [] : input;
    setTurns((all) => [...all, { key, said, sent: sentItems, items: [], busy: true }]);
    try {
      let thread = conversation;
      if (!hosted && !thread) {
        const created = await call<Conversation>(
          session.key,
          openaiPath(session.project, "/conversations"),
          { method: "POST", body: { metadata: { title: said.slice(0, 64) } } },
        );
        thread = created.id;
        setConversation(thread);
      }
      const body: Record<string, unknown> = {
        input,
        stream: true,
        agent_reference: {
          type: "agent_reference",
          name: agentName,
          ...(version ? { version } : {}),
        },
        ...(thread ? { conversation: thread } : {}),
        ...(hosted && previous.current ? { previous_response_id: previous.current } : {}),
        ...(hosted && hostedSession.current ? { agent_session_id: hostedSession.current } : {}),
      };
      let answered: string | undefined;
      const abort = new AbortController();
      inFlight.current = abort;
      const headers = await streamCall(
        session.key,
        openaiPath(session.project, "/responses"),
        body,
        {
          onEvent: (event) => {
            const e = event as Record<string, unknown>;
            const id = (e.response as ResponseObject | undefined)?.id;
            if (id) answered = id;
            update((t) => applyEvent(t, e));
          },
          onJson: (json) => {
            const response = json as ResponseObject;
            answered = response.id;
            update((t) => ({
              ...t,
              response,
              items: response.output ?? [],
              version: response.agent_reference?.version ?? t.version,
            }));
          },
        },
        abort.signal,
      );
      const sessionId = headers.get("x-agent-session-id");
      if (sessionId) {
        hostedSession.current = sessionId;
        // A hosted agent's answer names no version: its session knows which one runs.
        const s = await call<{ version_indicator?: { agent_version?: string } }>(
          session.key,
          projectPath(
            session.project,
            `/agents/${encodeURIComponent(agentName)}/endpoint/sessions/${encodeURIComponent(sessionId)}`,
          ),
        ).catch(() => undefined);
        const v = s?.version_indicator?.agent_version;
        if (v) update((t) => ({ ...t, version: t.version ?? v }));
      }
      if (answered) previous.current = answered;
      await queryClient.invalidateQueries({ queryKey: conversationsKey });
    } catch (err) {
      update((t) => ({ ...t, error: err }));
    } finally {
      update((t) => ({ ...t, busy: false }));
    }
  };

  const submit = (e: Event) => {
    e.preventDefault();
    const said = text.trim();
    if (!said || !agentName) return;
    setText("");
    void send(said, said);
  };

  const list = conversations.data?.data ?? [];
  return (
    <section class="playground">
      <h1>Playground</h1>
      <ErrorBox error={agents.error ?? versions.error ?? error} />
      <div class="filters">
        <label>
          Agent
          <select
            value={agentName}
            onChange={(e) =>
              route(`/playground?agent=${encodeURIComponent(e.currentTarget.value)}`)
            }
          >
            <option value="">Choose an agent…</option>
            {(agents.data?.data ?? []).map((a) => (
              <option key={a.name} value={a.name}>
                {a.name} ({a.versions.latest.definition.kind})
              </option>
            ))}
          </select>
        </label>
        <label>
          Version
          <select value={version} onChange={(e) => setVersion(e.currentTarget.value)}>
            <option value="">Traffic split decides</option>
            {(versions.data?.data ?? []).map((v) => (
              <option key={v.version} value={v.version}>
                Version {v.version}
              </option>
            ))}
          </select>
        </label>
        <button type="button" onClick={reset} disabled={busy}>
          New chat
        </button>
      </div>
      {agents.data && agents.data.data.length === 0 && (
        <p class="empty">
          No agents in project {session.project} yet: create one with the API, then chat with it
          here.
        </p>
      )}
      {agentName === "" && agents.data && agents.data.data.length > 0 && (
        <p class="empty">Choose an agent to chat with.</p>
      )}
      {agentName !== "" && (
        <div class="chat">
          <aside aria-label="Conversations">
            <h2>Conversations</h2>
            {hosted ? (
              <p class="hint">
                A hosted agent keeps its state in its session; this chat stays in one session
                {hostedSession.current ? ` (${hostedSession.current})` : ""}.
              </p>
            ) : list.length === 0 ? (
              <p class="empty">No conversations with {agentName} yet: send a message.</p>
            ) : (
              <ul>
                {list.map((c) => (
                  <li key={c.id}>
                    <button
                      type="button"
                      class="link"
                      aria-pressed={c.id === conversation}
                      onClick={() => void openConversation(c.id)}
                    >
                      {c.metadata.title ?? c.id}
                    </button>
                    <span class="hint"> {new Date(c.created_at * 1000).toLocaleString()}</span>
                  </li>
                ))}
              </ul>
            )}
            {!hosted && (cursors.length > 0 || conversations.data?.has_more) && (
              <div class="pager">
                <button
                  type="button"
                  disabled={cursors.length === 0}
                  onClick={() => setCursors(cursors.slice(0, -1))}
                >
                  Newer
                </button>
                <button
                  type="button"
                  disabled={!conversations.data?.has_more}
                  onClick={() =>
                    conversations.data?.last_id &&
                    setCursors([...cursors, conversations.data.last_id])
                  }
                >
                  Older
                </button>
              </div>
            )}
          </aside>
          <div class="turns">
            {history.length > 0 && (
              <div class="turn" aria-label="Earlier in this conversation">
                {history.map((item, i) => (
                  <ItemView
                    key={item.id ?? i}
                    item={item}
                    onSend={send}
                    busy={busy}
                    answered={answered}
                  />
                ))}
              </div>
            )}
            {turns.map((t) => (
              <article class="turn" key={t.key} aria-busy={t.busy} data-testid="turn">
                <div class="msg user">
                  <strong>You:</strong> {t.said}
                </div>
                {t.items.map((item, i) => (
                  <ItemView
                    key={`${t.key}-${i}`}
                    item={item}
                    onSend={send}
                    busy={busy}
                    answered={answered}
                  />
                ))}
                {t.response?.output_text !== undefined &&
                  t.items.length === 0 &&
                  !t.response.output && (
                    <div class="msg">
                      <strong>Agent:</strong>{" "}
                      <span data-testid="answer">{t.response.output_text}</span>
                    </div>
                  )}
                <ErrorBox error={t.error} />
                <p class="hint" data-testid="turn-info">
                  {t.busy ? "Answering…" : (t.response?.status ?? "")}
                  {t.version ? ` · version ${t.version}` : ""}
                  {t.response?.usage
                    ? ` · ${t.response.usage.input_tokens} in, ${t.response.usage.output_tokens} out, ${t.response.usage.total_tokens} tokens`
                    : ""}
                </p>
              </article>
            ))}
            {turns.length === 0 && history.length === 0 && (
              <p class="empty">Type a message below to start.</p>
            )}
            <form onSubmit={submit} class="say">
              <label>
                Message
                <textarea
                  rows={3}
                  value={text}
                  onInput={(e) => setText(e.currentTarget.value)}
                  onKeyDown={(e) => {
                    if (e.key === "Enter" && !e.shiftKey) submit(e);
                  }}
                />
              </label>
              <button type="submit" disabled={busy}>
                Send
              </button>
            </form>
          </div>
        </div>
      )}
    </section>
  );
}
