import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { request as httpsRequest } from "node:https";
import type { IncomingHttpHeaders } from "node:http";
import { AIProjectClient } from "@azure/ai-projects";
import { RestError } from "@azure/core-rest-pipeline";

export const repoRoot = path.resolve(import.meta.dirname, "../..");

export const testAdminKey = "ahk_test_admin_key_0123456789abcdef";

export interface TestServer {
  /** https://localhost:PORT/api/projects/default */
  endpoint: string;
  origin: string;
  dataDir: string;
  caPem: Buffer;
  adminKey: string;
  /** The server process. */
  pid: number;
  output: () => string;
  /** SIGTERM and wait for a clean exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, no cleanup: a crash. */
  kill(): Promise<void>;
}

/** A fresh directory the sandbox uid can traverse (as a data directory must be). */
export function tempDir(prefix = "agenthost-test-"): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  chmodSync(dir, 0o711);
  return dir;
}

/**
 * Starts the real service (`agenthost serve`) as a child process on a free port over HTTPS,
 * with its own data directory unless one is given (to test restarts).
 */
export async function startServer(
  options: { dataDir?: string; env?: Record<string, string>; args?: string[] } = {},
): Promise<TestServer> {
  const dataDir = options.dataDir ?? tempDir();
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(repoRoot, "src/main.ts"), "serve", ...(options.args ?? [])],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        AGENTHOST_DATA_DIR: dataDir,
        AGENTHOST_PORT: "0",
        AGENTHOST_ADMIN_KEY: testAdminKey,
        AGENTHOST_LOG_LEVEL: "warn",
        // Whatever OPENAI_API_KEY or Ollama this host has, tests see only their own models.
        AGENTHOST_MODEL_DISCOVERY: "off",
        // Tests' MCP servers listen on 127.0.0.1, which the service refuses by default.
        AGENTHOST_MCP_ALLOW_PRIVATE_NETWORKS: "on",
        ...options.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const origin = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 20_000);
    const onData = () => {
      const m = /listening on (https?:\/\/\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output}`));
    });
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  return {
    endpoint: `${origin}/api/projects/default`,
    origin,
    dataDir,
    caPem: origin.startsWith("https")
      ? readFileSync(path.join(dataDir, "tls/ca.pem"))
      : Buffer.alloc(0),
    adminKey: testAdminKey,
    pid: child.pid!,
    output: () => output,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

export function removeDir(dir: string) {
  unmountBelow(dir);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Unmounts what a killed service left mounted below `dir` (session homes are loop-mounted
 * images), so that nothing is deleted through a mount and no loop device stays attached.
 */
export function unmountBelow(dir: string) {
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of points) spawnSync("umount", ["-l", point]);
}

/** The unmodified official client, trusting the server's generated CA. */
export function sdk(
  server: Pick<TestServer, "endpoint" | "caPem">,
  key: string,
  endpoint = server.endpoint,
) {
  const credential = {
    getToken: async () => ({ token: key, expiresOnTimestamp: Date.now() + 3600_000 }),
  };
  return new AIProjectClient(endpoint, credential, {
    tlsOptions: { ca: server.caPem },
    // Fail fast in tests instead of retrying a failure three times.
    retryOptions: { maxRetries: 0 },
  });
}

export type { ChildProcess };

/** One raw HTTPS request to a test server, for what the official client never sends. */
export function httpsJson(
  server: Pick<TestServer, "caPem">,
  method: string,
  url: string,
  options: { headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, ca: server.caPem, headers: options.headers }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString()));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body: text ? JSON.parse(text) : {},
          headers: res.headers,
        }),
      );
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

/** One admin route (`/admin…`) of a test server, with JSON in and out. */
export function adminRequest(
  server: Pick<TestServer, "caPem" | "origin" | "adminKey">,
  method: string,
  route: string,
  body?: unknown,
  key = server.adminKey,
) {
  return httpsJson(server, method, `${server.origin}/admin${route}`, {
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/**
 * Asserts that an official-client call fails as a RestError with this status and code, and,
 * given `param`, that the error envelope (parsed by the client into `details`) names it.
 */
export async function expectRestError(
  call: Promise<unknown>,
  status: number,
  code: string,
  param?: string,
) {
  const err = await call.then(
    () => assert.fail(`expected ${status} ${code}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RestError, `expected a RestError, got ${String(err)}`);
  assert.equal(err.statusCode, status, err.message);
  assert.equal(err.code, code, err.message);
  if (param !== undefined) {
    assert.equal((err.details as { error: { param?: string } }).error.param, param, err.message);
  }
  return err;
}
