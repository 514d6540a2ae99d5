//! The PostgreSQL backend: the state of any number of hosts in one database, so hosts behind a
//! load balancer behave as one and a host that dies takes nothing with it.
//!
//! Every write is one transaction, durable when it commits (PostgreSQL's own WAL and group
//! commit). Intake batches the webhooks that arrive together on this host ([`batch`]).
//! Changes that need one winner lock the row (`SELECT ... FOR UPDATE`), so of two hosts taking
//! one conversation, the second sees the first's change and is refused by its precondition.
//! The schema is migrated at open under an advisory lock ([`schema`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::oneshot;
use tokio_postgres::NoTls;
use tokio_postgres::types::{Json, ToSql};

mod batch;
pub mod schema;
mod tls;

use crate::model::{
    AgentRecord, AgentSession, Contact, Conversation, ConversationState, ConversationTarget,
    Failover, InboundEvent, IngestReport, Message, OutboundDraft, OutboxEntry, Rejection,
    StoredEvent, Visitor,
};
use crate::store::jobs::{self, Job};
use crate::store::rules;
use crate::store::{
    Change, ConversationCursor, ConversationQuery, IntakeNotices, Leadership, NewEvent, NonceClaim,
    Page, Selector, SendOutcome, Store, StoreError, UpdateError, VisitorExpiry,
};

/// How often (in claims) expired nonces are swept.
const NONCE_SWEEP_EVERY: u64 = 1024;

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The connection URL (`postgres://user:password@host:port/database`).
    pub url: String,
    /// The most connections this host opens.
    pub pool_size: usize,
    /// How long a request waits for a free connection (or for a new one) before failing.
    pub connect_timeout: Duration,
    /// More certificate authorities for the server's certificate, over TLS (a PEM file).
    pub ca_file: Option<std::path::PathBuf>,
    /// The time zone whose local days the statistics count in (`[server] timezone`).
    pub zone: jiff::tz::TimeZone,
}

/// The PostgreSQL store: a connection pool and this host's intake task.
pub struct PostgresStore {
    options: PostgresOptions,
    pool: Pool,
    batcher: batch::Batcher,
    /// Whether the database answers, for `/healthz`.
    reach: Arc<Reach>,
    claims: std::sync::atomic::AtomicU64,
    /// Shared with the intake task: where it records its batches.
    metrics: Arc<std::sync::OnceLock<crate::metrics::Metrics>>,
}

/// Whether the database answered the last time this host asked: a connection that could not
/// be made is recorded, a statement that went through clears it.
#[derive(Default)]
pub(super) struct Reach {
    failure: Mutex<Option<String>>,
}

impl Reach {
    /// The database answered.
    pub(super) fn answered(&self) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_some() {
            tracing::info!("the database answers again");
            *failure = None;
        }
    }

    /// The database could not be reached (`why`).
    pub(super) fn unreachable(&self, why: &str) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_owned());
    }

    /// Records `e` when it says the database cannot be reached (not when the pool was only
    /// busy: that is load, which `/healthz` must not turn into a restart).
    pub(super) fn note(&self, e: &deadpool_postgres::PoolError) {
        use deadpool_postgres::{PoolError, TimeoutType};
        if matches!(
            e,
            PoolError::Backend(_) | PoolError::Timeout(TimeoutType::Create) | PoolError::Closed
        ) {
            self.unreachable(&e.to_string());
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A database error as a [`StoreError`], with its SQLSTATE when it has one.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            StoreError::Backend(format!("postgres: {} ({})", db.message(), db.code().code()))
        }
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

/// No connection could be had: the error and its causes (a TLS handshake's is in the
/// certificate it refused).
fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    let mut text = format!("postgres: no connection: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    StoreError::Backend(text)
}

fn decode_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt {
        tree: "postgres",
        reason: e.to_string(),
    }
}

/// A record as JSON text (cast to `jsonb` in the statement).
fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding: {e}")))
}

/// A stored number as PostgreSQL's `bigint`: values past its range (only a client's cursor or
/// time can be) clamp to the largest, which sorts after every stored one, as on sled.
fn signed(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// How a conversation state is spelled in the `state` column.
fn state_name(state: ConversationState) -> &'static str {
    match state {
        ConversationState::Queued => "queued",
        ConversationState::Assigned => "assigned",
        ConversationState::Closed => "closed",
        ConversationState::Bot => "bot",
    }
}

impl From<tokio_postgres::Error> for UpdateError {
    fn from(e: tokio_postgres::Error) -> Self {
        UpdateError::Storage(db_error(e))
    }
}

/// Brings the schema of the database `options` names up to date, and nothing else.
pub async fn migrate(options: &PostgresOptions) -> Result<schema::Migrated, StoreError> {
    let pool = connect(options)?;
    let mut client = pool.get().await.map_err(pool_error)?;
    schema::migrate(&mut client)
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))
}

