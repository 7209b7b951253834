import type { Readable } from "node:stream";
import type { AgentService, AgentSpec, VersionSpec } from "./agentService.js";
import { AppError, notFound } from "./errors.js";
import type { Agent, JsonObject, Version } from "./model.js";
import type { BlobStore, HostedCode, StoredBlob } from "./ports.js";

/**
 * Checks a stored zip before a version is made of it; throws an AppError naming the problem.
 * Resolves with the bytes it unpacks to.
 */
export type ZipCheck = (zipFile: string, entryPoint: string[]) => Promise<number>;

export interface CodeServiceDeps {
  agents: AgentService;
  blobs: BlobStore;
  code: HostedCode & {
    releaseIfUnused(contentHash: string): Promise<void>;
    pin(contentHash: string): () => void;
    /** Refuses (project_code_quota_exceeded) a new build of `bytes` past the project's quota. */
    checkProjectQuota(project: string, bytes: number): Promise<void>;
  };
  checkZip: ZipCheck;
  maxZipBytes: number;
}

export type Upload = { blob: StoredBlob; declaredSha256: string | undefined };

/**
 * Code-based hosted versions: uploaded zips are streamed into the content-addressed store,
 * verified against the declared SHA-256, checked, and become a version (or the same version
 * again when nothing changed). Whoever received a zip calls `release` when done with it, success
 * or not: a zip no version uses is not kept.
 */
export class CodeService {
  constructor(private readonly deps: CodeServiceDeps) {}

  /** Streams a zip in; past the size limit nothing is kept (payload_too_large). */
  receive(stream: Readable): Promise<StoredBlob> {
    return this.deps.blobs.put(stream, this.deps.maxZipBytes);
  }

  /** Lets go of a received zip that did not become a version. */
  release(blob: StoredBlob): Promise<void> {
    return this.deps.code.releaseIfUnused(blob.sha256);
  }

  createVersion(
    project: string,
    name: string,
    spec: VersionSpec,
    upload: Upload,
  ): Promise<Version> {
    return this.withUpload(project, spec, upload, (s) =>
      this.deps.agents.createVersion(project, name, s, { reuseIfUnchanged: true }),
    );
  }

  createAgent(project: string, spec: AgentSpec, upload: Upload): Promise<Agent> {
    return this.withUpload(project, spec, upload, (s) =>
      this.deps.agents.create(project, { ...spec, ...s }),
    );
  }

  updateAgent(project: string, name: string, spec: VersionSpec, upload: Upload): Promise<Agent> {
    return this.withUpload(project, spec, upload, (s) => this.deps.agents.update(project, name, s));
  }

  /** The exact bytes of a version's zip (latest version when none is named). */
  async download(project: string, name: string, version?: string) {
    const v =
      version === undefined
        ? (await this.deps.agents.get(project, name)).latest
        : await this.deps.agents.getVersion(project, name, version);
    const size = v.contentHash ? await this.deps.blobs.size(v.contentHash) : undefined;
    if (!v.contentHash || size === undefined) {
      throw notFound(
        `Code of version '${v.version}' of agent '${name}' (it is not code-based)`,
        "agent_version",
      );
    }
    return { version: v, size, stream: this.deps.blobs.open(v.contentHash) };
  }

  private async withUpload<T>(
    project: string,
    spec: VersionSpec,
    upload: Upload,
    create: (spec: VersionSpec) => Promise<T>,
  ): Promise<T> {
    const unpin = this.deps.code.pin(upload.blob.sha256);
    try {
      if (!upload.declaredSha256) {
        throw new AppError(
          "missing_parameter",
          "The x-ms-code-zip-sha256 header is required.",
          "x-ms-code-zip-sha256",
        );
      }
      if (upload.declaredSha256.toLowerCase() !== upload.blob.sha256) {
        throw new AppError(
          "invalid_parameter",
          `The code zip's SHA-256 is ${upload.blob.sha256}, not ${upload.declaredSha256}.`,
          "x-ms-code-zip-sha256",
        );
      }
      const definition = spec.definition;
      const codeConfiguration = definition.code_configuration as JsonObject | undefined;
      if (definition.kind !== "hosted" || !codeConfiguration) {
        throw new AppError(
          "invalid_parameter",
          "A code upload needs a hosted definition with code_configuration.",
          "definition.code_configuration",
        );
      }
      const unpackedBytes = await this.deps.checkZip(
        this.deps.blobs.pathOf(upload.blob.sha256),
        codeConfiguration.entry_point as string[],
      );
      await this.deps.code.checkProjectQuota(project, unpackedBytes);
      return await create({
        ...spec,
        definition: {
          ...definition,
          code_configuration: { ...codeConfiguration, content_hash: upload.blob.sha256 },
        },
      });
    } finally {
      unpin();
    }
  }
}
