import type { Database as Db } from "better-sqlite3";
import type { ActivityRepository, ActivityScope } from "../../protocols/activity/ports.js";
import { StatementCache } from "./statementCache.js";

export class SqliteActivityRepository implements ActivityRepository {
  private readonly sql: StatementCache;
  constructor(db: Db) {
    this.sql = new StatementCache(db);
  }

  async sessionOf(scope: ActivityScope, conversationId: string) {
    const r = this.sql
      .get(
        `SELECT session_id FROM activity_conversations
         WHERE project = ? AND agent_name = ? AND owner = ? AND conversation_id = ?`,
      )
      .get(scope.project, scope.agentName, scope.owner, conversationId) as
      { session_id: string } | undefined;
    return r?.session_id;
  }

  async remember(scope: ActivityScope, conversationId: string, sessionId: string, at: number) {
    this.sql
      .get(
        `INSERT INTO activity_conversations
           (project, agent_name, owner, conversation_id, session_id, updated_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET session_id = excluded.session_id, updated_at = excluded.updated_at`,
      )
      .run(scope.project, scope.agentName, scope.owner, conversationId, sessionId, at);
  }
}
