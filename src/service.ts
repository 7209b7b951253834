import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { createSecureContext } from "node:tls";
import { dataDirHint, SetupError, type Config } from "./config/config.js";
import { AgentService } from "./domain/agentService.js";
import { KeyService } from "./domain/keyService.js";
import { noLiveSessions, systemClock, type Clock, type Store } from "./domain/ports.js";
import { connectionLimits } from "./http/connections.js";
import { buildServer } from "./http/server.js";
import { raiseFileLimit } from "./lib/fileLimit.js";
import { DataDirLock } from "./lib/dataDirLock.js";
import { validateEndpoint } from "./http/routes/agentRoutes.js";
import { SqliteStore } from "./storage/sqlite/sqliteStore.js";
import { ensureLocalTls } from "./tls/localCa.js";
import { certificateNames, serverUrls } from "./tls/serverNames.js";
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
import { InvocationService } from "./protocols/invocations/invocationService.js";
import { ConversationService } from "./responses/conversationService.js";
import { ResponseService } from "./responses/responseService.js";
import { AgentMcpServer } from "./protocols/mcp/agentMcpServer.js";
import { defaultAnswerOptions } from "./protocols/agentAnswer.js";
import { ActivityService } from "./protocols/activity/activityService.js";
import { A2aService } from "./protocols/a2a/a2aService.js";
import { McpTools } from "./tools/mcp.js";
import { DeploymentService } from "./gateway/deploymentService.js";
import { discoverModels, type DiscoveredUpstream, type Discovery } from "./gateway/discovery.js";
import { OpenAiGateway } from "./gateway/openaiGateway.js";
import { SecretBox } from "./gateway/secretBox.js";

/** The composition root: picks the implementations and wires them together. */

export const databaseFile = (config: Config) => path.join(config.dataDir, "agenthost.db");

/** Opens (and migrates) the store in the data directory, creating both if need be. */
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
 * Opens the store of a data directory `agenthost serve` made, for the offline commands; a
 * directory without one is refused (only `serve` creates a data directory).
 */
export async function openExistingStore(config: Config): Promise<Store> {
  const file = databaseFile(config);
  if (!existsSync(file))
    throw new SetupError(
      `no agenthost database in ${config.dataDir} (looked for ${file}); give the data directory of your service with --data-dir DIR (or AGENTHOST_DATA_DIR): only agenthost serve creates one`,
      2,
    );
  const store = new SqliteStore(file);
  await store.migrate();
  return store;
}

/** Why a file system call failed, in words. */
const errnoText = (err: unknown) => {
  const code = (err as NodeJS.ErrnoException).code ?? "";
  const words: Record<string, string> = {
    EROFS: "read-only file system",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    ENOENT: "no such file or directory",
    ENOTDIR: "a part of the path is not a directory",
    EISDIR: "is a directory",
    ENOSPC: "no space left on the device",
  };
  return words[code] ?? (err as Error).message;
};

/**
 * Creates the data directory if need be and takes its lock, before anything in it is read
 * or changed: a second service on the same directory stops here, having touched nothing.
 */
function holdDataDir(config: Config): DataDirLock {
  const dir = config.dataDir;
  // One level at a time, so that a failure names its true cause (a read-only parent, a file).
  const missing: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    let stat;
    try {
      stat = statSync(d, { throwIfNoEntry: false });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOTDIR") throw err;
    }
    if (stat?.isDirectory()) break;
    if (stat)
      throw new SetupError(
        `${d === dir ? "the data directory" : "a part of the data directory"} ${d} is not a directory; ${dataDirHint}`,
        2,
      );
    missing.unshift(d);
  }
  for (const d of missing) {
    try {
      mkdirSync(d, { mode: 0o711 });
    } catch (err) {
      throw new SetupError(
        `cannot create the data directory ${dir}: ${errnoText(err)}; make ${path.dirname(d)} writable or ${dataDirHint}`,
        1,
      );
    }
  }
  let lock: ReturnType<typeof DataDirLock.acquire>;
  try {
    lock = DataDirLock.acquire(dir);
  } catch (err) {
    if (!(err as NodeJS.ErrnoException).code) throw err;
    throw new SetupError(
      `cannot write in the data directory ${dir}: ${errnoText(err)}; make it writable or ${dataDirHint}`,
      1,
    );
  }
  if ("heldBy" in lock)
    throw new SetupError(
      `the data directory ${dir} is in use by another agenthost service (${lock.heldBy ? `pid ${lock.heldBy}` : "pid unknown"}); stop it first, or ${dataDirHint}`,
      2,
    );
  return lock;
}

