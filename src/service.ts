import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import type { Config } from "./config/config.js";
import { AgentService } from "./domain/agentService.js";
import { KeyService } from "./domain/keyService.js";
import { noLiveSessions, systemClock, type Clock, type Store } from "./domain/ports.js";
import { buildServer } from "./http/server.js";
import { validateEndpoint } from "./http/routes/agentRoutes.js";
import { SqliteStore } from "./storage/sqlite/sqliteStore.js";
import { ensureLocalTls } from "./tls/localCa.js";
import { pino, type Logger } from "pino";
import { CodeRuntime } from "./build/codeRuntime.js";
import { defaultZipLimits, inspectZip } from "./build/zipArchive.js";
import { CodeService } from "./domain/codeService.js";
import { ManifestService } from "./domain/manifestService.js";
import { LocalBlobStore } from "./storage/blobs/localBlobStore.js";

/** The composition root: picks the implementations and wires them together. */

export const databaseFile = (config: Config) => path.join(config.dataDir, "agenthost.db");

/** Opens (and migrates) the store in the data directory. */
export async function openStore(config: Config): Promise<Store> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = new SqliteStore(databaseFile(config));
  await store.migrate();
  return store;
}

/**
 * Every service over one store and one data directory. Code-based versions interrupted by a
 * restart are provisioned again (`resume`).
 */
export function createServices(
  store: Store,
  config: Config,
  log: Logger,
  clock: Clock = systemClock,
) {
  const blobs = new LocalBlobStore(path.join(config.dataDir, "blobs"));
  const codeRuntime = new CodeRuntime(store.agents, blobs, {
    buildsDir: path.join(config.dataDir, "builds"),
    runtimePolicy: config.runtimePolicy,
    zipLimits: defaultZipLimits,
    buildTimeoutMs: config.buildTimeoutSeconds * 1000,
    log,
  });
  const agents = new AgentService({
    agents: store.agents,
    sessions: noLiveSessions,
    code: codeRuntime,
    validateEndpoint,
    clock,
  });
  const code = new CodeService({
    agents,
    blobs,
    code: codeRuntime,
    checkZip: async (file, entryPoint) =>
      void (await inspectZip(file, defaultZipLimits, entryPoint)),
    maxZipBytes: config.maxZipBytes,
  });
  return {
    agents,
    code,
    codeRuntime,
    manifests: new ManifestService(store.manifests, clock),
    keys: new KeyService(store.keys, store.projects, clock),
    projects: store.projects,
    clock,
  };
}

export interface RunningService {
  app: FastifyInstance;
  /** e.g. https://localhost:8443 */
  origin: string;
  caFile?: string;
  /** A newly generated admin key, shown once. */
  newAdminKey?: string;
  /** Stops accepting requests, finishes the ones in flight, closes the store. */
  close(): Promise<void>;
}

export async function startService(config: Config): Promise<RunningService> {
  const store = await openStore(config);
  const log = pino({ level: config.logLevel });
  const services = createServices(store, config, log);
  const newAdminKey = await services.keys.ensureAdmin(config.adminKey);
  const tls = !config.tls
    ? undefined
    : config.tlsCert && config.tlsKey
      ? { cert: readFileSync(config.tlsCert, "utf8"), key: readFileSync(config.tlsKey, "utf8") }
      : ensureLocalTls(path.join(config.dataDir, "tls"));
  const app = buildServer(services, {
    https: tls && { cert: tls.cert, key: tls.key },
    foundryFeatures: config.foundryFeatures,
    maxJsonBytes: config.maxJsonBytes,
    log,
  });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await store.close();
    throw err;
  }
  const resumed = await services.codeRuntime.resumeInterrupted();
  if (resumed > 0) log.info({ versions: resumed }, "resuming interrupted builds");
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const host = config.host === "::" || config.host === "0.0.0.0" ? "localhost" : config.host;
  return {
    app,
    origin: `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`,
    caFile: tls && "caFile" in tls ? tls.caFile : undefined,
    newAdminKey,
    async close() {
      await app.close();
      await services.codeRuntime.close();
      await store.close();
    },
  };
}
