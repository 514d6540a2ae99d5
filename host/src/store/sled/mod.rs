//! The embedded default backend: sled, with no server to start.
//!
//! Every webhook's events are applied atomically, and concurrent webhooks share one
//! transaction and one flush on the intake thread ([`batch`]), which answers once the flush
//! covering them is done; a reply or a send's outcome logs its events there too, so that flush
//! covers both. Every other write waits for the group-commit flusher ([`durability`]) before it
//! returns, so many writers share one disk sync. Conversations are
//! listed through their index ([`index`]); an earlier release's data directory is brought
//! forward at open ([`migrate`]).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

mod batch;
mod codec;
mod counters;
mod durability;
mod index;
mod intake;
mod migrate;

use codec::{be_u64, decode, encode, key2, message_key};
use durability::Durability;
use intake::{
    IntakeTrees, next_conversation_id, put_conversation, tx_conversation, tx_conversation_by_key,
};

use crate::model::{
    AgentRecord, AgentSession, Contact, Conversation, ConversationTarget, Failover, InboundEvent,
    IngestReport, Message, OutboundDraft, OutboxEntry, Rejection, StoredEvent, Visitor,
};
use crate::store::rules;
use crate::store::{
    Change, ConversationCursor, ConversationQuery, IntakeNotices, NewEvent, NonceClaim,
    OutboundNotices, Page, SendNotices, SendOutcome, Store, StoreError, UpdateError, VisitorExpiry,
};

/// The layout version this release writes (and migrates older data to).
pub const SCHEMA_VERSION: u8 = codec::SCHEMA_VERSION;

/// The tree of [`index`]'s entries.
const INDEX_TREE: &str = "conversation_index";
/// The statistics counters' tree.
const COUNTERS_TREE: &str = "statistics";

/// How often (in claims) expired nonces are swept.
const NONCE_SWEEP_EVERY: u64 = 1024;

/// Settings of the sled backend.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// sled's page cache, bytes (sled's own default is 1 GiB, grown as data is touched).
    pub cache_bytes: u64,
    /// The time zone whose local days the statistics count in (`[server] timezone`).
    pub zone: jiff::tz::TimeZone,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_bytes: 256 << 20,
            zone: jiff::tz::TimeZone::UTC,
        }
    }
}

/// The sled database and its trees.
pub struct SledStore {
    db: sled::Db,
    conversations: sled::Tree,
    conversation_keys: sled::Tree,
    messages: sled::Tree,
    sent_ids: sled::Tree,
    optouts: sled::Tree,
    outbox: sled::Tree,
    /// Claims on sends: message key -> holder's lease end (8 bytes) and name.
    outbox_claims: sled::Tree,
    index: sled::Tree,
    agents: sled::Tree,
    contacts: sled::Tree,
    events: sled::Tree,
    channel_admin: sled::Tree,
    /// The services' documents: space, NUL, key -> value ([`Store::put_document`]).
    documents: sled::Tree,
    visitors: sled::Tree,
    nonces: sled::Tree,
    /// Console sessions: token hash -> [`AgentSession`].
    sessions: sled::Tree,
    /// Read markers: agent, NUL, conversation (8 bytes) -> sequence number (8 bytes).
    read_marks: sled::Tree,
    /// Statistics counters ([`counters`]).
    counters: sled::Tree,
    /// The time zone whose local days the statistics count in.
    zone: jiff::tz::TimeZone,
    claims: AtomicU64,
    durability: Arc<Durability>,
    batcher: batch::Batcher,
    /// Shared with the intake thread: where it records its batches.
    metrics: Arc<std::sync::OnceLock<crate::metrics::Metrics>>,
}

/// Runs `f`, turning a panic on this thread into `Err(its message)` without printing it (the
/// caller reports the failure its own way); panics on other threads meanwhile print as usual.
fn catch_panic_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    type Hook = dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync;
    let previous: Arc<Hook> = Arc::from(std::panic::take_hook());
    let this = std::thread::current().id();
    let others = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != this {
            others(info);
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| previous(info)));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "an unexpected failure".to_owned())
    })
}

