import { AppError } from "../domain/errors.js";
import type {
  Clock,
  DeploymentRepository,
  ProjectRepository,
  StoredDeployment,
} from "../domain/ports.js";
import type { DiscoveredUpstream } from "./discovery.js";
import type { Secrets } from "./secretBox.js";

/** A deployment as callers see it: never its key, only whether it has one and where from. */
export interface Deployment {
  project: string;
  name: string;
  model: string;
  baseUrl: string;
  /** A key is stored (encrypted). */
  hasApiKey: boolean;
  apiKeyEnv: string | null;
  /** `stored`, or the upstream it was discovered from at start-up (e.g. `Ollama at …`). */
  source: string;
  createdAt: number;
  updatedAt: number;
}

export interface DeploymentInput {
  model: string;
  baseUrl: string;
  apiKey?: string;
  apiKeyEnv?: string;
}

/** What the gateway needs to call a deployment: where, which model, and the key in clear. */
export interface DeploymentTarget {
  deployment: Deployment;
  apiKey: string | null;
}

export const deploymentNamePattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/**
 * What `api_key_env` may name: an API key's variable (…_API_KEY, …_API_TOKEN), not any other
 * secret of the service's environment (a cloud's access key, a git token), and none of the
 * service's own settings.
 */
const keyVariable = (name: string) => /_API_(KEY|TOKEN)$/.test(name) && !/^AGENTHOST_/i.test(name);
// A header value: printable ASCII without spaces.
const apiKeyPattern = /^[\x21-\x7e]{1,4096}$/;

/**
 * A project's model deployments: the stored ones, and those discovered at start-up (offered in
 * every project; a stored deployment of the same name wins). Keys are sealed before they are
 * stored and opened only for a call; a key named by `apiKeyEnv` is read from the service's
 * environment at each call.
 */
export class DeploymentService {
  constructor(
    private readonly deps: {
      deployments: DeploymentRepository;
      projects: ProjectRepository;
      secrets: Secrets;
      discovered: readonly DiscoveredUpstream[];
      env: NodeJS.ProcessEnv;
      clock: Clock;
    },
  ) {}

  /** Creates or replaces a stored deployment (`created` says which). */
  async put(
    project: string,
    name: string,
    input: DeploymentInput,
  ): Promise<{ deployment: Deployment; created: boolean }> {
    await this.requireProject(project);
    checkName(name);
    const model = input.model.trim();
    if (!model || model.length > 256 || /\p{Cc}/u.test(model))
      throw new AppError(
        model ? "invalid_parameter" : "missing_parameter",
        model
          ? "Invalid value for 'model': must be 1-256 characters without control characters."
          : "Missing required parameter 'model'.",
        "model",
      );
    const baseUrl = checkBaseUrl(input.baseUrl);
    if (input.apiKey !== undefined && input.apiKeyEnv !== undefined)
      throw new AppError(
        "invalid_parameter",
        "Give 'api_key' or 'api_key_env', not both (or neither, for a server that needs no key).",
        "api_key",
      );
    if (input.apiKey !== undefined && !apiKeyPattern.test(input.apiKey))
      throw new AppError(
        "invalid_parameter",
        "Invalid value for 'api_key': must be 1-4096 printable characters without spaces.",
        "api_key",
      );
    if (input.apiKeyEnv !== undefined) checkEnvName(input.apiKeyEnv);
    const now = this.deps.clock();
    const { deployment, created } = await this.deps.deployments.put({
      project,
      name,
      model,
      baseUrl,
      apiKeyCiphertext:
        input.apiKey === undefined
          ? null
          : this.deps.secrets.seal(input.apiKey, sealContext(project, name)),
      apiKeyEnv: input.apiKeyEnv ?? null,
      createdAt: now,
      updatedAt: now,
    });
    return { deployment: fromStored(deployment), created };
  }

  async get(project: string, name: string): Promise<Deployment> {
    await this.requireProject(project);
    const found = await this.find(project, name);
    if (!found) throw new AppError("not_found", `Deployment '${name}' was not found.`, "name");
    return found.deployment;
  }

