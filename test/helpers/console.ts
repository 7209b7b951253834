import { spawnSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import tls from "node:tls";
import { chromium, type Browser } from "playwright-core";
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

/**
 * The SHA-256 of the server certificate's public key (base64), as Chromium's
 * `--ignore-certificate-errors-spki-list` wants it: the browser accepts this one key (the
 * test service's own, issued by its per-data-directory CA) and still refuses any other
 * certificate that does not validate.
 */
export async function serverKeyPin(origin: string, ca: Buffer): Promise<string> {
  const url = new URL(origin);
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const socket = tls.connect(
      { host: url.hostname, port: Number(url.port), ca, servername: url.hostname },
      () => {
        resolve(socket.getPeerCertificate().raw);
        socket.end();
      },
    );
    socket.on("error", reject);
  });
  const spki = new X509Certificate(raw).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

/** Debian's Chromium (never a downloaded browser), headless, trusting only `server`'s key. */
export async function launchChromium(server: { origin: string; caPem: Buffer }): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--ignore-certificate-errors-spki-list=${await serverKeyPin(server.origin, server.caPem)}`,
    ],
  });
}
