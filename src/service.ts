import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import type { Config } from "./config/config.js";
import { AgentService } from "./domain/agentService.js";
import { KeyService } from "./domain/keyService.js";
import { noLiveSessions, systemClock, type Clock, type Store } from "./domain/ports.js";
import { connectionLimits } from "./http/connections.js";
import { buildServer } from "./http/server.js";
import { raiseFileLimit } from "./lib/fileLimit.js";
import { validateEndpoint } from "./http/routes/agentRoutes.js";
import { SqliteStore } from "./storage/sqlite/sqliteStore.js";
import { ensureLocalTls } from "./tls/localCa.js";
import { pino, type Logger } from "pino";
import { CodeRuntime, type CodeRuntimeOptions } from "./build/codeRuntime.js";
import { hostNpmSettings } from "./build/dependencies.js";
import { defaultZipLimits, inspectZip } from "./build/zipArchive.js";
import { CodeService } from "./domain/codeService.js";
import { ManifestService } from "./domain/manifestService.js";
import { LocalBlobStore } from "./storage/blobs/localBlobStore.js";
import { BwrapDriver, probeBwrap } from "./sandbox/bwrapDriver.js";
import { detectCgroups } from "./sandbox/cgroups.js";
import { ProcessDriver } from "./sandbox/processDriver.js";
import { HostLayout } from "./sandbox/sandboxProcess.js";
import { checkUidRange, parseUidRange } from "./sandbox/uidPool.js";
import { SessionRuntime } from "./sessions/sessionRuntime.js";
import { HomeVolumes } from "./sessions/homeVolume.js";
import { SessionService } from "./sessions/sessionService.js";
import { SandboxRelay } from "./gateway/sandboxRelay.js";
import { SessionTokens } from "./gateway/sessionTokens.js";
import { Meter } from "./gateway/metering.js";
import { SessionForwarder } from "./forwarder/sessionForwarder.js";
import { ConversationService } from "./responses/conversationService.js";
import { ResponseService } from "./responses/responseService.js";
import { McpTools } from "./tools/mcp.js";
import { DeploymentService } from "./gateway/deploymentService.js";
import { discoverModels, type DiscoveredUpstream, type Discovery } from "./gateway/discovery.js";
import { OpenAiGateway } from "./gateway/openaiGateway.js";
import { SecretBox } from "./gateway/secretBox.js";

/** The composition root: picks the implementations and wires them together. */

export const databaseFile = (config: Config) => path.join(config.dataDir, "agenthost.db");

/** Opens (and migrates) the store in the data directory. */
export async function openStore(config: Config): Promise<Store> {
  // Traversable (not listable) by the sandbox uid, which must reach its own home below.
  mkdirSync(config.dataDir, { recursive: true, mode: 0o711 });
  chmodSync(config.dataDir, 0o711);
  const store = new SqliteStore(databaseFile(config));
  await store.migrate();
  for (const suffix of ["", "-wal", "-shm"]) {
    if (existsSync(databaseFile(config) + suffix)) chmodSync(databaseFile(config) + suffix, 0o600);
  }
  return store;
}

/**
 * The sandbox runtime of this host, or why there is none: cgroups to place sandboxes in,
 * and bubblewrap able to run as the sandbox uid (or the unisolated driver, chosen).
 */
