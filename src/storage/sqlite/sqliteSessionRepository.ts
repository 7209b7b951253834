import type { Database as Db } from "better-sqlite3";
import type {
  Page,
  PageRequest,
  Session,
  SessionStatus,
  SessionUpdate,
  TerminationReason,
} from "../../domain/model.js";
import type {
  ProjectSessionFilter,
  SessionFilter,
  SessionRef,
  SessionRepository,
} from "../../domain/ports.js";
import { planKeyset, toPage } from "../keyset.js";
import { StatementCache } from "./statementCache.js";

interface SessionRow {
  seq: number;
  project: string;
  agent_name: string;
  id: string;
  version: number;
  owner: string;
  status: string;
  created_at: number;
  last_accessed_at: number;
  expires_at: number;
  stopped_at: number | null;
  termination_reason: string | null;
  termination_message: string | null;
}

const live: SessionStatus[] = ["creating", "active"];

function toSession(r: SessionRow): Session {
  return {
    project: r.project,
    agentName: r.agent_name,
    id: r.id,
    version: r.version,
    owner: r.owner,
    status: r.status as SessionStatus,
    createdAt: r.created_at,
    lastAccessedAt: r.last_accessed_at,
    expiresAt: r.expires_at,
    stoppedAt: r.stopped_at,
    termination: r.termination_reason
      ? {
          reason: r.termination_reason as TerminationReason,
          message: r.termination_message ?? "",
        }
      : null,
  };
}

/** The WHERE clause of a filter (the column names are fixed here, the values are parameters). */
function where(filter: Partial<SessionFilter>): { sql: string[]; params: unknown[] } {
  const sql: string[] = [];
  const params: unknown[] = [];
  const add = (column: string, value: unknown) => {
    if (value === undefined) return;
    sql.push(`${column} = ?`);
    params.push(value);
  };
  add("project", filter.project);
  add("agent_name", filter.agentName);
  add("version", filter.version);
  add("owner", filter.owner);
  add("status", filter.status);
  return { sql, params };
}

export class SqliteSessionRepository implements SessionRepository {
  private readonly statements: StatementCache;

  constructor(private readonly db: Db) {
    this.statements = new StatementCache(db);
  }

