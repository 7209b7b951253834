import type { Database as Db, Statement } from "better-sqlite3";

/** Prepared statements compiled once per SQL text: compiling costs more than most queries here. */
export class StatementCache {
  private readonly statements = new Map<string, Statement>();

  constructor(readonly db: Db) {}

  get(sql: string): Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }
}
