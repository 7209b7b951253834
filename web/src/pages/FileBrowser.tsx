import { useEffect, useState } from "preact/hooks";
import {
  call,
  download as downloadBlob,
  projectPath,
  saveBlob,
  upload as uploadBytes,
  type Session,
} from "../api.js";
import { queryClient, useQuery } from "../query.js";
import { ErrorBox } from "./ErrorBox.js";
import type { FileEntry, FileListing } from "../types.js";

/** Entries one directory shows (pages of 100 read until then). */
const maxEntries = 1_000;
/** A text preview shows at most this much of a file. */
const previewBytes = 64 * 1024;
const imageTypes: Record<string, string> = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
};

const join = (dir: string, name: string) => (dir === "." ? name : `${dir}/${name}`);

interface Target {
  session: Session;
  filesPath: (query: Record<string, string>) => string;
  contentPath: (query: Record<string, string>) => string;
  filesKey: unknown[];
}

async function listAll(target: Target, dir: string) {
  const entries: FileEntry[] = [];
  let after: string | undefined;
  let more: boolean;
  do {
    const page = await call<FileListing>(
      target.session.key,
      target.filesPath({ path: dir, order: "asc", limit: "100", ...(after ? { after } : {}) }),
    );
    entries.push(...page.entries);
    more = page.has_more;
    after = page.last_id ?? undefined;
  } while (more && after && entries.length < maxEntries);
  return { entries, more };
}

function Directory({
  target,
  dir,
  onPreview,
  onError,
}: {
  target: Target;
  dir: string;
  onPreview: (path: string) => void;
  onError: (err: unknown) => void;
}) {
  const [open, setOpen] = useState<Record<string, boolean>>({});
  const { data, error } = useQuery({
    queryKey: [...target.filesKey, dir],
    queryFn: () => listAll(target, dir),
  });
  if (error) return <ErrorBox error={error} />;
  if (!data) return <p class="hint">Loading {dir}…</p>;
  if (data.entries.length === 0)
    return (
      <p class="empty">{dir === "." ? "The home is empty. Upload a file above." : "Empty."}</p>
    );
  const remove = async (path: string, isDirectory: boolean) => {
    if (!confirm(`Delete ${path}${isDirectory ? " and everything in it" : ""}?`)) return;
    try {
      await call(target.session.key, target.filesPath({ path, recursive: String(isDirectory) }), {
        method: "DELETE",
      });
      await queryClient.invalidateQueries({ queryKey: target.filesKey });
    } catch (err) {
      onError(err);
    }
  };
  const download = async (path: string, name: string) => {
    try {
      saveBlob(await downloadBlob(target.session.key, target.contentPath({ path })), name);
    } catch (err) {
      onError(err);
    }
  };
  return (
    <ul class="tree">
      {data.entries.map((e) => {
        const path = join(dir, e.name);
        return (
          <li key={e.name}>
            <span class="file-row">
              {e.is_directory ? (
                <button
                  type="button"
                  class="link"
                  aria-expanded={!!open[e.name]}
                  onClick={() => setOpen({ ...open, [e.name]: !open[e.name] })}
                >
                  {open[e.name] ? "▾" : "▸"} {e.name}/
                </button>
              ) : (
                <span data-testid="file-name">{e.name}</span>
              )}
              {!e.is_directory && <span class="hint">{e.size} B</span>}
              {!e.is_directory && (
                <>
                  <button type="button" onClick={() => onPreview(path)}>
                    Preview <span class="sr">{path}</span>
                  </button>
                  <button type="button" onClick={() => download(path, e.name)}>
                    Download <span class="sr">{path}</span>
                  </button>
                </>
              )}
              <button type="button" class="danger" onClick={() => remove(path, e.is_directory)}>
                Delete <span class="sr">{path}</span>
              </button>
            </span>
            {e.is_directory && open[e.name] && (
              <Directory target={target} dir={path} onPreview={onPreview} onError={onError} />
            )}
          </li>
        );
      })}
      {data.more && <li class="hint">Only the first {maxEntries} entries are shown.</li>}
    </ul>
  );
}

function Preview({ target, path }: { target: Target; path: string }) {
  const [text, setText] = useState<string>();
  const [image, setImage] = useState<string>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    let url: string | undefined;
    let live = true;
    setText(undefined);
    setImage(undefined);
    setError(undefined);
    void downloadBlob(target.session.key, target.contentPath({ path })).then(async (blob) => {
      if (!live) return;
      const type = imageTypes[path.split(".").pop()?.toLowerCase() ?? ""];
      if (type) {
        url = URL.createObjectURL(new Blob([blob], { type }));
        setImage(url);
      } else {
        const head = await blob.slice(0, previewBytes).text();
        if (live)
          setText(blob.size > previewBytes ? `${head}\n… (${blob.size} bytes in all)` : head);
      }
    }, setError);
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [path]);
  return (
    <section aria-label={`Preview of ${path}`}>
      <h3>Preview of {path}</h3>
      <ErrorBox error={error} />
      {image && <img src={image} alt={`Image ${path}`} class="preview" />}
      {text !== undefined && (
        <pre tabIndex={0} data-testid="preview" aria-label={`Contents of ${path}`}>
          {text}
        </pre>
      )}
    </section>
  );
}

/** The session's home: a tree of its files, upload (with progress), download, delete, preview. */
export function FileBrowser({
  session,
  agent,
  id,
}: {
  session: Session;
  agent: string;
  id: string;
}) {
  const base = `/agents/${encodeURIComponent(agent)}/endpoint/sessions/${encodeURIComponent(id)}/files`;
  const target: Target = {
    session,
    filesPath: (q) => projectPath(session.project, base, q),
    contentPath: (q) => projectPath(session.project, `${base}/content`, q),
    filesKey: ["files", session.project, agent, id],
  };
  const [file, setFile] = useState<File>();
  const [dir, setDir] = useState("");
  const [progress, setProgress] = useState<number>();
  const [error, setError] = useState<unknown>();
  const [done, setDone] = useState<string>();
  const [preview, setPreview] = useState<string>();

  const upload = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    setError(undefined);
    setDone(undefined);
    setProgress(0);
    const path = join(dir.trim().replace(/^\/+|\/+$/g, "") || ".", file.name);
    try {
      await uploadBytes(
        session.key,
        target.contentPath({ path }),
        file,
        { method: "PUT", headers: { "content-type": "application/octet-stream" } },
        (sent, total) => setProgress(total ? sent / total : 0),
      );
      setDone(`Uploaded ${path}.`);
      await queryClient.invalidateQueries({ queryKey: target.filesKey });
    } catch (err) {
      setError(err);
    } finally {
      setProgress(undefined);
    }
  };

  return (
    <div class="files">
      <form class="filters" onSubmit={upload}>
        <label>
          File to upload
          <input type="file" onChange={(e) => setFile(e.currentTarget.files?.[0])} />
        </label>
        <label>
          Into folder (blank for the home)
          <input value={dir} onInput={(e) => setDir(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={!file || progress !== undefined}>
          Upload
        </button>
        {progress !== undefined && (
          <label>
            Upload progress
            <progress max={1} value={progress} />
          </label>
        )}
      </form>
      {done && <p role="status">{done}</p>}
      <ErrorBox error={error} />
      <button
        type="button"
        onClick={() => void queryClient.invalidateQueries({ queryKey: target.filesKey })}
      >
        Refresh files
      </button>
      <Directory target={target} dir="." onPreview={setPreview} onError={setError} />
      {preview && <Preview target={target} path={preview} />}
    </div>
  );
}