impl PostgresStore {
    /// Connects to the database `options` names and brings its schema up to date. Must be
    /// called inside a tokio runtime.
    pub async fn open(options: &PostgresOptions) -> Result<Arc<PostgresStore>, StoreError> {
        let pool = connect(options)?;
        {
            let mut client = pool.get().await.map_err(pool_error)?;
            schema::migrate(&mut client)
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        let reach = Arc::new(Reach::default());
        let metrics = Arc::new(std::sync::OnceLock::new());
        Ok(Arc::new(PostgresStore {
            options: options.clone(),
            batcher: batch::Batcher::start(
                pool.clone(),
                reach.clone(),
                metrics.clone(),
                options.zone.clone(),
            ),
            pool,
            reach,
            claims: std::sync::atomic::AtomicU64::new(1),
            metrics,
        }))
    }

    /// A connection from the pool (recording one that cannot be made, for `/healthz`).
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            self.reach.note(&e);
            pool_error(e)
        })
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(db_error)?;
        let rows = client.query(&stmt, params).await.map_err(db_error)?;
        self.reach.answered();
        Ok(rows)
    }

    /// The JSON `record` column of the first row `sql` selects, if any.
    async fn record<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>, StoreError> {
        let rows = self.query(sql, params).await?;
        rows.first()
            .map(|r| {
                let Json(v): Json<T> = r.try_get(0).map_err(decode_error)?;
                Ok(v)
            })
            .transpose()
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(db_error)?;
        let n = client.execute(&stmt, params).await.map_err(db_error)?;
        self.reach.answered();
        Ok(n)
    }
}

/// Moves an agent's read marker forward (never back).
const MARK_READ: &str = "INSERT INTO read_marks (agent, conversation, seq) VALUES ($1, $2, $3)
     ON CONFLICT (agent, conversation)
        DO UPDATE SET seq = GREATEST(read_marks.seq, EXCLUDED.seq)";

/// [`MARK_READ`] inside `tx` (an agent's own message: they have read up to it).
async fn tx_mark_read(
    tx: &deadpool_postgres::Transaction<'_>,
    agent: &str,
    conversation: u64,
    seq: u64,
) -> Result<(), StoreError> {
    let stmt = tx.prepare_cached(MARK_READ).await.map_err(db_error)?;
    tx.execute(&stmt, &[&agent, &(conversation as i64), &(seq as i64)])
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The connection's server options with sequential scans and JIT compilation off. Every
/// statement of this backend is written for an index, and a prepared statement's plan is
/// cached: planned while a table was nearly empty (a new deployment's first minute, before
/// autovacuum's first `ANALYZE`), a lookup was cached as a scan of the whole table and stayed
/// so as the table grew (measured: 2 ms per intake batch at 6,000 messages, growing with every
/// webhook). A plan that must still scan (a table without a usable index) then costs more than
/// JIT's threshold; compiling it took 290 ms a call, so JIT is off too (an OLTP workload of
/// small statements gains nothing from it).
///
/// The rest make a dead host's session end soon (a machine that vanishes sends no TCP close:
/// its open transaction would hold the event counter's row lock, and so every host's intake,
/// for the server's default two hours of keepalive): server-side keepalive probes after 5 s
/// idle, and an open transaction idle for 10 s ends. Transactions run at read committed
/// whatever the database's default, which the intake's "lock, then read what the other host
/// committed" needs.
fn no_seqscan(given: Option<&str>) -> String {
    const OURS: &str = "-c enable_seqscan=off -c jit=off \
        -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 \
        -c idle_in_transaction_session_timeout=10000 \
        -c default_transaction_isolation=read\\ committed";
    match given {
        Some(given) if !given.is_empty() => format!("{given} {OURS}"),
        _ => OURS.to_owned(),
    }
}

/// The connection settings `options` name (with this backend's server options) and their
/// transport.
fn settings(
    options: &PostgresOptions,
) -> Result<(tokio_postgres::Config, tls::Transport), StoreError> {
    let (mut config, transport) = tls::configure(&options.url, options.ca_file.as_deref())?;
    config.connect_timeout(options.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("plugboard");
    }
    let server_options = no_seqscan(config.get_options());
    config.options(server_options);
    // The client side of the same: a connection whose peer stopped answering fails within
    // ~10 s instead of the kernel's 15 minutes of retransmissions.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(10));
    Ok((config, transport))
}

/// A pool for `options` (connections are made when first needed).
fn connect(options: &PostgresOptions) -> Result<Pool, StoreError> {
    let (config, transport) = settings(options)?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match transport {
        tls::Transport::Plain => Manager::from_config(config, NoTls, manager_config),
        tls::Transport::Tls(tls) => Manager::from_config(config, tls, manager_config),
    };
    Pool::builder(manager)
        .max_size(options.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))
}

fn conversation_of(row: &tokio_postgres::Row) -> Result<Conversation, StoreError> {
    let Json(c): Json<Conversation> = row.try_get("record").map_err(decode_error)?;
    Ok(c)
}

fn message_of(row: &tokio_postgres::Row) -> Result<Message, StoreError> {
    let Json(m): Json<Message> = row.try_get("record").map_err(decode_error)?;
    Ok(m)
}

