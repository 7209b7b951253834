#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { text } from "node:stream/consumers";
import { configFromEnv, ConfigError, SetupError, type ConfigInput } from "./config/config.js";
import { helpText, parseCommandLine, type Options, type Values } from "./cli/args.js";
import { deploymentsCommand, deploymentsCommands } from "./cli/deploymentsCommand.js";
import { keysCommand, keysCommands } from "./cli/keysCommand.js";
import { serveCommand, serveSpec } from "./cli/serveCommand.js";
import { AppError } from "./domain/errors.js";

/* The process entry: reads argv and the environment, runs one command. */

const usage = `Usage: agenthost COMMAND [options]

Commands:
  serve                         run the service (creates the data directory on its first start)
  keys create|list|revoke       API keys of a data directory
  deployments add|list|remove   model deployments of a data directory

Every command takes --data-dir DIR (or AGENTHOST_DATA_DIR; default ./data) and --help.
agenthost --version prints the version.`;

interface Spec {
  usage: string;
  about: string;
  options: Options;
}

const groups: Record<string, Record<string, Spec>> = {
  keys: keysCommands,
  deployments: deploymentsCommands,
};

const stdout = (line: string) => void process.stdout.write(line + "\n");

/** Whether an error's stack is shown: only at --log-level debug (or trace). */
let verbose = false;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  return String(pkg.version);
}

/** Runs one command line; resolves with the exit status when the command is done. */
async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number | undefined> {
  verbose = /^(debug|trace)$/.test(env.AGENTHOST_LOG_LEVEL ?? "");
  const [command, ...rest] = argv;
  if (command === undefined) {
    process.stderr.write(usage + "\n");
    return 2;
  }
  if (command === "--version" || command === "-V") return void stdout(`agenthost ${version()}`);
  if (command === "--help" || command === "-h" || command === "help") return void stdout(usage);
  if (command.startsWith("-"))
    throw new ConfigError(`${command} before a command; usage: agenthost COMMAND [options]`);

  let spec: Spec;
  let name = command;
  let args = rest;
  const group = groups[command];
  if (command === "serve") {
    spec = serveSpec;
  } else if (group) {
    const action = rest[0];
    const list = `agenthost ${command} ${Object.keys(group).join("|")}`;
    if (action === undefined || action.startsWith("-")) {
      const help = `Usage: ${Object.values(group)
        .map((s) => s.usage)
        .join("\n       ")}\n\nSee ${list} --help for one of them.`;
      if (action === "--help" || action === "-h") return void stdout(help);
      process.stderr.write(help + "\n");
      return 2;
    }
    if (!Object.hasOwn(group, action))
      throw new ConfigError(`unknown command ${command} ${action}; the commands are ${list}`);
    spec = group[action]!;
    name = `${command} ${action}`;
    args = rest.slice(1);
  } else {
    throw new ConfigError(`unknown command ${command}; see agenthost --help`);
  }

  const { values, positionals } = parseCommandLine(args, spec.options, name);
  if (typeof values["log-level"] === "string")
    verbose = /^(debug|trace)$/.test(values["log-level"]);
  if (values.help) return void stdout(helpText(spec.usage, spec.about, spec.options));
  const takes = name === "deployments add" || name === "deployments remove" ? 1 : 0;
  if (positionals.length > takes)
    throw new ConfigError(
      `unexpected argument ${positionals[takes]}; usage: ${spec.usage.replace(/ \[.*$/, " …")}`,
    );

  const config = { ...configFromEnv(env), ...settingsOf(values) } as ConfigInput;
  const action = name.split(" ")[1];
  if (command === "serve") await serveCommand(config, stdout);
  else if (command === "keys")
    await keysCommand(action as keyof typeof keysCommands, values, config, stdout);
  else
    await deploymentsCommand(
      action as keyof typeof deploymentsCommands,
      positionals[0],
      values,
      config,
      stdout,
      () => text(process.stdin),
    );
  return undefined;
}

/** The settings a command line gives (flags win over the environment). */
function settingsOf(values: Values): Partial<ConfigInput> {
  return Object.fromEntries(
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
}

/** One line for a failure, and the exit status: 2 for usage, 1 for what the machine refuses. */
function describe(err: unknown): { line: string; status: number } {
  if (err instanceof SetupError) return { line: err.message, status: err.exitCode };
  if (err instanceof AppError)
    return { line: err.message, status: err.code === "insufficient_storage" ? 1 : 2 };
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; hostname?: string };
  const where = e.address === undefined ? "" : `${e.address}:${e.port}`;
  if (e.syscall === "listen" || e.syscall === "bind") {
    if (e.code === "EADDRINUSE")
      return {
        line: `port ${e.port} is in use by another process (${where}); stop it, or choose another port with --port PORT (or AGENTHOST_PORT)`,
        status: 1,
      };
    if (e.code === "EACCES")
      return {
        line: `may not listen on ${where}: permission denied; choose a port above 1023 with --port PORT, or run as root`,
        status: 1,
      };
    if (e.code === "EADDRNOTAVAIL")
      return {
        line: `${e.address} is not an address of this machine; choose another with --host HOST (or AGENTHOST_HOST)`,
        status: 2,
      };
  }
  if (e.code === "ENOTFOUND" && e.hostname)
    return {
      line: `cannot resolve the host name ${e.hostname}; choose another with --host HOST (or AGENTHOST_HOST)`,
      status: 2,
    };
  const message = e instanceof Error ? e.message : String(err);
  return { line: verbose ? message : `${message} (--log-level debug shows more)`, status: 1 };
}

main(process.argv.slice(2), process.env).then(
  (status) => {
    if (status !== undefined) process.exitCode = status;
  },
  (err: unknown) => {
    const { line, status } = describe(err);
    process.stderr.write(`agenthost: ${line.replace(/\s*\n\s*/g, " ")}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exit(status);
  },
);
