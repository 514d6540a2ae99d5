//! The PostgreSQL schema and its migrations, embedded in the binary and applied in order at
//! start (or by `plugboard migrate`) under an advisory lock, so hosts starting together apply
//! each migration once and none serves before the schema is current.
//!
//! Each table keeps a record's domain fields as JSON (`record`, what the sled backend keeps)
//! beside the columns its indexes and constraints need: a list reads an index range, intake's
//! idempotency is a primary key, and the event log's ids come from a counter row whose lock
//! is held to commit, so ids become visible in order (a reader that has seen event `n` has
//! seen every event before it, whichever host wrote them).

use tokio_postgres::Client;

/// The advisory lock key migrations run under ("plugboar" in ASCII).
const MIGRATION_LOCK: i64 = 0x706c_7567_626f_6172;

/// Every migration, in order; the schema version is the number applied. A release only ever
/// appends to this list.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE counters (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('conversation', 0), ('event', 0);

CREATE TABLE conversations (
    id bigint PRIMARY KEY,
    channel text NOT NULL,
    customer text NOT NULL,
    queue text NOT NULL,
    state text NOT NULL,
    owner text,
    updated_at bigint NOT NULL,
    record jsonb NOT NULL,
    UNIQUE (channel, customer)
);
CREATE INDEX conversations_by_queue
    ON conversations (queue, state, updated_at DESC, id DESC);
CREATE INDEX conversations_by_owner
    ON conversations (owner, updated_at DESC, id DESC) WHERE state = 'assigned';
CREATE INDEX conversations_closed
    ON conversations (updated_at DESC, id DESC) WHERE state = 'closed';
CREATE INDEX conversations_handlers
    ON conversations USING gin ((record -> 'handled_by')) WHERE state = 'closed';

CREATE TABLE messages (
    conversation bigint NOT NULL,
    seq bigint NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (conversation, seq)
);

CREATE TABLE inbound_ids (
    channel text NOT NULL,
    provider_id text NOT NULL,
    conversation bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (channel, provider_id)
);

CREATE TABLE opt_change_ids (
    channel text NOT NULL,
    provider_id text NOT NULL,
    PRIMARY KEY (channel, provider_id)
);

CREATE TABLE sent_ids (
    channel text NOT NULL,
    provider_id text NOT NULL,
    conversation bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (channel, provider_id)
);

CREATE TABLE outbox (
    conversation bigint NOT NULL,
    seq bigint NOT NULL,
    attempts integer NOT NULL,
    next_at bigint NOT NULL,
    holder text,
    lease_until bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation, seq)
);

CREATE TABLE optouts (
    channel text NOT NULL,
    address text NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (channel, address)
);

CREATE TABLE agents (
    agent text PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE contacts (
    address text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE visitors (
    token_hash bytea PRIMARY KEY,
    channel text NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX visitors_by_channel ON visitors (channel);

CREATE TABLE channel_states (
    channel text PRIMARY KEY,
    state text NOT NULL
);

CREATE TABLE nonces (
    scope text NOT NULL,
    nonce text NOT NULL,
    provider_id text NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (scope, nonce)
);

CREATE TABLE hosts (
    host text PRIMARY KEY,
    seen_at bigint NOT NULL
);

CREATE TABLE host_streams (
    host text NOT NULL,
    agent text NOT NULL,
    PRIMARY KEY (host, agent)
);

CREATE TABLE events (
    id bigint PRIMARY KEY,
    kind text NOT NULL,
    audience text[] NOT NULL,
    conversation bigint,
    data jsonb NOT NULL,
    at bigint NOT NULL
);
"#,
    r#"
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    expires_at bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE read_marks (
    agent text NOT NULL,
    conversation bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (agent, conversation)
);
"#,
    r#"
CREATE TABLE statistics (
    scope text NOT NULL,
    day integer NOT NULL,
    name text NOT NULL,
    metric text NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (scope, day, name, metric)
);
"#,
    r#"
CREATE TABLE documents (
    space text NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);
"#,
];

/// The schema version this release writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// What [`migrate`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version found.
    pub from: u32,
    /// The version now.
    pub to: u32,
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The database talks back with an error.
    #[error("postgres: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// A newer release wrote the schema.
    #[error(
        "the database has schema version {found}, newer than this release's {supported}: run the release that wrote it"
    )]
    Newer {
        /// The version found.
        found: u32,
        /// The newest version this release knows.
        supported: u32,
    },
}

/// Applies the migrations `client`'s database lacks, each in its own transaction, holding the
/// migration lock throughout (a host that starts meanwhile waits, then finds them applied).
pub async fn migrate(client: &mut Client) -> Result<Migrated, SchemaError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = apply_missing(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let migrated = outcome?;
    unlocked?;
    Ok(migrated)
}

async fn apply_missing(client: &mut Client) -> Result<Migrated, SchemaError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS plugboard_schema (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let found: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM plugboard_schema",
            &[],
        )
        .await?
        .get(0);
    let found = found.max(0) as u32;
    if found > SCHEMA_VERSION {
        return Err(SchemaError::Newer {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i32 + 1;
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO plugboard_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "postgres schema migrated");
    }
    Ok(Migrated {
        from: found,
        to: SCHEMA_VERSION,
    })
}
