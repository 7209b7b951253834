import type { Database as Db, Statement } from "better-sqlite3";
import { trafficRules, withoutVersion } from "../../domain/trafficRules.js";
import type {
  Agent,
  AgentState,
  JsonObject,
  NewAgent,
  NewVersion,
  Page,
  PageRequest,
  StatusReason,
  Version,
  VersionStatus,
} from "../../domain/model.js";
import type { AgentRepository } from "../../domain/ports.js";
import { planKeyset, toPage } from "../keyset.js";
import { json, toAgent, toVersion, versionCursor } from "../rows.js";
import { StatementCache } from "./statementCache.js";
import type { AgentRow, VersionRow } from "../rows.js";

/** better-sqlite3 is synchronous: each method is one transaction, so none interleave. */
export class SqliteAgentRepository implements AgentRepository {
  private readonly statements: StatementCache;

  constructor(private readonly db: Db) {
    this.statements = new StatementCache(db);
  }

  async get(project: string, name: string): Promise<Agent | undefined> {
    return this.readAgent(project, name);
  }

  async list(project: string, page: PageRequest & { kind?: string }): Promise<Page<Agent>> {
    return this.db.transaction(() => {
      const plan = planKeyset(
        "a.seq",
        page.order,
        this.agentSeq(project, page.after),
        this.agentSeq(project, page.before),
      );
      const where = ["a.project = ?", ...plan.conditions];
      const params: unknown[] = [project, ...plan.params];
      if (page.kind) {
        where.push("a.latest_kind = ?");
        params.push(page.kind);
      }
      const rows = this.stmt(
        `SELECT a.*, ${versionColumns("v")} FROM agents a
         JOIN agent_versions v ON v.project = a.project AND v.agent_name = a.name AND v.version = a.latest_version
         WHERE ${where.join(" AND ")} ORDER BY a.seq ${plan.direction} LIMIT ?`,
      ).all(...params, page.limit + 1) as (AgentRow & Prefixed)[];
      const { items, hasMore } = toPage(rows, page.limit, plan.reverse);
      return { items: items.map((r) => toAgent(r, toVersion(unprefix(r)))), hasMore };
    })();
  }

