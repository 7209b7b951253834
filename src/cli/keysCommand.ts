import { pino } from "pino";
import { ConfigError, parseConfig, type ConfigInput } from "../config/config.js";
import { createServices, openExistingStore } from "../service.js";
import { commonOptions, type Options, type Values } from "./args.js";
import { offlineNote, requireProject } from "./projects.js";

/**
 * `agenthost keys create|list|revoke`: manages API keys directly in the data directory
 * (works whether or not the service is running).
 */

export const keysCommands = {
  create: {
    usage:
      "agenthost keys create [--project P [--create-project] | --admin] [--name N] [--act-for-users] [--data-dir DIR]",
    about: `Creates an API key and prints its secret once (only its SHA-256 is stored). A project key works in its project; --admin makes a key for every project and the /admin routes, the way back to a lost admin key.\n${offlineNote}`,
    options: {
      project: { type: "string", arg: "P", help: "the key's project (default: default)" },
      "create-project": { type: "boolean", help: "create the project if it does not exist" },
      admin: { type: "boolean", help: "an admin key: every project, and the /admin routes" },
      name: { type: "string", arg: "N", help: "a name to recognise the key by" },
      "act-for-users": {
        type: "boolean",
        help: "the key may send x-ms-user-identity (admin keys may)",
      },
      ...commonOptions,
    },
  },
  list: {
    usage: "agenthost keys list [--project P] [--data-dir DIR]",
    about: `Lists the keys that work (never their secrets): all of them, or one project's.\n${offlineNote}`,
    options: {
      project: { type: "string", arg: "P", help: "only this project's keys" },
      ...commonOptions,
    },
  },
  revoke: {
    usage: "agenthost keys revoke --id KEY_ID [--data-dir DIR]",
    about: `Revokes a key: it stops working at once, in a running service too.\n${offlineNote}`,
    options: {
      id: { type: "string", arg: "KEY_ID", help: "the key's id (key_…, from keys list)" },
      ...commonOptions,
    },
  },
} satisfies Record<string, { usage: string; about: string; options: Options }>;

export async function keysCommand(
  action: keyof typeof keysCommands,
  flags: Values,
  input: ConfigInput,
  print: (line: string) => void,
): Promise<void> {
  const config = parseConfig(input);
  const store = await openExistingStore(config);
  try {
    const { keys, projects, clock } = createServices(store, config, pino({ level: "silent" }));
    const project = flags.project as string | undefined;
    if (action === "create") {
      if (flags.admin && project)
        throw new ConfigError("an admin key works in every project: give --admin or --project");
      const target = flags.admin ? "*" : (project ?? "default");
      if (!flags.admin)
        await requireProject(projects, target, flags["create-project"] === true, clock);
      const { key, secret } = await keys.create({
        project: target,
        name: flags.name as string | undefined,
        admin: flags.admin === true,
        actForUsers: flags["act-for-users"] === true || undefined,
      });
      print(secret);
      print(
        `# id ${key.id}, ${key.admin ? "admin key (every project)" : `project ${key.project}`}${key.actForUsers && !key.admin ? ", may act for end users" : ""}`,
      );
    } else if (action === "list") {
      if (project) await requireProject(projects, project, false, clock);
      print("ID\tPROJECT\tNAME\tROLE");
      for (const k of await keys.list(project)) {
        const role = k.admin ? "admin" : k.actForUsers ? "act-for-users" : "project";
        print(`${k.id}\t${k.project}\t${k.name}\t${role}`);
      }
    } else {
      const id = flags.id as string | undefined;
      if (!id)
        throw new ConfigError(
          "name the key: agenthost keys revoke --id KEY_ID (ids are in agenthost keys list)",
        );
      if (!(await keys.revoke(id)))
        throw new ConfigError(`key ${id} was not found (or is revoked); see agenthost keys list`);
      print(`revoked ${id}`);
    }
  } finally {
    await store.close();
  }
}