/// A transaction's failure as the [`StoreError`] it aborted with, or sled's.
fn tx_error(d: &Durability, e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => d.error(e),
    }
}

/// A transaction's failure as the [`UpdateError`] it aborted with, or sled's.
fn update_error(d: &Durability, e: TransactionError<UpdateError>) -> UpdateError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => UpdateError::Storage(d.error(e)),
    }
}

/// A storage error aborting a transaction that aborts with [`UpdateError`]s.
fn lift<T>(
    r: Result<T, ConflictableTransactionError<StoreError>>,
) -> Result<T, ConflictableTransactionError<UpdateError>> {
    r.map_err(|e| match e {
        ConflictableTransactionError::Abort(e) => {
            ConflictableTransactionError::Abort(UpdateError::Storage(e))
        }
        ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
        ConflictableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
    })
}

fn refuse<T>(r: Rejection) -> Result<T, ConflictableTransactionError<UpdateError>> {
    Err(ConflictableTransactionError::Abort(UpdateError::Rejected(
        r,
    )))
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, migrates an earlier release's layout, and
    /// starts the intake thread and the group-commit flusher. Must be called inside a tokio
    /// runtime. A database another process holds is [`StoreError::Locked`]; one that cannot be
    /// read back (sled reports corruption, or panics reading a damaged file: the panic is
    /// caught) is [`StoreError::CorruptDatabase`].
    pub fn open(dir: &Path, options: SledOptions) -> Result<Arc<SledStore>, StoreError> {
        let opened = match catch_panic_quietly(|| {
            sled::Config::new()
                .path(dir)
                .cache_capacity(options.cache_bytes)
                .flush_every_ms(None)
                .open()
        }) {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(durability::open_error(dir, e)),
            Err(panic) => {
                return Err(StoreError::CorruptDatabase {
                    dir: dir.to_owned(),
                    reason: format!("sled failed reading it: {panic}"),
                });
            }
        };
        let store = SledStore::with_db(opened, dir, options.zone)?;
        let db = store.db.clone();
        let durability = store.durability.clone();
        tokio::spawn(async move { durability::flusher(db, durability).await });
        Ok(store)
    }

    fn with_db(
        db: sled::Db,
        dir: &Path,
        zone: jiff::tz::TimeZone,
    ) -> Result<Arc<SledStore>, StoreError> {
        let open_error = |e| durability::open_error(dir, e);
        let mark = durability::FlushMark::check(&db, dir)?;
        let steps = migrate::migrate(&db, dir)?;
        if steps > 0 {
            tracing::info!(dir = %dir.display(), steps, "storage migrated to schema version {}", codec::SCHEMA_VERSION);
        }
        let intake = IntakeTrees::open(&db, zone.clone()).map_err(open_error)?;
        let durability = Arc::new(Durability::new(mark));
        let metrics = Arc::new(std::sync::OnceLock::new());
        let batcher = batch::Batcher::start(batch::Intake {
            trees: intake,
            contacts: db.open_tree("contacts").map_err(open_error)?,
            db: db.clone(),
            durability: durability.clone(),
            metrics: metrics.clone(),
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(open_error);
        Ok(Arc::new(SledStore {
            conversations: tree("conversations")?,
            conversation_keys: tree("conversation_keys")?,
            messages: tree("messages")?,
            sent_ids: tree("sent_ids")?,
            optouts: tree("optouts")?,
            outbox: tree("outbox")?,
            outbox_claims: tree("outbox_claims")?,
            index: tree(INDEX_TREE)?,
            agents: tree("agents")?,
            contacts: tree("contacts")?,
            events: tree("events")?,
            channel_admin: tree("channel_admin")?,
            documents: tree("documents")?,
            visitors: tree("visitors")?,
            nonces: tree("nonces")?,
            sessions: tree("sessions")?,
            read_marks: tree("read_marks")?,
            counters: tree(COUNTERS_TREE)?,
            zone,
            claims: AtomicU64::new(1),
            durability,
            batcher,
            metrics,
            db,
        }))
    }

    /// The statistics counters of a transaction, counting in this store's zone.
    fn counts<'a>(&'a self, tree: &'a TransactionalTree) -> counters::Counts<'a> {
        counters::Counts {
            tree,
            zone: &self.zone,
        }
    }

    /// sled's error as a [`StoreError`] (recording one that puts storage out of service).
    fn fail(&self, e: sled::Error) -> StoreError {
        self.durability.error(e)
    }

    /// Fails at once when storage is out of service: nothing more is acknowledged.
    fn writable(&self) -> Result<(), StoreError> {
        match self.durability.out_of_service() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for the flush covering everything written so far.
    async fn durable(&self) -> Result<(), StoreError> {
        self.durability.wait().await
    }

    /// Makes everything written so far durable with `events` logged: in the intake thread's
    /// next batch, whose flush covers both (one disk sync for a write and its events), or the
    /// flusher's when there are none.
    async fn logged(
        &self,
        events: Vec<NewEvent>,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            self.durable().await?;
            return Ok(Vec::new());
        }
        self.batcher.append(events, now).await
    }

    fn get<T: for<'a> serde::Deserialize<'a>>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key).map_err(|e| self.fail(e))? {
            Some(b) => Ok(Some(decode(name, &b)?)),
            None => Ok(None),
        }
    }

    fn sweep_nonces(&self, now: u64) -> Result<(), StoreError> {
        for entry in self.nonces.iter() {
            let (key, held) = entry.map_err(|e| self.fail(e))?;
            let expires = held
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            // Only if nobody claimed it afresh meanwhile.
            if expires <= now {
                let _ = self
                    .nonces
                    .compare_and_swap(key, Some(held), None::<&[u8]>)
                    .map_err(|e| self.fail(e))?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SledStore {
    fn observe(&self, metrics: crate::metrics::Metrics) {
        let _ = self.metrics.set(metrics);
    }

    fn failure(&self) -> Option<String> {
        self.durability.failure().map(|e| {
            format!(
                "storage is out of service since a disk write failed ({e}); nothing more is acknowledged until plugboard is restarted (free disk space first, for a full disk)"
            )
        })
    }

    async fn close(&self) -> Result<(), StoreError> {
        let mark = self.durability.mark.stage(&self.db, true);
        self.db.flush().map_err(|e| self.fail(e))?;
        if let Some(mark) = mark {
            self.durability.mark.commit(mark);
        }
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
        self.writable()?;
        self.batcher
            .submit(channel, target, events, now, notices)
            .await
    }

    async fn claim_nonce(
        &self,
        scope: &str,
        nonce: &str,
        provider_id: &str,
        now: u64,
        window_ms: u64,
    ) -> Result<NonceClaim, StoreError> {
        self.writable()?;
        let key = key2(scope, nonce);
        let mut value = (now + window_ms).to_be_bytes().to_vec();
        value.extend_from_slice(provider_id.as_bytes());
        let mut current = self.nonces.get(&key).map_err(|e| self.fail(e))?;
        loop {
            if let Some(held) = &current {
                let expires = held
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                if expires > now {
                    return Ok(if &held[8..] == provider_id.as_bytes() {
                        NonceClaim::Retry
                    } else {
                        NonceClaim::Replayed
                    });
                }
            }
            match self
                .nonces
                .compare_and_swap(&key, current.clone(), Some(value.clone()))
                .map_err(|e| self.fail(e))?
            {
                Ok(()) => break,
                Err(conflict) => current = conflict.current,
            }
        }
        if self
            .claims
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(NONCE_SWEEP_EVERY)
            && let Err(e) = self.sweep_nonces(now)
        {
            tracing::warn!("sweeping expired nonces failed (the claim stands): {e}");
        }
        self.durable().await?;
        Ok(NonceClaim::Claimed)
    }

    async fn conversation(&self, id: u64) -> Result<Option<Conversation>, StoreError> {
        self.get(&self.conversations, "conversations", &id.to_be_bytes())
    }

    async fn conversation_by_key(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        let id = self
            .conversation_keys
            .get(key2(channel, address))
            .map_err(|e| self.fail(e))?;
        match id {
            Some(id) => self.conversation(be_u64("conversation_keys", &id)?).await,
            None => Ok(None),
        }
    }

    async fn conversations(
        &self,
        query: &ConversationQuery,
    ) -> Result<Page<Conversation, ConversationCursor>, StoreError> {
        let merge = index::Merge::new(&self.index, &query.any_of, query.after, query.updated_since);
        let prefixes: Vec<Vec<u8>> = query.any_of.iter().map(index::prefix).collect();
        let mut items = Vec::with_capacity(query.limit.min(256));
        let mut listed = HashSet::new();
        let mut more = false;
        for entry in merge {
            let (key, (_, id)) = entry?;
            let Some(c) = self.conversation(id).await? else {
                continue;
            };
            // Changed since its entry was read: it has moved (to the front, or out of this
            // range) and is listed where it is now. That is this page when it is the first
            // (the front) and the conversation is still selected; a later page leaves it to
            // the earlier ones (a client finds it with `updated_since`).
            let now_at = index::entries(&c);
            if !now_at.contains(&key[..]) {
                let still_selected = now_at
                    .iter()
                    .any(|k| prefixes.iter().any(|p| k.starts_with(p)));
                let in_range = query
                    .updated_since
                    .is_none_or(|since| c.updated_at >= since);
                if query.after.is_some() || !still_selected || !in_range {
                    continue;
                }
            }
            if !query.narrows_to(&c) || listed.contains(&c.id) {
                continue;
            }
            if items.len() == query.limit {
                more = true;
                break;
            }
            listed.insert(c.id);
            items.push(c);
        }
        // A conversation that moved to the front while the page was read goes first.
        items.sort_by_key(|c| std::cmp::Reverse(ConversationCursor::of(c)));
        let next = more
            .then(|| items.last().map(ConversationCursor::of))
            .flatten();
        Ok(Page { items, next })
    }

    async fn queued_ids(&self) -> Result<Vec<u64>, StoreError> {
        self.index
            .scan_prefix(index::queued_prefix())
            .map(|item| {
                let (key, _) = item.map_err(|e| self.fail(e))?;
                Ok(index::position(&key)?.1)
            })
            .collect()
    }

    async fn owned_count(&self, agent: &str) -> Result<u32, StoreError> {
        let prefix = index::prefix(&crate::store::Selector::OwnedBy(agent.to_owned()));
        let mut n = 0u32;
        for item in self.index.scan_prefix(prefix).keys() {
            item.map_err(|e| self.fail(e))?;
            n += 1;
        }
        Ok(n)
    }

    async fn statistics(
        &self,
        scope: crate::stats::Scope,
        from: i32,
        to: i32,
    ) -> Result<Vec<crate::stats::Counter>, StoreError> {
        counters::read(&self.counters, scope, from, to)
    }

    async fn queued_count(&self, queue: &str) -> Result<u64, StoreError> {
        let prefix = index::prefix(&crate::store::Selector::Queue {
            queue: queue.to_owned(),
            state: crate::model::ConversationState::Queued,
        });
        let mut n = 0u64;
        for item in self.index.scan_prefix(prefix).keys() {
            item.map_err(|e| self.fail(e))?;
            n += 1;
        }
        Ok(n)
    }

    async fn update_conversation(
        &self,
        id: u64,
        change: &Change<'_>,
    ) -> Result<Conversation, UpdateError> {
        self.writable()?;
        let trees = (&self.conversations, &self.index, &self.counters);
        let now = crate::clock::Clock::System.now_millis();
        let out = trees
            .transaction(|(convs, index, counters)| {
                let Some(old) = lift(tx_conversation(convs, id))? else {
                    return refuse(Rejection::NotFound);
                };
                let mut new = old.clone();
                if let Err(r) = change(&mut new) {
                    return refuse(r);
                }
                let counts = self.counts(counters);
                lift(put_conversation(
                    convs,
                    index,
                    counts,
                    Some(&old),
                    &new,
                    now,
                ))?;
                Ok(new)
            })
            .map_err(|e| update_error(&self.durability, e))?;
        self.durable().await?;
        Ok(out)
    }

    async fn start_conversation(
        &self,
        channel: &str,
        customer: &str,
        queue: &str,
        agent: &str,
        now: u64,
    ) -> Result<Conversation, UpdateError> {
        self.writable()?;
        let trees = (
            &self.conversations,
            &self.conversation_keys,
            &self.index,
            &self.counters,
        );
        let out = trees
            .transaction(|(convs, keys, index, counters)| {
                let existing = lift(tx_conversation_by_key(convs, keys, channel, customer))?;
                let base = match &existing {
                    Some(c) => c.clone(),
                    None => {
                        let id = next_conversation_id(keys)?;
                        keys.insert(key2(channel, customer), &id.to_be_bytes())?;
                        Conversation::new(id, channel, customer, queue, now)
                    }
                };
                let conv = match rules::start_by(base, agent, now) {
                    Ok(conv) => conv,
                    Err(r) => return refuse(r),
                };
                let counts = self.counts(counters);
                lift(put_conversation(
                    convs,
                    index,
                    counts,
                    existing.as_ref(),
                    &conv,
                    now,
                ))?;
                Ok(conv)
            })
            .map_err(|e| update_error(&self.durability, e))?;
        self.durable().await?;
        Ok(out)
    }

    async fn messages(
        &self,
        conversation: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<Message, u64>, StoreError> {
        let start = message_key(conversation, after.map_or(0, |seq| seq.saturating_add(1)));
        let end = message_key(conversation, u64::MAX);
        let mut items = Vec::with_capacity(limit.min(256));
        let mut more = false;
        for item in self.messages.range(start..=end) {
            let (_, v) = item.map_err(|e| self.fail(e))?;
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(decode::<Message>("messages", &v)?);
        }
        let next = more.then(|| items.last().map(|m| m.seq)).flatten();
        Ok(Page { items, next })
    }

    async fn message(&self, conversation: u64, seq: u64) -> Result<Option<Message>, StoreError> {
        self.get(&self.messages, "messages", &message_key(conversation, seq))
    }

    async fn add_outbound(
        &self,
        conversation: u64,
        author: Option<&str>,
        draft: OutboundDraft,
        now: u64,
    ) -> Result<(Conversation, Message), UpdateError> {
        let (conv, message, _) = self
            .add_outbound_with(conversation, author, draft, now, &|_, _| Vec::new())
            .await?;
        Ok((conv, message))
    }

    async fn add_outbound_with(
        &self,
        conversation: u64,
        author: Option<&str>,
        draft: OutboundDraft,
        now: u64,
        notices: OutboundNotices<'_>,
    ) -> Result<(Conversation, Message, Vec<StoredEvent>), UpdateError> {
        self.writable()?;
        let trees = (
            &self.conversations,
            &self.messages,
            &self.outbox,
            &self.index,
            &self.read_marks,
            &self.counters,
        );
        let out = trees
            .transaction(|(convs, msgs, outbox, index, marks, counters)| {
                let Some(old) = lift(tx_conversation(convs, conversation))? else {
                    return refuse(Rejection::NotFound);
                };
                let mut conv = old.clone();
                let message = match rules::add_reply(&mut conv, author, draft.clone(), now) {
                    Ok(message) => message,
                    Err(r) => return refuse(r),
                };
                let key = message_key(conversation, message.seq);
                msgs.insert(&key, encode(&message))?;
                if let Some(agent) = author {
                    tx_mark_read(marks, agent, conversation, message.seq)?;
                }
                outbox.insert(
                    &key,
                    encode(&OutboxEntry {
                        conversation,
                        seq: message.seq,
                        attempts: 0,
                        next_at: 0,
                    }),
                )?;
                let counts = self.counts(counters);
                lift(put_conversation(
                    convs,
                    index,
                    counts,
                    Some(&old),
                    &conv,
                    now,
                ))?;
                Ok((conv, message))
            })
            .map_err(|e| update_error(&self.durability, e))?;
        let (conv, message) = out;
        let logged = self.logged(notices(&conv, &message), now).await?;
        Ok((conv, message, logged))
    }

    async fn add_note(
        &self,
        conversation: u64,
        author: &str,
        text: &str,
        now: u64,
    ) -> Result<(Conversation, Message), UpdateError> {
        self.writable()?;
        let trees = (
            &self.conversations,
            &self.messages,
            &self.index,
            &self.read_marks,
            &self.counters,
        );
        let out = trees
            .transaction(|(convs, msgs, index, marks, counters)| {
                let Some(old) = lift(tx_conversation(convs, conversation))? else {
                    return refuse(Rejection::NotFound);
                };
                let mut conv = old.clone();
                let message = rules::add_note(&mut conv, author, text, now);
                msgs.insert(&message_key(conversation, message.seq), encode(&message))?;
                tx_mark_read(marks, author, conversation, message.seq)?;
                let counts = self.counts(counters);
                lift(put_conversation(
                    convs,
                    index,
                    counts,
                    Some(&old),
                    &conv,
                    now,
                ))?;
                Ok((conv, message))
            })
            .map_err(|e| update_error(&self.durability, e))?;
        self.durable().await?;
        Ok(out)
    }

    async fn mark_read(&self, agent: &str, conversation: u64, seq: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.read_marks
            .fetch_and_update(read_mark_key(agent, conversation), |old| {
                let before = old.and_then(|v| be_u64("read_marks", v).ok()).unwrap_or(0);
                Some(before.max(seq).to_be_bytes().to_vec())
            })
            .map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn read_marks(&self, agent: &str, conversations: &[u64]) -> Result<Vec<u64>, StoreError> {
        conversations
            .iter()
            .map(|&c| {
                let v = self
                    .read_marks
                    .get(read_mark_key(agent, c))
                    .map_err(|e| self.fail(e))?;
                v.map_or(Ok(0), |v| be_u64("read_marks", &v))
            })
            .collect()
    }

    async fn put_session(
        &self,
        token_hash: &[u8],
        session: &AgentSession,
        now: u64,
    ) -> Result<(), StoreError> {
        self.writable()?;
        for item in self.sessions.iter() {
            let (k, v) = item.map_err(|e| self.fail(e))?;
            // A record this release cannot read is of no use to any agent either.
            if decode::<AgentSession>("sessions", &v).map_or(true, |s| s.expires_at < now) {
                self.sessions.remove(k).map_err(|e| self.fail(e))?;
            }
        }
        self.sessions
            .insert(token_hash, encode(session))
            .map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn session(&self, token_hash: &[u8]) -> Result<Option<AgentSession>, StoreError> {
        self.get(&self.sessions, "sessions", token_hash)
    }

    async fn end_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        self.writable()?;
        self.sessions.remove(token_hash).map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn pending_sends(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox
            .iter()
            .map(|item| {
                let (_, v) = item.map_err(|e| self.fail(e))?;
                decode("outbox", &v)
            })
            .collect()
    }

    async fn outbox_entry(
        &self,
        conversation: u64,
        seq: u64,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        self.get(&self.outbox, "outbox", &message_key(conversation, seq))
    }

    async fn claim_send(
        &self,
        conversation: u64,
        seq: u64,
        holder: &str,
        now: u64,
        lease_ms: u64,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        self.writable()?;
        let key = message_key(conversation, seq);
        let trees = (&self.outbox, &self.outbox_claims);
        let out = trees
            .transaction(|(outbox, claims)| {
                let Some(entry) = outbox.get(key)? else {
                    return Ok(None);
                };
                if let Some(claim) = claims.get(key)? {
                    let until = claim
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                    if until > now && &claim[8..] != holder.as_bytes() {
                        return Ok(None);
                    }
                }
                let mut claim = now.saturating_add(lease_ms).to_be_bytes().to_vec();
                claim.extend_from_slice(holder.as_bytes());
                claims.insert(&key, claim)?;
                let entry: OutboxEntry =
                    decode("outbox", &entry).map_err(ConflictableTransactionError::Abort)?;
                Ok(Some(entry))
            })
            .map_err(|e| tx_error(&self.durability, e))?;
        self.durable().await?;
        Ok(out)
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
        let now = crate::clock::Clock::System.now_millis();
        let done = self
            .complete_send_with(channel, conversation, seq, outcome, now, &|_| Vec::new())
            .await?;
        Ok(done.map(|(message, _)| message))
    }

    async fn complete_send_with(
        &self,
        channel: &str,
        conversation: u64,
        seq: u64,
        outcome: SendOutcome,
        now: u64,
        notices: SendNotices<'_>,
    ) -> Result<Option<(Message, Vec<StoredEvent>)>, StoreError> {
        self.writable()?;
        let key = message_key(conversation, seq);
        let trees = (
            &self.messages,
            &self.sent_ids,
            &self.outbox,
            &self.outbox_claims,
            &self.counters,
        );
        let out = trees
            .transaction(|(msgs, sent, outbox, claims, counters)| {
                outbox.remove(&key)?;
                claims.remove(&key)?;
                let Some(b) = msgs.get(key)? else {
                    return Ok(None);
                };
                let mut message: Message =
                    decode("messages", &b).map_err(ConflictableTransactionError::Abort)?;
                rules::record_outcome(&mut message, &outcome);
                if let Ok(provider_id) = &outcome {
                    sent.insert(key2(channel, provider_id), &key)?;
                    self.counts(counters)
                        .add(&[crate::stats::Tally::sent(channel, now)])?;
                }
                msgs.insert(&key, encode(&message))?;
                Ok(Some(message))
            })
            .map_err(|e| tx_error(&self.durability, e))?;
        let events = out.as_ref().map(notices).unwrap_or_default();
        let logged = self.logged(events, now).await?;
        Ok(out.map(|message| (message, logged)))
    }

    async fn is_opted_out(&self, channel: &str, address: &str) -> Result<bool, StoreError> {
        self.optouts
            .contains_key(key2(channel, address))
            .map_err(|e| self.fail(e))
    }

    async fn set_opted_out(
        &self,
        channel: &str,
        address: &str,
        opted_out: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let key = key2(channel, address);
        let written = if opted_out {
            self.optouts.insert(key, &now.to_be_bytes()).map(drop)
        } else {
            self.optouts.remove(key).map(drop)
        };
        written.map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn agent_records(&self) -> Result<Vec<(String, AgentRecord)>, StoreError> {
        self.agents
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| self.fail(e))?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("agents", &v)?,
                ))
            })
            .collect()
    }

    async fn put_agent_record(&self, agent: &str, record: &AgentRecord) -> Result<(), StoreError> {
        self.writable()?;
        self.agents
            .insert(agent.as_bytes(), encode(record))
            .map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn put_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        self.writable()?;
        self.contacts
            .insert(contact.address.as_bytes(), encode(contact))
            .map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn contact(&self, address: &str) -> Result<Option<Contact>, StoreError> {
        self.get(&self.contacts, "contacts", address.as_bytes())
    }

    async fn contacts(&self) -> Result<Vec<Contact>, StoreError> {
        self.contacts
            .iter()
            .map(|item| decode("contacts", &item.map_err(|e| self.fail(e))?.1))
            .collect()
    }

    async fn put_visitor(&self, token_hash: &[u8], visitor: &Visitor) -> Result<(), StoreError> {
        self.writable()?;
        self.visitors
            .insert(token_hash, encode(visitor))
            .map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn visitor(&self, token_hash: &[u8]) -> Result<Option<Visitor>, StoreError> {
        self.get(&self.visitors, "visitors", token_hash)
    }

    async fn expire_visitors(
        &self,
        channel: &str,
        expired: &VisitorExpiry<'_>,
    ) -> Result<usize, StoreError> {
        self.writable()?;
        let mut removed = 0;
        for item in self.visitors.iter() {
            let (k, v) = item.map_err(|e| self.fail(e))?;
            let gone = match decode::<Visitor>("visitors", &v) {
                Ok(visitor) => visitor.channel == channel && expired(&visitor),
                // A record this release cannot read is of no use to any visitor.
                Err(_) => true,
            };
            if gone {
                self.visitors.remove(k).map_err(|e| self.fail(e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.durable().await?;
        }
        Ok(removed)
    }

    async fn set_channel_state(&self, channel: &str, state: &str) -> Result<(), StoreError> {
        self.writable()?;
        let key = channel.as_bytes();
        let deleted = self
            .channel_admin
            .get(key)
            .map_err(|e| self.fail(e))?
            .is_some_and(|v| &v[..] == b"deleted");
        if deleted {
            return Ok(());
        }
        let written = if state == "enabled" {
            self.channel_admin.remove(key).map(drop)
        } else {
            self.channel_admin.insert(key, state.as_bytes()).map(drop)
        };
        written.map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn channel_states(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.channel_admin
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| self.fail(e))?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    async fn put_document(&self, space: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.writable()?;
        self.documents
            .insert(document_key(space, key), value)
            .map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn document(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .documents
            .get(document_key(space, key))
            .map_err(|e| self.fail(e))?
            .map(|v| v.to_vec()))
    }

    async fn documents(
        &self,
        space: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = document_key(space, "");
        let mut start = document_key(space, after);
        // Strictly after `after`: the smallest key longer than it.
        start.push(0);
        let mut out = Vec::new();
        for item in self.documents.range(start..) {
            let (k, v) = item.map_err(|e| self.fail(e))?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((key, v.to_vec()));
        }
        Ok(out)
    }

    async fn delete_document(&self, space: &str, key: &str) -> Result<(), StoreError> {
        self.writable()?;
        self.documents
            .remove(document_key(space, key))
            .map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.writable()?;
        self.logged(events, now).await
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.events
            .range(after.saturating_add(1).to_be_bytes()..)
            .take(limit)
            .map(|item| decode("events", &item.map_err(|e| self.fail(e))?.1))
            .collect()
    }

    async fn last_event_id(&self) -> Result<u64, StoreError> {
        self.last_event_position()
    }
}

impl SledStore {
    /// One atomic change to a waiting send: `change` edits its message (returning whether it
    /// did) and names the entry's new attempt count and due time, if they change. `None` when
    /// the send is no longer waiting or its message is gone.
    async fn reschedule(
        &self,
        conversation: u64,
        seq: u64,
        change: impl Fn(&mut Message) -> rules::Reschedule,
    ) -> Result<Option<Message>, StoreError> {
        self.writable()?;
        let key = message_key(conversation, seq);
        let trees = (&self.messages, &self.outbox);
        let out = trees
            .transaction(|(msgs, outbox)| {
                if outbox.get(key)?.is_none() {
                    return Ok(None);
                }
                let Some(b) = msgs.get(key)? else {
                    return Ok(None);
                };
                let mut message: Message =
                    decode("messages", &b).map_err(ConflictableTransactionError::Abort)?;
                let (changed, entry) = change(&mut message);
                if let Some((attempts, next_at)) = entry {
                    outbox.insert(
                        &key,
                        encode(&OutboxEntry {
                            conversation,
                            seq,
                            attempts,
                            next_at,
                        }),
                    )?;
                }
                if changed {
                    msgs.insert(&key, encode(&message))?;
                }
                Ok(Some(message))
            })
            .map_err(|e| tx_error(&self.durability, e))?;
        self.durable().await?;
        Ok(out)
    }

    /// The newest event's id, 0 for an empty log.
    fn last_event_position(&self) -> Result<u64, StoreError> {
        match self.events.last().map_err(|e| self.fail(e))? {
            Some((k, _)) => be_u64("events", &k),
            None => Ok(0),
        }
    }
}

/// The read-marker key of `agent` and `conversation`: agent ids hold no NUL (config checks).
fn read_mark_key(agent: &str, conversation: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(agent.len() + 9);
    key.extend_from_slice(agent.as_bytes());
    key.push(0);
    key.extend_from_slice(&conversation.to_be_bytes());
    key
}

/// Moves `agent`'s read marker of `conversation` up to `seq` inside a transaction (their own
/// message: they have read up to it).
fn tx_mark_read(
    marks: &sled::transaction::TransactionalTree,
    agent: &str,
    conversation: u64,
    seq: u64,
) -> Result<(), ConflictableTransactionError<UpdateError>> {
    let key = read_mark_key(agent, conversation);
    let before = marks
        .get(&key)?
        .and_then(|v| be_u64("read_marks", &v).ok())
        .unwrap_or(0);
    if seq > before {
        marks.insert(key, &seq.to_be_bytes())?;
    }
    Ok(())
}

/// A document's key in the documents tree: its space, NUL, its key (spaces hold no NUL).
fn document_key(space: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(space.len() + 1 + key.len());
    out.extend_from_slice(space.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}
