import type { Database as Db } from "better-sqlite3";
import type { JsonObject, Page, PageRequest } from "../../domain/model.js";
import type {
  Conversation,
  ConversationRepository,
  Item,
  ResponseRepository,
  StoredResponse,
  UsageGroup,
  UsageRecord,
  UsageRepository,
  UsageTotals,
} from "../../responses/ports.js";
import { planKeyset, toPage } from "../keyset.js";
import { StatementCache } from "./statementCache.js";

interface ResponseRow {
  id: string;
  project: string;
  owner: string;
  agent_name: string | null;
  session_id: string | null;
  previous_response_id: string | null;
  conversation_id: string | null;
  body: string;
  input: string;
  events: string | null;
  created_at: number;
}

export class SqliteResponseRepository implements ResponseRepository {
  private readonly statements: StatementCache;
  constructor(db: Db) {
    this.statements = new StatementCache(db);
  }

  private insert(r: StoredResponse, onConflict: string) {
    return this.statements
      .get(
        `INSERT INTO responses (id, project, owner, agent_name, session_id, previous_response_id,
           conversation_id, status, body, input, events, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (project, id) ${onConflict}`,
      )
      .run(
        r.id,
        r.project,
        r.owner,
        r.agentName,
        r.sessionId,
        r.previousResponseId,
        r.conversationId,
        String(r.body.status ?? "completed"),
        JSON.stringify(r.body),
        JSON.stringify(r.input),
        r.events ? JSON.stringify(r.events) : null,
        r.createdAt,
      );
  }

  async put(r: StoredResponse): Promise<void> {
    this.insert(
      r,
      "DO UPDATE SET status = excluded.status, body = excluded.body, events = excluded.events",
    );
  }

  async claim(r: StoredResponse): Promise<boolean> {
    return this.insert(r, "DO NOTHING").changes > 0;
  }

  async get(project: string, id: string): Promise<StoredResponse | undefined> {
    const row = this.statements
      .get(
        `SELECT id, project, owner, agent_name, session_id, previous_response_id, conversation_id,
           body, input, NULL AS events, created_at
         FROM responses WHERE project = ? AND id = ?`,
      )
      .get(project, id) as ResponseRow | undefined;
    return (
      row && {
        id: row.id,
        project: row.project,
        owner: row.owner,
        agentName: row.agent_name,
        sessionId: row.session_id,
        previousResponseId: row.previous_response_id,
        conversationId: row.conversation_id,
        body: JSON.parse(row.body),
        input: JSON.parse(row.input),
        events: null,
        createdAt: row.created_at,
      }
    );
  }

  async events(project: string, id: string): Promise<JsonObject[] | null> {
    const row = this.statements
      .get("SELECT events FROM responses WHERE project = ? AND id = ?")
      .get(project, id) as { events: string | null } | undefined;
    return row?.events ? JSON.parse(row.events) : null;
  }

  async delete(project: string, id: string): Promise<boolean> {
    return (
      this.statements.get("DELETE FROM responses WHERE project = ? AND id = ?").run(project, id)
        .changes > 0
    );
  }

  async failUnfinished(message: string): Promise<number> {
    return this.statements
      .get(
        `UPDATE responses SET status = 'failed', body = json_set(body, '$.status', 'failed',
           '$.error', json_object('code', 'service_stopped', 'message', ?))
         WHERE status IN ('queued', 'in_progress')`,
      )
      .run(message).changes;
  }
}

interface ConversationRow {
  id: string;
  project: string;
  owner: string;
  metadata: string;
  agent_name: string | null;
  agent_version: number | null;
  created_at: number;
}

const toConversation = (r: ConversationRow): Conversation => ({
  id: r.id,
  project: r.project,
  owner: r.owner,
  metadata: JSON.parse(r.metadata),
  agentName: r.agent_name,
  agentVersion: r.agent_version,
  createdAt: r.created_at,
});

export class SqliteConversationRepository implements ConversationRepository {
  private readonly statements: StatementCache;
  constructor(private readonly db: Db) {
    this.statements = new StatementCache(db);
  }

