import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, AgentVersion, HostedAgentDefinition } from "@azure/ai-projects";
import { repoRoot } from "./server.js";
import { makeZip, sha256 } from "./zip.js";

/** The fixture agents in test/fixtures/agents (Python stdlib or Node built-ins only). */
export const fixtureDir = (name: string) => path.join(repoRoot, "test/fixtures/agents", name);

/** A directory of the host put into a fixture's zip, e.g. a package as `node_modules/<name>`. */
export interface ExtraDir {
  /** Host directory. */
  from: string;
  /** Its place in the zip. */
  as: string;
  /** Which of its files (paths relative to `from`) go in; default all. */
  include?: (relative: string) => boolean;
}

/** The files of `dir` (recursively), named relative to it. */
function filesOf(dir: string, include: (relative: string) => boolean = () => true) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .filter(include)
    .map((name) => ({ name, data: readFileSync(path.join(dir, name)) }));
}

/** A zip of one fixture agent's directory, with `extra` host directories added. */
export function zipFixture(name: string, extra: ExtraDir[] = []): Buffer {
  return makeZip([
    ...filesOf(fixtureDir(name)),
    ...extra.flatMap((x) =>
      filesOf(x.from, x.include).map((f) => ({
        name: path.posix.join(x.as, f.name),
        data: f.data,
        deflate: true,
      })),
    ),
  ]);
}

/**
 * The stock `openai` npm client (it has no dependencies) as a fixture's
 * `node_modules/openai`: its code as published, without sources, maps and type declarations.
 */
export const openaiPackage: ExtraDir = {
  from: path.join(repoRoot, "node_modules/openai"),
  as: "node_modules/openai",
  include: (f) => !f.startsWith(`src${path.sep}`) && !/\.(map|d\.ts|d\.mts|md)$/.test(f),
};

export interface DeployOptions {
  cpu?: string;
  memory?: string;
  env?: Record<string, string>;
  idleTimeoutSeconds?: number;
  /** Host directories added to the fixture's zip (e.g. `openaiPackage`). */
  extraDirs?: ExtraDir[];
  /** The version's metadata (e.g. `budget_tokens`). */
  metadata?: Record<string, string>;
  /** `code_configuration.dependency_resolution` (default: the service's, `bundled`). */
  dependencyResolution?: "bundled" | "remote_build";
}

/** Uploads a fixture agent as a new code-based version and waits until it is built. */
export async function deployFixture(
  client: AIProjectClient,
  agentName: string,
  fixture: string,
  options: DeployOptions = {},
): Promise<AgentVersion> {
  // A Node fixture is started as `node index.js` (echo-node, echo-agentserver, …).
  const node = existsSync(path.join(fixtureDir(fixture), "index.js"));
  const definition = {
    kind: "hosted",
    cpu: options.cpu ?? "1",
    memory: options.memory ?? "256Mi",
    code_configuration: {
      runtime: node ? "node_20" : "python_3_11",
      entry_point: node ? ["node", "index.js"] : ["python", "main.py"],
      ...(options.dependencyResolution
        ? { dependency_resolution: options.dependencyResolution }
        : {}),
    },
    protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
    ...(options.env ? { environment_variables: options.env } : {}),
    ...(options.idleTimeoutSeconds
      ? { session_configuration: { idle_timeout_seconds: options.idleTimeoutSeconds } }
      : {}),
  } as unknown as HostedAgentDefinition;
  const zip = zipFixture(fixture, options.extraDirs);
  const created = await client.agents.createVersionFromCode(agentName, sha256(zip), {
    metadata: { definition, ...(options.metadata ? { metadata: options.metadata } : {}) },
    code: zip,
  });
  for (let i = 0; i < 600; i++) {
    const v = await client.agents.getVersion(agentName, created.version);
    if (v.status !== "creating") {
      if (v.status !== "active") throw new Error(`build failed: ${JSON.stringify(v)}`);
      return v;
    }
    await sleep(50);
  }
  throw new Error("build did not finish");
}