/** The certificate and key given by --tls-cert/--tls-key, read and checked as a pair. */
function suppliedTls(certFile: string, keyFile: string) {
  const read = (file: string, flag: string) => {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new SetupError(
        `cannot read the TLS ${flag === "--tls-cert" ? "certificate" : "key"} ${file}: ${errnoText(err)}; give a PEM file with ${flag} FILE (or ${flag === "--tls-cert" ? "AGENTHOST_TLS_CERT" : "AGENTHOST_TLS_KEY"}), or leave both out for a local CA`,
        2,
      );
    }
  };
  const pair = { cert: read(certFile, "--tls-cert"), key: read(keyFile, "--tls-key") };
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new SetupError(
      `the TLS certificate ${certFile} and key ${keyFile} cannot be used: ${(err as Error).message}; give a PEM certificate and its private key`,
      2,
    );
  }
  return pair;
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
    allowPrivateNetworks: config.mcpAllowPrivateNetworks,
    log,
  });
  const forwarder =
    "unavailable" in sandboxes
      ? undefined
      : new SessionForwarder(sessions, {
          answerTimeoutMs: config.agentHeadersTimeoutSeconds * 1000,
        });
  const invocations = new InvocationService(forwarder, {
    maxBodyBytes: config.maxInvocationBytes,
    recordsPerCaller: config.invocationRecordsPerCaller,
    maxRecords: 100_000,
    socket: {
      maxMessageBytes: config.maxSocketMessageBytes,
      handshakeTimeoutMs: config.agentHeadersTimeoutSeconds * 1000,
      acceptTimeoutMs: socketAcceptMs(config),
      highWaterBytes: 1024 * 1024,
      idleMs: config.socketIdleSeconds * 1000,
      pingMs: 30_000,
    },
  });
  const responses = new ResponseService({
    agents: store.agents,
    responses: store.responses,
    conversations: store.conversations,
    gateway,
    mcp,
    meter,
    forwarder,
    clock,
    log,
  });
  const answers = { ...defaultAnswerOptions, timeoutMs: config.answerTimeoutSeconds * 1000 };
  const conversations = new ConversationService(store.conversations, clock);
  return {
    agents,
    code,
    codeRuntime,
    manifests: new ManifestService(store.manifests, clock),
    sessions,
    responses,
    conversations,
    agentMcp: new AgentMcpServer({ responses, log, answers }),
    activities: new ActivityService({
      responses,
      forwarder,
      conversations: store.activity,
      clock,
      answers,
    }),
    a2a: new A2aService({
      repo: store.a2a,
      responses,
      conversations,
      answers,
      clock,
      log,
    }),
    invocations,
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
  /** e.g. https://localhost:8443: the first of `urls` */
  origin: string;
  /** Every URL the service answers at (and its local certificate covers). */
  urls: string[];
  caFile?: string;
  /** The local CA was replaced by this start (it did not permit the names): trust it anew. */
  caReplaced: boolean;
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
  // Checked before the data directory is touched: a bad path fails with nothing changed.
  const supplied =
    config.tls && config.tlsCert && config.tlsKey
      ? suppliedTls(config.tlsCert, config.tlsKey)
      : undefined;
  const lock = holdDataDir(config);
  try {
    return await startHolding(config, lock, supplied);
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function startHolding(
  config: Config,
  lock: DataDirLock,
  supplied: { cert: string; key: string } | undefined,
): Promise<RunningService> {
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
  const stranded = await services.responses.recover();
  if (stranded > 0) log.warn({ responses: stranded }, "responses running at the last stop failed");
  const strandedTasks = await services.a2a.recover();
  if (strandedTasks > 0)
    log.warn({ tasks: strandedTasks }, "A2A tasks running at the last stop failed");
  const tls: { cert: string; key: string; caFile?: string } | undefined = !config.tls
    ? undefined
    : (supplied ??
      ensureLocalTls(
        path.join(config.dataDir, "tls"),
        certificateNames(config.host, config.tlsSan ?? []),
      ));
  // A WebSocket handshake's connection outlives the service's own deadline for its start.
  const connections = connectionLimits(raiseFileLimit(), socketAcceptMs(config) + 5_000);
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
    await services.codeRuntime.close();
    if (!("unavailable" in sandboxes)) await sandboxes.close();
    await store.close();
    throw err;
  }
  // Generated only once the service listens, so the start that makes it is the one that
  // prints it: a start that fails (a port in use) leaves it for the next one.
  const newAdminKey = await services.keys.ensureAdmin(config.adminKey);
  relay.relay.serve((req, res) => app.routing(req, res));
  const resumed = await services.codeRuntime.resumeInterrupted();
  if (resumed > 0) log.info({ versions: resumed }, "resuming interrupted builds");
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const urls = serverUrls(tls ? "https" : "http", config.host, port);
  return {
    app,
    origin: urls[0]!,
    urls,
    caFile: tls?.caFile,
    caReplaced: tls && "caReplaced" in tls ? tls.caReplaced === true : false,
    newAdminKey,
    sandboxes:
      "unavailable" in sandboxes
        ? sandboxes
        : { driver: sandboxes.driverName, isolated: sandboxes.driverName === "bwrap" },
    models: { ...discovery, stored: storedDeployments },
    async close() {
      // The whole shutdown fits in the sandboxes' stop grace, whatever clients do meanwhile.
      const deadline = Date.now() + config.sessionStopGraceSeconds * 1000;
      // Running responses are cancelled (and saved) first: their streams end with them.
      // Running A2A tasks are cancelled and end (canceled, saved) within the grace.
      await services.a2a.close(Math.max(0, deadline - Date.now()));
      await services.responses.close();
      await services.meter.flush();
      // No new requests; log streams end at once (a last status frame). Requests in flight
      // may finish while the sandboxes stop: an agent that drains on SIGTERM ends its answers.
      const drained = app.close();
      await services.mcp.close();
      // A running install is killed first (its version stays `creating`), then the sessions.
      await services.codeRuntime.close();
      if (!("unavailable" in sandboxes)) await sandboxes.close();
      // Past the grace, connections still open are cut.
      const cut = new AbortController();
      await Promise.race([
        drained,
        sleep(Math.max(0, deadline - Date.now()), undefined, { signal: cut.signal }).catch(
          () => {},
        ),
      ]);
      cut.abort();
      app.server.closeAllConnections();
      await drained;
      await services.meter.flush(); // what the last requests used
      await store.close();
      lock.release();
    },
  };
}

/** An `invocations_ws` start: its session's start, then the agent's handshake. */
function socketAcceptMs(config: Config): number {
  return (config.sessionStartTimeoutSeconds + config.agentHeadersTimeoutSeconds) * 1000;
}
