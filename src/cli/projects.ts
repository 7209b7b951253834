import { agentNamePattern } from "../contract/requests.js";
import { ConfigError } from "../config/config.js";
import type { Clock, ProjectRepository } from "../domain/ports.js";

/** What every offline command's help says about the data directory. */
export const offlineNote =
  "Works on the data directory itself, whether or not the service runs; the directory must hold the database `agenthost serve` made there (--data-dir DIR or AGENTHOST_DATA_DIR; default ./data).";

/**
 * A project a command names must exist, as it must for the HTTP routes; `create` (the
 * --create-project flag) makes a new one instead.
 */
export async function requireProject(
  projects: ProjectRepository,
  name: string,
  create: boolean,
  clock: Clock,
): Promise<void> {
  if (await projects.exists(name)) return;
  if (!create) {
    const known = (await projects.list()).join(", ");
    throw new ConfigError(
      `project ${name} was not found (projects: ${known}); give --create-project to create it`,
    );
  }
  if (!agentNamePattern.test(name))
    throw new ConfigError(`project name ${name} must be 1-63 letters, digits or hyphens`);
  await projects.create(name, clock());
}
