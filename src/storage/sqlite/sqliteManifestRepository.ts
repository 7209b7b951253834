import type { Database as Db } from "better-sqlite3";
import type { Manifest } from "../../domain/manifests.js";
import type { ManifestRepository } from "../../domain/ports.js";
import { StatementCache } from "./statementCache.js";

interface ManifestRow {
  project: string;
  name: string;
  version: number;
  description: string;
  parameters: string;
  definition: string;
  created_at: number;
}

const toManifest = (r: ManifestRow): Manifest => ({
  project: r.project,
  name: r.name,
  version: r.version,
  description: r.description,
  parameters: JSON.parse(r.parameters) as Manifest["parameters"],
  definition: JSON.parse(r.definition) as Manifest["definition"],
  createdAt: r.created_at,
  builtin: false,
});

export class SqliteManifestRepository implements ManifestRepository {
  private readonly sql: StatementCache;

  constructor(private readonly db: Db) {
    this.sql = new StatementCache(db);
  }

  async add(m: Omit<Manifest, "version" | "builtin">): Promise<Manifest> {
    return this.db
      .transaction(() => {
        const { next } = this.sql
          .get(
            `SELECT coalesce(max(version), 0) + 1 AS next FROM manifests WHERE project = ? AND name = ?`,
          )
          .get(m.project, m.name) as { next: number };
        this.sql
          .get(
            `INSERT INTO manifests (project, name, version, description, parameters, definition, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(
            m.project,
            m.name,
            next,
            m.description,
            JSON.stringify(m.parameters),
            JSON.stringify(m.definition),
            m.createdAt,
          );
        return { ...m, version: next, builtin: false };
      })
      .immediate();
  }

  async get(project: string, name: string, version?: number): Promise<Manifest | undefined> {
    const row = (
      version === undefined
        ? this.sql
            .get(
              `SELECT * FROM manifests WHERE project = ? AND name = ? ORDER BY version DESC LIMIT 1`,
            )
            .get(project, name)
        : this.sql
            .get(`SELECT * FROM manifests WHERE project = ? AND name = ? AND version = ?`)
            .get(project, name, version)
    ) as ManifestRow | undefined;
    return row && toManifest(row);
  }

  async list(project: string): Promise<Manifest[]> {
    const rows = this.sql
      .get(`SELECT * FROM manifests WHERE project = ? ORDER BY name, version`)
      .all(project);
    return (rows as ManifestRow[]).map(toManifest);
  }

  async delete(project: string, name: string, version?: number): Promise<boolean> {
    const r =
      version === undefined
        ? this.sql.get(`DELETE FROM manifests WHERE project = ? AND name = ?`).run(project, name)
        : this.sql
            .get(`DELETE FROM manifests WHERE project = ? AND name = ? AND version = ?`)
            .run(project, name, version);
    return r.changes > 0;
  }
}
