/**
 * Numbered schema migrations. Each runs once, in order, inside a transaction; the applied
 * number is kept in `PRAGMA user_version`. A PostgreSQL dialect keeps the same numbers.
 */
export const migrations: readonly { id: number; sql: string }[] = [
  {
    id: 1,
    sql: `
      CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL UNIQUE,
        admin INTEGER NOT NULL,
        act_for_users INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
      );

      CREATE TABLE agents (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        agent_endpoint TEXT,
        agent_card TEXT,
        next_version INTEGER NOT NULL,
        latest_version INTEGER NOT NULL,
        latest_kind TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (project, name)
      );
      CREATE INDEX agents_by_kind ON agents (project, latest_kind, seq);

      -- Where deleted agents stood in the listing, so a page cursor naming one still works.
      CREATE TABLE deleted_agents (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (project, name)
      ) WITHOUT ROWID;

      CREATE TABLE agent_versions (
        project TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        definition TEXT NOT NULL,
        metadata TEXT NOT NULL,
        description TEXT NOT NULL,
        draft INTEGER NOT NULL,
        status TEXT NOT NULL,
        blueprint_reference TEXT,
        digital_worker_type TEXT,
        fingerprint TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (project, agent_name, version)
      ) WITHOUT ROWID;
      CREATE INDEX agent_versions_published ON agent_versions (project, agent_name, draft, version);

      INSERT INTO projects (name, created_at) VALUES ('default', unixepoch());
    `,
  },
  {
    id: 2,
    sql: `
      ALTER TABLE agent_versions ADD COLUMN content_hash TEXT;
      ALTER TABLE agent_versions ADD COLUMN status_reason TEXT;
      CREATE INDEX agent_versions_by_content ON agent_versions (content_hash) WHERE content_hash IS NOT NULL;
      CREATE INDEX agent_versions_by_status ON agent_versions (status);
      CREATE INDEX agents_by_seq ON agents (project, seq);
    `,
  },
  {
    id: 3,
    sql: `
      CREATE TABLE manifests (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        description TEXT NOT NULL,
        parameters TEXT NOT NULL,
        definition TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (project, name, version)
      ) WITHOUT ROWID;
    `,
  },
  {
    id: 4,
    sql: `
      CREATE TABLE sessions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_accessed_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        stopped_at INTEGER,
        termination_reason TEXT,
        termination_message TEXT,
        UNIQUE (project, agent_name, id)
      );
      CREATE INDEX sessions_by_owner ON sessions (project, agent_name, owner, seq);
      CREATE INDEX sessions_by_status ON sessions (status);
      CREATE INDEX sessions_by_expiry ON sessions (expires_at);

      -- Where deleted sessions stood in the listing, so a page cursor naming one still works.
      CREATE TABLE deleted_sessions (
        project TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (project, agent_name, id)
      ) WITHOUT ROWID;
    `,
  },
  {
    id: 5,
    sql: `
      -- Model deployments: what a request's \`model\` names. A key is stored encrypted
      -- (AES-256-GCM with the data directory's secret.key) or named by an environment
      -- variable of the service (api_key_env); neither for servers that need none.
      CREATE TABLE deployments (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        model TEXT NOT NULL,
        base_url TEXT NOT NULL,
        api_key_ciphertext TEXT,
        api_key_env TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (project, name),
        CHECK (api_key_ciphertext IS NULL OR api_key_env IS NULL)
      ) WITHOUT ROWID;
    `,
  },
  {
    id: 6,
    sql: `
      -- Responses (store: true): the object as presented, this call's input items, and a
      -- background response's stream events once it has ended (for replay).
      CREATE TABLE responses (
        id TEXT NOT NULL,
        project TEXT NOT NULL,
        owner TEXT NOT NULL,
        agent_name TEXT,
        session_id TEXT,
        previous_response_id TEXT,
        conversation_id TEXT,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        input TEXT NOT NULL,
        events TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (project, id)
      ) WITHOUT ROWID;
      -- What a restart has to fail: only background responses are stored before they end.
      CREATE INDEX responses_unfinished ON responses (status)
        WHERE status IN ('queued', 'in_progress');

      CREATE TABLE conversations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL,
        owner TEXT NOT NULL,
        metadata TEXT NOT NULL,
        agent_name TEXT,
        agent_version INTEGER,
        created_at INTEGER NOT NULL
      );

      CREATE TABLE conversation_items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        item TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (conversation_id, id)
      );

      -- Tokens of every model call, attributed.
      CREATE TABLE usage (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        agent_name TEXT,
        agent_version INTEGER,
        session_id TEXT,
        conversation_id TEXT,
        owner TEXT NOT NULL,
        deployment TEXT NOT NULL,
        response_id TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX usage_by_session ON usage (project, agent_name, session_id) WHERE session_id IS NOT NULL;
      CREATE INDEX usage_by_conversation ON usage (conversation_id) WHERE conversation_id IS NOT NULL;
      CREATE INDEX usage_by_time ON usage (project, created_at);
    `,
  },
  {
    id: 7,
    sql: `
      -- A2A: each context (contextId) of an agent and what it continues (a conversation of a
      -- prompt agent, a session of a hosted one); each task as the v1.0 JSON wire shows it.
      CREATE TABLE a2a_contexts (
        project TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        id TEXT NOT NULL,
        owner TEXT NOT NULL,
        kind TEXT NOT NULL,
        target_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (project, agent_name, id)
      ) WITHOUT ROWID;

      CREATE TABLE a2a_tasks (
        project TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        id TEXT NOT NULL,
        owner TEXT NOT NULL,
        context_id TEXT NOT NULL,
        state TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (project, agent_name, id)
      ) WITHOUT ROWID;
      -- What a restart has to fail.
      CREATE INDEX a2a_tasks_unfinished ON a2a_tasks (state)
        WHERE state IN ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING');
    `,
  },
  {
    id: 8,
    sql: `
      -- An owner's conversations, newest first (the Conversations list).
      CREATE INDEX conversations_by_owner ON conversations (project, owner, seq);
    `,
  },
  {
    id: 9,
    sql: `
      -- An identity's A2A tasks at an agent, newest first (what retention keeps).
      CREATE INDEX a2a_tasks_by_owner ON a2a_tasks (project, agent_name, owner, updated_at);
    `,
  },
  {
    id: 10,
    sql: `
      -- Activities: the session answering each conversation (conversation.id) of one identity
      -- with one hosted agent.
      CREATE TABLE activity_conversations (
        project TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        owner TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (project, agent_name, owner, conversation_id)
      ) WITHOUT ROWID;
    `,
  },
];
