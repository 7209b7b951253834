import { useState } from "preact/hooks";
import { call, type Session } from "../api.js";
import { ErrorBox } from "./ErrorBox.js";

interface CallerInfo {
  project: string;
  admin: boolean;
}

export function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [key, setKey] = useState("");
  const [project, setProject] = useState("default");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const caller = await call<CallerInfo>(key.trim(), "/caller");
      onSignedIn({
        key: key.trim(),
        admin: caller.admin,
        project: caller.project === "*" ? project.trim() || "default" : caller.project,
      });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={submit}>
      <h1>Sign in to agenthost</h1>
      <label for="key">API key</label>
      <input
        id="key"
        type="password"
        autocomplete="off"
        required
        value={key}
        onInput={(e) => setKey(e.currentTarget.value)}
      />
      <label for="project">Project (for admin keys)</label>
      <input id="project" value={project} onInput={(e) => setProject(e.currentTarget.value)} />
      <p class="hint">The key stays in this tab only (session storage).</p>
      <ErrorBox error={error} />
      <button type="submit" disabled={busy}>
        Sign in
      </button>
    </form>
  );
}
