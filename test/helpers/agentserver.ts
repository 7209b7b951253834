import { execFile } from "node:child_process";
import { copyFileSync, rmSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import type { ExtraDir } from "./agents.js";
import { repoRoot, tempDir } from "./server.js";

const run = promisify(execFile);

/** packages/agentserver, the Node agents' server package. */
export const agentserverDir = path.join(repoRoot, "packages/agentserver");

let built: Promise<string> | undefined;

/**
 * The package as `npm run build` makes it (its tsconfig, compiled with the repository's tsc),
 * in a temporary directory with its package.json: what an agent vendors. Built once a process.
 */
export function builtAgentserver(): Promise<string> {
  built ??= (async () => {
    const dir = tempDir("agentserver-build-");
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    await run(
      process.execPath,
      [
        path.join(repoRoot, "node_modules/typescript/bin/tsc"),
        "-p",
        path.join(agentserverDir, "tsconfig.json"),
        "--outDir",
        path.join(dir, "dist"),
      ],
      { cwd: repoRoot },
    );
    copyFileSync(path.join(agentserverDir, "package.json"), path.join(dir, "package.json"));
    return dir;
  })();
  return built;
}

/** The built package as a directory of a fixture's zip (default `node_modules/@agenthost/agentserver`). */
export async function agentserverPackage(
  as = "node_modules/@agenthost/agentserver",
): Promise<ExtraDir> {
  return { from: await builtAgentserver(), as };
}
