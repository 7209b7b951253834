import type { Database as Db } from "better-sqlite3";
import type { DeploymentRepository, StoredDeployment } from "../../domain/ports.js";
import { StatementCache } from "./statementCache.js";

interface DeploymentRow {
  project: string;
  name: string;
  model: string;
  base_url: string;
  api_key_ciphertext: string | null;
  api_key_env: string | null;
  created_at: number;
  updated_at: number;
}

const toDeployment = (r: DeploymentRow): StoredDeployment => ({
  project: r.project,
  name: r.name,
  model: r.model,
  baseUrl: r.base_url,
  apiKeyCiphertext: r.api_key_ciphertext,
  apiKeyEnv: r.api_key_env,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export class SqliteDeploymentRepository implements DeploymentRepository {
  private readonly sql: StatementCache;

  constructor(private readonly db: Db) {
    this.sql = new StatementCache(db);
  }

  async get(project: string, name: string): Promise<StoredDeployment | undefined> {
    const row = this.sql
      .get(`SELECT * FROM deployments WHERE project = ? AND name = ?`)
      .get(project, name) as DeploymentRow | undefined;
    return row && toDeployment(row);
  }

  async list(project: string): Promise<StoredDeployment[]> {
    const rows = this.sql
      .get(`SELECT * FROM deployments WHERE project = ? ORDER BY name`)
      .all(project) as DeploymentRow[];
    return rows.map(toDeployment);
  }

  async put(d: StoredDeployment): Promise<{ deployment: StoredDeployment; created: boolean }> {
    const write = this.db.transaction(() => {
      const before = this.sql
        .get(`SELECT created_at FROM deployments WHERE project = ? AND name = ?`)
        .get(d.project, d.name) as { created_at: number } | undefined;
      const row = this.sql
        .get(
          `INSERT INTO deployments (project, name, model, base_url, api_key_ciphertext, api_key_env, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (project, name) DO UPDATE SET
             model = excluded.model, base_url = excluded.base_url,
             api_key_ciphertext = excluded.api_key_ciphertext, api_key_env = excluded.api_key_env,
             updated_at = excluded.updated_at
           RETURNING *`,
        )
        .get(
          d.project,
          d.name,
          d.model,
          d.baseUrl,
          d.apiKeyCiphertext,
          d.apiKeyEnv,
          d.createdAt,
          d.updatedAt,
        ) as DeploymentRow;
      return { deployment: toDeployment(row), created: before === undefined };
    });
    return write.immediate();
  }

  async delete(project: string, name: string): Promise<boolean> {
    return (
      this.sql.get(`DELETE FROM deployments WHERE project = ? AND name = ?`).run(project, name)
        .changes > 0
    );
  }
}
