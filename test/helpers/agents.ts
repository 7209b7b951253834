import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { AIProjectClient, AgentVersion, HostedAgentDefinition } from "@azure/ai-projects";
import { repoRoot } from "./server.js";
import { makeZip, sha256 } from "./zip.js";

/** The fixture agents in test/fixtures/agents (Python stdlib or Node built-ins only). */
export const fixtureDir = (name: string) => path.join(repoRoot, "test/fixtures/agents", name);

/** A zip of one fixture agent's directory. */
export function zipFixture(name: string): Buffer {
  const dir = fixtureDir(name);
  return makeZip(
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => {
        const file = path.join(e.parentPath, e.name);
        return { name: path.relative(dir, file), data: readFileSync(file) };
      }),
  );
}

export interface DeployOptions {
  cpu?: string;
  memory?: string;
  env?: Record<string, string>;
  idleTimeoutSeconds?: number;
}

/** Uploads a fixture agent as a new code-based version and waits until it is built. */
export async function deployFixture(
  client: AIProjectClient,
  agentName: string,
  fixture: string,
  options: DeployOptions = {},
): Promise<AgentVersion> {
  const node = fixture.endsWith("-node");
  const definition = {
    kind: "hosted",
    cpu: options.cpu ?? "1",
    memory: options.memory ?? "256Mi",
    code_configuration: {
      runtime: node ? "node_20" : "python_3_11",
      entry_point: node ? ["node", "index.js"] : ["python", "main.py"],
    },
    protocol_versions: [{ protocol: "responses", version: "2.0.0" }],
    ...(options.env ? { environment_variables: options.env } : {}),
    ...(options.idleTimeoutSeconds
      ? { session_configuration: { idle_timeout_seconds: options.idleTimeoutSeconds } }
      : {}),
  } as unknown as HostedAgentDefinition;
  const zip = zipFixture(fixture);
  const created = await client.agents.createVersionFromCode(agentName, sha256(zip), {
    metadata: { definition },
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