  /** Stored and discovered deployments, by name. */
  async list(project: string): Promise<Deployment[]> {
    await this.requireProject(project);
    const byName = new Map<string, Deployment>();
    for (const d of this.discoveredIn(project)) if (!byName.has(d.name)) byName.set(d.name, d);
    for (const d of await this.deps.deployments.list(project)) byName.set(d.name, fromStored(d));
    return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(project: string, name: string): Promise<void> {
    await this.requireProject(project);
    if (await this.deps.deployments.delete(project, name)) return;
    const discovered = this.discoveredIn(project).find((d) => d.name === name);
    throw new AppError(
      "not_found",
      discovered
        ? `Deployment '${name}' is not stored: it is discovered at start-up (${discovered.source}). Turn discovery off to hide it (AGENTHOST_MODEL_DISCOVERY=off).`
        : `Deployment '${name}' was not found.`,
      "name",
    );
  }

  /**
   * The deployment a request's `model` names, with its key in clear. Unknown: `not_found`
   * (param `model`); a key that cannot be had: `upstream_error`.
   */
  async resolve(project: string, name: string): Promise<DeploymentTarget> {
    const found = await this.find(project, name);
    if (!found) throw new AppError("not_found", `Deployment '${name}' was not found.`, "model");
    const { deployment, ciphertext } = found;
    if (ciphertext !== null) {
      try {
        return {
          deployment,
          apiKey: this.deps.secrets.open(ciphertext, sealContext(project, name)),
        };
      } catch {
        throw new AppError(
          "upstream_error",
          `Deployment '${name}': its stored API key cannot be decrypted with this data directory's secret.key; set the key again.`,
        );
      }
    }
    if (deployment.apiKeyEnv !== null) {
      // A deployment stored before the rule on names is held to it here.
      if (!keyVariable(deployment.apiKeyEnv))
        throw new AppError(
          "upstream_error",
          `Deployment '${name}': its API key variable ${deployment.apiKeyEnv} is not one a deployment may name (…_API_KEY or …_API_TOKEN); set the deployment again.`,
        );
      const apiKey = this.deps.env[deployment.apiKeyEnv];
      if (!apiKey)
        throw new AppError(
          "upstream_error",
          `Deployment '${name}': its API key variable ${deployment.apiKeyEnv} is not set in the service's environment.`,
        );
      return { deployment, apiKey };
    }
    return { deployment, apiKey: null };
  }

  private async find(
    project: string,
    name: string,
  ): Promise<{ deployment: Deployment; ciphertext: string | null } | undefined> {
    const stored = await this.deps.deployments.get(project, name);
    if (stored) return { deployment: fromStored(stored), ciphertext: stored.apiKeyCiphertext };
    const discovered = this.discoveredIn(project).find((d) => d.name === name);
    return discovered && { deployment: discovered, ciphertext: null };
  }

  private discoveredIn(project: string): Deployment[] {
    return this.deps.discovered.flatMap((u) =>
      u.models.map((model) => ({
        project,
        name: model,
        model,
        baseUrl: u.baseUrl,
        hasApiKey: false,
        apiKeyEnv: u.apiKeyEnv,
        source: u.source,
        createdAt: 0,
        updatedAt: 0,
      })),
    );
  }

  private async requireProject(project: string) {
    if (!(await this.deps.projects.exists(project)))
      throw new AppError("not_found", `Project '${project}' was not found.`, "project");
  }
}

const sealContext = (project: string, name: string) => `deployment:${project}/${name}`;

const fromStored = (d: StoredDeployment): Deployment => ({
  project: d.project,
  name: d.name,
  model: d.model,
  baseUrl: d.baseUrl,
  hasApiKey: d.apiKeyCiphertext !== null,
  apiKeyEnv: d.apiKeyEnv,
  source: "stored",
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
});

function checkName(name: string) {
  if (!deploymentNamePattern.test(name))
    throw new AppError(
      "invalid_parameter",
      "Invalid value for 'name': must be 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit.",
      "name",
    );
}

/** An http(s) URL ending in `/v1`, without credentials, query or fragment; no trailing slash. */
function checkBaseUrl(input: string): string {
  const invalid = (why: string) =>
    new AppError("invalid_parameter", `Invalid value for 'base_url': ${why}.`, "base_url");
  if (!input)
    throw new AppError("missing_parameter", "Missing required parameter 'base_url'.", "base_url");
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw invalid("not a URL (e.g. http://127.0.0.1:11434/v1)");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw invalid("must be http or https");
  if (url.username || url.password)
    throw invalid("must not carry credentials; give the key as api_key or api_key_env");
  if (url.search || url.hash) throw invalid("must have no query or fragment");
  const path = url.pathname.replace(/\/$/, "");
  if (!path.endsWith("/v1"))
    throw invalid("must end in /v1 (the API root, e.g. https://api.openai.com/v1)");
  if (input.length > 2048) throw invalid("must be at most 2048 characters");
  return `${url.origin}${path}`;
}

function checkEnvName(name: string) {
  if (!envNamePattern.test(name))
    throw new AppError(
      "invalid_parameter",
      "Invalid value for 'api_key_env': must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*).",
      "api_key_env",
    );
  if (/^AGENTHOST_/i.test(name))
    throw new AppError(
      "invalid_parameter",
      "Invalid value for 'api_key_env': the service's own AGENTHOST_* settings cannot be a deployment's key.",
      "api_key_env",
    );
  if (!keyVariable(name))
    throw new AppError(
      "invalid_parameter",
      "Invalid value for 'api_key_env': must name a key variable, ending in _API_KEY or _API_TOKEN (e.g. OPENAI_API_KEY).",
      "api_key_env",
    );
}