async function openSandboxes(
  store: Store,
  config: Config,
  log: Logger,
  codeRuntime: CodeRuntime,
  relay: { relay: SandboxRelay; tokens: SessionTokens },
): Promise<SessionRuntime | { unavailable: string }> {
  if (process.getuid?.() !== 0)
    return {
      unavailable: "the service must run as root to give each sandbox its own cgroup and uid",
    };
  const group = `agenthost-${createHash("sha256").update(config.dataDir).digest("hex").slice(0, 12)}`;
  const cgroups = detectCgroups(group);
  if ("unavailable" in cgroups) return cgroups;
  if (config.sandboxDriver === "bwrap") {
    const why = probeBwrap(config.sandboxUid, config.dataDir);
    if (why) return { unavailable: why };
  }
  const badRange = checkUidRange(parseUidRange(config.sandboxUidRange)!, config.sandboxUid);
  if (badRange)
    return {
      unavailable: `sandboxUidRange ${config.sandboxUidRange} cannot be used: ${badRange}`,
    };
  if (config.sandboxNetwork === "egress" && spawnSync("slirp4netns", ["--version"]).status !== 0)
    return { unavailable: "sandboxNetwork=egress needs slirp4netns (apt-get install slirp4netns)" };
  const host = await HostLayout.prepare(path.join(config.dataDir, "sandbox"), config.sandboxUid);
  if (host.closedDescriptors.length > 0)
    log.warn(
      { descriptors: host.closedDescriptors },
      "closed descriptors inherited from the parent process (sandboxes would have inherited them)",
    );
  const volumes = await HomeVolumes.open(path.join(config.dataDir, "sandbox"), {
    images: config.sandboxDriver === "bwrap",
    quotaBytes: config.sessionDiskQuotaBytes,
    inodes: config.sessionInodeQuota,
    log,
  });
  const driver =
    config.sandboxDriver === "bwrap"
      ? new BwrapDriver(host, cgroups, relay.relay)
      : new ProcessDriver(host, cgroups, relay.relay);
  codeRuntime.useSandbox(driver);
  if (!driver.isolated)
    log.warn(
      "SANDBOXES ARE NOT ISOLATED: sandboxDriver=process runs agents as plain processes that see this host's files and network. Use it for development only.",
    );
  const runtime = new SessionRuntime(
    store.sessions,
    driver,
    (v) => codeRuntime.runPlan(v),
    systemClock,
    {
      sessionsDir: path.join(config.dataDir, "sessions"),
      poolDir: path.join(config.dataDir, "sandbox", "pool"),
      uidRange: parseUidRange(config.sandboxUidRange)!,
      warmPoolSize: config.warmPoolSize,
      network: config.sandboxNetwork,
      pidsLimit: config.sessionPidsLimit,
      startTimeoutMs: config.sessionStartTimeoutSeconds * 1000,
      stopGraceMs: config.sessionStopGraceSeconds * 1000,
      maxIdleSeconds: config.sessionMaxIdleSeconds,
      ttlSeconds: config.sessionTtlSeconds,
      logMaxBytes: config.sessionLogMaxBytes,
      logLimits: {
        sessionMemoryBytes: config.sessionLogMemoryBytes,
        totalMemoryBytes: config.logMemoryBytes,
        sessionBytesPerSecond: config.sessionLogRateBytes,
      },
      tokens: relay.tokens,
      volumes,
      log,
    },
  );
  await mkdir(path.join(config.dataDir, "sessions"), { recursive: true, mode: 0o711 });
  await runtime.open(
    codeRuntime.knownInterpreters().map((i) => ({ language: i.language, interpreter: i.path })),
  );
  return runtime;
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
  sandboxes: SessionRuntime | { unavailable: string } = { unavailable: "no sandbox runtime" },
  codeRuntime?: CodeRuntime,
  models: {
    /** Models found at start-up, offered in every project. */
    discovered?: readonly DiscoveredUpstream[];
    /** Where `api_key_env` keys are read from, at each call. */
    env?: NodeJS.ProcessEnv;
  } = {},
  sessionTokens = new SessionTokens(),
) {
  const blobs = new LocalBlobStore(path.join(config.dataDir, "blobs"));
  codeRuntime ??= new CodeRuntime(store.agents, blobs, codeRuntimeOptions(config, log));
  const agents = new AgentService({
    agents: store.agents,
    sessions: "unavailable" in sandboxes ? noLiveSessions : sandboxes,
    code: codeRuntime,
    validateEndpoint,
    clock,
    limits: { maxCpu: config.maxVersionCpu, maxMemoryBytes: config.maxVersionMemoryBytes },
  });
  const code = new CodeService({
    agents,
    blobs,
    code: codeRuntime,
    checkZip: async (file, entryPoint) =>
      (await inspectZip(file, zipLimitsOf(config), entryPoint)).unpackedBytes,
    maxZipBytes: config.maxZipBytes,
  });
  const deployments = new DeploymentService({
    deployments: store.deployments,
    projects: store.projects,
    secrets: SecretBox.open(config.dataDir),
    discovered: models.discovered ?? [],
    env: models.env ?? process.env,
    clock,
  });
  const gateway = new OpenAiGateway(deployments, {
    timeoutMs: config.upstreamTimeoutSeconds * 1000,
    retries: config.upstreamRetries,
  });
  const sessions = new SessionService({
    agents: store.agents,
    sessions: store.sessions,
    runtime: sandboxes,
    limits: { perIdentity: config.maxSessionsPerIdentity, perAgent: config.maxSessionsPerAgent },
    ttlSeconds: config.sessionTtlSeconds,
    diskQuotaBytes: config.sessionDiskQuotaBytes,
    usage: store.usage,
    clock,
  });
  const meter = new Meter({
    usage: store.usage,
    sessions: store.sessions,
    agents: store.agents,
    defaults: { tokens: config.budgetTokens, wallClockSeconds: config.budgetWallClockSeconds },
    clock,
    log,
    // A hosted session past its budget ends; its next use answers 429 too.
    sessionSpent: (a, why) => {
      if ("unavailable" in sandboxes || !a.sessionId || !a.agentName) return;
      void sandboxes.stop(
        { project: a.project, agentName: a.agentName, id: a.sessionId },
        { reason: "budget", message: why },
      );
    },
  });
  const mcp = new McpTools({
    timeoutMs: config.mcpTimeoutSeconds * 1000,
    maxOutputBytes: 1024 * 1024,
    log,
  });
  const responses = new ResponseService({
    agents: store.agents,
    responses: store.responses,
    conversations: store.conversations,
    gateway,
    mcp,
    meter,
    forwarder: "unavailable" in sandboxes ? undefined : new SessionForwarder(sessions),
    clock,
    log,
  });
  return {
    agents,
    code,
    codeRuntime,
    manifests: new ManifestService(store.manifests, clock),
    sessions,
    responses,
    conversations: new ConversationService(store.conversations, clock),
    mcp,
    sandboxes,
    keys: new KeyService(store.keys, store.projects, clock),
    meter,
    usage: store.usage,
    deployments,
    sessionTokens,
    gateway,
    projects: store.projects,
    clock,
  };
}