  async create(c: Conversation, items: Item[]): Promise<void> {
    this.db.transaction(() => {
      this.statements
        .get(
          `INSERT INTO conversations (id, project, owner, metadata, agent_name, agent_version, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          c.id,
          c.project,
          c.owner,
          JSON.stringify(c.metadata),
          c.agentName,
          c.agentVersion,
          c.createdAt,
        );
      this.insertItems(c.id, items, c.createdAt);
    })();
  }

  private insertItems(id: string, items: Item[], at: number) {
    const insert = this.statements.get(
      "INSERT INTO conversation_items (conversation_id, id, item, created_at) VALUES (?, ?, ?, ?)",
    );
    for (const item of items) insert.run(id, item.id, JSON.stringify(item), at);
  }

  async get(project: string, id: string): Promise<Conversation | undefined> {
    const row = this.statements
      .get("SELECT * FROM conversations WHERE id = ? AND project = ?")
      .get(id, project) as ConversationRow | undefined;
    return row && toConversation(row);
  }

  async update(
    project: string,
    id: string,
    fields: Partial<Pick<Conversation, "metadata" | "agentName" | "agentVersion">>,
  ): Promise<Conversation | undefined> {
    const current = await this.get(project, id);
    if (!current) return undefined;
    const next = { ...current, ...fields };
    this.statements
      .get(
        "UPDATE conversations SET metadata = ?, agent_name = ?, agent_version = ? WHERE id = ? AND project = ?",
      )
      .run(JSON.stringify(next.metadata), next.agentName, next.agentVersion, id, project);
    return next;
  }

  async delete(project: string, id: string): Promise<boolean> {
    return this.db.transaction(() => {
      const gone =
        this.statements
          .get("DELETE FROM conversations WHERE id = ? AND project = ?")
          .run(id, project).changes > 0;
      if (gone)
        this.statements.get("DELETE FROM conversation_items WHERE conversation_id = ?").run(id);
      return gone;
    })();
  }

  async append(project: string, id: string, items: Item[], at: number): Promise<boolean> {
    return this.db.transaction(() => {
      const exists = this.statements
        .get("SELECT 1 FROM conversations WHERE id = ? AND project = ?")
        .get(id, project);
      if (!exists) return false;
      this.insertItems(id, items, at);
      return true;
    })();
  }

  async items(project: string, id: string): Promise<Item[]> {
    const rows = this.statements
      .get(
        `SELECT i.item FROM conversation_items i JOIN conversations c ON c.id = i.conversation_id
         WHERE c.id = ? AND c.project = ? ORDER BY i.seq`,
      )
      .all(id, project) as { item: string }[];
    return rows.map((r) => JSON.parse(r.item));
  }

  private seqOf(id: string, itemId: string | undefined): number | undefined | null {
    if (itemId === undefined) return undefined;
    const row = this.statements
      .get("SELECT seq FROM conversation_items WHERE conversation_id = ? AND id = ?")
      .get(id, itemId) as { seq: number } | undefined;
    return row?.seq ?? null;
  }

  async page(project: string, id: string, page: PageRequest): Promise<Page<Item>> {
    const after = this.seqOf(id, page.after);
    const before = this.seqOf(id, page.before);
    // An unknown cursor (a deleted item) pages nowhere rather than from the start again.
    if (!(await this.get(project, id)) || after === null || before === null)
      return { items: [], hasMore: false };
    const plan = planKeyset("seq", page.order, after, before);
    const rows = this.db
      .prepare(
        `SELECT item FROM conversation_items WHERE conversation_id = ?
         ${plan.conditions.map((c) => `AND ${c}`).join(" ")}
         ORDER BY seq ${plan.direction} LIMIT ?`,
      )
      .all(id, ...plan.params, page.limit + 1) as { item: string }[];
    const cut = toPage(rows, page.limit, plan.reverse);
    return { items: cut.items.map((r) => JSON.parse(r.item)), hasMore: cut.hasMore };
  }

  async item(project: string, id: string, itemId: string): Promise<Item | undefined> {
    const row = this.statements
      .get(
        `SELECT i.item FROM conversation_items i JOIN conversations c ON c.id = i.conversation_id
         WHERE c.id = ? AND c.project = ? AND i.id = ?`,
      )
      .get(id, project, itemId) as { item: string } | undefined;
    return row && JSON.parse(row.item);
  }

  async list(
    project: string,
    owner: string,
    filter: { agentName?: string },
    page: PageRequest,
  ): Promise<Page<Conversation>> {
    const seqOf = (id: string | undefined) => {
      if (id === undefined) return undefined;
      const row = this.statements
        .get("SELECT seq FROM conversations WHERE id = ? AND project = ? AND owner = ?")
        .get(id, project, owner) as { seq: number } | undefined;
      return row?.seq ?? null;
    };
    const after = seqOf(page.after);
    const before = seqOf(page.before);
    // An unknown cursor (a deleted conversation) pages nowhere rather than from the start.
    if (after === null || before === null) return { items: [], hasMore: false };
    const plan = planKeyset("seq", page.order, after, before);
    const conditions = ["project = ?", "owner = ?", ...plan.conditions];
    const params: unknown[] = [project, owner];
    if (filter.agentName !== undefined) {
      conditions.splice(2, 0, "agent_name = ?");
      params.push(filter.agentName);
    }
    const rows = this.db
      .prepare(
        `SELECT * FROM conversations WHERE ${conditions.join(" AND ")}
         ORDER BY seq ${plan.direction} LIMIT ?`,
      )
      .all(...params, ...plan.params, page.limit + 1) as ConversationRow[];
    const cut = toPage(rows, page.limit, plan.reverse);
    return { items: cut.items.map(toConversation), hasMore: cut.hasMore };
  }

  async deleteItem(project: string, id: string, itemId: string): Promise<boolean> {
    if (!(await this.get(project, id))) return false;
    return (
      this.statements
        .get("DELETE FROM conversation_items WHERE conversation_id = ? AND id = ?")
        .run(id, itemId).changes > 0
    );
  }
}

/** SQL of each grouping (fixed strings; values are always parameters). */
const groupColumns: Record<Exclude<UsageGroup, "time">, string> = {
  agent: "agent_name",
  version: "agent_version",
  session: "session_id",
  identity: "owner",
  deployment: "deployment",
  day: "date(created_at, 'unixepoch')",
};

export class SqliteUsageRepository implements UsageRepository {
  private readonly statements: StatementCache;
  constructor(private readonly db: Db) {
    this.statements = new StatementCache(db);
  }

  async add(records: UsageRecord[]): Promise<void> {
    const insert = this.statements.get(
      `INSERT INTO usage (project, agent_name, agent_version, session_id, conversation_id, owner,
         deployment, response_id, input_tokens, output_tokens, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      for (const u of records)
        insert.run(
          u.project,
          u.agentName,
          u.agentVersion,
          u.sessionId,
          u.conversationId,
          u.owner,
          u.deployment,
          u.responseId,
          u.inputTokens,
          u.outputTokens,
          u.createdAt,
        );
    })();
  }

  async totals(
    scope: { project: string; agentName: string; sessionId: string } | { conversationId: string },
  ): Promise<UsageTotals> {
    const sums =
      "COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o, COUNT(*) AS n";
    const row = (
      "conversationId" in scope
        ? this.statements
            .get(`SELECT ${sums} FROM usage WHERE conversation_id = ?`)
            .get(scope.conversationId)
        : this.statements
            .get(
              `SELECT ${sums} FROM usage WHERE project = ? AND agent_name = ? AND session_id = ?`,
            )
            .get(scope.project, scope.agentName, scope.sessionId)
    ) as { i: number; o: number; n: number };
    return { inputTokens: row.i, outputTokens: row.o, calls: row.n };
  }

  async grouped(
    groups: UsageGroup[],
    filter: { project?: string; since?: number; until?: number; bucketSeconds?: number },
  ): Promise<(UsageTotals & Record<string, string | number | null>)[]> {
    // A whole number checked here, so it can stand in the SQL as a literal.
    const bucket = Math.trunc(filter.bucketSeconds ?? 3600);
    if (!(bucket >= 1)) throw new Error("bucketSeconds must be a positive integer");
    const column = (g: UsageGroup) =>
      g === "time" ? `(created_at / ${bucket}) * ${bucket}` : groupColumns[g];
    const conditions: string[] = [];
    const params: unknown[] = [];
    const add = (condition: string, value: unknown) => {
      if (value === undefined) return;
      conditions.push(condition);
      params.push(value);
    };
    add("project = ?", filter.project);
    add("created_at >= ?", filter.since);
    add("created_at < ?", filter.until);
    const keys = ["project", ...groups.map(column)];
    const select = keys.map((k, i) => `${k} AS g${i}`).join(", ");
    const rows = this.db
      .prepare(
        `SELECT ${select}, SUM(input_tokens) AS i, SUM(output_tokens) AS o, COUNT(*) AS n
         FROM usage ${conditions.length ? `WHERE ${conditions.join(" AND ")}` : ""}
         GROUP BY ${keys.map((_, i) => `g${i}`).join(", ")} ORDER BY ${keys.map((_, i) => `g${i}`).join(", ")}`,
      )
      .all(...params) as Record<string, string | number | null>[];
    const names = ["project", ...groups];
    return rows.map((r) => ({
      ...Object.fromEntries(names.map((n, i) => [n, r[`g${i}`] ?? null])),
      inputTokens: Number(r.i),
      outputTokens: Number(r.o),
      calls: Number(r.n),
    }));
  }
}
