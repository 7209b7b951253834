import { spawn } from "node:child_process";
import { existsSync, type WriteStream } from "node:fs";
import path from "node:path";
import type { Interpreter } from "./runtimes.js";

/** A command that installs a version's dependencies into its build directory. */
export interface InstallStep {
  manifest: string;
  command: string;
  args: string[];
}

/**
 * `remote_build`: what to run for the manifest found in the code. Python packages go to
 * `.python_packages/` (put on PYTHONPATH when the agent runs); Node packages to
 * `node_modules/`. Package install scripts are not run (npm --ignore-scripts).
 */
export function installStep(appDir: string, interpreter: Interpreter): InstallStep | undefined {
  const has = (f: string) => existsSync(path.join(appDir, f));
  if (interpreter.language === "python") {
    const target = path.join(appDir, ".python_packages");
    const pip = [
      interpreter.path,
      "-m",
      "pip",
      "install",
      "--no-input",
      "--disable-pip-version-check",
      "--target",
      target,
    ];
    if (has("requirements.txt")) {
      return {
        manifest: "requirements.txt",
        command: pip[0]!,
        args: [...pip.slice(1), "-r", "requirements.txt"],
      };
    }
    if (has("pyproject.toml"))
      return { manifest: "pyproject.toml", command: pip[0]!, args: [...pip.slice(1), "."] };
    return undefined;
  }
  if (has("package.json")) {
    return {
      manifest: "package.json",
      command: "npm",
      args: [
        "install",
        "--omit=dev",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
      ],
    };
  }
  return undefined;
}

/** Runs a build command, its output into the build log; resolves with the exit code. */
export function runLogged(
  step: InstallStep,
  options: {
    cwd: string;
    log: WriteStream;
    env: NodeJS.ProcessEnv;
    timeoutMs: number;
    /** Aborting kills the command (the service is shutting down). */
    signal: AbortSignal;
  },
): Promise<{ code: number | null; timedOut: boolean }> {
  return new Promise((resolve) => {
    options.log.write(`$ ${[step.command, ...step.args].join(" ")}\n`);
    const child = spawn(step.command, step.args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe"],
      signal: options.signal,
      killSignal: "SIGKILL",
    });
    child.stdout.pipe(options.log, { end: false });
    child.stderr.pipe(options.log, { end: false });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs);
    child.on("error", (err) => options.log.write(`${err.message}\n`));
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, timedOut });
    });
  });
}
