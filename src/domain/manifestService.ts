import { AppError, notFound } from "./errors.js";
import { builtinManifests, checkManifest, renderManifest, type Manifest } from "./manifests.js";
import type { JsonObject } from "./model.js";
import type { Clock, ManifestRepository } from "./ports.js";

/** Registering manifests and turning a manifest id and parameter values into a definition. */
export class ManifestService {
  constructor(
    private readonly manifests: ManifestRepository,
    private readonly clock: Clock,
  ) {}

  async register(
    project: string,
    input: {
      name: string;
      description?: string;
      parameters: Record<string, JsonObject>;
      definition: JsonObject;
    },
  ): Promise<Manifest> {
    if (builtinManifests.some((b) => b.name === input.name)) {
      throw new AppError("conflict", `'${input.name}' is a built-in manifest.`, "name");
    }
    checkManifest(input.parameters, input.definition);
    return this.manifests.add({
      project,
      name: input.name,
      description: input.description ?? "",
      parameters: input.parameters,
      definition: input.definition,
      createdAt: this.clock(),
    });
  }

  async list(project: string): Promise<Manifest[]> {
    const builtins = builtinManifests.map((b) => ({ ...b, project, createdAt: 0 }));
    return [...builtins, ...(await this.manifests.list(project))];
  }

  /** `name` (newest version) or `name@version`. */
  async resolve(project: string, id: string, param = "manifest_id"): Promise<Manifest> {
    const m = /^([A-Za-z0-9][A-Za-z0-9-]{0,62})(?:@([1-9][0-9]{0,9}))?$/.exec(id);
    const version = m?.[2] === undefined ? undefined : Number(m[2]);
    const builtin = builtinManifests.find(
      (b) => b.name === m?.[1] && (version === undefined || version === b.version),
    );
    if (builtin) return { ...builtin, project, createdAt: 0 };
    const found = m ? await this.manifests.get(project, m[1]!, version) : undefined;
    return found ?? throwNotFound(id, param);
  }

  async render(project: string, id: string, values: Record<string, unknown>): Promise<JsonObject> {
    return renderManifest(await this.resolve(project, id), values);
  }

  async delete(project: string, id: string): Promise<void> {
    const m = /^([^@]+)(?:@([1-9][0-9]*))?$/.exec(id);
    if (builtinManifests.some((b) => b.name === m?.[1])) {
      throw new AppError(
        "conflict",
        `'${m?.[1]}' is a built-in manifest and cannot be deleted.`,
        "manifest_id",
      );
    }
    const deleted =
      m && (await this.manifests.delete(project, m[1]!, m[2] ? Number(m[2]) : undefined));
    if (!deleted) throwNotFound(id, "manifest_id");
  }
}

function throwNotFound(id: string, param: string): never {
  throw notFound(`Manifest '${id}'`, param);
}
