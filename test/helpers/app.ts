import path from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { parseConfig } from "../../src/config/config.js";
import { buildServer } from "../../src/http/server.js";
import { createServices, openStore } from "../../src/service.js";
import { removeDir, tempDir } from "./server.js";

export interface TestApp {
  app: FastifyInstance;
  adminKey: string;
  /** Headers for an admin request. */
  auth: { authorization: string };
  close(): Promise<void>;
}

/**
 * The real HTTP stack and a real SQLite file, in-process (Fastify inject): for tests that
 * fire many requests where the transport is not the point.
 */
export async function buildTestApp(
  options: { foundryFeatures?: "lenient" | "strict"; maxJsonBytes?: number } = {},
) {
  const dataDir = tempDir();
  const config = parseConfig({ dataDir: path.join(dataDir, "data") });
  const store = await openStore(config);
  const log = pino({ level: process.env.TEST_LOG ?? "silent" });
  const services = createServices(store, config, log);
  const { secret } = await services.keys.create({ project: "*", admin: true, name: "test admin" });
  const app = buildServer(services, {
    foundryFeatures: options.foundryFeatures ?? "lenient",
    maxJsonBytes: options.maxJsonBytes ?? config.maxJsonBytes,
    log,
  });
  await app.ready();
  return {
    app,
    services,
    adminKey: secret,
    auth: { authorization: `Bearer ${secret}` },
    async close() {
      await app.close();
      await services.codeRuntime.idle();
      await store.close();
      removeDir(dataDir);
    },
  };
}

export const api = (route: string, query = "") =>
  `/api/projects/default${route}?api-version=v1${query ? `&${query}` : ""}`;