const zipLimitsOf = (config: Config) => ({
  ...defaultZipLimits,
  maxUncompressedBytes: config.maxUnpackedBytes,
});

function codeRuntimeOptions(
  config: Config,
  log: Logger,
  host: () => Promise<{ registry: string; caFile: string | undefined }> = async () => ({
    registry: "https://registry.npmjs.org/",
    caFile: undefined,
  }),
): CodeRuntimeOptions {
  return {
    buildsDir: path.join(config.dataDir, "builds"),
    runtimePolicy: config.runtimePolicy,
    zipLimits: zipLimitsOf(config),
    maxProjectCodeBytes: config.maxProjectCodeBytes,
    buildTimeoutMs: config.buildTimeoutSeconds * 1000,
    buildLimits: {
      cpu: config.buildCpu,
      memoryBytes: config.buildMemoryBytes,
      pids: config.buildPidsLimit,
    },
    buildDiskBytes: config.buildDiskBytes,
    // Read once, at the first install.
    registry: async () => {
      const npm = await host();
      return {
        npmRegistry: npm.registry,
        caFile: config.buildCaFile === "none" ? undefined : (config.buildCaFile ?? npm.caFile),
        network: config.buildNetwork,
      };
    },
    sandboxUid: config.sandboxUid,
    configDir: path.join(config.dataDir, "sandbox", "build"),
    unpackUid: process.getuid?.() === 0 ? config.sandboxUid : undefined,
    log,
  };
}

export interface RunningService {
  app: FastifyInstance;
  /** e.g. https://localhost:8443 */
  origin: string;
  caFile?: string;
  /** A newly generated admin key, shown once. */
  newAdminKey?: string;
  /** The sandbox driver in use, or why sessions cannot run here. */
  sandboxes: { driver: string; isolated: boolean } | { unavailable: string };
  /** Models discovered at start-up (none when discovery is off), and stored deployments. */
  models: Discovery & { stored: number };
  /** Stops accepting requests, finishes the ones in flight, closes the store. */
  close(): Promise<void>;
}

