//! Intake on PostgreSQL: the webhooks (and event appends) that arrive together on this host
//! are applied in one transaction, with a fixed number of set-based statements per batch
//! whatever its size, and answered once it commits.
//!
//! A batch first takes a transaction-scoped advisory lock per customer it touches, in one
//! sorted order, so two hosts' batches for one customer run one after the other (never
//! deadlock) and the second sees what the first stored: a provider's retry that lands on the
//! other host is a duplicate, and concurrent first messages of one customer make one
//! conversation. It then reads the rows it needs in one round of pipelined queries, applies
//! [`rules::apply_intake`] to them in memory, and writes the results back as sets. Event ids
//! come last, from the counter row held to commit, so they become visible in id order.

use jiff::tz::TimeZone;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_postgres::types::Json;

use super::{Reach, db_error};
use crate::model::{Conversation, InboundEvent, Message, StoredEvent};
use crate::store::jobs::{Done, Job};
use crate::store::rules::{self, IntakeState};
use crate::store::{NewEvent, StoreError};

/// The most jobs one transaction carries.
const MAX_BATCH: usize = 256;

/// How often a batch that lost a deadlock or serialization race is tried again.
const RACE_RETRIES: usize = 5;

/// The handle to this host's intake task; dropping it ends the task once its queue is empty.
pub(super) struct Batcher {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    /// Starts the intake task on `pool`, telling `reach` whether the database answers.
    pub(super) fn start(
        pool: Pool,
        reach: Arc<Reach>,
        metrics: Observed,
        zone: TimeZone,
    ) -> Batcher {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, reach, metrics, zone, queue));
        Batcher { jobs }
    }

    /// Queues `job` for the next batch.
    pub(super) fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).map_err(|_| StoreError::IntakeStopped)
    }
}

/// Where the intake task records each batch's size and commit time, once set.
pub(super) type Observed = Arc<std::sync::OnceLock<crate::metrics::Metrics>>;

async fn run(
    pool: Pool,
    reach: Arc<Reach>,
    metrics: Observed,
    zone: TimeZone,
    mut queue: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let answers = commit(&pool, &reach, &zone, &jobs).await;
        if let Some(m) = metrics.get() {
            m.batch(jobs.len(), started.elapsed());
        }
        for (job, answer) in jobs.into_iter().zip(answers) {
            job.answer(answer);
        }
    }
}

/// How long one batch may take before it is given up (its connection dropped, the jobs
/// failed): a database that stops answering mid-batch must not hold this host's intake.
const BATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Commits `jobs` in one transaction (tried again when it loses a race with another host).
/// When the batch is refused for its data (one job's input the database will not store), the
/// jobs are tried one by one so only that one fails; any other failure (the connection, a
/// timeout) fails them all, for their callers to retry: trying each again would only wait
/// out the same failure once per job, and could repeat a batch whose commit went through
/// unacknowledged. One answer per job.
async fn commit(
    pool: &Pool,
    reach: &Reach,
    zone: &TimeZone,
    jobs: &[Job],
) -> Vec<Result<Done, StoreError>> {
    let all: Vec<&Job> = jobs.iter().collect();
    match commit_with_retries(pool, reach, zone, &all).await {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(Failure::Data(_)) if jobs.len() > 1 => {
            let mut answers = Vec::with_capacity(jobs.len());
            for job in jobs {
                answers.push(
                    commit_with_retries(pool, reach, zone, &[job])
                        .await
                        .map(|mut d| d.remove(0))
                        .map_err(Failure::into_error),
                );
            }
            answers
        }
        Err(e) => {
            let e = e.into_error();
            jobs.iter()
                .map(|_| Err(StoreError::Backend(e.to_string())))
                .collect()
        }
    }
}

