import { Database } from "./sqliteDriver.js";
import type { Database as Db } from "better-sqlite3";
import type {
  ApiKey,
  DeploymentRepository,
  KeyRepository,
  ManifestRepository,
  ProjectRepository,
  Store,
} from "../../domain/ports.js";
import { SqliteManifestRepository } from "./sqliteManifestRepository.js";
import { SqliteAgentRepository } from "./sqliteAgentRepository.js";
import { SqliteDeploymentRepository } from "./sqliteDeploymentRepository.js";
import { SqliteA2aRepository } from "./sqliteA2aRepository.js";
import { SqliteActivityRepository } from "./sqliteActivityRepository.js";
import { migrations } from "./migrations.js";
import { SqliteSessionRepository } from "./sqliteSessionRepository.js";
import { StatementCache } from "./statementCache.js";
import {
  SqliteConversationRepository,
  SqliteResponseRepository,
  SqliteUsageRepository,
} from "./sqliteResponseRepository.js";

/**
 * The embedded backend: one SQLite file in WAL mode. Commits are fsynced (synchronous=FULL),
 * so an acknowledged write survives a crash of the process or of the machine. Writers in other
 * processes (the CLI) wait up to `busy_timeout` for the lock instead of failing.
 */
export class SqliteStore implements Store {
  readonly agents: SqliteAgentRepository;
  readonly sessions: SqliteSessionRepository;
  readonly keys: KeyRepository;
  readonly projects: ProjectRepository;
  readonly manifests: ManifestRepository;
  readonly responses: SqliteResponseRepository;
  readonly conversations: SqliteConversationRepository;
  readonly usage: SqliteUsageRepository;
  readonly deployments: DeploymentRepository;
  readonly a2a: SqliteA2aRepository;
  readonly activity: SqliteActivityRepository;
  private readonly db: Db;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("busy_timeout = 5000");
    this.db.pragma("foreign_keys = ON");
    this.agents = new SqliteAgentRepository(this.db);
    this.sessions = new SqliteSessionRepository(this.db);
    this.keys = new SqliteKeyRepository(this.db);
    this.projects = new SqliteProjectRepository(this.db);
    this.manifests = new SqliteManifestRepository(this.db);
    this.responses = new SqliteResponseRepository(this.db);
    this.conversations = new SqliteConversationRepository(this.db);
    this.usage = new SqliteUsageRepository(this.db);
    this.deployments = new SqliteDeploymentRepository(this.db);
    this.a2a = new SqliteA2aRepository(this.db);
    this.activity = new SqliteActivityRepository(this.db);
  }

  async migrate(): Promise<void> {
    const apply = this.db.transaction(() => {
      const current = this.db.pragma("user_version", { simple: true }) as number;
      for (const m of migrations) {
        if (m.id <= current) continue;
        this.db.exec(m.sql);
        this.db.pragma(`user_version = ${m.id}`);
      }
    });
    apply.immediate();
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

interface KeyRow {
  id: string;
  project: string;
  name: string;
  admin: number;
  act_for_users: number;
  created_at: number;
}

const toKey = (r: KeyRow): ApiKey => ({
  id: r.id,
  project: r.project,
  name: r.name,
  admin: r.admin === 1,
  actForUsers: r.act_for_users === 1,
  createdAt: r.created_at,
});

class SqliteKeyRepository implements KeyRepository {
  private readonly sql: StatementCache;
  constructor(db: Db) {
    this.sql = new StatementCache(db);
  }

  async insert(key: ApiKey, secretHash: string): Promise<void> {
    this.sql
      .get(
        `INSERT INTO api_keys (id, project, name, secret_hash, admin, act_for_users, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(key.id, key.project, key.name, secretHash, +key.admin, +key.actForUsers, key.createdAt);
  }

  async findByHash(secretHash: string): Promise<ApiKey | undefined> {
    const row = this.sql
      .get(`SELECT * FROM api_keys WHERE secret_hash = ? AND revoked_at IS NULL`)
      .get(secretHash) as KeyRow | undefined;
    return row && toKey(row);
  }

  async list(project?: string): Promise<ApiKey[]> {
    const rows = (
      project === undefined
        ? this.sql
            .get(`SELECT * FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id`)
            .all()
        : this.sql
            .get(
              `SELECT * FROM api_keys WHERE revoked_at IS NULL AND project = ? ORDER BY created_at, id`,
            )
            .all(project)
    ) as KeyRow[];
    return rows.map(toKey);
  }

  async revoke(id: string, at: number): Promise<boolean> {
    const r = this.sql
      .get(`UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`)
      .run(at, id);
    return r.changes > 0;
  }

  async countAdmins(): Promise<number> {
    const row = this.sql
      .get(`SELECT count(*) AS n FROM api_keys WHERE admin = 1 AND revoked_at IS NULL`)
      .get() as {
      n: number;
    };
    return row.n;
  }
}

class SqliteProjectRepository implements ProjectRepository {
  private readonly sql: StatementCache;
  constructor(db: Db) {
    this.sql = new StatementCache(db);
  }

  async exists(name: string): Promise<boolean> {
    return this.sql.get(`SELECT 1 FROM projects WHERE name = ?`).get(name) !== undefined;
  }

  async create(name: string, at: number): Promise<void> {
    this.sql
      .get(`INSERT INTO projects (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING`)
      .run(name, at);
  }

  async list(): Promise<string[]> {
    return (
      this.sql.get(`SELECT name FROM projects ORDER BY name`).all() as { name: string }[]
    ).map((r) => r.name);
  }
}
