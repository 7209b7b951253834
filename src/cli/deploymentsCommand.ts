import { pino } from "pino";
import { ConfigError, parseConfig, type ConfigInput } from "../config/config.js";
import { createServices, openExistingStore } from "../service.js";
import { commonOptions, type Options, type Values } from "./args.js";
import { offlineNote, requireProject } from "./projects.js";

/**
 * `agenthost deployments add|list|remove`: manages model deployments directly in the data
 * directory (whether or not the service is running; a running service sees a change at
 * its next call).
 */

const project = {
  type: "string",
  arg: "P",
  help: "the project (default: default)",
} satisfies Options[string];

export const deploymentsCommands = {
  add: {
    usage:
      "agenthost deployments add NAME --model M --base-url URL [--api-key-env VAR | --api-key-stdin] [--project P [--create-project]] [--data-dir DIR]",
    about: `Adds (or replaces) a model deployment NAME: requests for model NAME go to model M of the OpenAI-compatible server at URL (ending in /v1).\n${offlineNote}`,
    options: {
      model: { type: "string", arg: "M", help: "the model's name on that server" },
      "base-url": { type: "string", arg: "URL", help: "the server's API root, ending in /v1" },
      "api-key-env": {
        type: "string",
        arg: "VAR",
        help: "read the server's key from this environment variable of the service, at each call",
      },
      "api-key-stdin": {
        type: "boolean",
        help: "read the server's key from standard input (stored encrypted)",
      },
      project,
      "create-project": { type: "boolean", help: "create the project if it does not exist" },
      ...commonOptions,
    },
  },
  list: {
    usage: "agenthost deployments list [--project P] [--data-dir DIR]",
    about: `Lists a project's stored deployments (never their keys).\n${offlineNote}`,
    options: { project, ...commonOptions },
  },
  remove: {
    usage: "agenthost deployments remove NAME [--project P] [--data-dir DIR]",
    about: `Removes the deployment NAME.\n${offlineNote}`,
    options: { project, ...commonOptions },
  },
} satisfies Record<string, { usage: string; about: string; options: Options }>;

export async function deploymentsCommand(
  action: keyof typeof deploymentsCommands,
  name: string | undefined,
  flags: Values,
  input: ConfigInput,
  print: (line: string) => void,
  readStdin: () => Promise<string>,
): Promise<void> {
  const config = parseConfig(input);
  const projectName = (flags.project as string | undefined) ?? "default";
  const usage = deploymentsCommands[action].usage;
  if (action !== "list" && !name) throw new ConfigError(`name the deployment: ${usage}`);
  const store = await openExistingStore(config);
  try {
    const { deployments, projects, clock } = createServices(
      store,
      config,
      pino({ level: "silent" }),
    );
    await requireProject(projects, projectName, flags["create-project"] === true, clock);
    if (action === "add") {
      if (!flags.model) throw new ConfigError(`give --model M: ${usage}`);
      if (!flags["base-url"]) throw new ConfigError(`give --base-url URL: ${usage}`);
      if (flags["api-key-stdin"] && flags["api-key-env"])
        throw new ConfigError("give --api-key-env or --api-key-stdin, not both");
      const apiKey = flags["api-key-stdin"] ? (await readStdin()).trim() : undefined;
      const { deployment, created } = await deployments.put(projectName, name!, {
        model: flags.model as string,
        baseUrl: flags["base-url"] as string,
        apiKey,
        apiKeyEnv: flags["api-key-env"] as string | undefined,
      });
      print(`${created ? "added" : "replaced"} ${deployment.name} in project ${projectName}`);
    } else if (action === "list") {
      print("NAME\tMODEL\tBASE URL\tKEY\tSOURCE");
      for (const d of await deployments.list(projectName)) {
        const key = d.hasApiKey ? "key set" : d.apiKeyEnv ? `key from $${d.apiKeyEnv}` : "no key";
        print(`${d.name}\t${d.model}\t${d.baseUrl}\t${key}\t${d.source}`);
      }
    } else {
      await deployments.delete(projectName, name!);
      print(`removed ${name} from project ${projectName}`);
    }
  } finally {
    await store.close();
  }
}
