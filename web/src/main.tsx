import { render } from "preact";
import { LocationProvider, Router, Route, lazy, useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { clearSession, loadSession, saveSession, type Session } from "./api.js";
import { queryClient } from "./query.js";
import { SignIn } from "./pages/SignIn.js";
import { AgentList } from "./pages/AgentList.js";
import "./style.css";

// Pages past the first are loaded when first shown, so the first page stays small.
const AgentPage = lazy(() => import("./pages/AgentPage.js").then((m) => m.AgentPage));
const Playground = lazy(() => import("./pages/Playground.js").then((m) => m.Playground));
const KeysPage = lazy(() => import("./pages/Admin.js").then((m) => m.KeysPage));
const DeploymentsPage = lazy(() => import("./pages/Admin.js").then((m) => m.DeploymentsPage));
const UsagePage = lazy(() => import("./pages/Admin.js").then((m) => m.UsagePage));
const CreateAgent = lazy(() => import("./pages/CreateAgent.js").then((m) => m.CreateAgent));
const Deploy = lazy(() => import("./pages/Deploy.js").then((m) => m.Deploy));
const SessionList = lazy(() => import("./pages/SessionList.js").then((m) => m.SessionList));
const SessionPage = lazy(() => import("./pages/SessionPage.js").then((m) => m.SessionPage));

function NotFound() {
  return (
    <section>
      <h1>Not found</h1>
      <p class="empty">
        This page does not exist. Go to the <a href="/agents">agents</a>.
      </p>
    </section>
  );
}

/** `/` has no page of its own: it shows the agents. */
function Home() {
  const { route } = useLocation();
  useEffect(() => route("/agents", true), []);
  return null;
}

function App() {
  const { route } = useLocation();
  const [session, setSession] = useState<Session | undefined>(loadSession);
  const signOut = () => {
    clearSession();
    queryClient.clear();
    setSession(undefined);
    route("/");
  };
  if (!session)
    return (
      <main>
        <SignIn
          onSignedIn={(s) => {
            saveSession(s);
            setSession(s);
            route("/agents");
          }}
        />
      </main>
    );
  return (
    <>
      <header>
        <nav aria-label="Main">
          <a href="/agents">Agents</a>
          <a href="/playground">Playground</a>
          {session.admin && <a href="/manage/keys">Admin</a>}
          <a href="/create-agent">Create agent</a>
          <a href="/deploy">Deploy</a>
          <a href="/sessions">Sessions</a>
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
        <Router>
          <Route path="/" component={Home} />
          <Route path="/agents" component={AgentList} session={session} />
          <Route path="/agents/:name" component={AgentPage} session={session} />
          <Route path="/playground" component={Playground} session={session} />
          <Route path="/manage/keys" component={KeysPage} session={session} />
          <Route path="/manage/deployments" component={DeploymentsPage} session={session} />
          <Route path="/manage/usage" component={UsagePage} session={session} />
          <Route path="/create-agent" component={CreateAgent} session={session} />
          <Route path="/deploy" component={Deploy} session={session} />
          <Route path="/sessions" component={SessionList} session={session} />
          <Route path="/agents/:name/sessions" component={SessionList} session={session} />
          <Route path="/agents/:name/sessions/:id" component={SessionPage} session={session} />
          <Route default component={NotFound} />
        </Router>
      </main>
    </>
  );
}

render(
  <LocationProvider>
    <App />
  </LocationProvider>,
  document.getElementById("app")!,
);
