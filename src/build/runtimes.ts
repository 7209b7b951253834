import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";

/**
 * Runtime names of `code_configuration.runtime` (python_3_12, node_22, …) resolved to
 * interpreters on this host. Policy when the exact version is missing:
 * - "nearest" (default): the installed interpreter of the same language closest in version,
 *   with a warning in the build log;
 * - "exact": the version fails with `runtime_unavailable`.
 */
export type RuntimePolicy = "nearest" | "exact";

export interface Interpreter {
  language: "python" | "node";
  /** [major, minor] */
  version: [number, number];
  path: string;
}

export interface ResolvedRuntime {
  interpreter: Interpreter;
  /** Set when the interpreter is not the exact version asked for. */
  warning?: string;
}

const runtimePattern = /^(python|node)_(\d+)(?:_(\d+))?$/;

export function parseRuntime(
  runtime: string,
): { language: "python" | "node"; version: number[] } | undefined {
  const m = runtimePattern.exec(runtime);
  if (!m) return undefined;
  const version = [Number(m[2]), ...(m[3] === undefined ? [] : [Number(m[3])])];
  return { language: m[1] as "python" | "node", version };
}

/** Finds python3.X and node on the host (system locations only: sandboxes see /usr). */
export function discoverInterpreters(dirs = ["/usr/bin", "/usr/local/bin"]): Interpreter[] {
  const found = new Map<string, Interpreter>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const file = path.join(dir, name);
      const language = /^python3\.\d+$/.test(name)
        ? "python"
        : name === "node"
          ? "node"
          : undefined;
      if (!language || !existsSync(file)) continue;
      const version = versionOf(file, language);
      const key = `${language}${version?.join(".")}`;
      if (version && !found.has(key)) found.set(key, { language, version, path: file });
    }
  }
  return [...found.values()];
}

function versionOf(file: string, language: "python" | "node"): [number, number] | undefined {
  try {
    const out = execFileSync(file, ["--version"], {
      encoding: "utf8",
      timeout: 5000,
      stdio: "pipe",
    });
    const m = (language === "python" ? /Python (\d+)\.(\d+)/ : /v(\d+)\.(\d+)/).exec(out);
    return m ? [Number(m[1]), Number(m[2])] : undefined;
  } catch {
    return undefined;
  }
}

export function resolveRuntime(
  runtime: string,
  interpreters: Interpreter[],
  policy: RuntimePolicy,
): ResolvedRuntime | { error: string } {
  const wanted = parseRuntime(runtime);
  if (!wanted) return { error: `Unknown runtime '${runtime}'; use e.g. python_3_12 or node_22.` };
  const candidates = interpreters.filter((i) => i.language === wanted.language);
  // Python is matched on major.minor; Node on its major version.
  const score = (i: Interpreter) =>
    wanted.language === "python"
      ? Math.abs(i.version[1] - (wanted.version[1] ?? i.version[1])) +
        100 * Math.abs(i.version[0] - wanted.version[0]!)
      : Math.abs(i.version[0] - wanted.version[0]!);
  const best = [...candidates].sort(
    (a, b) => score(a) - score(b) || b.version[1] - a.version[1],
  )[0];
  if (!best)
    return { error: `No ${wanted.language} interpreter is installed for runtime '${runtime}'.` };
  if (score(best) === 0) return { interpreter: best };
  const have = best.version.join(".");
  if (policy === "exact") {
    return {
      error: `Runtime '${runtime}' is not installed (nearest: ${wanted.language} ${have}).`,
    };
  }
  return {
    interpreter: best,
    warning: `Runtime '${runtime}' is not installed; using ${wanted.language} ${have} (${best.path}).`,
  };
}
