import { parseConfig, type ConfigInput } from "../config/config.js";
import { databaseFile, startService, type RunningService } from "../service.js";

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
