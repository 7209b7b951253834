#!/usr/bin/env node
import { text } from "node:stream/consumers";
import { parseArgs } from "node:util";
import { ConfigError, configFromEnv, type ConfigInput } from "./config/config.js";
import { deploymentsCommand } from "./cli/deploymentsCommand.js";
import { keysCommand } from "./cli/keysCommand.js";
import { serveCommand } from "./cli/serveCommand.js";
import { AppError } from "./domain/errors.js";

/* The process entry: reads argv and the environment, runs one command. */

const usage = `Usage:
  agenthost serve [--data-dir DIR] [--host HOST] [--port PORT] [--no-tls | --tls-cert FILE --tls-key FILE | --tls-san NAME ...]
                  [--foundry-features lenient|strict] [--log-level LEVEL]
  agenthost keys create [--project P] [--name N] [--act-for-users]
  agenthost keys list [--project P]
  agenthost keys revoke --id KEY_ID
  agenthost deployments add NAME --model M --base-url URL [--api-key-env VAR | --api-key-stdin] [--project P]
  agenthost deployments list [--project P]
  agenthost deployments remove NAME [--project P]

Every setting can also come from the environment (AGENTHOST_DATA_DIR, AGENTHOST_PORT, ...); see README.md.`;

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      "data-dir": { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "no-tls": { type: "boolean" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "tls-san": { type: "string", multiple: true },
      "foundry-features": { type: "string" },
      "log-level": { type: "string" },
      project: { type: "string" },
      name: { type: "string" },
      id: { type: "string" },
      "act-for-users": { type: "boolean" },
      model: { type: "string" },
      "base-url": { type: "string" },
      "api-key-env": { type: "string" },
      "api-key-stdin": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const fromFlags = Object.fromEntries(
    Object.entries({
      dataDir: values["data-dir"],
      host: values.host,
      port: values.port,
      tls: values["no-tls"] ? false : undefined,
      tlsCert: values["tls-cert"],
      tlsKey: values["tls-key"],
      tlsSan: values["tls-san"],
      foundryFeatures: values["foundry-features"],
      logLevel: values["log-level"],
    }).filter(([, v]) => v !== undefined),
  );
  const config = { ...configFromEnv(env), ...fromFlags } as ConfigInput;
  const print = (line: string) => void process.stdout.write(line + "\n");
  const [command, action, target] = positionals;
  if (values.help || command === undefined) return print(usage);
  if (command === "serve") return serveCommand(config, print);
  if (command === "keys") {
    return keysCommand(
      action,
      {
        project: values.project,
        name: values.name,
        actForUsers: values["act-for-users"],
        id: values.id,
      },
      config,
      print,
    );
  }
  if (command === "deployments") {
    return deploymentsCommand(
      action,
      {
        name: target,
        project: values.project,
        model: values.model,
        baseUrl: values["base-url"],
        apiKeyEnv: values["api-key-env"],
        apiKeyStdin: values["api-key-stdin"],
      },
      config,
      print,
      () => text(process.stdin),
    );
  }
  throw new ConfigError(`Unknown command '${command}'.\n${usage}`);
}

main(process.argv.slice(2), process.env).catch((err: unknown) => {
  const known =
    err instanceof ConfigError ||
    err instanceof AppError ||
    (err as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION";
  process.stderr.write(
    `agenthost: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`,
  );
  process.exit(known ? 2 : 1);
});
