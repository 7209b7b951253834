import { parseConfig, type ConfigInput } from "../config/config.js";
import { databaseFile, startService, type RunningService } from "../service.js";
import { commonOptions, type Options } from "./args.js";

export const serveSpec = {
  usage:
    "agenthost serve [--data-dir DIR] [--host HOST] [--port PORT] [--no-tls | --tls-cert FILE --tls-key FILE | --tls-san NAME ...] [--foundry-features lenient|strict] [--log-level LEVEL]",
  about:
    "Runs the service until SIGINT or SIGTERM. Creates the data directory and its database on the first start, and prints an admin key once it listens; one service at a time holds a data directory. Every setting can also come from the environment (AGENTHOST_PORT, ...): see README.md.",
  options: {
    host: {
      type: "string",
      arg: "HOST",
      help: "interface to listen on (default localhost: 127.0.0.1 and ::1)",
    },
    port: { type: "string", arg: "PORT", help: "port to listen on (default 8443; 0: any free)" },
    "no-tls": { type: "boolean", help: "plain http (the official clients then refuse keys)" },
    "tls-cert": { type: "string", arg: "FILE", help: "PEM certificate (default: a local CA's)" },
    "tls-key": { type: "string", arg: "FILE", help: "PEM private key of --tls-cert" },
    "tls-san": {
      type: "string",
      arg: "NAME",
      multiple: true,
      help: "one more DNS name or address for the local certificate (repeatable, or a,b)",
    },
    "foundry-features": {
      type: "string",
      arg: "MODE",
      help: "lenient (default) or strict: require the Foundry-Features opt-ins",
    },
    ...commonOptions,
  },
} satisfies { usage: string; about: string; options: Options };

/** `agenthost serve`: runs the service until SIGINT/SIGTERM, then shuts down gracefully. */
export async function serveCommand(
  input: ConfigInput,
  print: (line: string) => void,
): Promise<void> {
  const config = parseConfig(input);
  const service = await startService(config);
  const endpoint = `${service.origin}/api/projects/default`;
  const lines = [
    `agenthost is listening on ${service.origin}`,
    ...service.urls.slice(1).map((url) => `                      and ${url}`),
    `  Project endpoint:  ${endpoint}`,
    `  Console:           ${service.origin}/ (sign in with an API key)`,
    `  Data directory:    ${config.dataDir} (database: ${databaseFile(config)})`,
  ];
  if (service.caFile) {
    lines.push(
      `  Local CA:          ${service.caFile}${service.caReplaced ? " (new: its names changed; trust it again where you trusted the old one)" : ""}`,
      `  Trust it (Node):   export NODE_EXTRA_CA_CERTS=${service.caFile}`,
      `  Trust it (Python): export SSL_CERT_FILE=${service.caFile} REQUESTS_CA_BUNDLE=${service.caFile}`,
    );
  } else if (!config.tls) {
    lines.push("  TLS is off: the official clients refuse bearer tokens over plain http.");
  }
  const sb = service.sandboxes;
  lines.push(
    "unavailable" in sb
      ? `  Sessions:          unavailable: ${sb.unavailable}`
      : `  Sandboxes:         ${sb.driver}${sb.isolated ? "" : " (NOT ISOLATED: development only)"}, network ${config.sandboxNetwork}, warm pool ${config.warmPoolSize} per runtime, data in ${config.dataDir}/sessions`,
  );
  lines.push(...modelLines(service.models, config.modelDiscovery));
  if (service.newAdminKey) {
    lines.push(`  Admin key (shown once, keep it safe): ${service.newAdminKey}`);
  }
  // Listening from before the banner: a signal sent as soon as it is read is handled.
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1); // a second signal: give up waiting
    stopping = true;
    service.app.log.info({ signal }, "shutting down");
    // Sandboxes get their stop grace; past that and 10 s more, give up waiting.
    const force = setTimeout(() => process.exit(1), config.sessionStopGraceSeconds * 1000 + 10_000);
    force.unref();
    service.close().then(
      () => process.exit(0),
      (err: unknown) => {
        service.app.log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  print(lines.join("\n"));
}

/** Which models every project offers without set-up, and from where; or how to add one. */
function modelLines(models: RunningService["models"], discovery: boolean): string[] {
  const label = "  Models:            ";
  const lines = models.upstreams.map((u) => {
    const shown = u.models.slice(0, 12).join(", ");
    const more = u.models.length > 12 ? `, … ${u.models.length - 12} more` : "";
    return `${label}${u.source}: ${shown || "(none listed)"}${more}`;
  });
  for (const failure of models.failures) lines.push(`${label}not offered: ${failure}`);
  if (models.stored > 0)
    lines.push(`${label}${models.stored} stored deployment(s): agenthost deployments list`);
  if (models.upstreams.length === 0 && models.stored === 0)
    lines.push(
      `${label}none${discovery ? " found (no OPENAI_API_KEY, no Ollama)" : " (discovery off)"}; add one:`,
      "    agenthost deployments add NAME --model MODEL --base-url URL [--api-key-env VAR | --api-key-stdin]",
    );
  return lines;
}