  async insert(s: Session): Promise<boolean> {
    return this.db.transaction(() => {
      const result = this.statements
        .get(
          `INSERT INTO sessions (project, agent_name, id, version, owner, status, created_at,
             last_accessed_at, expires_at, stopped_at, termination_reason, termination_message)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        )
        .run(
          s.project,
          s.agentName,
          s.id,
          s.version,
          s.owner,
          s.status,
          s.createdAt,
          s.lastAccessedAt,
          s.expiresAt,
          s.stoppedAt,
          s.termination?.reason ?? null,
          s.termination?.message ?? null,
        );
      if (result.changes === 0) return false;
      this.statements
        .get(`DELETE FROM deleted_sessions WHERE project = ? AND agent_name = ? AND id = ?`)
        .run(s.project, s.agentName, s.id);
      return true;
    })();
  }

  async get(project: string, agentName: string, id: string): Promise<Session | undefined> {
    const row = this.statements
      .get(`SELECT * FROM sessions WHERE project = ? AND agent_name = ? AND id = ?`)
      .get(project, agentName, id) as SessionRow | undefined;
    return row && toSession(row);
  }

  async list(filter: SessionFilter, page: PageRequest): Promise<Page<Session>> {
    return this.pageOf(filter, page, (id: string) => this.seqOf(filter, id));
  }

  async listProject(
    filter: ProjectSessionFilter,
    page: Omit<PageRequest, "after" | "before"> & { after?: SessionRef; before?: SessionRef },
  ): Promise<Page<Session>> {
    return this.pageOf(filter, page, (ref: SessionRef) =>
      this.seqOf({ project: filter.project, agentName: ref.agentName }, ref.id),
    );
  }

  /** One keyset page of the sessions `filter` keeps, cursors found by `seqOf`. */
  private pageOf<C>(
    filter: Partial<SessionFilter>,
    page: Omit<PageRequest, "after" | "before"> & { after?: C; before?: C },
    seqOf: (cursor: C) => number,
  ): Page<Session> {
    return this.db.transaction(() => {
      const cursor = (c: C | undefined) => (c === undefined ? undefined : seqOf(c));
      const plan = planKeyset("seq", page.order, cursor(page.after), cursor(page.before));
      const w = where(filter);
      const rows = this.statements
        .get(
          `SELECT * FROM sessions WHERE ${[...w.sql, ...plan.conditions].join(" AND ")}
           ORDER BY seq ${plan.direction} LIMIT ?`,
        )
        .all(...w.params, ...plan.params, page.limit + 1) as SessionRow[];
      const { items, hasMore } = toPage(rows, page.limit, plan.reverse);
      return { items: items.map(toSession), hasMore };
    })();
  }

  /** A cursor naming an unknown session starts before everything (or after, for `before`). */
  private seqOf(filter: Pick<SessionFilter, "project" | "agentName">, id: string): number {
    const row = this.statements
      .get(
        `SELECT seq FROM sessions WHERE project = ? AND agent_name = ? AND id = ?
         UNION ALL SELECT seq FROM deleted_sessions WHERE project = ? AND agent_name = ? AND id = ?`,
      )
      .get(filter.project, filter.agentName, id, filter.project, filter.agentName, id) as
      { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  async all(filter: SessionFilter): Promise<Session[]> {
    const w = where(filter);
    const rows = this.statements
      .get(`SELECT * FROM sessions WHERE ${w.sql.join(" AND ")} ORDER BY seq`)
      .all(...w.params) as SessionRow[];
    return rows.map(toSession);
  }

  async update(
    project: string,
    agentName: string,
    id: string,
    fields: SessionUpdate,
  ): Promise<Session | undefined> {
    const columns: Record<string, unknown> = {
      status: fields.status,
      last_accessed_at: fields.lastAccessedAt,
      expires_at: fields.expiresAt,
      stopped_at: fields.stoppedAt,
      termination_reason:
        fields.termination === undefined ? undefined : (fields.termination?.reason ?? null),
      termination_message:
        fields.termination === undefined ? undefined : (fields.termination?.message ?? null),
    };
    const set = Object.entries(columns).filter(([, v]) => v !== undefined);
    const row = this.statements
      .get(
        `UPDATE sessions SET ${set.map(([c]) => `${c} = ?`).join(", ")}
         WHERE project = ? AND agent_name = ? AND id = ? RETURNING *`,
      )
      .get(...set.map(([, v]) => v), project, agentName, id) as SessionRow | undefined;
    return row && toSession(row);
  }

  async delete(project: string, agentName: string, id: string): Promise<boolean> {
    return this.db.transaction(() => {
      const row = this.statements
        .get(`DELETE FROM sessions WHERE project = ? AND agent_name = ? AND id = ? RETURNING seq`)
        .get(project, agentName, id) as { seq: number } | undefined;
      if (!row) return false;
      this.statements
        .get(
          `INSERT OR REPLACE INTO deleted_sessions (project, agent_name, id, seq) VALUES (?, ?, ?, ?)`,
        )
        .run(project, agentName, id, row.seq);
      return true;
    })();
  }

  async countLive(filter: Partial<SessionFilter>): Promise<number> {
    const w = where(filter);
    const row = this.statements
      .get(
        `SELECT count(*) AS n FROM sessions WHERE ${[...w.sql, `status IN (${live.map(() => "?").join(", ")})`].join(" AND ")}`,
      )
      .get(...w.params, ...live) as { n: number };
    return row.n;
  }

  async withStatus(statuses: SessionStatus[]): Promise<Session[]> {
    const rows = this.statements
      .get(
        `SELECT * FROM sessions WHERE status IN (${statuses.map(() => "?").join(", ")}) ORDER BY seq`,
      )
      .all(...statuses) as SessionRow[];
    return rows.map(toSession);
  }

  async expiring(now: number): Promise<Session[]> {
    const rows = this.statements
      .get(`SELECT * FROM sessions WHERE expires_at <= ? AND status != 'expired' ORDER BY seq`)
      .all(now) as SessionRow[];
    return rows.map(toSession);
  }
}
