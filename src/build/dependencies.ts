import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import type { RunPaths } from "../sandbox/driver.js";
import type { Interpreter } from "./runtimes.js";

const execFileAsync = promisify(execFile);

/** A command that installs a version's dependencies into its code directory, in a sandbox. */
export interface InstallStep {
  manifest: string;
  argv: (paths: RunPaths) => string[];
  env: (paths: RunPaths) => Record<string, string>;
  /** "egress" where the install needs a package registry. */
  network: "none" | "egress";
}

/** How installs reach their registries: the host's own npm settings, read once at start. */
export interface RegistrySettings {
  /** The npm registry URL (`npm config get registry` on the host). */
  npmRegistry: string;
  /** A CA bundle (PEM) for the registries, or undefined for the runtime's built-in CAs. */
  caFile: string | undefined;
  /** "none": no install reaches any network. */
  network: "none" | "egress";
}

/** File names in the build's config directory (see `writeBuildConfig`). */
export const configFiles = {
  userNpmrc: "user-npmrc",
  globalNpmrc: "global-npmrc",
  ca: "ca.pem",
} as const;

/** PATH of an install's sandbox: its npm and pip are the machine's own. */
export const buildPath = "/usr/local/bin:/usr/bin:/bin";

const basics = (paths: RunPaths) => ({
  HOME: paths.home,
  PATH: buildPath,
  LANG: "C.UTF-8",
  TZ: "UTC",
  TMPDIR: path.join(paths.home, "tmp"),
  // git (npm's git dependencies) reads no system or user configuration.
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_TERMINAL_PROMPT: "0",
});

/**
 * `remote_build`: what to run for the manifest found in the code. Python packages go to
 * `.python_packages/` (put on PYTHONPATH when the agent runs); Node packages to
 * `node_modules/`. Package install scripts are not run (npm --ignore-scripts). Neither
 * installer reads a configuration file of the upload or the host: pip gets
 * PIP_CONFIG_FILE=/dev/null, npm empty user and global configs (the upload's `.npmrc` is
 * removed before the install, see `neutralisedFiles`) and its settings as npm_config_*
 * variables, which win over any file. pip gets no network when requirements.txt says
 * `--no-index` (everything it installs is in the upload).
 */
export function installStep(
  appDir: string,
  interpreter: Interpreter,
  registry: RegistrySettings,
): InstallStep | undefined {
  const has = (f: string) => existsSync(path.join(appDir, f));
  const ca = (paths: RunPaths) =>
    registry.caFile ? path.join(paths.config, configFiles.ca) : undefined;
  if (interpreter.language === "python") {
    const env = (paths: RunPaths): Record<string, string> => ({
      ...basics(paths),
      PIP_CONFIG_FILE: "/dev/null",
      PIP_NO_INPUT: "1",
      PIP_DISABLE_PIP_VERSION_CHECK: "1",
      PIP_CACHE_DIR: path.join(paths.home, "pip-cache"),
      PYTHONNOUSERSITE: "1",
      ...(ca(paths) ? { PIP_CERT: ca(paths)! } : {}),
    });
    const pip = [interpreter.path, "-m", "pip", "install", "--target", ".python_packages"];
    if (has("requirements.txt")) {
      const offline = /^\s*--no-index\b/m.test(readHead(path.join(appDir, "requirements.txt")));
      return {
        manifest: "requirements.txt",
        argv: () => [...pip, "-r", "requirements.txt"],
        env,
        network: offline ? "none" : registry.network,
      };
    }
    if (has("pyproject.toml"))
      return {
        manifest: "pyproject.toml",
        argv: () => [...pip, "."],
        env,
        network: registry.network,
      };
    return undefined;
  }
  if (has("package.json")) {
    return {
      manifest: "package.json",
      argv: () => [
        "npm",
        "install",
        "--omit=dev",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
      ],
      env: (paths) => ({
        ...basics(paths),
        npm_config_userconfig: path.join(paths.config, configFiles.userNpmrc),
        npm_config_globalconfig: path.join(paths.config, configFiles.globalNpmrc),
        npm_config_cache: path.join(paths.home, "npm-cache"),
        npm_config_registry: registry.npmRegistry,
        npm_config_ignore_scripts: "true",
        npm_config_git: "git",
        npm_config_update_notifier: "false",
        // git (git dependencies over https) trusts the same CA bundle.
        ...(ca(paths) ? { npm_config_cafile: ca(paths)!, GIT_SSL_CAINFO: ca(paths)! } : {}),
      }),
      network: registry.network,
    };
  }
  return undefined;
}

/** Files of the upload an installer would read as its configuration: removed before it runs. */
export const neutralisedFiles = [".npmrc"];

/** The first 64 KiB of a file (enough to see its options). */
function readHead(file: string): string {
  try {
    return readFileSync(file, "utf8").slice(0, 64 * 1024);
  } catch {
    return "";
  }
}

/** The npm registry npm uses when none is configured. */
const defaultRegistry = "https://registry.npmjs.org/";

/**
 * Variables that tie an npm to another npm's installation: `npm run` and `npm exec` export
 * the parent's prefix and global config, so the machine's npm asked with them would read the
 * parent's global npmrc instead of its own.
 */
const installationVariables = /^npm_config_(globalconfig|prefix|global_prefix)$/i;

/**
 * The host's npm registry and CA bundle, or defaults when npm is missing. Asked of the npm on
 * the service's own PATH (`npm config get …`, so its user and global npmrc files and
 * `npm_config_*` variables count); when that one names no CA file (e.g. a Node installed under
 * another prefix, whose global npmrc is empty), of the npm the installs run, the one on
 * `buildPath` with its own global npmrc; then NODE_EXTRA_CA_CERTS. Both are asked from "/",
 * so no project `.npmrc` of wherever the service was started counts (an upload's never does).
 */
export async function hostNpmSettings(
  options: { env?: NodeJS.ProcessEnv; machinePath?: string } = {},
): Promise<{ registry: string; caFile: string | undefined }> {
  const env = options.env ?? process.env;
  const asked = [await npmConfig(env)];
  if (!asked[0]!.cafile) {
    const own = Object.fromEntries(
      Object.entries(env).filter(([key]) => !installationVariables.test(key)),
    );
    asked.push(await npmConfig({ ...own, PATH: options.machinePath ?? buildPath }));
  }
  const registry =
    asked.map((a) => a.registry).find((r) => r && r !== defaultRegistry) ?? defaultRegistry;
  const caFile = asked.map((a) => a.cafile).find(Boolean) ?? (env.NODE_EXTRA_CA_CERTS || undefined);
  return { registry, caFile };
}

/** `npm config get cafile registry` of the npm found on `env.PATH`; {} when there is none. */
async function npmConfig(
  env: NodeJS.ProcessEnv,
): Promise<{ cafile?: string | undefined; registry?: string | undefined }> {
  const out = await execFileAsync("npm", ["config", "get", "cafile", "registry"], {
    encoding: "utf8",
    timeout: 15_000,
    cwd: "/",
    env,
  }).catch(() => ({ stdout: "" }));
  const lines = out.stdout.split("\n");
  const get = (key: string) => {
    const value = lines
      .find((l) => l.startsWith(`${key}=`))
      ?.slice(key.length + 1)
      .trim();
    return value && value !== "null" && value !== "undefined" ? value : undefined;
  };
  return { cafile: get("cafile"), registry: get("registry") };
}
