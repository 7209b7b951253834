import { parseArgs } from "node:util";
import { ConfigError } from "../config/config.js";

/* Command lines: each command names its options; anything else is one clear line. */

export interface OptionSpec {
  type: "string" | "boolean";
  /** The value's placeholder in help, e.g. DIR. */
  arg?: string;
  help: string;
  short?: string;
  /** May be given more than once: the values are joined with commas. */
  multiple?: boolean;
}

export type Options = Record<string, OptionSpec>;
export type Values = Record<string, string | boolean | undefined>;

/** Options every command takes. */
export const commonOptions = {
  "data-dir": {
    type: "string",
    arg: "DIR",
    help: "the data directory (default ./data; or set AGENTHOST_DATA_DIR)",
  },
  "log-level": {
    type: "string",
    arg: "LEVEL",
    help: "fatal|error|warn|info|debug|trace|silent; debug also shows an error's stack",
  },
  help: { type: "boolean", short: "h", help: "show this help" },
} satisfies Options;

/**
 * Parses `args` against `options`. Node's own messages are not shown: an unknown option, a
 * missing value or a value given to a flag each gets one line naming the option.
 */
export function parseCommandLine(
  args: string[],
  options: Options,
  command: string,
): { values: Values; positionals: string[] } {
  const { tokens } = parseArgs({
    args,
    options: Object.fromEntries(
      Object.entries(options).map(([name, o]) => [
        name,
        { type: o.type, ...(o.short ? { short: o.short } : {}) },
      ]),
    ),
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Values = {};
  const positionals: string[] = [];
  const help = `see agenthost ${command} --help`;
  for (const token of tokens) {
    if (token.kind === "positional") positionals.push(token.value);
    if (token.kind !== "option") continue;
    const spec = options[token.name];
    if (!spec) throw new ConfigError(`unknown option ${token.rawName}; ${help}`);
    if (spec.type === "boolean") {
      if (token.value !== undefined)
        throw new ConfigError(`${token.rawName} takes no value; ${help}`);
      values[token.name] = true;
      continue;
    }
    // Without '=', a value that looks like an option is the next option, not a value.
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith("--")))
      throw new ConfigError(
        `${token.rawName} needs a value: ${token.rawName} ${spec.arg ?? "VALUE"}; ${help}`,
      );
    const earlier = values[token.name];
    values[token.name] =
      spec.multiple && typeof earlier === "string" ? `${earlier},${token.value}` : token.value;
  }
  return { values, positionals };
}

/** A command's help text: its usage line, what it does, and its options. */
export function helpText(usage: string, about: string, options: Options): string {
  const rows = Object.entries(options).map(([name, o]) => [
    `${o.short ? `-${o.short}, ` : ""}--${name}${o.arg ? ` ${o.arg}` : ""}`,
    o.help,
  ]);
  const width = Math.max(...rows.map(([left]) => left!.length));
  return [
    `Usage: ${usage}`,
    "",
    about,
    "",
    "Options:",
    ...rows.map(([left, right]) => `  ${left!.padEnd(width)}  ${right}`),
  ].join("\n");
}
