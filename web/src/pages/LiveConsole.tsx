import { useEffect, useRef, useState } from "preact/hooks";
import { Terminal } from "@xterm/xterm";
import { SearchAddon } from "@xterm/addon-search";
import "@xterm/xterm/css/xterm.css";
import { saveBlob } from "../api.js";
import { openLogStream } from "../logStream.js";
import type { LogLine } from "../types.js";

/** Lines the terminal keeps (and a download holds): the tab's memory stays bounded. */
export const scrollbackLines = 5_000;
/** Lines held while paused; older ones are dropped (and counted). */
const pausedLines = 5_000;

const prefix: Record<LogLine["stream"], string> = {
  stdout: "",
  stderr: "\x1b[31merr\x1b[0m ",
  status: "\x1b[36m──\x1b[0m ",
};

/** A line as the terminal shows it: stderr marked red, status lines cyan and dimmed. */
function render(line: LogLine): string {
  // The agent's text keeps its own ANSI colours; a bare line feed would not return the cursor.
  const text = line.message.replace(/\r?\n/g, "\r\n");
  const body = line.stream === "status" ? `\x1b[2m${text}\x1b[0m` : text;
  return `${prefix[line.stream]}${body}\x1b[0m\r\n`;
}

const plain = (line: LogLine) => `${line.timestamp} ${line.stream} ${line.message}`;

/**
 * The session's console: its log stream in a terminal (xterm.js), with follow/pause, search and
 * a download of the lines shown. `onStatus` hears the status lines (the page's history).
 */
export function LiveConsole({
  apiKey,
  path,
  onStatus,
}: {
  apiKey: string;
  path: string;
  onStatus: (line: LogLine) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const latest = useRef<HTMLOutputElement>(null);
  const terminal = useRef<Terminal | undefined>(undefined);
  const search = useRef<SearchAddon | undefined>(undefined);
  const shown = useRef<string[]>([]);
  const held = useRef<LogLine[]>([]);
  const pausedRef = useRef(false);
  const statusRef = useRef(onStatus);
  statusRef.current = onStatus;
  const [paused, setPaused] = useState(false);
  const [state, setState] = useState("connecting");
  const [dropped, setDropped] = useState(0);
  const [heldCount, setHeldCount] = useState(0);
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<string>();

  const show = (lines: LogLine[]) => {
    const term = terminal.current;
    if (!term || lines.length === 0) return;
    term.write(lines.map(render).join(""));
    const kept = shown.current;
    kept.push(...lines.map(plain));
    if (kept.length > scrollbackLines * 1.2) kept.splice(0, kept.length - scrollbackLines);
    if (latest.current) latest.current.textContent = lines.at(-1)!.message;
  };

  useEffect(() => {
    const term = new Terminal({
      scrollback: scrollbackLines,
      convertEol: false,
      disableStdin: true,
      fontSize: 13,
      rows: 24,
      screenReaderMode: false,
      theme: { background: "#111", foreground: "#e8e8e8" },
    });
    const addon = new SearchAddon();
    term.loadAddon(addon);
    term.open(box.current!);
    terminal.current = term;
    search.current = addon;
    const stream = openLogStream(apiKey, path, {
      onLines(lines) {
        for (const line of lines) if (line.stream === "status") statusRef.current(line);
        if (!pausedRef.current) return show(lines);
        const hold = held.current;
        hold.push(...lines);
        if (hold.length > pausedLines) {
          const over = hold.length - pausedLines;
          hold.splice(0, over);
          setDropped((n) => n + over);
        }
        setHeldCount(hold.length);
      },
      onState: (s, detail) => setState(detail ? `${s}: ${detail}` : s),
    });
    return () => {
      stream.stop();
      term.dispose();
    };
  }, [apiKey, path]);

  const togglePause = () => {
    const next = !pausedRef.current;
    pausedRef.current = next;
    setPaused(next);
    if (!next) {
      show(held.current);
      held.current = [];
      setHeldCount(0);
      terminal.current?.scrollToBottom();
    }
  };

  const find = (e: Event, backwards = false) => {
    e.preventDefault();
    if (!query) return;
    const hit = backwards
      ? search.current?.findPrevious(query)
      : search.current?.findNext(query, { incremental: false });
    setFound(hit ? `“${query}” found` : `“${query}” not found`);
  };

  const download = () =>
    saveBlob(
      new Blob([shown.current.join("\n") + "\n"], { type: "text/plain" }),
      "session-console.log",
    );

  return (
    <div class="live-console">
      <div class="filters">
        <button type="button" aria-pressed={paused} onClick={togglePause}>
          {paused ? "Follow" : "Pause"}
        </button>
        <form class="console-search" onSubmit={(e) => find(e)}>
          <label>
            Search the console
            <input type="search" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
          </label>
          <button type="submit">Find next</button>
          <button type="button" onClick={(e) => find(e, true)}>
            Find previous
          </button>
        </form>
        <button type="button" onClick={download}>
          Download console
        </button>
      </div>
      <p class="hint">
        Stream: <span data-testid="stream-state">{state}</span>
        {paused && <> · paused, {heldCount} new lines held</>}
        {dropped > 0 && <> · {dropped} lines dropped while paused</>}
        {found && <> · {found}</>}
      </p>
      <div
        ref={box}
        class="terminal"
        role="log"
        aria-label="Session console"
        data-testid="terminal"
      />
      <p class="hint">
        Latest line: <output ref={latest} data-testid="latest-line" />
      </p>
    </div>
  );
}