/// Writes changed conversations' rows inside `tx`, in one statement.
async fn put_conversations<'c>(
    tx: &deadpool_postgres::Transaction<'_>,
    conversations: impl IntoIterator<Item = &'c Conversation>,
) -> Result<(), StoreError> {
    let mut ids = Vec::new();
    let mut channels = Vec::new();
    let mut customers = Vec::new();
    let mut queues = Vec::new();
    let mut states = Vec::new();
    let mut owners = Vec::new();
    let mut updated = Vec::new();
    let mut records = Vec::new();
    for c in conversations {
        ids.push(c.id as i64);
        channels.push(c.channel.as_str());
        customers.push(c.customer.as_str());
        queues.push(c.queue.as_str());
        states.push(state_name(c.state));
        owners.push(c.owner.as_deref());
        updated.push(c.updated_at as i64);
        records.push(json_text(c)?);
    }
    if ids.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO conversations
                (id, channel, customer, queue, state, owner, updated_at, record)
             SELECT i, ch, cu, q, s, o, u, r::jsonb FROM unnest(
                $1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::bigint[], $8::text[]) AS t(i, ch, cu, q, s, o, u, r)
             ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, state = EXCLUDED.state,
                owner = EXCLUDED.owner, updated_at = EXCLUDED.updated_at,
                record = EXCLUDED.record",
        )
        .await
        .map_err(db_error)?;
    let params: [&(dyn ToSql + Sync); 8] = [
        &ids, &channels, &customers, &queues, &states, &owners, &updated, &records,
    ];
    tx.execute(&stmt, &params).await.map_err(db_error)?;
    Ok(())
}

/// Adds `tallies` to the statistics inside `tx`, in one statement: each counter once, in key
/// order (so transactions counting the same rows lock them in the same order).
async fn add_statistics(
    tx: &deadpool_postgres::Transaction<'_>,
    zone: &jiff::tz::TimeZone,
    tallies: &[crate::stats::Tally],
) -> Result<(), StoreError> {
    if tallies.is_empty() {
        return Ok(());
    }
    let mut scopes = Vec::new();
    let mut days = Vec::new();
    let mut names = Vec::new();
    let mut metrics = Vec::new();
    let mut values = Vec::new();
    for ((scope, name, day, metric), value) in crate::stats::by_counter(tallies, zone) {
        scopes.push(scope.as_str());
        days.push(day);
        names.push(name);
        metrics.push(metric);
        values.push(i64::try_from(value).unwrap_or(i64::MAX));
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO statistics (scope, day, name, metric, value)
             SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bigint[])
             ON CONFLICT (scope, day, name, metric)
                DO UPDATE SET value = statistics.value + EXCLUDED.value",
        )
        .await
        .map_err(db_error)?;
    let params: [&(dyn ToSql + Sync); 5] = [&scopes, &days, &names, &metrics, &values];
    tx.execute(&stmt, &params).await.map_err(db_error)?;
    Ok(())
}

/// Writes messages (new, or with a changed status) inside `tx`, in one statement.
async fn put_messages<'m>(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: impl IntoIterator<Item = &'m Message>,
) -> Result<(), StoreError> {
    let mut convs = Vec::new();
    let mut seqs = Vec::new();
    let mut records = Vec::new();
    for m in messages {
        convs.push(m.conversation as i64);
        seqs.push(m.seq as i64);
        records.push(json_text(m)?);
    }
    if convs.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (conversation, seq, record)
             SELECT c, s, r::jsonb FROM unnest($1::bigint[], $2::bigint[], $3::text[])
                AS t(c, s, r)
             ON CONFLICT (conversation, seq) DO UPDATE SET record = EXCLUDED.record",
        )
        .await
        .map_err(db_error)?;
    tx.execute(&stmt, &[&convs, &seqs, &records])
        .await
        .map_err(db_error)?;
    Ok(())
}

/// One message inside `tx`, locked for update.
async fn locked_message(
    tx: &deadpool_postgres::Transaction<'_>,
    conversation: u64,
    seq: u64,
) -> Result<Option<Message>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT record FROM messages WHERE conversation = $1 AND seq = $2 FOR UPDATE",
        )
        .await
        .map_err(db_error)?;
    let row = tx
        .query_opt(&stmt, &[&(conversation as i64), &(seq as i64)])
        .await
        .map_err(db_error)?;
    row.as_ref().map(message_of).transpose()
}

/// One conversation inside `tx`, locked for update.
async fn locked_conversation(
    tx: &deadpool_postgres::Transaction<'_>,
    id: u64,
) -> Result<Option<Conversation>, StoreError> {
    let stmt = tx
        .prepare_cached("SELECT record FROM conversations WHERE id = $1 FOR UPDATE")
        .await
        .map_err(db_error)?;
    let row = tx
        .query_opt(&stmt, &[&(id as i64)])
        .await
        .map_err(db_error)?;
    row.as_ref().map(conversation_of).transpose()
}

/// The SQL of a list query and its parameters: one index range per selector, each limited,
/// merged without repeats, most recently updated first.
fn list_sql(query: &ConversationQuery) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut param = |v: Box<dyn ToSql + Sync + Send>| {
        params.push(v);
        format!("${}", params.len())
    };
    let mut common = String::new();
    if let Some(channel) = &query.channel {
        common += &format!(" AND channel = {}", param(Box::new(channel.clone())));
    }
    if let Some(queue) = &query.queue {
        common += &format!(" AND queue = {}", param(Box::new(queue.clone())));
    }
    if let Some(state) = query.state {
        common += &format!(" AND state = {}", param(Box::new(state_name(state))));
    }
    if let Some(owner) = &query.owner {
        common += &format!(" AND owner = {}", param(Box::new(owner.clone())));
    }
    if let Some(since) = query.updated_since {
        common += &format!(" AND updated_at >= {}", param(Box::new(signed(since))));
    }
    if let Some(after) = query.after {
        let u = param(Box::new(signed(after.updated_at)));
        let i = param(Box::new(signed(after.id)));
        common += &format!(" AND (updated_at, id) < ({u}, {i})");
    }
    let limit = param(Box::new(query.limit as i64 + 1));
    let ranges: Vec<String> = query
        .any_of
        .iter()
        .map(|selector| {
            let range = match selector {
                Selector::Queue { queue, state } => format!(
                    "queue = {} AND state = {}",
                    param(Box::new(queue.clone())),
                    param(Box::new(state_name(*state)))
                ),
                Selector::OwnedBy(agent) => format!(
                    "state = 'assigned' AND owner = {}",
                    param(Box::new(agent.clone()))
                ),
                Selector::HandledBy(agent) => format!(
                    "state = 'closed' AND record -> 'handled_by' ? {}",
                    param(Box::new(agent.clone()))
                ),
            };
            format!(
                "(SELECT id, updated_at FROM conversations WHERE {range}{common}
                  ORDER BY updated_at DESC, id DESC LIMIT {limit})"
            )
        })
        .collect();
    let sql = format!(
        "SELECT c.record FROM ({}) AS r JOIN conversations c ON c.id = r.id
         ORDER BY r.updated_at DESC, r.id DESC LIMIT {limit}",
        ranges.join(" UNION ")
    );
    (sql, params)
}