  async appendVersion(
    project: string,
    name: string,
    version: NewVersion,
    options: { newAgent?: NewAgent; reuseIfUnchanged?: boolean },
  ): Promise<{ agent: Agent; version: Version; created: boolean } | undefined> {
    return this.db
      .transaction(() => {
        const agent = this.stmt(`SELECT * FROM agents WHERE project = ? AND name = ?`).get(
          project,
          name,
        ) as (AgentRow & { next_version: number; latest_version: number }) | undefined;
        if (!agent && !options.newAgent) return undefined;
        if (agent && options.reuseIfUnchanged) {
          const latest = this.stmt(
            `SELECT fingerprint FROM agent_versions WHERE project = ? AND agent_name = ? AND version = ?`,
          ).get(project, name, agent.latest_version) as { fingerprint: string };
          if (latest.fingerprint === version.fingerprint) {
            const current = this.readAgent(project, name)!;
            return { agent: current, version: current.latest, created: false };
          }
        }
        const number = agent ? agent.next_version : 1;
        const createdAt = version.createdAt;
        this.stmt(
          `INSERT INTO agent_versions (project, agent_name, version, kind, definition, metadata, description,
             draft, status, status_reason, content_hash, blueprint_reference, digital_worker_type, fingerprint,
             created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          project,
          name,
          number,
          version.definition.kind,
          JSON.stringify(version.definition),
          JSON.stringify(version.metadata),
          version.description,
          +version.draft,
          version.status,
          version.statusReason && JSON.stringify(version.statusReason),
          version.contentHash,
          json(version.blueprintReference),
          version.digitalWorkerType,
          version.fingerprint,
          createdAt,
        );
        if (!agent) {
          const a = options.newAgent!;
          this.stmt(
            `INSERT INTO agents (project, name, state, agent_endpoint, agent_card, next_version, latest_version,
               latest_kind, created_at) VALUES (?, ?, ?, ?, ?, 2, 1, ?, ?)`,
          ).run(
            project,
            name,
            a.state,
            json(a.agentEndpoint),
            json(a.agentCard),
            version.definition.kind,
            createdAt,
          );
        } else if (version.draft) {
          this.stmt(`UPDATE agents SET next_version = ? WHERE project = ? AND name = ?`).run(
            number + 1,
            project,
            name,
          );
        } else {
          this.stmt(
            `UPDATE agents SET next_version = ?, latest_version = ?, latest_kind = ? WHERE project = ? AND name = ?`,
          ).run(number + 1, number, version.definition.kind, project, name);
        }
        const stored = this.readVersion(project, name, number)!;
        return { agent: this.readAgent(project, name)!, version: stored, created: true };
      })
      .immediate();
  }

  async setState(project: string, name: string, state: AgentState): Promise<Agent | undefined> {
    return this.db.transaction(() => {
      this.stmt(`UPDATE agents SET state = ? WHERE project = ? AND name = ?`).run(
        state,
        project,
        name,
      );
      return this.readAgent(project, name);
    })();
  }

  async setEndpoint(
    project: string,
    name: string,
    fields: { agentEndpoint: JsonObject | null; agentCard: JsonObject | null },
  ): Promise<Agent | undefined> {
    return this.db.transaction(() => {
      this.stmt(
        `UPDATE agents SET agent_endpoint = ?, agent_card = ? WHERE project = ? AND name = ?`,
      ).run(json(fields.agentEndpoint), json(fields.agentCard), project, name);
      return this.readAgent(project, name);
    })();
  }

  async delete(project: string, name: string): Promise<boolean> {
    return this.db.transaction(() => this.deleteAgent(project, name)).immediate();
  }

  async getVersion(project: string, name: string, version: number): Promise<Version | undefined> {
    return this.readVersion(project, name, version);
  }

  async listVersions(
    project: string,
    name: string,
    page: PageRequest & { includeDrafts: boolean },
  ): Promise<Page<Version> | undefined> {
    return this.db.transaction(() => {
      if (!this.stmt(`SELECT 1 FROM agents WHERE project = ? AND name = ?`).get(project, name))
        return undefined;
      const after = page.after === undefined ? undefined : (versionCursor(page.after) ?? 0);
      const before = page.before === undefined ? undefined : (versionCursor(page.before) ?? 0);
      const plan = planKeyset("version", page.order, after, before);
      const where = ["project = ?", "agent_name = ?", ...plan.conditions];
      if (!page.includeDrafts) where.push("draft = 0");
      // Published-only pages walk the (…, draft, version) index so drafts cost nothing to skip.
      const index = page.includeDrafts ? "" : "INDEXED BY agent_versions_published";
      const rows = this.stmt(
        `SELECT * FROM agent_versions ${index} WHERE ${where.join(" AND ")} ORDER BY version ${plan.direction} LIMIT ?`,
      ).all(project, name, ...plan.params, page.limit + 1) as VersionRow[];
      const { items, hasMore } = toPage(rows, page.limit, plan.reverse);
      return { items: items.map(toVersion), hasMore };
    })();
  }

  async deleteVersion(
    project: string,
    name: string,
    version: number,
    options: { leaveRules?: boolean } = {},
  ): Promise<"deleted" | "agent_deleted" | "missing" | "in_use" | "last_published"> {
    return this.db
      .transaction(() => {
        const agent = this.readAgent(project, name);
        const target = this.readVersion(project, name, version);
        if (!agent || !target) return "missing";
        const named = trafficRules(agent.agentEndpoint).some(
          (r) => r.agent_version === String(version),
        );
        if (named && !options.leaveRules) return "in_use";
        const remaining = this.stmt(
          `SELECT count(*) AS total, sum(draft = 0) AS published FROM agent_versions
           WHERE project = ? AND agent_name = ? AND version != ?`,
        ).get(project, name, version) as { total: number; published: number | null };
        if (remaining.total === 0) {
          this.deleteAgent(project, name);
          return "agent_deleted";
        }
        if (!remaining.published) return "last_published";
        if (named) {
          this.stmt(`UPDATE agents SET agent_endpoint = ? WHERE project = ? AND name = ?`).run(
            json(withoutVersion(agent.agentEndpoint!, String(version))),
            project,
            name,
          );
        }
        this.stmt(
          `DELETE FROM agent_versions WHERE project = ? AND agent_name = ? AND version = ?`,
        ).run(project, name, version);
        if (agent.latest.version === version) {
          const latest = this.stmt(
            `SELECT version, kind FROM agent_versions WHERE project = ? AND agent_name = ? AND draft = 0
             ORDER BY version DESC LIMIT 1`,
          ).get(project, name) as { version: number; kind: string };
          this.stmt(
            `UPDATE agents SET latest_version = ?, latest_kind = ? WHERE project = ? AND name = ?`,
          ).run(latest.version, latest.kind, project, name);
        }
        return "deleted";
      })
      .immediate();
  }

  async setVersionStatus(
    project: string,
    name: string,
    version: number,
    status: VersionStatus,
    reason: StatusReason | null,
  ): Promise<Version | undefined> {
    this.stmt(
      `UPDATE agent_versions SET status = ?, status_reason = ? WHERE project = ? AND agent_name = ? AND version = ?`,
    ).run(status, reason && JSON.stringify(reason), project, name, version);
    return this.readVersion(project, name, version);
  }

  async versionsWithStatus(status: VersionStatus): Promise<Version[]> {
    const rows = this.stmt(`SELECT * FROM agent_versions WHERE status = ? ORDER BY created_at`).all(
      status,
    );
    return (rows as VersionRow[]).map(toVersion);
  }

  async projectContentHashes(project: string): Promise<string[]> {
    const rows = this.stmt(
      `SELECT content_hash AS h FROM agent_versions WHERE project = ? AND content_hash IS NOT NULL`,
    ).all(project) as { h: string }[];
    return rows.map((r) => r.h);
  }

  async countContentReferences(contentHash: string): Promise<number> {
    const row = this.stmt(`SELECT count(*) AS n FROM agent_versions WHERE content_hash = ?`).get(
      contentHash,
    ) as {
      n: number;
    };
    return row.n;
  }

  async allVersions(project: string, name: string): Promise<Version[]> {
    const rows = this.stmt(
      `SELECT * FROM agent_versions WHERE project = ? AND agent_name = ? ORDER BY version`,
    ).all(project, name);
    return (rows as VersionRow[]).map(toVersion);
  }

  private deleteAgent(project: string, name: string): boolean {
    const row = this.stmt(`SELECT seq FROM agents WHERE project = ? AND name = ?`).get(
      project,
      name,
    ) as { seq: number } | undefined;
    if (!row) return false;
    this.stmt(`DELETE FROM agent_versions WHERE project = ? AND agent_name = ?`).run(project, name);
    this.stmt(`DELETE FROM agents WHERE project = ? AND name = ?`).run(project, name);
    // Its A2A contexts and tasks go with it (a new agent of the name starts with none).
    this.stmt(`DELETE FROM a2a_tasks WHERE project = ? AND agent_name = ?`).run(project, name);
    this.stmt(`DELETE FROM a2a_contexts WHERE project = ? AND agent_name = ?`).run(project, name);
    this.stmt(
      `INSERT INTO deleted_agents (project, name, seq) VALUES (?, ?, ?)
       ON CONFLICT (project, name) DO UPDATE SET seq = excluded.seq`,
    ).run(project, name, row.seq);
    return true;
  }

  /** The listing position of an agent named by a page cursor, deleted or not. */
  private agentSeq(project: string, name: string | undefined): number | undefined {
    if (name === undefined) return undefined;
    const row = this.stmt(
      `SELECT seq FROM agents WHERE project = @project AND name = @name
       UNION ALL SELECT seq FROM deleted_agents WHERE project = @project AND name = @name LIMIT 1`,
    ).get({ project, name }) as { seq: number } | undefined;
    // An unknown cursor sorts before everything, so the page is simply empty or complete.
    return row?.seq ?? 0;
  }

  private readAgent(project: string, name: string): Agent | undefined {
    const row = this.stmt(
      `SELECT a.*, ${versionColumns("v")} FROM agents a
       JOIN agent_versions v ON v.project = a.project AND v.agent_name = a.name AND v.version = a.latest_version
       WHERE a.project = ? AND a.name = ?`,
    ).get(project, name) as (AgentRow & Prefixed) | undefined;
    return row && toAgent(row, toVersion(unprefix(row)));
  }

  private readVersion(project: string, name: string, version: number): Version | undefined {
    const row = this.stmt(
      `SELECT * FROM agent_versions WHERE project = ? AND agent_name = ? AND version = ?`,
    ).get(project, name, version) as VersionRow | undefined;
    return row && toVersion(row);
  }

  private stmt(sql: string): Statement {
    return this.statements.get(sql);
  }
}

const versionFields = [
  "project",
  "agent_name",
  "version",
  "kind",
  "definition",
  "metadata",
  "description",
  "draft",
  "status",
  "status_reason",
  "content_hash",
  "blueprint_reference",
  "digital_worker_type",
  "created_at",
] as const;

type Prefixed = { [K in (typeof versionFields)[number] as `v_${K}`]: VersionRow[K] };

const versionColumns = (alias: string) =>
  versionFields.map((f) => `${alias}.${f} AS v_${f}`).join(", ");

function unprefix(row: Prefixed): VersionRow {
  const out: Record<string, unknown> = {};
  for (const f of versionFields) out[f] = row[`v_${f}`];
  return out as unknown as VersionRow;
}
