import type { Database as Db } from "better-sqlite3";
import type { A2aContext, A2aRepository, A2aScope, StoredTask } from "../../protocols/a2a/ports.js";
import { StatementCache } from "./statementCache.js";

interface ContextRow {
  project: string;
  agent_name: string;
  id: string;
  owner: string;
  kind: string;
  target_id: string;
  created_at: number;
}

interface TaskRow {
  project: string;
  agent_name: string;
  id: string;
  owner: string;
  context_id: string;
  state: string;
  body: string;
  updated_at: number;
}

const toTask = (r: TaskRow): StoredTask => ({
  id: r.id,
  contextId: r.context_id,
  state: r.state,
  body: JSON.parse(r.body),
  updatedAt: r.updated_at,
});

export class SqliteA2aRepository implements A2aRepository {
  private readonly sql: StatementCache;
  constructor(db: Db) {
    this.sql = new StatementCache(db);
  }

  async context(project: string, agentName: string, id: string) {
    const r = this.sql
      .get(`SELECT * FROM a2a_contexts WHERE project = ? AND agent_name = ? AND id = ?`)
      .get(project, agentName, id) as ContextRow | undefined;
    return (
      r && {
        project: r.project,
        agentName: r.agent_name,
        id: r.id,
        owner: r.owner,
        kind: r.kind as A2aContext["kind"],
        targetId: r.target_id,
        createdAt: r.created_at,
      }
    );
  }

  async putContext(c: A2aContext) {
    const r = this.sql
      .get(
        `INSERT INTO a2a_contexts (project, agent_name, id, owner, kind, target_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (project, agent_name, id) DO UPDATE
           SET kind = excluded.kind, target_id = excluded.target_id
           WHERE a2a_contexts.owner = excluded.owner`,
      )
      .run(c.project, c.agentName, c.id, c.owner, c.kind, c.targetId, c.createdAt);
    return r.changes > 0;
  }

  async task(scope: A2aScope, id: string) {
    const r = this.sql
      .get(`SELECT * FROM a2a_tasks WHERE project = ? AND agent_name = ? AND id = ? AND owner = ?`)
      .get(scope.project, scope.agentName, id, scope.owner) as TaskRow | undefined;
    return r && toTask(r);
  }

  async putTask(scope: A2aScope, t: StoredTask) {
    this.sql
      .get(
        `INSERT INTO a2a_tasks (project, agent_name, id, owner, context_id, state, body, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (project, agent_name, id) DO UPDATE SET
           context_id = excluded.context_id, state = excluded.state, body = excluded.body,
           updated_at = excluded.updated_at
         WHERE a2a_tasks.owner = excluded.owner`,
      )
      .run(
        scope.project,
        scope.agentName,
        t.id,
        scope.owner,
        t.contextId,
        t.state,
        JSON.stringify(t.body),
        t.updatedAt,
      );
  }

  async prune(scope: A2aScope, keep: number) {
    this.sql
      .get(
        `DELETE FROM a2a_tasks WHERE project = @project AND agent_name = @agentName
           AND owner = @owner
           AND state NOT IN ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING')
           AND id IN (SELECT id FROM a2a_tasks
             WHERE project = @project AND agent_name = @agentName AND owner = @owner
             ORDER BY updated_at DESC, id DESC LIMIT -1 OFFSET @keep)`,
      )
      .run({ ...scope, keep });
  }

  async unfinished(limit: number) {
    const rows = this.sql
      .get(
        `SELECT * FROM a2a_tasks WHERE state IN ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING') LIMIT ?`,
      )
      .all(limit) as TaskRow[];
    return rows.map((r) => ({
      ...toTask(r),
      scope: { project: r.project, agentName: r.agent_name, owner: r.owner },
    }));
  }
}