async fn commit_with_retries(
    pool: &Pool,
    reach: &Reach,
    zone: &TimeZone,
    jobs: &[&Job],
) -> Result<Vec<Done>, Failure> {
    let mut attempt = 0;
    loop {
        let outcome =
            match tokio::time::timeout(BATCH_TIMEOUT, commit_once(pool, reach, zone, jobs)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let why = format!("an intake batch took over {BATCH_TIMEOUT:?}");
                    reach.unreachable(&why);
                    Err(Failure::Other(StoreError::Backend(format!(
                        "postgres: {why}"
                    ))))
                }
            };
        match outcome {
            Err(Failure::Race(e)) if attempt < RACE_RETRIES => {
                attempt += 1;
                tracing::debug!(attempt, "intake batch lost a race, trying again: {e}");
            }
            Ok(done) => {
                reach.answered();
                return Ok(done);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A batch's failure: a lost race (deadlock, serialization) is worth another try; data the
/// database refuses (SQLSTATE classes 22 and 23) is one job's fault.
enum Failure {
    Race(StoreError),
    Data(StoreError),
    Other(StoreError),
}

impl Failure {
    fn into_error(self) -> StoreError {
        match self {
            Failure::Race(e) | Failure::Data(e) | Failure::Other(e) => e,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let race = e.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        });
        let data = e
            .code()
            .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"));
        if race {
            Failure::Race(db_error(e))
        } else if data {
            Failure::Data(db_error(e))
        } else {
            Failure::Other(db_error(e))
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Other(e)
    }
}

/// The advisory lock key of a customer on a channel: the first 8 bytes of a SHA-256, the
/// same on every host.
fn customer_lock(channel: &str, customer: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(channel.as_bytes());
    h.update([0]);
    h.update(customer.as_bytes());
    let digest = h.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes of a digest"))
}

/// Takes the advisory locks of `keys`' customers, in sorted order.
pub(super) async fn lock_customers(
    tx: &Transaction<'_>,
    keys: impl IntoIterator<Item = (String, String)>,
) -> Result<(), tokio_postgres::Error> {
    let mut locks: Vec<i64> = keys
        .into_iter()
        .map(|(channel, customer)| customer_lock(&channel, &customer))
        .collect();
    locks.sort_unstable();
    locks.dedup();
    if locks.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k")
        .await?;
    tx.execute(&stmt, &[&locks]).await?;
    Ok(())
}

type Key = (String, String);

/// The rows a batch reads, then changes in memory, then writes back.
#[derive(Default)]
struct Rows {
    /// Conversations by (channel, customer), as read or as changed.
    conversations: HashMap<Key, Conversation>,
    /// Inbound message ids stored (read, or added by this batch).
    seen: HashSet<Key>,
    /// Sent messages by (channel, provider id).
    sent: HashMap<Key, (u64, u64)>,
    /// Messages by (conversation, seq): those statuses may change.
    messages: HashMap<(u64, u64), Message>,
    /// Opt-change ids applied (read, or added by this batch).
    opt_ids: HashSet<Key>,
    /// The last conversation id taken, when the batch may create conversations.
    last_conversation_id: Option<u64>,
    /// Whether a conversation id was taken.
    took_ids: bool,
    // What to write.
    conversation_writes: BTreeMap<u64, Conversation>,
    message_writes: BTreeMap<(u64, u64), Message>,
    new_inbound: Vec<(String, String, u64, u64)>,
    new_opt_ids: Vec<Key>,
    optouts: BTreeMap<Key, Option<u64>>,
    /// What the batch counts in the statistics.
    tallies: Vec<crate::stats::Tally>,
    /// When the job being applied was taken in.
    now: u64,
}

impl IntakeState for Rows {
    type Error = StoreError;

    fn inbound_seen(&mut self, channel: &str, provider_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .seen
            .contains(&(channel.to_owned(), provider_id.to_owned())))
    }

    fn conversation_by_key(
        &mut self,
        channel: &str,
        customer: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        Ok(self
            .conversations
            .get(&(channel.to_owned(), customer.to_owned()))
            .cloned())
    }

    fn next_conversation_id(&mut self) -> Result<u64, StoreError> {
        let last = self.last_conversation_id.as_mut().ok_or_else(|| {
            StoreError::Backend("intake creates a conversation it did not expect".into())
        })?;
        *last += 1;
        self.took_ids = true;
        Ok(*last)
    }

    fn put_inbound(
        &mut self,
        channel: &str,
        provider_id: &str,
        old: Option<&Conversation>,
        conv: &Conversation,
        message: &Message,
    ) -> Result<(), StoreError> {
        self.tallies
            .push(crate::stats::Tally::received(channel, self.now));
        self.tallies
            .extend(crate::stats::conversation_tallies(old, conv, self.now));
        self.seen
            .insert((channel.to_owned(), provider_id.to_owned()));
        self.new_inbound.push((
            channel.to_owned(),
            provider_id.to_owned(),
            conv.id,
            message.seq,
        ));
        self.message_writes
            .insert((message.conversation, message.seq), message.clone());
        self.conversations
            .insert((conv.channel.clone(), conv.customer.clone()), conv.clone());
        self.conversation_writes.insert(conv.id, conv.clone());
        Ok(())
    }

    fn sent_message(
        &mut self,
        channel: &str,
        provider_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let Some(key) = self.sent.get(&(channel.to_owned(), provider_id.to_owned())) else {
            return Ok(None);
        };
        Ok(self.messages.get(key).cloned())
    }

    fn put_message(&mut self, message: &Message) -> Result<(), StoreError> {
        let key = (message.conversation, message.seq);
        self.messages.insert(key, message.clone());
        self.message_writes.insert(key, message.clone());
        Ok(())
    }

    fn first_opt_application(
        &mut self,
        channel: &str,
        provider_id: &str,
    ) -> Result<bool, StoreError> {
        let key = (channel.to_owned(), provider_id.to_owned());
        if self.opt_ids.contains(&key) {
            return Ok(false);
        }
        self.opt_ids.insert(key.clone());
        self.new_opt_ids.push(key);
        Ok(true)
    }

    fn set_opted_out(
        &mut self,
        channel: &str,
        address: &str,
        opted_out: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        self.optouts.insert(
            (channel.to_owned(), address.to_owned()),
            opted_out.then_some(now),
        );
        Ok(())
    }
}

/// The keys a batch reads, gathered from its jobs' events.
#[derive(Default)]
struct Wanted {
    customers: Vec<Key>,
    inbound: Vec<Key>,
    statuses: Vec<Key>,
    opt_ids: Vec<Key>,
}

impl Wanted {
    fn of(jobs: &[&Job]) -> Wanted {
        let mut w = Wanted::default();
        for job in jobs {
            let Job::Intake {
                channel, events, ..
            } = job
            else {
                continue;
            };
            for event in events {
                match event {
                    InboundEvent::Message {
                        provider_id, from, ..
                    } => {
                        w.customers.push((channel.clone(), from.clone()));
                        w.inbound.push((channel.clone(), provider_id.clone()));
                    }
                    InboundEvent::Status { provider_id, .. } => {
                        w.statuses.push((channel.clone(), provider_id.clone()));
                    }
                    InboundEvent::OptOut(change) | InboundEvent::OptIn(change) => {
                        w.customers.push((channel.clone(), change.address.clone()));
                        if let Some(id) = &change.provider_id {
                            w.opt_ids.push((channel.clone(), id.clone()));
                        }
                    }
                }
            }
        }
        w
    }
}

fn split(keys: &[Key]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip()
}

async fn commit_once(
    pool: &Pool,
    reach: &Reach,
    zone: &TimeZone,
    jobs: &[&Job],
) -> Result<Vec<Done>, Failure> {
    let mut client = pool.get().await.map_err(|e| {
        reach.note(&e);
        Failure::Other(super::pool_error(e))
    })?;
    let tx = client.transaction().await?;
    let wanted = Wanted::of(jobs);
    lock_customers(&tx, wanted.customers.iter().cloned()).await?;
    let mut rows = read_rows(&tx, &wanted).await?;
    let creates = wanted
        .customers
        .iter()
        .any(|k| !rows.conversations.contains_key(k));
    if creates {
        let stmt = tx
            .prepare_cached("SELECT value FROM counters WHERE name = 'conversation' FOR UPDATE")
            .await?;
        let last: i64 = tx.query_one(&stmt, &[]).await?.get(0);
        rows.last_conversation_id = Some(last as u64);
    }
    let known = known_contacts(&tx, &wanted).await?;

    // Apply every job in memory, in order; the events they log get ids at the end.
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut to_log: Vec<(NewEvent, u64)> = Vec::new();
    for job in jobs {
        match job {
            Job::Intake {
                channel,
                target,
                events,
                now,
                notices,
                ..
            } => {
                rows.now = *now;
                let report = rules::apply_intake(&mut rows, channel, target, events, *now)?;
                let first = to_log.len();
                for message in &report.messages {
                    let new_contact = report.created.contains(&message.conversation)
                        && !known.contains(&message.customer);
                    for event in notices.notices(channel, message, new_contact) {
                        to_log.push((event, *now));
                    }
                }
                outcomes.push((Some(report), first..to_log.len()));
            }
            Job::Append { events, now, .. } => {
                let first = to_log.len();
                to_log.extend(events.iter().map(|event| (event.clone(), *now)));
                outcomes.push((None, first..to_log.len()));
            }
        }
    }
    write_rows(&tx, &rows).await?;
    super::add_statistics(&tx, zone, &rows.tallies).await?;
    let logged = log_events(&tx, to_log).await?;
    tx.commit().await?;

    Ok(outcomes
        .into_iter()
        .map(|(report, range)| match report {
            Some(mut report) => {
                report.events = logged[range].to_vec();
                Done::Intake(report)
            }
            None => Done::Append(logged[range].to_vec()),
        })
        .collect())
}

/// Reads the conversations, inbound ids, sent messages and opt-change ids `wanted` names, in
/// one round of pipelined queries (each a probe of a primary key per key wanted, see
/// `connect` on sequential scans); conversations and messages locked for update.
async fn read_rows(tx: &Transaction<'_>, wanted: &Wanted) -> Result<Rows, Failure> {
    let conversations = async {
        if wanted.customers.is_empty() {
            return Ok(Vec::new());
        }
        let (channels, customers) = split(&wanted.customers);
        let stmt = tx
            .prepare_cached(
                "SELECT c.record FROM unnest($1::text[], $2::text[]) AS k(ch, cu)
                 JOIN conversations c ON c.channel = k.ch AND c.customer = k.cu
                 FOR UPDATE OF c",
            )
            .await?;
        tx.query(&stmt, &[&channels, &customers]).await
    };
    let inbound = async {
        if wanted.inbound.is_empty() {
            return Ok(Vec::new());
        }
        let (channels, ids) = split(&wanted.inbound);
        let stmt = tx
            .prepare_cached(
                "SELECT i.channel, i.provider_id FROM unnest($1::text[], $2::text[]) AS k(ch, id)
                 JOIN inbound_ids i ON i.channel = k.ch AND i.provider_id = k.id",
            )
            .await?;
        tx.query(&stmt, &[&channels, &ids]).await
    };
    let statuses = async {
        if wanted.statuses.is_empty() {
            return Ok(Vec::new());
        }
        let (channels, ids) = split(&wanted.statuses);
        let stmt = tx
            .prepare_cached(
                "SELECT s.channel, s.provider_id, m.record
                 FROM unnest($1::text[], $2::text[]) AS k(ch, id)
                 JOIN sent_ids s ON s.channel = k.ch AND s.provider_id = k.id
                 JOIN messages m ON m.conversation = s.conversation AND m.seq = s.seq
                 ORDER BY m.conversation, m.seq
                 FOR UPDATE OF m",
            )
            .await?;
        tx.query(&stmt, &[&channels, &ids]).await
    };
    let opt_ids = async {
        if wanted.opt_ids.is_empty() {
            return Ok(Vec::new());
        }
        let (channels, ids) = split(&wanted.opt_ids);
        let stmt = tx
            .prepare_cached(
                "SELECT o.channel, o.provider_id FROM unnest($1::text[], $2::text[]) AS k(ch, id)
                 JOIN opt_change_ids o ON o.channel = k.ch AND o.provider_id = k.id",
            )
            .await?;
        tx.query(&stmt, &[&channels, &ids]).await
    };
    let (conversations, inbound, statuses, opt_ids) =
        futures_util::future::try_join4(conversations, inbound, statuses, opt_ids).await?;
    let mut rows = Rows::default();
    for row in conversations {
        let Json(c): Json<Conversation> = row.try_get(0).map_err(super::decode_error)?;
        rows.conversations
            .insert((c.channel.clone(), c.customer.clone()), c);
    }
    for row in inbound {
        rows.seen.insert((row.get(0), row.get(1)));
    }
    for row in statuses {
        let Json(m): Json<Message> = row.try_get(2).map_err(super::decode_error)?;
        let key = (m.conversation, m.seq);
        rows.sent.insert((row.get(0), row.get(1)), key);
        rows.messages.insert(key, m);
    }
    for row in opt_ids {
        rows.opt_ids.insert((row.get(0), row.get(1)));
    }
    Ok(rows)
}

/// The senders of the batch's messages that the contact directory knows.
async fn known_contacts(
    tx: &Transaction<'_>,
    wanted: &Wanted,
) -> Result<HashSet<String>, tokio_postgres::Error> {
    if wanted.inbound.is_empty() {
        return Ok(HashSet::new());
    }
    let addresses: Vec<&str> = wanted.customers.iter().map(|(_, c)| c.as_str()).collect();
    let stmt = tx
        .prepare_cached("SELECT address FROM contacts WHERE address = ANY($1)")
        .await?;
    Ok(tx
        .query(&stmt, &[&addresses])
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

/// Writes back what the batch changed, one statement per table.
async fn write_rows(tx: &Transaction<'_>, rows: &Rows) -> Result<(), Failure> {
    super::put_conversations(tx, rows.conversation_writes.values()).await?;
    if rows.took_ids
        && let Some(last) = rows.last_conversation_id
    {
        let stmt = tx
            .prepare_cached("UPDATE counters SET value = $1 WHERE name = 'conversation'")
            .await?;
        tx.execute(&stmt, &[&(last as i64)]).await?;
    }
    super::put_messages(tx, rows.message_writes.values()).await?;
    if !rows.new_inbound.is_empty() {
        let channels: Vec<&str> = rows.new_inbound.iter().map(|r| r.0.as_str()).collect();
        let ids: Vec<&str> = rows.new_inbound.iter().map(|r| r.1.as_str()).collect();
        let convs: Vec<i64> = rows.new_inbound.iter().map(|r| r.2 as i64).collect();
        let seqs: Vec<i64> = rows.new_inbound.iter().map(|r| r.3 as i64).collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO inbound_ids (channel, provider_id, conversation, seq)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])",
            )
            .await?;
        tx.execute(&stmt, &[&channels, &ids, &convs, &seqs]).await?;
    }
    if !rows.new_opt_ids.is_empty() {
        let (channels, ids) = split(&rows.new_opt_ids);
        let stmt = tx
            .prepare_cached(
                "INSERT INTO opt_change_ids (channel, provider_id)
                 SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&stmt, &[&channels, &ids]).await?;
    }
    let (outs, ins): (Vec<_>, Vec<_>) = rows.optouts.iter().partition(|(_, at)| at.is_some());
    if !outs.is_empty() {
        let channels: Vec<&str> = outs.iter().map(|((c, _), _)| c.as_str()).collect();
        let addresses: Vec<&str> = outs.iter().map(|((_, a), _)| a.as_str()).collect();
        let ats: Vec<i64> = outs.iter().map(|(_, at)| at.unwrap_or(0) as i64).collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO optouts (channel, address, at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
                 ON CONFLICT (channel, address) DO UPDATE SET at = EXCLUDED.at",
            )
            .await?;
        tx.execute(&stmt, &[&channels, &addresses, &ats]).await?;
    }
    if !ins.is_empty() {
        let channels: Vec<&str> = ins.iter().map(|((c, _), _)| c.as_str()).collect();
        let addresses: Vec<&str> = ins.iter().map(|((_, a), _)| a.as_str()).collect();
        let stmt = tx
            .prepare_cached(
                "DELETE FROM optouts WHERE (channel, address) IN
                    (SELECT * FROM unnest($1::text[], $2::text[]))",
            )
            .await?;
        tx.execute(&stmt, &[&channels, &addresses]).await?;
    }
    Ok(())
}

/// Appends `events` to the log with the next ids, holding the counter row to commit.
async fn log_events(
    tx: &Transaction<'_>,
    events: Vec<(NewEvent, u64)>,
) -> Result<Vec<StoredEvent>, Failure> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE counters SET value = value + $1 WHERE name = 'event' RETURNING value",
        )
        .await?;
    let last: i64 = tx.query_one(&stmt, &[&(events.len() as i64)]).await?.get(0);
    let first = last as u64 - events.len() as u64 + 1;
    let stored: Vec<StoredEvent> = events
        .into_iter()
        .enumerate()
        .map(|(i, (e, at))| StoredEvent {
            id: first + i as u64,
            kind: e.kind,
            audience: e.audience,
            conversation: e.conversation.map(|c| c.to_string()),
            data: e.data,
            at,
        })
        .collect();
    let ids: Vec<i64> = stored.iter().map(|e| e.id as i64).collect();
    let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
    let audiences: Vec<String> = stored
        .iter()
        .map(|e| super::json_text(&e.audience))
        .collect::<Result<_, _>>()?;
    let convs: Vec<Option<i64>> = stored
        .iter()
        .map(|e| e.conversation.as_ref().and_then(|c| c.parse().ok()))
        .collect();
    let data: Vec<String> = stored
        .iter()
        .map(|e| super::json_text(&e.data))
        .collect::<Result<_, _>>()?;
    let ats: Vec<i64> = stored.iter().map(|e| e.at as i64).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (id, kind, audience, conversation, data, at)
             SELECT i, k, ARRAY(SELECT jsonb_array_elements_text(a::jsonb)), c, d::jsonb, t
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                $6::bigint[]) AS u(i, k, a, c, d, t)",
        )
        .await?;
    tx.execute(&stmt, &[&ids, &kinds, &audiences, &convs, &data, &ats])
        .await?;
    Ok(stored)
}
