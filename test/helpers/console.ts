import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "./server.js";

const webDir = path.join(repoRoot, "web");

function newest(dir: string): number {
  let time = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    time = Math.max(time, entry.isDirectory() ? newest(full) : statSync(full).mtimeMs);
  }
  return time;
}

/** Builds web/dist (as `npm run build` does) when it is missing or older than its sources. */
export function ensureConsoleBuilt() {
  const index = path.join(webDir, "dist/index.html");
  const sources = Math.max(
    newest(path.join(webDir, "src")),
    statSync(path.join(webDir, "index.html")).mtimeMs,
    statSync(path.join(webDir, "vite.config.ts")).mtimeMs,
  );
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  const vite = path.join(repoRoot, "node_modules/vite/bin/vite.js");
  const run = spawnSync(process.execPath, [vite, "build", "--config", "web/vite.config.ts"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`vite build failed:\n${run.stdout}\n${run.stderr}`);
}
