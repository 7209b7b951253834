import { useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { ApiError, call, projectPath, type Session } from "../api.js";
import { queryClient, useQuery } from "../query.js";
import { ErrorBox } from "./ErrorBox.js";
import type { Agent, ModelDeployment } from "../types.js";

type Field = "name" | "model" | "instructions" | "temperature" | "tools";

/** Which control an API error's `param` is about (`definition.tools[0].type` → tools). */
function fieldOf(param: string | undefined): Field | undefined {
  if (!param) return undefined;
  if (param === "agent_name" || param === "name") return "name";
  const m = /^(?:definition\.)?(model|instructions|temperature|tools)\b/.exec(param);
  return m ? (m[1] as Field) : undefined;
}

/** Tools as typed: a JSON array of objects, or the reason it is not one. */
function parseTools(text: string): { tools?: unknown[]; problem?: string } {
  if (!text.trim()) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { problem: `not valid JSON (${(err as Error).message})` };
  }
  if (!Array.isArray(value)) return { problem: "must be a JSON array of tools" };
  const bad = value.findIndex((t) => typeof t !== "object" || t === null || Array.isArray(t));
  if (bad >= 0) return { problem: `item ${bad} must be an object such as {"type": "…"}` };
  return { tools: value };
}

export function CreateAgent({ session }: { session: Session }) {
  const { route } = useLocation();
  const [form, setForm] = useState({
    name: "",
    model: "",
    instructions: "",
    temperature: "",
    tools: "",
  });
  const [problems, setProblems] = useState<Partial<Record<Field, string>>>({});
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const deployments = useQuery({
    queryKey: ["deployments", session.project],
    queryFn: () =>
      call<{ value: ModelDeployment[] }>(session.key, projectPath(session.project, "/deployments")),
  });
  const models = deployments.data?.value ?? [];
  const model = form.model || models[0]?.name || "";
  const set = (field: Field) => (e: { currentTarget: { value: string } }) =>
    setForm({ ...form, [field]: e.currentTarget.value });

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    const found: Partial<Record<Field, string>> = {};
    const tools = parseTools(form.tools);
    if (tools.problem) found.tools = `Tools: ${tools.problem}.`;
    if (!form.name.trim()) found.name = "Name: required.";
    if (!model) found.model = "Model: add a deployment to the project first.";
    if (form.temperature.trim() && !Number.isFinite(Number(form.temperature)))
      found.temperature = "Temperature: must be a number.";
    setProblems(found);
    if (Object.keys(found).length > 0) return;
    const definition: Record<string, unknown> = { kind: "prompt", model };
    if (form.instructions.trim()) definition.instructions = form.instructions;
    if (form.temperature.trim()) definition.temperature = Number(form.temperature);
    if (tools.tools) definition.tools = tools.tools;
    setBusy(true);
    try {
      const agent = await call<Agent>(session.key, projectPath(session.project, "/agents"), {
        method: "POST",
        body: { name: form.name.trim(), definition },
      });
      await queryClient.invalidateQueries({ queryKey: ["agents", session.project] });
      route(`/agents/${encodeURIComponent(agent.name)}`);
    } catch (err) {
      const field = err instanceof ApiError ? fieldOf(err.param) : undefined;
      if (field && err instanceof ApiError)
        setProblems({ [field]: `${err.code} (${err.param ?? ""}): ${err.message}` });
      else setError(err);
    } finally {
      setBusy(false);
    }
  };

  const problem = (field: Field) =>
    problems[field] ? (
      <span id={`${field}-problem`} class="problem" role="alert">
        {problems[field]}
      </span>
    ) : null;
  const described = (field: Field) =>
    problems[field] ? { "aria-invalid": true, "aria-describedby": `${field}-problem` } : {};

  return (
    <section>
      <h1>Create a prompt agent</h1>
      <ErrorBox error={deployments.error} />
      {deployments.data && models.length === 0 && (
        <p class="empty">
          Project {session.project} has no model deployments. An admin adds one with{" "}
          <code>PUT /admin/projects/{session.project}/deployments/NAME</code>; it shows up here.
        </p>
      )}
      <form class="stack" onSubmit={submit} noValidate>
        <label>
          Name
          <input value={form.name} onInput={set("name")} {...described("name")} />
          {problem("name")}
        </label>
        <label>
          Model (deployment)
          <select value={model} onChange={set("model")} {...described("model")}>
            {models.map((d) => (
              <option value={d.name}>
                {d.name} ({d.modelName})
              </option>
            ))}
          </select>
          {problem("model")}
        </label>
        <label>
          Instructions
          <textarea
            rows={4}
            value={form.instructions}
            onInput={set("instructions")}
            {...described("instructions")}
          />
          {problem("instructions")}
        </label>
        <label>
          Temperature (0–2, empty for the model's default)
          <input
            inputMode="decimal"
            value={form.temperature}
            onInput={set("temperature")}
            {...described("temperature")}
          />
          {problem("temperature")}
        </label>
        <label>
          Tools (JSON array, empty for none)
          <textarea
            rows={4}
            spellcheck={false}
            value={form.tools}
            onInput={set("tools")}
            placeholder='[{"type": "code_interpreter"}]'
            {...described("tools")}
          />
          {problem("tools")}
        </label>
        <ErrorBox error={error} />
        <button type="submit" disabled={busy}>
          Create agent
        </button>
      </form>
    </section>
  );
}
