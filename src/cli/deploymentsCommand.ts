import { parseConfig, type ConfigInput } from "../config/config.js";
import { AppError } from "../domain/errors.js";
import { pino } from "pino";
import { createServices, openStore } from "../service.js";

export interface DeploymentFlags {
  name?: string;
  project?: string;
  model?: string;
  baseUrl?: string;
  apiKeyEnv?: string;
  /** Read the key from standard input (never from argv, where `ps` would show it). */
  apiKeyStdin?: boolean;
}

const usage =
  "Usage: agenthost deployments add NAME --model M --base-url URL [--api-key-env VAR | --api-key-stdin] [--project P]\n" +
  "       agenthost deployments list [--project P]\n" +
  "       agenthost deployments remove NAME [--project P]";

/**
 * `agenthost deployments add|list|remove`: manages model deployments directly in the data
 * directory (whether or not the service is running; a running service sees a change at
 * its next call).
 */
export async function deploymentsCommand(
  action: string | undefined,
  flags: DeploymentFlags,
  input: ConfigInput,
  print: (line: string) => void,
  readStdin: () => Promise<string>,
): Promise<void> {
  const config = parseConfig(input);
  const project = flags.project ?? "default";
  const store = await openStore(config);
  try {
    const { deployments, projects, clock } = createServices(
      store,
      config,
      pino({ level: "silent" }),
    );
    if (action === "add") {
      if (!flags.name) throw new AppError("missing_parameter", usage);
      if (!flags.model) throw new AppError("missing_parameter", `Give --model.\n${usage}`);
      if (!flags.baseUrl) throw new AppError("missing_parameter", `Give --base-url.\n${usage}`);
      if (flags.apiKeyStdin && flags.apiKeyEnv)
        throw new AppError("invalid_parameter", "Give --api-key-env or --api-key-stdin, not both.");
      const apiKey = flags.apiKeyStdin ? (await readStdin()).trim() : undefined;
      if (flags.project && !(await projects.exists(project)))
        await projects.create(project, clock());
      const { deployment, created } = await deployments.put(project, flags.name, {
        model: flags.model,
        baseUrl: flags.baseUrl,
        apiKey,
        apiKeyEnv: flags.apiKeyEnv,
      });
      print(`${created ? "added" : "replaced"} ${deployment.name} in project ${project}`);
    } else if (action === "list") {
      for (const d of await deployments.list(project)) {
        const key = d.hasApiKey ? "key set" : d.apiKeyEnv ? `key from $${d.apiKeyEnv}` : "no key";
        print(`${d.name}\t${d.model}\t${d.baseUrl}\t${key}\t${d.source}`);
      }
    } else if (action === "remove") {
      if (!flags.name) throw new AppError("missing_parameter", usage);
      await deployments.delete(project, flags.name);
      print(`removed ${flags.name} from project ${project}`);
    } else {
      throw new AppError("invalid_parameter", usage);
    }
  } finally {
    await store.close();
  }
}
