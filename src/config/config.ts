import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { parseUidRange } from "../sandbox/uidPool.js";
import { isServerName } from "../tls/serverNames.js";

/**
 * The service's settings: one validated, frozen object. Each has a flag and an environment
 * variable (flags win); README.md lists them with their defaults.
 */
const configSchema = z.object({
  /** Where the SQLite file, the local CA and (later) blobs and session homes live. */
  dataDir: z.string().min(1).default("./data"),
  /** Interface to listen on. "localhost": every address it resolves to (127.0.0.1, ::1). */
  host: z.string().min(1).default("localhost"),
  port: z.coerce.number().int().min(0).max(65535).default(8443),
  /** HTTPS (default) with a generated local CA, or a supplied certificate and key. */
  tls: z.boolean().default(true),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  /** More names (DNS names or IP addresses) for the local certificate; a list or "a,b". */
  tlsSan: z
    .preprocess(
      (v) =>
        (Array.isArray(v) ? v : v === undefined ? [] : [v])
          .flatMap((x) => String(x).split(","))
          .map((x) => x.trim())
          .filter((x) => x !== ""),
      z.array(
        z.string().refine(isServerName, "each must be a DNS name (no wildcard) or an IP address"),
      ),
    )
    .optional(),
  /** When set, this secret is an admin key (instead of a generated one). */
  adminKey: z.string().min(16, "must be at least 16 characters").optional(),
  /** "strict": requests must carry the Foundry-Features opt-ins the real service requires. */
  foundryFeatures: z.enum(["lenient", "strict"]).default("lenient"),
  /** Largest JSON request body in bytes. */
  maxJsonBytes: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024),
  /** Largest code zip upload in bytes (Foundry: 250 MB). */
  maxZipBytes: z.coerce
    .number()
    .int()
    .min(1024)
    .default(250 * 1024 * 1024),
  /** Bytes one version's zip may unpack to (checked at upload and while unpacking). */
  maxUnpackedBytes: z.coerce
    .number()
    .int()
    .min(1024)
    .default(750 * 1024 * 1024),
  /** Unpacked bytes of all the code-based versions of one project together. */
  maxProjectCodeBytes: z.coerce
    .number()
    .int()
    .min(1024)
    .default(10 * 1024 ** 3),
  /** When a code_configuration.runtime is not installed: the nearest version, or fail. */
  runtimePolicy: z.enum(["nearest", "exact"]).default("nearest"),
  /** Longest a dependency install (remote_build) may take. */
  buildTimeoutSeconds: z.coerce.number().int().min(1).default(600),
  /** A dependency install's own sandbox limits: memory, CPU cores, processes, disk. */
  buildMemoryBytes: z.coerce
    .number()
    .int()
    .min(64 * 1024 * 1024)
    .default(1024 * 1024 * 1024),
  buildCpu: z.coerce.number().min(0.1).default(1),
  buildPidsLimit: z.coerce.number().int().min(16).default(256),
  /** Bytes a version's build directory may take (code, installed packages, caches). */
  buildDiskBytes: z.coerce
    .number()
    .int()
    .min(16 * 1024 * 1024)
    .default(2 * 1024 * 1024 * 1024),
  /** "egress": installs reach their registries (not the host's loopback); "none": offline. */
  buildNetwork: z.enum(["none", "egress"]).default("egress"),
  /** CA bundle installs trust for their registries; default the host npm's `cafile`; "none". */
  buildCaFile: z.string().min(1).optional(),
  /** "bwrap" isolates each session; "process" runs agents unisolated (development only). */
  sandboxDriver: z.enum(["bwrap", "process"]).default("bwrap"),
  /** Unprivileged host uid (and gid) dependency builds run as; never 0. */
  sandboxUid: z.coerce.number().int().min(1).default(65534),
  /** Host uids for session sandboxes, "FIRST-LAST": each running sandbox gets its own. */
  sandboxUidRange: z
    .string()
    .refine((v) => parseUidRange(v) !== undefined, "must be FIRST-LAST with 1 <= FIRST <= LAST")
    .default("1879048192-1879113727"),
  /** "egress": sandboxes reach the network (not the host's loopback) through slirp4netns. */
  sandboxNetwork: z.enum(["none", "egress"]).default("none"),
  /** Booted sandboxes kept ready per runtime. */
  warmPoolSize: z.coerce.number().int().min(0).max(64).default(2),
  /** How long an agent has to answer its readiness check. */
  sessionStartTimeoutSeconds: z.coerce.number().min(0.1).default(30),
  /** Between SIGTERM and the kill of everything left in a stopping sandbox. */
  sessionStopGraceSeconds: z.coerce.number().min(0).default(10),
  /** Caps every version's idle_timeout_seconds (e.g. to free memory sooner). */
  sessionMaxIdleSeconds: z.coerce.number().min(0.1).optional(),
  /** A session expires (files deleted) this long after its last activity: 30 days. */
  sessionTtlSeconds: z.coerce
    .number()
    .min(1)
    .default(30 * 24 * 3600),
  /** Processes (and threads) one sandbox may have. */
  sessionPidsLimit: z.coerce.number().int().min(8).default(256),
  /** Running sessions per identity in a project, and per agent. */
  maxSessionsPerIdentity: z.coerce.number().int().min(1).default(20),
  maxSessionsPerAgent: z.coerce.number().int().min(1).default(200),
  /** Largest `cpu` a hosted version may ask for: by default, the host's processors. */
  maxVersionCpu: z.coerce.number().min(0.001).default(os.availableParallelism()),
  /** Largest `memory` a hosted version may ask for: by default, half the host's memory. */
  maxVersionMemoryBytes: z.coerce
    .number()
    .int()
    .min(16 * 1024 * 1024)
    .default(Math.floor(os.totalmem() / 2 / 2 ** 20) * 2 ** 20),
  /** A session's console log stops growing at this size. */
  sessionLogMaxBytes: z.coerce
    .number()
    .int()
    .min(4096)
    .default(10 * 1024 * 1024),
  /** Bytes of console history one session keeps in memory. */
  sessionLogMemoryBytes: z.coerce
    .number()
    .int()
    .min(64 * 1024)
    .default(1024 * 1024),
  /** Bytes of console history all sessions together keep in memory. */
  logMemoryBytes: z.coerce
    .number()
    .int()
    .min(1024 * 1024)
    .default(64 * 1024 * 1024),
  /** Bytes of an agent's output read per second; past it the agent's writes wait. */
  sessionLogRateBytes: z.coerce
    .number()
    .int()
    .min(4096)
    .default(1024 * 1024),
  /** Size of one session's home, its own filesystem: the kernel holds the agent to it too. */
  sessionDiskQuotaBytes: z.coerce
    .number()
    .int()
    .min(1024 * 1024)
    .default(1024 * 1024 * 1024),
  /** Files, directories and links one session's home may hold. */
  sessionInodeQuota: z.coerce.number().int().min(16).default(100_000),
  /** Tokens a session (hosted) or conversation (prompt agent) may use; 0 = no limit. */
  budgetTokens: z.coerce.number().int().min(0).default(0),
  /** Seconds a session or conversation may call models after it began; 0 = no limit. */
  budgetWallClockSeconds: z.coerce.number().min(0).default(0),
  /** Longest an MCP server may take to connect, list or run a tool. */
  mcpTimeoutSeconds: z.coerce.number().min(0.1).default(30),
  /** Let MCP servers be on loopback, link-local, private or this host's own addresses. */
  mcpAllowPrivateNetworks: z.boolean().default(false),
  /**
   * Longest an agent may take to answer an MCP tool call or an activity (endpoint protocols);
   * at most a day (a timer cannot run much past 24.8 days).
   */
  answerTimeoutSeconds: z.coerce.number().min(0.1).max(86_400).default(600),
  /** A log stream with nothing to say sends a status line this often. */
  logKeepAliveSeconds: z.coerce.number().min(0.1).default(60),
  /** Longest silence of a model server: before its first chunk, and between two. */
  upstreamTimeoutSeconds: z.coerce.number().min(0.1).default(120),
  /** Longest wait for a hosted agent's answer headers once a forwarded call is sent. */
  agentHeadersTimeoutSeconds: z.coerce.number().min(0.1).max(86_400).default(120),
  /** The largest `invocations` request body passed to an agent (streamed, never held). */
  maxInvocationBytes: z.coerce
    .number()
    .int()
    .min(1)
    .default(1024 * 1024 * 1024),
  /** The largest `invocations_ws` message either way (a bigger one closes with 1009). */
  maxSocketMessageBytes: z.coerce
    .number()
    .int()
    .min(125)
    .default(4 * 1024 * 1024),
  /** Invocations remembered for `GET`/cancel per identity of a project (its oldest forgotten). */
  invocationRecordsPerCaller: z.coerce.number().int().min(1).max(100_000).default(10_000),
  /** An `invocations_ws` connection with no message either way for this long is closed. */
  socketIdleSeconds: z.coerce.number().min(1).default(300),
  /** Retries of a 429, 5xx or connection failure before a model server's first chunk. */
  upstreamRetries: z.coerce.number().int().min(0).max(10).default(2),
  /** Offer the models of OPENAI_API_KEY's server and of a local Ollama in every project. */
  modelDiscovery: z.boolean().default(true),
  /** Where discovery looks for Ollama (its OpenAI-compatible API root). */
  ollamaUrl: z.url({ protocol: /^https?$/ }).default("http://127.0.0.1:11434/v1"),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type Config = Readonly<z.infer<typeof configSchema>>;
export type ConfigInput = z.input<typeof configSchema>;

/**
 * A failure the person starting agenthost can act on: shown as one line, no stack. The exit
 * status is 2 for usage (a flag, a setting, a path given), 1 for what the machine refuses.
 */
export class SetupError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}