export async function startService(config: Config): Promise<RunningService> {
  const store = await openStore(config);
  const log = pino({ level: config.logLevel });
  const blobs = new LocalBlobStore(path.join(config.dataDir, "blobs"));
  // Temp files of uploads a kill -9 interrupted: nothing else ever removes them.
  await blobs.removeTemp();
  const codeRuntime = new CodeRuntime(
    store.agents,
    blobs,
    // Installs reach the registry the host's npm uses, trusting the CA it trusts.
    codeRuntimeOptions(config, log, () => hostNpmSettings()),
  );
  // Asked while the sandboxes are being prepared (a few seconds at most).
  const discovering: Promise<Discovery> = config.modelDiscovery
    ? discoverModels({ env: process.env, ollamaUrl: config.ollamaUrl })
    : Promise.resolve({ upstreams: [], failures: [] });
  // Sandboxes reach the service's own app through their relays, with their sessions' tokens.
  const relay = { relay: new SandboxRelay(), tokens: new SessionTokens() };
  const sandboxes = await openSandboxes(store, config, log, codeRuntime, relay);
  if ("unavailable" in sandboxes) {
    log.warn({ reason: sandboxes.unavailable }, "sessions are unavailable");
    codeRuntime.useSandbox(sandboxes); // and so are dependency installs
  }
  const discovery = await discovering;
  for (const failure of discovery.failures) log.warn({ failure }, "model discovery failed");
  const services = createServices(
    store,
    config,
    log,
    systemClock,
    sandboxes,
    codeRuntime,
    { discovered: discovery.upstreams, env: process.env },
    relay.tokens,
  );
  let storedDeployments = 0;
  for (const project of await store.projects.list())
    storedDeployments += (await store.deployments.list(project)).length;
  const newAdminKey = await services.keys.ensureAdmin(config.adminKey);
  const stranded = await services.responses.recover();
  if (stranded > 0) log.warn({ responses: stranded }, "responses running at the last stop failed");
  const tls = !config.tls
    ? undefined
    : config.tlsCert && config.tlsKey
      ? { cert: readFileSync(config.tlsCert, "utf8"), key: readFileSync(config.tlsKey, "utf8") }
      : ensureLocalTls(path.join(config.dataDir, "tls"));
  const connections = connectionLimits(raiseFileLimit());
  log.info(
    {
      maxConnections: connections.maxConnections,
      handshakeTimeoutMs: connections.handshakeTimeoutMs,
    },
    "connection limits",
  );
  const app = buildServer(services, {
    https: tls && { cert: tls.cert, key: tls.key },
    connections,
    foundryFeatures: config.foundryFeatures,
    maxJsonBytes: config.maxJsonBytes,
    logKeepAliveMs: config.logKeepAliveSeconds * 1000,
    log,
  });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await store.close();
    throw err;
  }
  relay.relay.serve((req, res) => app.routing(req, res));
  const resumed = await services.codeRuntime.resumeInterrupted();
  if (resumed > 0) log.info({ versions: resumed }, "resuming interrupted builds");
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const host = config.host === "::" || config.host === "0.0.0.0" ? "localhost" : config.host;
  const origin = `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return {
    app,
    origin,
    caFile: tls && "caFile" in tls ? tls.caFile : undefined,
    newAdminKey,
    sandboxes:
      "unavailable" in sandboxes
        ? sandboxes
        : { driver: sandboxes.driverName, isolated: sandboxes.driverName === "bwrap" },
    models: { ...discovery, stored: storedDeployments },
    async close() {
      // Running responses are cancelled (and saved) first: their streams end with them.
      await services.responses.close();
      await services.meter.flush();
      await app.close();
      await services.mcp.close();
      // A running install is killed first (its version stays `creating`), then the sessions.
      await services.codeRuntime.close();
      if (!("unavailable" in sandboxes)) await sandboxes.close();
      await store.close();
    },
  };
}
