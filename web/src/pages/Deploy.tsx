import { useEffect, useRef, useState } from "preact/hooks";
import { zip } from "fflate";
import { call, projectPath, streamEvents, upload, type Session } from "../api.js";
import { queryClient } from "../query.js";
import { ErrorBox } from "./ErrorBox.js";
import type { Version } from "../types.js";

const runtimes = ["python_3_11", "python_3_12", "python_3_13", "node_20", "node_22", "node_24"];

/** A chosen folder as a zip (in the browser, by fflate), paths relative to the folder. */
async function zipFolder(files: File[]): Promise<Blob> {
  const entries: Record<string, Uint8Array> = {};
  for (const f of files) {
    const relative = f.webkitRelativePath.split("/").slice(1).join("/") || f.name;
    entries[relative] = new Uint8Array(await f.arrayBuffer());
  }
  const bytes = await new Promise<Uint8Array>((resolve, reject) =>
    zip(entries, { level: 6 }, (err, data) => (err ? reject(err) : resolve(data))),
  );
  return new Blob([bytes as BlobPart], { type: "application/zip" });
}

async function sha256Hex(blob: Blob): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

interface LogLine {
  id: number;
  stream: string;
  message: string;
}

/** A code zip's default limits at the service: entries, and the upload's bytes (250 MiB). */
const maxFiles = 20_000;
const maxBytes = 250 * 1024 * 1024;

/** The most lines the page keeps of a build log (the service keeps them all). */
const maxLines = 2000;