/** A bad setting (exit status 2). */
export class ConfigError extends SetupError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** Where the data directory setting comes from, for messages that tell how to choose it. */
export const dataDirHint = "choose another with --data-dir DIR (or AGENTHOST_DATA_DIR)";

export function parseConfig(input: ConfigInput): Config {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = String(issue.path[0]) as keyof ConfigInput;
    const flag = flagNames[key as keyof typeof flagNames];
    throw new ConfigError(
      `Invalid setting ${key} (${flag ? `${flag} or ` : ""}${envNames[key]}): ${issue.message}`,
    );
  }
  const config = result.data;
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new ConfigError("Give both a TLS certificate and a TLS key, or neither.");
  }
  return Object.freeze({ ...config, dataDir: path.resolve(config.dataDir) });
}

/** The settings `agenthost serve` also takes as flags (flags win over the environment). */
export const flagNames = {
  dataDir: "--data-dir",
  host: "--host",
  port: "--port",
  tls: "--no-tls",
  tlsCert: "--tls-cert",
  tlsKey: "--tls-key",
  tlsSan: "--tls-san",
  foundryFeatures: "--foundry-features",
  logLevel: "--log-level",
} as const satisfies { [K in keyof ConfigInput]?: string };

/** The environment variable of each setting. */
const envNames: { [K in keyof ConfigInput]-?: string } = {
  dataDir: "AGENTHOST_DATA_DIR",
  host: "AGENTHOST_HOST",
  port: "AGENTHOST_PORT",
  tls: "AGENTHOST_TLS",
  tlsCert: "AGENTHOST_TLS_CERT",
  tlsKey: "AGENTHOST_TLS_KEY",
  tlsSan: "AGENTHOST_TLS_SAN",
  adminKey: "AGENTHOST_ADMIN_KEY",
  foundryFeatures: "AGENTHOST_FOUNDRY_FEATURES",
  maxJsonBytes: "AGENTHOST_MAX_JSON_BYTES",
  maxZipBytes: "AGENTHOST_MAX_ZIP_BYTES",
  maxUnpackedBytes: "AGENTHOST_MAX_UNPACKED_BYTES",
  maxProjectCodeBytes: "AGENTHOST_MAX_PROJECT_CODE_BYTES",
  runtimePolicy: "AGENTHOST_RUNTIME_POLICY",
  buildTimeoutSeconds: "AGENTHOST_BUILD_TIMEOUT_SECONDS",
  buildMemoryBytes: "AGENTHOST_BUILD_MEMORY_BYTES",
  buildCpu: "AGENTHOST_BUILD_CPU",
  buildPidsLimit: "AGENTHOST_BUILD_PIDS_LIMIT",
  buildDiskBytes: "AGENTHOST_BUILD_DISK_BYTES",
  buildNetwork: "AGENTHOST_BUILD_NETWORK",
  buildCaFile: "AGENTHOST_BUILD_CA_FILE",
  sandboxDriver: "AGENTHOST_SANDBOX_DRIVER",
  sandboxUid: "AGENTHOST_SANDBOX_UID",
  sandboxUidRange: "AGENTHOST_SANDBOX_UID_RANGE",
  sandboxNetwork: "AGENTHOST_SANDBOX_NETWORK",
  warmPoolSize: "AGENTHOST_WARM_POOL_SIZE",
  sessionStartTimeoutSeconds: "AGENTHOST_SESSION_START_TIMEOUT_SECONDS",
  sessionStopGraceSeconds: "AGENTHOST_SESSION_STOP_GRACE_SECONDS",
  sessionMaxIdleSeconds: "AGENTHOST_SESSION_MAX_IDLE_SECONDS",
  sessionTtlSeconds: "AGENTHOST_SESSION_TTL_SECONDS",
  sessionPidsLimit: "AGENTHOST_SESSION_PIDS_LIMIT",
  maxSessionsPerIdentity: "AGENTHOST_MAX_SESSIONS_PER_IDENTITY",
  maxSessionsPerAgent: "AGENTHOST_MAX_SESSIONS_PER_AGENT",
  maxVersionCpu: "AGENTHOST_MAX_VERSION_CPU",
  maxVersionMemoryBytes: "AGENTHOST_MAX_VERSION_MEMORY_BYTES",
  sessionLogMaxBytes: "AGENTHOST_SESSION_LOG_MAX_BYTES",
  sessionLogMemoryBytes: "AGENTHOST_SESSION_LOG_MEMORY_BYTES",
  logMemoryBytes: "AGENTHOST_LOG_MEMORY_BYTES",
  sessionLogRateBytes: "AGENTHOST_SESSION_LOG_RATE_BYTES",
  sessionDiskQuotaBytes: "AGENTHOST_SESSION_DISK_QUOTA_BYTES",
  sessionInodeQuota: "AGENTHOST_SESSION_INODE_QUOTA",
  budgetTokens: "AGENTHOST_BUDGET_TOKENS",
  budgetWallClockSeconds: "AGENTHOST_BUDGET_WALL_CLOCK_SECONDS",
  mcpTimeoutSeconds: "AGENTHOST_MCP_TIMEOUT_SECONDS",
  mcpAllowPrivateNetworks: "AGENTHOST_MCP_ALLOW_PRIVATE_NETWORKS",
  answerTimeoutSeconds: "AGENTHOST_ANSWER_TIMEOUT_SECONDS",
  logKeepAliveSeconds: "AGENTHOST_LOG_KEEPALIVE_SECONDS",
  upstreamTimeoutSeconds: "AGENTHOST_UPSTREAM_TIMEOUT_SECONDS",
  upstreamRetries: "AGENTHOST_UPSTREAM_RETRIES",
  agentHeadersTimeoutSeconds: "AGENTHOST_AGENT_HEADERS_TIMEOUT_SECONDS",
  maxInvocationBytes: "AGENTHOST_MAX_INVOCATION_BYTES",
  maxSocketMessageBytes: "AGENTHOST_MAX_SOCKET_MESSAGE_BYTES",
  socketIdleSeconds: "AGENTHOST_SOCKET_IDLE_SECONDS",
  invocationRecordsPerCaller: "AGENTHOST_INVOCATION_RECORDS_PER_CALLER",
  modelDiscovery: "AGENTHOST_MODEL_DISCOVERY",
  ollamaUrl: "AGENTHOST_OLLAMA_URL",
  logLevel: "AGENTHOST_LOG_LEVEL",
};

const booleans = new Set<keyof ConfigInput>(["tls", "modelDiscovery", "mcpAllowPrivateNetworks"]);

/** Settings from the environment (AGENTHOST_*); unset variables are left out. */
export function configFromEnv(env: NodeJS.ProcessEnv): ConfigInput {
  const bool = (v: string) => !/^(0|false|off|no)$/i.test(v);
  const entries = Object.entries(envNames).flatMap(([key, name]) => {
    const v = env[name];
    if (v === undefined || v === "") return [];
    return [[key, booleans.has(key as keyof ConfigInput) ? bool(v) : v]];
  });
  return Object.fromEntries(entries) as ConfigInput;
}
