import { createHash, randomBytes } from "node:crypto";
import { AppError } from "./errors.js";
import type { ApiKey, Clock, KeyRepository, ProjectRepository } from "./ports.js";

/** Who is calling: the key, and the end user it acts for (if any). */
export interface Caller {
  key: ApiKey;
  /** The identity that owns what this request creates: the end user, else the key id. */
  subject: string;
  /** The end user named by `x-ms-user-identity`, when the key may act for users. */
  userIdentity?: string;
  /** Set when the caller is a hosted agent's sandbox, by its session's token. */
  session?: { agentName: string; id: string; version: number; owner: string };
}

const userIdentityPattern = /^[A-Za-z0-9._:@-]{1,256}$/;

export const hashSecret = (secret: string) => createHash("sha256").update(secret).digest("hex");

/** API keys: the secret is shown once and stored only as its SHA-256. */
export class KeyService {
  constructor(
    private readonly keys: KeyRepository,
    private readonly projects: ProjectRepository,
    private readonly clock: Clock,
  ) {}

  async create(options: {
    project: string;
    name?: string;
    admin?: boolean;
    actForUsers?: boolean;
    secret?: string;
  }): Promise<{ key: ApiKey; secret: string }> {
    if (options.project !== "*" && !(await this.projects.exists(options.project))) {
      throw new AppError("not_found", `Project '${options.project}' was not found.`, "project");
    }
    const id = `key_${randomBytes(9).toString("base64url")}`;
    const secret = options.secret ?? `ahk_${randomBytes(32).toString("base64url")}`;
    const key: ApiKey = {
      id,
      project: options.project,
      name: options.name ?? id,
      admin: options.admin ?? false,
      actForUsers: options.actForUsers ?? options.admin ?? false,
      createdAt: this.clock(),
    };
    await this.keys.insert(key, hashSecret(secret));
    return { key, secret };
  }

  /**
   * Makes sure an admin key exists. A configured secret becomes an admin key if it is not one
   * yet; otherwise a key is generated on the very first start only. Returns a new secret to
   * show once, or undefined.
   */
  async ensureAdmin(configuredSecret?: string): Promise<string | undefined> {
    if (configuredSecret) {
      const existing = await this.keys.findByHash(hashSecret(configuredSecret));
      if (!existing)
        await this.create({
          project: "*",
          name: "admin (configured)",
          admin: true,
          secret: configuredSecret,
        });
      return undefined;
    }
    if ((await this.keys.countAdmins()) > 0) return undefined;
    const { secret } = await this.create({ project: "*", name: "admin", admin: true });
    return secret;
  }

  list(project?: string): Promise<ApiKey[]> {
    return this.keys.list(project);
  }

  revoke(id: string): Promise<boolean> {
    return this.keys.revoke(id, this.clock());
  }

  /** Resolves a bearer token and the optional end-user header into a caller. */
  async authenticate(token: string | undefined, userIdentity: string | undefined): Promise<Caller> {
    const key = token ? await this.keys.findByHash(hashSecret(token)) : undefined;
    if (!key)
      throw new AppError(
        "unauthorized",
        "A valid API key is required: send 'Authorization: Bearer <key>'.",
      );
    if (userIdentity === undefined) return { key, subject: key.id };
    if (!key.actForUsers) {
      throw new AppError(
        "user_identity_not_allowed",
        `Key '${key.id}' may not act for end users; x-ms-user-identity is refused.`,
        "x-ms-user-identity",
      );
    }
    if (!userIdentityPattern.test(userIdentity)) {
      throw new AppError(
        "invalid_user_identity",
        "x-ms-user-identity must be 1-256 characters of letters, digits and . _ : - @",
        "x-ms-user-identity",
      );
    }
    return { key, subject: `user:${userIdentity}`, userIdentity };
  }

  /** A key works in its own project; admin keys work everywhere. */
  async authorize(caller: Caller, project: string): Promise<void> {
    if (!(await this.projects.exists(project))) {
      throw new AppError("not_found", `Project '${project}' was not found.`, "project");
    }
    if (caller.key.project !== "*" && caller.key.project !== project) {
      throw new AppError(
        "forbidden",
        `Key '${caller.key.id}' may not act on project '${project}'.`,
      );
    }
  }
}