/// The database's clock in Unix milliseconds: hosts' heartbeats are measured with it alone, so
/// hosts whose clocks disagree never take each other for dead.
const DB_NOW_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// How often a held role's session is checked; a role whose session stops answering for
/// [`LEAD_TIMEOUT`] is given up (PostgreSQL ends the session and frees the lock).
const LEAD_CHECK: Duration = Duration::from_secs(1);
const LEAD_TIMEOUT: Duration = Duration::from_secs(3);

/// The advisory lock key of a role: the first 8 bytes of a SHA-256 of its name.
fn role_lock(role: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("plugboard role {role}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes of a digest"))
}

impl PostgresStore {
    /// One atomic change to a waiting send: `change` edits its message (returning whether it
    /// did) and names the entry's new attempt count and due time, if they change. `None` when
    /// the send is no longer waiting or its message is gone.
    async fn reschedule(
        &self,
        conversation: u64,
        seq: u64,
        change: impl Fn(&mut Message) -> rules::Reschedule,
    ) -> Result<Option<Message>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let stmt = tx
            .prepare_cached("SELECT 1 FROM outbox WHERE conversation = $1 AND seq = $2 FOR UPDATE")
            .await
            .map_err(db_error)?;
        let waiting = tx
            .query_opt(&stmt, &[&(conversation as i64), &(seq as i64)])
            .await
            .map_err(db_error)?;
        if waiting.is_none() {
            return Ok(None);
        }
        let Some(mut message) = locked_message(&tx, conversation, seq).await? else {
            return Ok(None);
        };
        let (changed, entry) = change(&mut message);
        if let Some((attempts, next_at)) = entry {
            let stmt = tx
                .prepare_cached(
                    "UPDATE outbox SET attempts = $3, next_at = $4
                     WHERE conversation = $1 AND seq = $2",
                )
                .await
                .map_err(db_error)?;
            tx.execute(
                &stmt,
                &[
                    &(conversation as i64),
                    &(seq as i64),
                    &(attempts as i32),
                    &(next_at as i64),
                ],
            )
            .await
            .map_err(db_error)?;
        }
        if changed {
            put_messages(&tx, [&message]).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Some(message))
    }

    /// Takes `role`'s session-level advisory lock on a connection of its own, kept and
    /// checked by a task until the [`Leadership`] is dropped or the session fails.
    async fn lead(&self, role: &str) -> Result<Option<Leadership>, StoreError> {
        let (mut config, transport) = settings(&self.options)?;
        config.application_name(format!("plugboard {role}"));
        let (ended_tx, mut ended) = oneshot::channel::<()>();
        let client = match transport {
            tls::Transport::Plain => {
                let (client, connection) = config.connect(NoTls).await.map_err(db_error)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                    let _ = ended_tx.send(());
                });
                client
            }
            tls::Transport::Tls(tls) => {
                let (client, connection) = config.connect(tls).await.map_err(db_error)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                    let _ = ended_tx.send(());
                });
                client
            }
        };
        let key = role_lock(role);
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(db_error)?
            .get(0);
        if !got {
            return Ok(None);
        }
        let (held_tx, held) = tokio::sync::watch::channel(true);
        let (release, mut released) = oneshot::channel::<()>();
        let role = role.to_owned();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEAD_CHECK);
            loop {
                tokio::select! {
                    _ = &mut released => break,
                    _ = &mut ended => {
                        tracing::warn!(role, "the session holding the role ended; role given up");
                        break;
                    }
                    _ = tick.tick() => {
                        let alive = tokio::time::timeout(LEAD_TIMEOUT, client.simple_query("SELECT 1")).await;
                        if !matches!(alive, Ok(Ok(_))) {
                            tracing::warn!(role, "the session holding the role stopped answering; role given up");
                            break;
                        }
                    }
                }
            }
            held_tx.send_replace(false);
            // Dropping the client ends the session, which frees the lock.
            drop(client);
        });
        Ok(Some(Leadership::new(held, Box::new(release))))
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn observe(&self, metrics: crate::metrics::Metrics) {
        let _ = self.metrics.set(metrics);
    }

    fn failure(&self) -> Option<String> {
        self.reach.failure().map(|e| {
            format!(
                "the database at storage.url cannot be reached ({e}); nothing is acknowledged until it answers again"
            )
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn try_lead(&self, role: &str) -> Result<Option<Leadership>, StoreError> {
        self.lead(role).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Every acknowledged write was committed; nothing is held back to flush.
        self.pool.close();
        Ok(())
    }

    async fn intake_with(
        &self,
        channel: &str,
        target: &ConversationTarget,
        events: Vec<InboundEvent>,
        now: u64,
        notices: Arc<dyn IntakeNotices>,
    ) -> Result<IngestReport, StoreError> {
        let (job, answer) = Job::intake(channel, target, events, now, notices);
        self.batcher.send(job)?;
        jobs::answered(answer).await
    }

    async fn claim_nonce(
        &self,
        scope: &str,
        nonce: &str,
        provider_id: &str,
        now: u64,
        window_ms: u64,
    ) -> Result<NonceClaim, StoreError> {
        let claimed = self
            .query(
                "INSERT INTO nonces (scope, nonce, provider_id, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (scope, nonce) DO UPDATE
                    SET provider_id = EXCLUDED.provider_id, expires_at = EXCLUDED.expires_at
                    WHERE nonces.expires_at <= $5
                 RETURNING 1",
                &[
                    &scope,
                    &nonce,
                    &provider_id,
                    &((now + window_ms) as i64),
                    &(now as i64),
                ],
            )
            .await?;
        if claimed.is_empty() {
            let held = self
                .query(
                    "SELECT provider_id FROM nonces WHERE scope = $1 AND nonce = $2",
                    &[&scope, &nonce],
                )
                .await?;
            let same = held
                .first()
                .is_some_and(|r| r.get::<_, &str>(0) == provider_id);
            return Ok(if same {
                NonceClaim::Retry
            } else {
                NonceClaim::Replayed
            });
        }
        if self
            .claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(NONCE_SWEEP_EVERY)
            && let Err(e) = self
                .execute(
                    "DELETE FROM nonces WHERE expires_at <= $1",
                    &[&(now as i64)],
                )
                .await
        {
            tracing::warn!("sweeping expired nonces failed (the claim stands): {e}");
        }
        Ok(NonceClaim::Claimed)
    }

    async fn conversation(&self, id: u64) -> Result<Option<Conversation>, StoreError> {
        let rows = self
            .query(
                "SELECT record FROM conversations WHERE id = $1",
                &[&(id as i64)],
            )
            .await?;
        rows.first().map(conversation_of).transpose()
    }

    async fn conversation_by_key(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        let rows = self
            .query(
                "SELECT record FROM conversations WHERE channel = $1 AND customer = $2",
                &[&channel, &address],
            )
            .await?;
        rows.first().map(conversation_of).transpose()
    }

    async fn conversations(
        &self,
        query: &ConversationQuery,
    ) -> Result<Page<Conversation, ConversationCursor>, StoreError> {
        if query.any_of.is_empty() || query.limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let (sql, params) = list_sql(query);
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self.query(&sql, &refs).await?;
        let mut items = rows
            .iter()
            .map(conversation_of)
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > query.limit;
        items.truncate(query.limit);
        let next = more
            .then(|| items.last().map(ConversationCursor::of))
            .flatten();
        Ok(Page { items, next })
    }

    async fn queued_ids(&self) -> Result<Vec<u64>, StoreError> {
        let rows = self
            .query(
                "SELECT id FROM conversations WHERE state = 'queued' ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    async fn owned_count(&self, agent: &str) -> Result<u32, StoreError> {
        let rows = self
            .query(
                "SELECT count(*) FROM conversations WHERE state = 'assigned' AND owner = $1",
                &[&agent],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u32)
    }

    async fn statistics(
        &self,
        scope: crate::stats::Scope,
        from: i32,
        to: i32,
    ) -> Result<Vec<crate::stats::Counter>, StoreError> {
        let rows = self
            .query(
                "SELECT name, day, metric, value FROM statistics
                 WHERE scope = $1 AND day BETWEEN $2 AND $3",
                &[&scope.as_str(), &from, &to],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| crate::stats::Counter {
                name: r.get(0),
                day: r.get(1),
                metric: r.get(2),
                value: r.get::<_, i64>(3).max(0) as u64,
            })
            .collect())
    }

    async fn queued_count(&self, queue: &str) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "SELECT count(*) FROM conversations WHERE queue = $1 AND state = 'queued'",
                &[&queue],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
    }

    async fn update_conversation(
        &self,
        id: u64,
        change: &Change<'_>,
    ) -> Result<Conversation, UpdateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(old) = locked_conversation(&tx, id).await? else {
            return Err(UpdateError::Rejected(Rejection::NotFound));
        };
        let mut conv = old.clone();
        change(&mut conv).map_err(UpdateError::Rejected)?;
        put_conversations(&tx, [&conv]).await?;
        let now = crate::clock::Clock::System.now_millis();
        let tallies = crate::stats::conversation_tallies(Some(&old), &conv, now);
        add_statistics(&tx, &self.options.zone, &tallies).await?;
        tx.commit().await?;
        Ok(conv)
    }

    async fn start_conversation(
        &self,
        channel: &str,
        customer: &str,
        queue: &str,
        agent: &str,
        now: u64,
    ) -> Result<Conversation, UpdateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        batch::lock_customers(&tx, [(channel.to_owned(), customer.to_owned())]).await?;
        let stmt = tx
            .prepare_cached(
                "SELECT record FROM conversations WHERE channel = $1 AND customer = $2
                 FOR UPDATE",
            )
            .await?;
        let existing = tx.query_opt(&stmt, &[&channel, &customer]).await?;
        let existing = existing.as_ref().map(conversation_of).transpose()?;
        let base = match existing.clone() {
            Some(c) => c,
            None => {
                let stmt = tx
                    .prepare_cached(
                        "UPDATE counters SET value = value + 1 WHERE name = 'conversation'
                         RETURNING value",
                    )
                    .await?;
                let id: i64 = tx.query_one(&stmt, &[]).await?.get(0);
                Conversation::new(id as u64, channel, customer, queue, now)
            }
        };
        let conv = rules::start_by(base, agent, now).map_err(UpdateError::Rejected)?;
        put_conversations(&tx, [&conv]).await?;
        let tallies = crate::stats::conversation_tallies(existing.as_ref(), &conv, now);
        add_statistics(&tx, &self.options.zone, &tallies).await?;
        tx.commit().await?;
        Ok(conv)
    }

    async fn messages(
        &self,
        conversation: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<Message, u64>, StoreError> {
        let rows = self
            .query(
                "SELECT record FROM messages WHERE conversation = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[
                    &(conversation as i64),
                    &(after.unwrap_or(0).min(i64::MAX as u64) as i64),
                    &(limit as i64 + 1),
                ],
            )
            .await?;
        let mut items = rows.iter().map(message_of).collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next = more.then(|| items.last().map(|m| m.seq)).flatten();
        Ok(Page { items, next })
    }

    async fn message(&self, conversation: u64, seq: u64) -> Result<Option<Message>, StoreError> {
        let rows = self
            .query(
                "SELECT record FROM messages WHERE conversation = $1 AND seq = $2",
                &[&(conversation as i64), &(seq as i64)],
            )
            .await?;
        rows.first().map(message_of).transpose()
    }

    async fn add_outbound(
        &self,
        conversation: u64,
        author: Option<&str>,
        draft: OutboundDraft,
        now: u64,
    ) -> Result<(Conversation, Message), UpdateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(old) = locked_conversation(&tx, conversation).await? else {
            return Err(UpdateError::Rejected(Rejection::NotFound));
        };
        let mut conv = old.clone();
        let message =
            rules::add_reply(&mut conv, author, draft, now).map_err(UpdateError::Rejected)?;
        let tallies = crate::stats::conversation_tallies(Some(&old), &conv, now);
        add_statistics(&tx, &self.options.zone, &tallies).await?;
        put_messages(&tx, [&message]).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO outbox (conversation, seq, attempts, next_at) VALUES ($1, $2, 0, 0)",
            )
            .await?;
        tx.execute(&stmt, &[&(conversation as i64), &(message.seq as i64)])
            .await?;
        if let Some(agent) = author {
            tx_mark_read(&tx, agent, conversation, message.seq).await?;
        }
        put_conversations(&tx, [&conv]).await?;
        tx.commit().await?;
        Ok((conv, message))
    }

    async fn add_note(
        &self,
        conversation: u64,
        author: &str,
        text: &str,
        now: u64,
    ) -> Result<(Conversation, Message), UpdateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(mut conv) = locked_conversation(&tx, conversation).await? else {
            return Err(UpdateError::Rejected(Rejection::NotFound));
        };
        let message = rules::add_note(&mut conv, author, text, now);
        put_messages(&tx, [&message]).await?;
        tx_mark_read(&tx, author, conversation, message.seq).await?;
        put_conversations(&tx, [&conv]).await?;
        tx.commit().await?;
        Ok((conv, message))
    }

    async fn mark_read(&self, agent: &str, conversation: u64, seq: u64) -> Result<(), StoreError> {
        self.execute(MARK_READ, &[&agent, &(conversation as i64), &(seq as i64)])
            .await
            .map(drop)
    }

    async fn read_marks(&self, agent: &str, conversations: &[u64]) -> Result<Vec<u64>, StoreError> {
        let ids: Vec<i64> = conversations.iter().map(|&c| c as i64).collect();
        let rows = self
            .query(
                "SELECT conversation, seq FROM read_marks
                 WHERE agent = $1 AND conversation = ANY($2)",
                &[&agent, &ids],
            )
            .await?;
        let marks: std::collections::HashMap<i64, i64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(ids
            .iter()
            .map(|id| marks.get(id).map_or(0, |&s| s as u64))
            .collect())
    }

    async fn put_session(
        &self,
        token_hash: &[u8],
        session: &AgentSession,
        now: u64,
    ) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM sessions WHERE expires_at < $1",
            &[&(now as i64)],
        )
        .await?;
        self.execute(
            "INSERT INTO sessions (token_hash, expires_at, record) VALUES ($1, $2, $3)
             ON CONFLICT (token_hash) DO UPDATE
                SET expires_at = EXCLUDED.expires_at, record = EXCLUDED.record",
            &[&token_hash, &(session.expires_at as i64), &Json(session)],
        )
        .await
        .map(drop)
    }

    async fn session(&self, token_hash: &[u8]) -> Result<Option<AgentSession>, StoreError> {
        self.record(
            "SELECT record FROM sessions WHERE token_hash = $1",
            &[&token_hash],
        )
        .await
    }

    async fn end_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        self.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
            .await
            .map(drop)
    }

    async fn pending_sends(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = self
            .query(
                "SELECT conversation, seq, attempts, next_at FROM outbox
                 ORDER BY conversation, seq",
                &[],
            )
            .await?;
        Ok(rows.iter().map(outbox_entry_of).collect())
    }

    async fn outbox_entry(
        &self,
        conversation: u64,
        seq: u64,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        let rows = self
            .query(
                "SELECT conversation, seq, attempts, next_at FROM outbox
                 WHERE conversation = $1 AND seq = $2",
                &[&(conversation as i64), &(seq as i64)],
            )
            .await?;
        Ok(rows.first().map(outbox_entry_of))
    }

    async fn beat(&self, host: &str, agents: &[String], _now: u64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // The database's clock, the one every host's beat is compared with.
        let db_now: i64 = tx.query_one(DB_NOW_MS, &[]).await.map_err(db_error)?.get(0);
        tx.execute(
            "INSERT INTO hosts (host, seen_at) VALUES ($1, $2)
             ON CONFLICT (host) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            &[&host, &db_now],
        )
        .await
        .map_err(db_error)?;
        tx.execute("DELETE FROM host_streams WHERE host = $1", &[&host])
            .await
            .map_err(db_error)?;
        if !agents.is_empty() {
            tx.execute(
                "INSERT INTO host_streams (host, agent) SELECT $1, a FROM unnest($2::text[]) AS a",
                &[&host, &agents],
            )
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn orphaned_agents(&self, _now: u64, window_ms: u64) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "WITH stale AS (DELETE FROM hosts WHERE seen_at <
                        (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1
                    RETURNING host),
                      gone AS (DELETE FROM host_streams WHERE host IN (SELECT host FROM stale)
                               RETURNING agent)
                 SELECT DISTINCT agent FROM gone WHERE agent NOT IN
                    (SELECT agent FROM host_streams WHERE host NOT IN (SELECT host FROM stale))
                 ORDER BY agent",
                &[&signed(window_ms)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn claim_send(
        &self,
        conversation: u64,
        seq: u64,
        holder: &str,
        now: u64,
        lease_ms: u64,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        let rows = self
            .query(
                "UPDATE outbox SET holder = $3, lease_until = $4
                 WHERE conversation = $1 AND seq = $2
                    AND (holder IS NULL OR holder = $3 OR lease_until <= $5)
                 RETURNING conversation, seq, attempts, next_at",
                &[
                    &(conversation as i64),
                    &(seq as i64),
                    &holder,
                    &(now.saturating_add(lease_ms).min(i64::MAX as u64) as i64),
                    &(now as i64),
                ],
            )
            .await?;
        Ok(rows.first().map(outbox_entry_of))
    }

    async fn record_retry(
        &self,
        conversation: u64,
        seq: u64,
        attempts: u32,
        next_at: u64,
        note: &str,
    ) -> Result<Option<Message>, StoreError> {
        self.reschedule(conversation, seq, rules::retried(note, attempts, next_at))
            .await
    }

    async fn move_send(
        &self,
        conversation: u64,
        seq: u64,
        failover: &Failover,
    ) -> Result<Option<Message>, StoreError> {
        self.reschedule(conversation, seq, rules::moved(failover))
            .await
    }

    async fn complete_send(
        &self,
        channel: &str,
        conversation: u64,
        seq: u64,
        outcome: SendOutcome,
    ) -> Result<Option<Message>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let stmt = tx
            .prepare_cached("DELETE FROM outbox WHERE conversation = $1 AND seq = $2")
            .await
            .map_err(db_error)?;
        tx.execute(&stmt, &[&(conversation as i64), &(seq as i64)])
            .await
            .map_err(db_error)?;
        let Some(mut message) = locked_message(&tx, conversation, seq).await? else {
            tx.commit().await.map_err(db_error)?;
            return Ok(None);
        };
        rules::record_outcome(&mut message, &outcome);
        put_messages(&tx, [&message]).await?;
        if let Ok(provider_id) = &outcome {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO sent_ids (channel, provider_id, conversation, seq)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (channel, provider_id) DO UPDATE
                        SET conversation = EXCLUDED.conversation, seq = EXCLUDED.seq",
                )
                .await
                .map_err(db_error)?;
            tx.execute(
                &stmt,
                &[&channel, provider_id, &(conversation as i64), &(seq as i64)],
            )
            .await
            .map_err(db_error)?;
            let now = crate::clock::Clock::System.now_millis();
            let sent = [crate::stats::Tally::sent(channel, now)];
            add_statistics(&tx, &self.options.zone, &sent).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Some(message))
    }

    async fn is_opted_out(&self, channel: &str, address: &str) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "SELECT 1 FROM optouts WHERE channel = $1 AND address = $2",
                &[&channel, &address],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn set_opted_out(
        &self,
        channel: &str,
        address: &str,
        opted_out: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        if opted_out {
            self.execute(
                "INSERT INTO optouts (channel, address, at) VALUES ($1, $2, $3)
                 ON CONFLICT (channel, address) DO UPDATE SET at = EXCLUDED.at",
                &[&channel, &address, &(now as i64)],
            )
            .await?;
        } else {
            self.execute(
                "DELETE FROM optouts WHERE channel = $1 AND address = $2",
                &[&channel, &address],
            )
            .await?;
        }
        Ok(())
    }

    async fn agent_records(&self) -> Result<Vec<(String, AgentRecord)>, StoreError> {
        let rows = self
            .query(
                "SELECT agent, record FROM agents ORDER BY agent COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let Json(record): Json<AgentRecord> = r.try_get(1).map_err(decode_error)?;
                Ok((r.get(0), record))
            })
            .collect()
    }

    async fn put_agent_record(&self, agent: &str, record: &AgentRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO agents (agent, record) VALUES ($1, $2)
             ON CONFLICT (agent) DO UPDATE SET record = EXCLUDED.record",
            &[&agent, &Json(record)],
        )
        .await
        .map(drop)
    }

    async fn put_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO contacts (address, name) VALUES ($1, $2)
             ON CONFLICT (address) DO UPDATE SET name = EXCLUDED.name",
            &[&contact.address, &contact.name],
        )
        .await
        .map(drop)
    }

    async fn contact(&self, address: &str) -> Result<Option<Contact>, StoreError> {
        let rows = self
            .query(
                "SELECT address, name FROM contacts WHERE address = $1",
                &[&address],
            )
            .await?;
        Ok(rows.first().map(contact_of))
    }

    async fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        let rows = self
            .query(
                "SELECT address, name FROM contacts ORDER BY address COLLATE \"C\"",
                &[],
            )
            .await?;
        Ok(rows.iter().map(contact_of).collect())
    }

    async fn put_visitor(&self, token_hash: &[u8], visitor: &Visitor) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO visitors (token_hash, channel, record) VALUES ($1, $2, $3)
             ON CONFLICT (token_hash) DO UPDATE
                SET channel = EXCLUDED.channel, record = EXCLUDED.record",
            &[&token_hash, &visitor.channel, &Json(visitor)],
        )
        .await
        .map(drop)
    }

    async fn visitor(&self, token_hash: &[u8]) -> Result<Option<Visitor>, StoreError> {
        self.record(
            "SELECT record FROM visitors WHERE token_hash = $1",
            &[&token_hash],
        )
        .await
    }

    async fn expire_visitors(
        &self,
        channel: &str,
        expired: &VisitorExpiry<'_>,
    ) -> Result<usize, StoreError> {
        let rows = self
            .query(
                "SELECT token_hash, record::text FROM visitors WHERE channel = $1",
                &[&channel],
            )
            .await?;
        let gone: Vec<Vec<u8>> = rows
            .iter()
            .filter(|r| {
                // A record this release cannot read is of no use to any visitor.
                serde_json::from_str::<Visitor>(r.get(1)).map_or(true, |v| expired(&v))
            })
            .map(|r| r.get(0))
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let removed = self
            .execute("DELETE FROM visitors WHERE token_hash = ANY($1)", &[&gone])
            .await?;
        Ok(removed as usize)
    }

    async fn set_channel_state(&self, channel: &str, state: &str) -> Result<(), StoreError> {
        // A deletion is final on every host, even against one that has not seen it yet.
        if state == "enabled" {
            self.execute(
                "DELETE FROM channel_states WHERE channel = $1 AND state <> 'deleted'",
                &[&channel],
            )
            .await?;
        } else {
            self.execute(
                "INSERT INTO channel_states (channel, state) VALUES ($1, $2)
                 ON CONFLICT (channel) DO UPDATE SET state = EXCLUDED.state
                    WHERE channel_states.state <> 'deleted'",
                &[&channel, &state],
            )
            .await?;
        }
        Ok(())
    }

    async fn channel_states(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .query(
                "SELECT channel, state FROM channel_states ORDER BY channel COLLATE \"C\"",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn put_document(&self, space: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO documents (space, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value",
            &[&space, &key, &value],
        )
        .await?;
        Ok(())
    }

    async fn document(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self
            .query(
                "SELECT value FROM documents WHERE space = $1 AND key = $2",
                &[&space, &key],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn documents(
        &self,
        space: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self
            .query(
                "SELECT key, value FROM documents
                 WHERE space = $1 AND key > $2 ORDER BY key LIMIT $3",
                &[&space, &after, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn delete_document(&self, space: &str, key: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM documents WHERE space = $1 AND key = $2",
            &[&space, &key],
        )
        .await?;
        Ok(())
    }

    async fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            // Every write here is durable when it returns.
            return Ok(Vec::new());
        }
        let (job, answer) = Job::append(events, now);
        self.batcher.send(job)?;
        jobs::answered(answer).await
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .query(
                "SELECT id, kind, audience, conversation, data, at FROM events
                 WHERE id > $1 ORDER BY id LIMIT $2",
                &[&(after.min(i64::MAX as u64) as i64), &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let Json(data): Json<serde_json::Value> = r.try_get(4).map_err(decode_error)?;
                Ok(StoredEvent {
                    id: r.get::<_, i64>(0) as u64,
                    kind: r.get(1),
                    audience: r.get(2),
                    conversation: r.get::<_, Option<i64>>(3).map(|c| c.to_string()),
                    data,
                    at: r.get::<_, i64>(5) as u64,
                })
            })
            .collect()
    }

    async fn last_event_id(&self) -> Result<u64, StoreError> {
        let rows = self
            .query("SELECT coalesce(max(id), 0) FROM events", &[])
            .await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
    }
}

fn outbox_entry_of(r: &tokio_postgres::Row) -> OutboxEntry {
    OutboxEntry {
        conversation: r.get::<_, i64>(0) as u64,
        seq: r.get::<_, i64>(1) as u64,
        attempts: r.get::<_, i32>(2) as u32,
        next_at: r.get::<_, i64>(3) as u64,
    }
}

fn contact_of(r: &tokio_postgres::Row) -> Contact {
    Contact {
        address: r.get(0),
        name: r.get(1),
    }
}
