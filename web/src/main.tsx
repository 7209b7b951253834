import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { clearSession, loadSession, saveSession, type Session } from "./api.js";
import { SignIn } from "./pages/SignIn.js";
import { AgentList } from "./pages/AgentList.js";
import { AgentPage } from "./pages/AgentPage.js";
import { navigate } from "./router.js";
import "./style.css";

function usePath() {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    addEventListener("popstate", on);
    return () => removeEventListener("popstate", on);
  }, []);
  return path;
}

function App() {
  const path = usePath();
  const [session, setSession] = useState<Session | undefined>(loadSession);
  const signOut = () => {
    clearSession();
    setSession(undefined);
    navigate("/");
  };
  if (!session)
    return (
      <main>
        <SignIn
          onSignedIn={(s) => {
            saveSession(s);
            setSession(s);
            navigate("/agents");
          }}
        />
      </main>
    );
  const agent = /^\/agents\/([^/]+)$/.exec(path);
  return (
    <>
      <header>
        <nav aria-label="Main">
          <a
            href="/agents"
            onClick={(e) => {
              e.preventDefault();
              navigate("/agents");
            }}
          >
            Agents
          </a>
        </nav>
        <p class="who">
          Project <strong data-testid="project">{session.project}</strong>
          {session.admin ? (
            <span class="badge">admin key</span>
          ) : (
            <span class="badge">project key</span>
          )}
        </p>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        {agent ? (
          <AgentPage session={session} name={decodeURIComponent(agent[1]!)} />
        ) : (
          <AgentList session={session} />
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
