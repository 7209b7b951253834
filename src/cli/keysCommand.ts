import { parseConfig, type ConfigInput } from "../config/config.js";
import { AppError } from "../domain/errors.js";
import { pino } from "pino";
import { createServices, openStore } from "../service.js";

/**
 * `agenthost keys create|list|revoke`: manages API keys directly in the data directory
 * (works whether or not the service is running).
 */
export async function keysCommand(
  action: string | undefined,
  flags: { project?: string; name?: string; actForUsers?: boolean; id?: string },
  input: ConfigInput,
  print: (line: string) => void,
): Promise<void> {
  const config = parseConfig(input);
  const store = await openStore(config);
  try {
    const { keys, projects, clock } = createServices(store, config, pino({ level: "silent" }));
    if (action === "create") {
      const project = flags.project ?? "default";
      if (flags.project && !(await projects.exists(project)))
        await projects.create(project, clock());
      const { key, secret } = await keys.create({
        project,
        name: flags.name,
        actForUsers: flags.actForUsers,
      });
      print(secret);
      print(
        `# id ${key.id}, project ${key.project}${key.actForUsers ? ", may act for end users" : ""}`,
      );
    } else if (action === "list") {
      for (const k of await keys.list(flags.project)) {
        print(
          `${k.id}\t${k.project}\t${k.name}${k.admin ? "\tadmin" : ""}${k.actForUsers ? "\tact-for-users" : ""}`,
        );
      }
    } else if (action === "revoke") {
      if (!flags.id)
        throw new AppError(
          "missing_parameter",
          "Name the key: agenthost keys revoke --id <key id>",
        );
      if (!(await keys.revoke(flags.id)))
        throw new AppError("not_found", `Key '${flags.id}' was not found.`);
      print(`revoked ${flags.id}`);
    } else {
      throw new AppError("invalid_parameter", "Usage: agenthost keys create|list|revoke");
    }
  } finally {
    await store.close();
  }
}