export function Deploy({ session }: { session: Session }) {
  const [name, setName] = useState("");
  const [runtime, setRuntime] = useState(runtimes[0]!);
  const [entry, setEntry] = useState("python main.py");
  const [remoteBuild, setRemoteBuild] = useState(true);
  const [code, setCode] = useState<{ blob: Blob; label: string }>();
  const [dragging, setDragging] = useState(false);
  const [progress, setProgress] = useState<{ sent: number; total: number }>();
  const [version, setVersion] = useState<Version>();
  const [lines, setLines] = useState<LogLine[]>([]);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const abort = useRef<AbortController | undefined>(undefined);
  useEffect(() => () => abort.current?.abort(), []);

  const choose = (files: FileList | null) => {
    const file = files?.[0];
    if (file) setCode({ blob: file, label: `${file.name} (${file.size} bytes)` });
  };
  const chooseFolder = async (files: FileList | null) => {
    if (!files || files.length === 0) return;
    setError(undefined);
    // The service's own limits (docs/api.md, "Hosted code"), told before zipping in memory.
    const bytes = [...files].reduce((n, f) => n + f.size, 0);
    if (files.length > maxFiles || bytes > maxBytes)
      return setError(
        new Error(
          `The folder has ${files.length} files, ${bytes} bytes: the service takes at most ${maxFiles} files and ${maxBytes} bytes.`,
        ),
      );
    const blob = await zipFolder([...files]);
    const folder = files[0]!.webkitRelativePath.split("/")[0] ?? "folder";
    setCode({ blob, label: `folder ${folder}, ${files.length} files zipped (${blob.size} bytes)` });
  };

  const path = (rest: string) =>
    projectPath(session.project, `/agents/${encodeURIComponent(name.trim())}${rest}`);

  const watchBuild = async (v: Version) => {
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    let n = 0;
    try {
      await streamEvents(
        session.key,
        path(`/versions/${v.version}/build:logstream`),
        (event) => {
          if (event.event !== "log") return;
          const frame = JSON.parse(event.data) as { stream?: string; message?: string };
          const line = { id: n++, stream: frame.stream ?? "", message: frame.message ?? "" };
          setLines((all) => [...all, line].slice(-maxLines));
        },
        controller.signal,
      );
    } catch (err) {
      if (!controller.signal.aborted) setError(err);
    }
    // The stream ends with the build; the version then says how it ended.
    for (let i = 0; i < 50 && !controller.signal.aborted; i++) {
      const now = await call<Version>(session.key, path(`/versions/${v.version}`));
      setVersion(now);
      if (now.status !== "creating") break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await queryClient.invalidateQueries({ queryKey: ["agents", session.project] });
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setVersion(undefined);
    setLines([]);
    setProgress(undefined);
    if (!code) return setError(new Error("Choose a zip or a folder of code first."));
    const definition = {
      kind: "hosted",
      cpu: "0.5",
      memory: "256Mi",
      protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
      code_configuration: {
        runtime,
        entry_point: entry.trim().split(/\s+/),
        ...(remoteBuild ? { dependency_resolution: "remote_build" } : {}),
      },
    };
    setBusy(true);
    try {
      const body = new FormData();
      body.append("metadata", JSON.stringify({ definition }));
      body.append("code", code.blob, "code.zip");
      const created = await upload<Version>(
        session.key,
        path("/versions"),
        body,
        { method: "POST", headers: { "x-ms-code-zip-sha256": await sha256Hex(code.blob) } },
        (sent, total) => setProgress({ sent, total }),
      );
      setVersion(created);
      await watchBuild(created);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const percent = progress && progress.total > 0 ? (100 * progress.sent) / progress.total : 0;
  const status = version?.status ?? "";
  return (
    <section>
      <h1>Deploy a hosted agent</h1>
      <form class="stack" onSubmit={submit}>
        <label>
          Agent name (a new version if it exists)
          <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Runtime
          <select value={runtime} onChange={(e) => setRuntime(e.currentTarget.value)}>
            {runtimes.map((r) => (
              <option value={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Entry point (command and arguments)
          <input required value={entry} onInput={(e) => setEntry(e.currentTarget.value)} />
        </label>
        <label class="inline">
          <input
            type="checkbox"
            checked={remoteBuild}
            onChange={(e) => setRemoteBuild(e.currentTarget.checked)}
          />
          Install dependencies (requirements.txt, pyproject.toml, package.json) when building
        </label>
        <div
          class={dragging ? "drop dragging" : "drop"}
          data-testid="drop-zone"
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={(e) => {
            e.preventDefault();
            setDragging(false);
            choose(e.dataTransfer?.files ?? null);
          }}
        >
          <p>Drop the code's zip here, or choose it:</p>
          <label>
            Code zip
            <input
              type="file"
              accept=".zip,application/zip"
              onChange={(e) => choose(e.currentTarget.files)}
            />
          </label>
          <label>
            Or a folder (zipped here, in the browser)
            <input
              type="file"
              {...{ webkitdirectory: true }}
              onChange={(e) => void chooseFolder(e.currentTarget.files)}
            />
          </label>
          <p data-testid="chosen">{code ? `Chosen: ${code.label}` : "Nothing chosen yet."}</p>
        </div>
        <ErrorBox error={error} />
        <button type="submit" disabled={busy}>
          Deploy
        </button>
      </form>
      {progress && (
        <label>
          Upload
          <progress max={100} value={percent}>
            {Math.round(percent)}%
          </progress>
          <span>
            {progress.sent} of {progress.total} bytes sent
          </span>
        </label>
      )}
      {version && (
        <>
          <h2>
            Version {version.version}:{" "}
            <span data-testid="build-status" class={status === "failed" ? "warn" : ""}>
              {status}
            </span>
          </h2>
          {version.status_reason && status !== "creating" && (
            <div role="alert" class={status === "failed" ? "error" : ""}>
              <strong>{version.status_reason.code}</strong>: {version.status_reason.message}
            </div>
          )}
          {status === "active" && (
            <p>
              <a href={`/agents/${encodeURIComponent(name.trim())}`}>Open agent {name.trim()}</a>
            </p>
          )}
          <h2>Build log</h2>
          <pre class="log" tabIndex={0} aria-label="Build log" data-testid="build-log">
            {lines.map((l) => (
              <div key={l.id} class={`line ${l.stream}`}>
                {l.message}
              </div>
            ))}
          </pre>
        </>
      )}
    </section>
  );
}
