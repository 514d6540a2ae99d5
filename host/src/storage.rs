//! Durable state in sled behind one narrow interface: conversations, their messages, provider-id
//! idempotency, delivery status, opt-outs and the outbound queue.
//!
//! Every webhook's events are applied atomically, and concurrent webhooks share one transaction
//! and one flush on the intake thread (see `batch`), which answers only once the flush covering
//! them is done. Other writers (agents' replies, routing) call [`Storage::wait_durable`]: one
//! flusher task serves every waiting writer, so many requests share one disk sync. Either way no
//! provider gets its 2xx, and no agent a 201, before the write is on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};
use tokio::sync::{Notify, watch};

mod batch;

pub use crate::model::*;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("storage: corrupt record in {tree}: {reason}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// Why.
        reason: String,
    },
    /// The intake thread is gone (it only ends with the storage).
    #[error("storage: the intake thread has stopped")]
    IntakeStopped,
    /// No flush completed in time.
    #[error("storage: flush did not complete within {0:?}")]
    FlushTimeout(Duration),
    /// Another process has the database open (sled holds an exclusive file lock).
    #[error(
        "another plugboard process holds {}: stop it first, or give this one its own data_dir",
        .0.display()
    )]
    Locked(PathBuf),
    /// The database files cannot be read back.
    #[error(
        "the database in {} is corrupt ({reason}); restore that directory from a backup, or move it aside to start with empty data",
        dir.display()
    )]
    CorruptDatabase {
        /// The database directory.
        dir: PathBuf,
        /// What sled reported.
        reason: String,
    },
    /// A disk write failed earlier (disk full, I/O error): sled refuses every write after
    /// that until the process restarts, so nothing more is acknowledged.
    #[error(
        "storage is out of service since a disk write failed ({0}); restart plugboard once the disk is fixed (free space, for a full disk)"
    )]
    OutOfService(String),
}

impl From<TransactionError<StorageError>> for StorageError {
    fn from(e: TransactionError<StorageError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StorageError::Sled(e),
        }
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StorageError>>;

/// A conversation change that failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The change was refused.
    #[error("refused: {0:?}")]
    Rejected(Rejection),
}

impl From<TransactionError<UpdateError>> for UpdateError {
    fn from(e: TransactionError<UpdateError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => UpdateError::Storage(StorageError::Sled(e)),
        }
    }
}

/// The sled database and its trees.
pub struct Storage {
    db: sled::Db,
    conversations: Tree,
    conversation_keys: Tree,
    messages: Tree,
    sent_ids: Tree,
    optouts: Tree,
    outbox: Tree,
    queued: Tree,
    owned: Tree,
    agents: Tree,
    contacts: Tree,
    events: Tree,
    channel_admin: Tree,
    visitors: Tree,
    nonces: Tree,
    durability: Arc<Durability>,
    intake: IntakeTrees,
    batcher: batch::Batcher,
}

struct Durability {
    written: AtomicU64,
    kick: Notify,
    flushed: watch::Sender<u64>,
    /// The disk write failure that put storage out of service, if one happened.
    failed: OnceLock<String>,
    /// Tells, at the next start, whether the database lost data that was on disk.
    mark: FlushMark,
}

/// How often the flusher records a [`FlushMark`] at most (and at every clean shutdown).
const MARK_EVERY: Duration = Duration::from_secs(1);

/// Detects a damaged database file. sled reads a damaged log record as the torn tail of a
/// crash and silently drops it and everything written after it, so a flipped byte can start
/// the host on an empty or truncated database. Before some flushes a counter is written into
/// the database; once that flush is on disk the same value goes to a file beside it. A
/// database holding a lower counter than the file lost data that had been on disk: it is
/// [`StorageError::CorruptDatabase`], never a silent start. (A crash cannot cause that: the
/// file is written only after the flush covering the counter.)
struct FlushMark {
    /// The file beside the database.
    file: PathBuf,
    /// The next counter value.
    next: AtomicU64,
    /// When the last mark was staged.
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl FlushMark {
    /// The database key holding the counter.
    const KEY: &'static [u8] = b"plugboard.flush_mark";

    /// Compares the counter in `db` with the file in `dir`.
    fn check(db: &sled::Db, dir: &Path) -> Result<FlushMark, StorageError> {
        let stored = db
            .get(Self::KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let file = dir.join("flush-mark");
        // Missing or unreadable (a database from before marks, an interrupted write): no check.
        let recorded = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if recorded > stored {
            return Err(StorageError::CorruptDatabase {
                dir: dir.to_owned(),
                reason: format!(
                    "it lost data that was on disk: flush mark {stored} in the database, {recorded} recorded in {}",
                    file.display()
                ),
            });
        }
        Ok(FlushMark {
            file,
            next: AtomicU64::new(recorded.max(stored) + 1),
            last: std::sync::Mutex::new(None),
        })
    }

    /// Before a flush: writes the next counter into `db` when one is due (`force`: always);
    /// returns it, for [`FlushMark::commit`] once the flush succeeded.
    fn stage(&self, db: &sled::Db, force: bool) -> Option<u64> {
        let mut last = self.last.lock().expect("flush mark lock");
        if !force && last.is_some_and(|t| t.elapsed() < MARK_EVERY) {
            return None;
        }
        let mark = self.next.fetch_add(1, Ordering::SeqCst);
        db.insert(Self::KEY, &mark.to_be_bytes()).ok()?;
        *last = Some(std::time::Instant::now());
        Some(mark)
    }

    /// After the flush covering `mark` is on disk: records it in the file (written aside,
    /// then renamed, so the file is the old mark or the new one).
    fn commit(&self, mark: u64) {
        let aside = self.file.with_extension("tmp");
        let written = std::fs::write(&aside, format!("{mark}\n"))
            .and_then(|()| std::fs::rename(&aside, &self.file));
        if let Err(e) = written {
            tracing::warn!(file = %self.file.display(), "cannot record the flush mark: {e}");
        }
    }
}

impl Durability {
    /// Records `e` if it puts storage out of service: after an I/O error sled keeps the error
    /// and fails every later write and flush, so the state lasts until the process restarts.
    /// Wakes writers waiting for a flush, which then fail at once.
    fn record(&self, e: &sled::Error) {
        if !matches!(
            e,
            sled::Error::Io(_) | sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)
        ) {
            return;
        }
        let reason = match e {
            sled::Error::Io(io) => os_message(io),
            e => e.to_string(),
        };
        if self.failed.set(reason.clone()).is_ok() {
            tracing::error!(
                "storage is out of service: {reason}; nothing more is acknowledged and /healthz answers 503 until plugboard is restarted"
            );
            self.flushed.send_modify(|_| {});
        }
    }

    /// The out-of-service error, if storage is out of service.
    fn out_of_service(&self) -> Option<StorageError> {
        self.failed
            .get()
            .map(|reason| StorageError::OutOfService(reason.clone()))
    }
}

/// The OS's words for an I/O error sled reports: sled re-wraps the original error's debug text
/// (`Os { code: 28, kind: StorageFull, message: "No space left on device" }`) in a new error
/// each time it is cloned; this digs out the message.
fn os_message(io: &std::io::Error) -> String {
    let text = io.to_string().replace('\\', "");
    let message = text
        .split_once("message: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(message, _)| message.to_owned());
    match message {
        Some(message) => format!("{message} ({})", io.kind()),
        None => text,
    }
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

/// What an error from opening the database in `dir` (or one of its trees) means.
fn open_error(dir: &Path, e: sled::Error) -> StorageError {
    match e {
        // sled 0.34 reports its file lock held elsewhere as an `Other` error with this text.
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().starts_with("could not acquire lock") =>
        {
            StorageError::Locked(dir.to_owned())
        }
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => {
            StorageError::CorruptDatabase {
                dir: dir.to_owned(),
                reason: e.to_string(),
            }
        }
        e => StorageError::Sled(e),
    }
}

/// How long a writer waits for its flush before giving up (the provider then gets a 5xx and
/// retries; the data is still written and will be flushed).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn message_key(conversation: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&conversation.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("storage records serialize")
}

fn decode<T: for<'a> Deserialize<'a>>(tree: &'static str, bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

fn tx_decode<T: for<'a> Deserialize<'a>>(tree: &'static str, bytes: &[u8]) -> TxResult<T> {
    decode(tree, bytes).map_err(ConflictableTransactionError::Abort)
}

fn owned_key(agent: &str, conversation: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(agent.len() + 9);
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k.extend_from_slice(&conversation.to_be_bytes());
    k
}

/// Writes a conversation and keeps the `queued` and `owned` indexes in step with it.
fn put_conversation(
    convs: &TransactionalTree,
    queued: &TransactionalTree,
    owned: &TransactionalTree,
    old: Option<&Conversation>,
    new: &Conversation,
) -> TxResult<()> {
    let id = new.id.to_be_bytes();
    // The indexes change only when what they index changes: most updates (a new message, an
    // offer) leave the state and owner alone and write the record alone.
    let owner_of = |c: &Conversation| {
        (c.state == ConversationState::Assigned)
            .then_some(c.owner.as_deref())
            .flatten()
            .map(str::to_owned)
    };
    let (old_owner, new_owner) = (old.and_then(owner_of), owner_of(new));
    if old_owner != new_owner {
        if let Some(owner) = &old_owner {
            owned.remove(owned_key(owner, new.id))?;
        }
        if let Some(owner) = &new_owner {
            owned.insert(owned_key(owner, new.id), &[])?;
        }
    }
    let was_queued = old.is_some_and(|c| c.state == ConversationState::Queued);
    match (was_queued, new.state == ConversationState::Queued) {
        (false, true) => {
            queued.insert(&id, &[])?;
        }
        (true, false) => {
            queued.remove(&id)?;
        }
        _ => {}
    }
    convs.insert(&id, encode(new))?;
    Ok(())
}

fn tx_conversation(convs: &TransactionalTree, id: u64) -> TxResult<Option<Conversation>> {
    match convs.get(id.to_be_bytes())? {
        Some(b) => Ok(Some(tx_decode("conversations", &b)?)),
        None => Ok(None),
    }
}

/// The trees one intake writes, inside a transaction.
#[derive(Clone, Copy)]
pub(crate) struct IngestTx<'a> {
    convs: &'a TransactionalTree,
    keys: &'a TransactionalTree,
    msgs: &'a TransactionalTree,
    inbound: &'a TransactionalTree,
    sent: &'a TransactionalTree,
    optouts: &'a TransactionalTree,
    queued: &'a TransactionalTree,
    owned: &'a TransactionalTree,
}

impl<'a> From<&'a IntakeTxTrees> for IngestTx<'a> {
    fn from(t: &'a IntakeTxTrees) -> Self {
        let (convs, keys, msgs, inbound, sent, optouts, queued, owned) = t;
        IngestTx {
            convs,
            keys,
            msgs,
            inbound,
            sent,
            optouts,
            queued,
            owned,
        }
    }
}

/// The transactional views of [`IntakeTrees`], in its order.
pub(crate) type IntakeTxTrees = (
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
);

/// The trees an intake writes (cheap clones of the database's handles).
#[derive(Clone)]
pub(crate) struct IntakeTrees {
    conversations: Tree,
    conversation_keys: Tree,
    messages: Tree,
    inbound_ids: Tree,
    sent_ids: Tree,
    optouts: Tree,
    queued: Tree,
    owned: Tree,
}

impl IntakeTrees {
    /// The trees as one `Transactional` tuple.
    pub(crate) fn trees(&self) -> (&Tree, &Tree, &Tree, &Tree, &Tree, &Tree, &Tree, &Tree) {
        (
            &self.conversations,
            &self.conversation_keys,
            &self.messages,
            &self.inbound_ids,
            &self.sent_ids,
            &self.optouts,
            &self.queued,
            &self.owned,
        )
    }
}

/// The senders whose every message in `events` was stored before: this call is a provider's
/// retry for them, so the opt-outs and opt-ins it carries for them were applied already.
fn retried_senders<'e>(
    inbound: &TransactionalTree,
    channel: &str,
    events: &'e [InboundEvent],
) -> TxResult<std::collections::HashSet<&'e str>> {
    let mut retried = std::collections::HashSet::new();
    let mut fresh = std::collections::HashSet::new();
    for event in events {
        if let InboundEvent::Message {
            provider_id, from, ..
        } = event
        {
            if inbound.get(key2(channel, provider_id))?.is_some() {
                retried.insert(from.as_str());
            } else {
                fresh.insert(from.as_str());
            }
        }
    }
    retried.retain(|from| !fresh.contains(from));
    Ok(retried)
}

/// Where `conversation_keys` keeps the next conversation id. Its other keys start with a
/// channel name, which is never empty and never starts with `0xff`.
const NEXT_CONVERSATION_ID: &[u8] = b"\xffnext-conversation-id";

/// A data directory of an earlier release has conversations (with ids from sled's generator)
/// and no counter: new ids continue after the largest stored one.
fn seed_conversation_ids(db: &sled::Db) -> Result<(), StorageError> {
    let keys = db.open_tree("conversation_keys")?;
    if keys.get(NEXT_CONVERSATION_ID)?.is_some() {
        return Ok(());
    }
    let conversations = db.open_tree("conversations")?;
    let next = match conversations.last()? {
        Some((key, _)) => key
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .unwrap_or(0)
            .saturating_add(1),
        None => 1,
    };
    keys.insert(NEXT_CONVERSATION_ID, &next.to_be_bytes())?;
    Ok(())
}

/// Takes the next conversation id: ids are dense and start at 1 in each data directory, apart
/// from the event log's positions.
fn next_conversation_id<E>(
    keys: &TransactionalTree,
) -> Result<u64, ConflictableTransactionError<E>> {
    let next = keys
        .get(NEXT_CONVERSATION_ID)?
        .and_then(|v| v.as_ref().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(1);
    keys.insert(NEXT_CONVERSATION_ID, &(next + 1).to_be_bytes())?;
    Ok(next)
}

/// Whether `change` is applied for the first time on `channel` (always, without a provider id),
/// recording it if so: its key lives with the inbound message ids, apart from them.
fn first_application(
    inbound: &TransactionalTree,
    channel: &str,
    change: &OptChange,
) -> TxResult<bool> {
    let Some(id) = &change.provider_id else {
        return Ok(true);
    };
    let key = key2(channel, &format!("{OPT_CHANGE_KEY}{id}"));
    Ok(inbound.insert(key, &[][..])?.is_none())
}

/// The prefix that keeps opt-change ids apart from message ids in the inbound-id tree.
const OPT_CHANGE_KEY: &str = "\u{1}opt-change:";

impl IngestTx<'_> {
    /// Applies one webhook's events (see [`Storage::ingest`]).
    pub(crate) fn apply(
        &self,
        channel: &str,
        target: &ConversationTarget,
        events: &[InboundEvent],
        now: u64,
    ) -> TxResult<IngestReport> {
        let IngestTx {
            convs,
            keys,
            msgs,
            inbound,
            sent,
            optouts,
            queued,
            owned,
        } = *self;
        let mut report = IngestReport::default();
        let retried_senders = retried_senders(inbound, channel, events)?;
        for event in events {
            match event {
                InboundEvent::Message {
                    provider_id,
                    from,
                    text,
                    attachments,
                    contact_name,
                    thread,
                    note,
                } => {
                    let dedup = key2(channel, provider_id);
                    if inbound.get(&dedup)?.is_some() {
                        report.duplicates += 1;
                        continue;
                    }
                    let conv_key = key2(channel, from);
                    let existing = match keys.get(&conv_key)? {
                        Some(id) => {
                            let id = u64::from_be_bytes(id.as_ref().try_into().map_err(|_| {
                                ConflictableTransactionError::Abort(StorageError::Corrupt {
                                    tree: "conversation_keys",
                                    reason: "id is not 8 bytes".into(),
                                })
                            })?);
                            Some(tx_conversation(convs, id)?.ok_or_else(|| {
                                ConflictableTransactionError::Abort(StorageError::Corrupt {
                                    tree: "conversations",
                                    reason: format!("conversation {id} missing"),
                                })
                            })?)
                        }
                        None => None,
                    };
                    let mut conv = match &existing {
                        Some(c) => c.clone(),
                        None => {
                            let id = next_conversation_id(keys)?;
                            keys.insert(conv_key, &id.to_be_bytes())?;
                            report.created.push(id);
                            let mut c = Conversation::new(id, channel, from, "", now);
                            if let ConversationTarget::Queue { skills, .. } = target {
                                c.skills = skills.clone();
                            }
                            c
                        }
                    };
                    if conv.state == ConversationState::Closed {
                        match target {
                            ConversationTarget::Queue { queue, .. } => {
                                conv.enqueue(queue, now);
                                report.to_route.push(conv.id);
                            }
                            ConversationTarget::Agent(agent) => conv.assign(agent),
                        }
                    }
                    conv.last_seq += 1;
                    conv.updated_at = now;
                    conv.last_inbound_at = Some(now);
                    if contact_name.is_some() {
                        conv.contact_name = contact_name.clone();
                    }
                    if !thread.is_empty() {
                        conv.thread = thread.clone();
                    }
                    let message = Message {
                        conversation: conv.id,
                        seq: conv.last_seq,
                        direction: Direction::Inbound,
                        provider_id: Some(provider_id.clone()),
                        text: text.clone(),
                        attachments: attachments.clone(),
                        author: None,
                        created_at: now,
                        status: MessageStatus::Received,
                        error: None,
                        note: note.clone(),
                        template: None,
                    };
                    let mkey = message_key(conv.id, message.seq);
                    msgs.insert(&mkey, encode(&message))?;
                    inbound.insert(dedup, &mkey)?;
                    put_conversation(convs, queued, owned, existing.as_ref(), &conv)?;
                    report.stored += 1;
                    report.messages.push(StoredInbound {
                        conversation: conv.id,
                        seq: message.seq,
                        customer: conv.customer.clone(),
                        contact_name: conv.contact_name.clone(),
                        text: text.clone(),
                        owner: conv
                            .owner
                            .clone()
                            .filter(|_| conv.state == ConversationState::Assigned),
                        queue: conv.queue.clone(),
                    });
                }
                InboundEvent::Status {
                    provider_id,
                    status,
                    error,
                } => {
                    let Some(mkey) = sent.get(key2(channel, provider_id))? else {
                        report.statuses_ignored += 1;
                        continue;
                    };
                    let Some(bytes) = msgs.get(&mkey)? else {
                        report.statuses_ignored += 1;
                        continue;
                    };
                    let mut message: Message = tx_decode("messages", &bytes)?;
                    if !status_advances(message.status, *status) {
                        report.statuses_ignored += 1;
                        continue;
                    }
                    message.status = *status;
                    if error.is_some() {
                        message.error = error.clone();
                    }
                    msgs.insert(&mkey, encode(&message))?;
                    report.statuses += 1;
                }
                // A provider's retry of a message that carried an opt-out or opt-in without an
                // id of its own (a 0.2.0 plugin's) must not apply it again: a retried STOP
                // arriving after a later START would leave the address opted out. Changes with
                // an id are applied once by that id, below.
                InboundEvent::OptOut(change) | InboundEvent::OptIn(change)
                    if change.provider_id.is_none()
                        && retried_senders.contains(change.address.as_str()) =>
                {
                    report.duplicates += 1;
                }
                // A provider's redelivery of a change it identifies (LINE's `unfollow` after a
                // newer `follow`) is applied once.
                InboundEvent::OptOut(change) | InboundEvent::OptIn(change)
                    if !first_application(inbound, channel, change)? =>
                {
                    report.duplicates += 1;
                }
                InboundEvent::OptOut(change) => {
                    optouts.insert(key2(channel, &change.address), &now.to_be_bytes())?;
                }
                InboundEvent::OptIn(change) => {
                    optouts.remove(key2(channel, &change.address))?;
                }
            }
        }
        Ok(report)
    }
}

/// One page of a list query, and where the next one starts (none after the last page).
#[derive(Debug, Clone)]
pub struct Page<T, C> {
    /// The page's items, in the query's order.
    pub items: Vec<T>,
    /// The cursor to pass for the next page.
    pub next: Option<C>,
}

/// Where a page of conversations ended: the last one's `(updated_at, id)`. Lists run most
/// recently updated first, ties by id, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationCursor {
    updated_at: u64,
    id: u64,
}

impl ConversationCursor {
    /// The cursor just after `c`.
    pub fn of(c: &Conversation) -> ConversationCursor {
        ConversationCursor {
            updated_at: c.updated_at,
            id: c.id,
        }
    }

    /// Whether `c` sorts after this cursor (belongs to a later page).
    fn is_before(&self, c: &Conversation) -> bool {
        (c.updated_at, c.id) < (self.updated_at, self.id)
    }

    /// The opaque text form the API hands out: 32 hex digits.
    pub fn encode(&self) -> String {
        format!("{:016x}{:016x}", self.updated_at, self.id)
    }

    /// Reads [`ConversationCursor::encode`]'s form; `None` for anything else.
    pub fn decode(text: &str) -> Option<ConversationCursor> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        Some(ConversationCursor {
            updated_at: u64::from_str_radix(&text[..16], 16).ok()?,
            id: u64::from_str_radix(&text[16..], 16).ok()?,
        })
    }
}

/// What [`Storage::claim_nonce`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceClaim {
    /// First use within the window: it is now claimed for this message.
    Claimed,
    /// Used before for the same message: the provider retrying one delivery.
    Retry,
    /// Used before for a different message: a replayed signature.
    Replayed,
}

/// How often (in claims) expired nonces are swept.
const NONCE_SWEEP_EVERY: u64 = 1024;

impl Storage {
    /// Claims a single-use value a provider's signature covers (Mailgun's `token`) for the
    /// message `provider_id` under `scope` (the plugin), until `now + window_ms`. Atomic: of two calls racing
    /// with one value, one claims it. An expired claim counts as absent.
    pub fn claim_nonce(
        &self,
        scope: &str,
        nonce: &str,
        provider_id: &str,
        now: u64,
        window_ms: u64,
    ) -> Result<NonceClaim, StorageError> {
        let key = key2(scope, nonce);
        let mut value = (now + window_ms).to_be_bytes().to_vec();
        value.extend_from_slice(provider_id.as_bytes());
        let mut current = self.nonces.get(&key)?;
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
                .compare_and_swap(&key, current.clone(), Some(value.clone()))?
            {
                Ok(()) => break,
                Err(conflict) => current = conflict.current,
            }
        }
        // Durable with the intake that follows: its flush covers the whole database.
        static CLAIMS: AtomicU64 = AtomicU64::new(1);
        if CLAIMS
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(NONCE_SWEEP_EVERY)
            && let Err(e) = self.sweep_nonces(now)
        {
            tracing::warn!("sweeping expired nonces failed (the claim stands): {e}");
        }
        Ok(NonceClaim::Claimed)
    }

    fn sweep_nonces(&self, now: u64) -> Result<(), StorageError> {
        for entry in self.nonces.iter() {
            let (key, held) = entry?;
            let expires = held
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            // Only if nobody claimed it afresh meanwhile.
            if expires <= now {
                let _ = self
                    .nonces
                    .compare_and_swap(key, Some(held), None::<&[u8]>)?;
            }
        }
        Ok(())
    }

    /// Opens (or creates) the database in `dir` and starts the group-commit flusher.
    /// Must be called inside a tokio runtime. A database another process holds is
    /// [`StorageError::Locked`]; one that cannot be read back (sled reports corruption, or
    /// panics reading a damaged file: the panic is caught) is [`StorageError::CorruptDatabase`].
    pub fn open(dir: &Path) -> Result<Arc<Storage>, StorageError> {
        let storage = match catch_panic_quietly(|| Storage::open_trees(dir)) {
            Ok(Ok(storage)) => storage,
            Ok(Err(StorageError::Sled(e))) => return Err(open_error(dir, e)),
            Ok(Err(e)) => return Err(e),
            Err(panic) => {
                return Err(StorageError::CorruptDatabase {
                    dir: dir.to_owned(),
                    reason: format!("sled failed reading it: {panic}"),
                });
            }
        };
        let db = storage.db.clone();
        let durability = storage.durability.clone();
        tokio::spawn(async move { flusher(db, durability).await });
        Ok(storage)
    }

    /// Opens the database and its trees and starts the intake thread.
    fn open_trees(dir: &Path) -> Result<Arc<Storage>, StorageError> {
        let db = sled::Config::new().path(dir).flush_every_ms(None).open()?;
        let mark = FlushMark::check(&db, dir)?;
        let (flushed, _) = watch::channel(0);
        seed_conversation_ids(&db)?;
        let intake = IntakeTrees {
            conversations: db.open_tree("conversations")?,
            conversation_keys: db.open_tree("conversation_keys")?,
            messages: db.open_tree("messages")?,
            inbound_ids: db.open_tree("inbound_ids")?,
            sent_ids: db.open_tree("sent_ids")?,
            optouts: db.open_tree("optouts")?,
            queued: db.open_tree("queued")?,
            owned: db.open_tree("owned")?,
        };
        let batcher = batch::Batcher::start(batch::Intake {
            trees: intake.clone(),
            db: db.clone(),
        })
        .map_err(|e| StorageError::Sled(sled::Error::Io(e)))?;
        let storage = Arc::new(Storage {
            intake,
            batcher,
            conversations: db.open_tree("conversations")?,
            conversation_keys: db.open_tree("conversation_keys")?,
            messages: db.open_tree("messages")?,
            sent_ids: db.open_tree("sent_ids")?,
            optouts: db.open_tree("optouts")?,
            outbox: db.open_tree("outbox")?,
            queued: db.open_tree("queued")?,
            owned: db.open_tree("owned")?,
            agents: db.open_tree("agents")?,
            contacts: db.open_tree("contacts")?,
            events: db.open_tree("events")?,
            channel_admin: db.open_tree("channel_admin")?,
            visitors: db.open_tree("visitors")?,
            nonces: db.open_tree("nonces")?,
            durability: Arc::new(Durability {
                written: AtomicU64::new(0),
                kick: Notify::new(),
                flushed,
                failed: OnceLock::new(),
                mark,
            }),
            db,
        });
        Ok(storage)
    }

    /// Why storage is out of service, if it is: a disk write failed (disk full, I/O error)
    /// and sled refuses every write until the process restarts. `/healthz` reports it.
    pub fn failure(&self) -> Option<String> {
        self.durability.failed.get().cloned()
    }

    /// Records a failure `result` carries that puts storage out of service.
    fn noted<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(StorageError::Sled(e)) = &result {
            self.durability.record(e);
        }
        result
    }

    /// Waits until everything written before this call is on disk.
    pub async fn wait_durable(&self) -> Result<(), StorageError> {
        let d = &self.durability;
        if let Some(e) = d.out_of_service() {
            return Err(e);
        }
        let ticket = d.written.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = d.flushed.subscribe();
        d.kick.notify_one();
        let flushed = tokio::time::timeout(
            FLUSH_TIMEOUT,
            rx.wait_for(|f| *f >= ticket || d.failed.get().is_some()),
        )
        .await
        .map_err(|_| StorageError::FlushTimeout(FLUSH_TIMEOUT))?
        .map_err(|_| StorageError::FlushTimeout(FLUSH_TIMEOUT))?;
        if *flushed < ticket
            && let Some(e) = d.out_of_service()
        {
            return Err(e);
        }
        Ok(())
    }

    /// Flushes synchronously (used at shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        let mark = self.durability.mark.stage(&self.db, true);
        self.noted(self.db.flush().map_err(StorageError::from))?;
        if let Some(mark) = mark {
            self.durability.mark.commit(mark);
        }
        Ok(())
    }

    /// Applies one webhook's events atomically: messages are stored once per provider id,
    /// conversations are created (or reopened when closed: a closed conversation that gets a
    /// new inbound message goes back to its queue, unowned, with its history), statuses only
    /// move forward. [`Storage::ingest_batched`] does the same for many concurrent webhooks in
    /// one transaction.
    pub fn ingest(
        &self,
        channel: &str,
        target: &ConversationTarget,
        events: &[InboundEvent],
        now: u64,
    ) -> Result<IngestReport, StorageError> {
        Ok(self
            .intake
            .trees()
            .transaction(|tx| IngestTx::from(tx).apply(channel, target, events, now))?)
    }

    /// [`Storage::ingest`] through the intake thread, in one transaction with whatever other
    /// webhooks arrived meanwhile, answered once a flush covers it (no [`Storage::wait_durable`]
    /// needed): what the webhook path uses.
    pub async fn ingest_batched(
        &self,
        channel: String,
        target: ConversationTarget,
        events: Vec<InboundEvent>,
        now: u64,
    ) -> Result<IngestReport, StorageError> {
        if let Some(e) = self.durability.out_of_service() {
            return Err(e);
        }
        self.noted(self.batcher.submit(channel, target, events, now).await)
    }

    /// Whether `address` opted out of `channel`.
    pub fn is_opted_out(&self, channel: &str, address: &str) -> Result<bool, StorageError> {
        Ok(self.optouts.contains_key(key2(channel, address))?)
    }

    /// One conversation.
    pub fn conversation(&self, id: u64) -> Result<Option<Conversation>, StorageError> {
        match self.conversations.get(id.to_be_bytes())? {
            Some(b) => Ok(Some(decode("conversations", &b)?)),
            None => Ok(None),
        }
    }

    /// Every conversation that `keep` accepts, most recently updated first.
    pub fn conversations(
        &self,
        keep: impl Fn(&Conversation) -> bool,
    ) -> Result<Vec<Conversation>, StorageError> {
        let mut out = Vec::new();
        for item in self.conversations.iter() {
            let (_, v) = item?;
            let c: Conversation = decode("conversations", &v)?;
            if keep(&c) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// One page of the conversations `keep` accepts, most recently updated first: those after
    /// `after` (the last of the previous page), updated at or after `updated_since`, at most
    /// `limit`. A conversation created or updated between two pages sorts before the cursor:
    /// the pages that follow never repeat one, and a client finds the ones that moved with
    /// `updated_since`. (This filters a scan of every conversation; serving the views from
    /// indexes is issue 12's next step.)
    pub fn conversation_page(
        &self,
        keep: impl Fn(&Conversation) -> bool,
        after: Option<ConversationCursor>,
        updated_since: Option<u64>,
        limit: usize,
    ) -> Result<Page<Conversation, ConversationCursor>, StorageError> {
        let mut all = self.conversations(|c| {
            updated_since.is_none_or(|t| c.updated_at >= t)
                && after.is_none_or(|cursor| cursor.is_before(c))
                && keep(c)
        })?;
        let more = all.len() > limit;
        all.truncate(limit);
        let next = more
            .then(|| all.last().map(ConversationCursor::of))
            .flatten();
        Ok(Page { items: all, next })
    }

    /// Up to `limit` messages of a conversation in order, after sequence number `after`, and
    /// the cursor of the next page if there is one: a range read, not a scan.
    pub fn message_page(
        &self,
        conversation: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<Message, u64>, StorageError> {
        let start = message_key(conversation, after.map_or(0, |seq| seq.saturating_add(1)));
        let end = message_key(conversation, u64::MAX);
        let mut items = Vec::with_capacity(limit.min(256));
        let mut more = false;
        for item in self.messages.range(start..=end) {
            let (_, v) = item?;
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(decode::<Message>("messages", &v)?);
        }
        let next = more.then(|| items.last().map(|m| m.seq)).flatten();
        Ok(Page { items, next })
    }

    /// A conversation's messages in order.
    pub fn messages(&self, conversation: u64) -> Result<Vec<Message>, StorageError> {
        self.messages
            .scan_prefix(conversation.to_be_bytes())
            .map(|item| {
                let (_, v) = item?;
                decode("messages", &v)
            })
            .collect()
    }

    /// One message.
    pub fn message(&self, conversation: u64, seq: u64) -> Result<Option<Message>, StorageError> {
        match self.messages.get(message_key(conversation, seq))? {
            Some(b) => Ok(Some(decode("messages", &b)?)),
            None => Ok(None),
        }
    }

    /// Changes one conversation atomically. `f` sees the current state and either changes it
    /// (returning a value) or refuses; the `queued` and `owned` indexes follow.
    pub fn update_conversation<T>(
        &self,
        id: u64,
        f: impl Fn(&mut Conversation) -> Result<T, Rejection>,
    ) -> Result<(Conversation, T), UpdateError> {
        let trees = (&self.conversations, &self.queued, &self.owned);
        let out = trees.transaction(|(convs, queued, owned)| {
            let abort = |e: UpdateError| ConflictableTransactionError::Abort(e);
            let old = match convs.get(id.to_be_bytes())? {
                Some(b) => decode::<Conversation>("conversations", &b)
                    .map_err(|e| abort(UpdateError::Storage(e)))?,
                None => return Err(abort(UpdateError::Rejected(Rejection::NotFound))),
            };
            let mut new = old.clone();
            let value = f(&mut new).map_err(|r| abort(UpdateError::Rejected(r)))?;
            put_conversation(convs, queued, owned, Some(&old), &new).map_err(|e| match e {
                ConflictableTransactionError::Abort(e) => abort(UpdateError::Storage(e)),
                ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
                ConflictableTransactionError::Storage(e) => {
                    ConflictableTransactionError::Storage(e)
                }
            })?;
            Ok((new, value))
        })?;
        Ok(out)
    }

    /// Opens a conversation from `agent` to `customer` on `channel`, or takes over the existing
    /// one; refuses when another agent owns it.
    pub fn start_conversation(
        &self,
        channel: &str,
        customer: &str,
        queue: &str,
        agent: &str,
        now: u64,
    ) -> Result<Conversation, UpdateError> {
        let trees = (
            &self.conversations,
            &self.conversation_keys,
            &self.queued,
            &self.owned,
        );
        let out = trees.transaction(|(convs, keys, queued, owned)| {
            let abort = |e: UpdateError| ConflictableTransactionError::Abort(e);
            let storage = |e: StorageError| abort(UpdateError::Storage(e));
            let conv_key = key2(channel, customer);
            let existing = match keys.get(&conv_key)? {
                Some(id) => {
                    let id = u64::from_be_bytes(id.as_ref().try_into().map_err(|_| {
                        storage(StorageError::Corrupt {
                            tree: "conversation_keys",
                            reason: "id is not 8 bytes".into(),
                        })
                    })?);
                    match convs.get(id.to_be_bytes())? {
                        Some(b) => Some(decode::<Conversation>("conversations", &b).map_err(storage)?),
                        None => None,
                    }
                }
                None => None,
            };
            let mut conv = match &existing {
                Some(c) => {
                    if c.state == ConversationState::Assigned
                        && let Some(owner) = &c.owner
                        && owner != agent
                    {
                        return Err(abort(UpdateError::Rejected(Rejection::Conflict(format!(
                            "a conversation with {customer} on {channel} exists and is owned by {owner}"
                        )))));
                    }
                    c.clone()
                }
                None => {
                    let id = next_conversation_id(keys)?;
                    keys.insert(conv_key, &id.to_be_bytes())?;
                    Conversation::new(id, channel, customer, queue, now)
                }
            };
            conv.assign(agent);
            conv.updated_at = now;
            put_conversation(convs, queued, owned, existing.as_ref(), &conv).map_err(|e| match e {
                ConflictableTransactionError::Abort(e) => storage(e),
                ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
                ConflictableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
            })?;
            Ok(conv)
        })?;
        Ok(out)
    }

    /// Adds a message to a conversation and queues it for sending, atomically. With an agent
    /// as `author`, a closed conversation or one owned by another agent is refused, and the
    /// first agent to reply to a queued conversation takes it. `author = None` is the host
    /// itself (an offline notice): it takes nothing.
    pub fn add_outbound(
        &self,
        conversation: u64,
        author: Option<&str>,
        draft: OutboundDraft,
        now: u64,
    ) -> Result<(Conversation, Message), UpdateError> {
        let trees = (
            &self.conversations,
            &self.messages,
            &self.outbox,
            &self.queued,
            &self.owned,
        );
        let out = trees.transaction(|(convs, msgs, outbox, queued, owned)| {
            let abort = |e: UpdateError| ConflictableTransactionError::Abort(e);
            let storage = |e: StorageError| abort(UpdateError::Storage(e));
            let Some(b) = convs.get(conversation.to_be_bytes())? else {
                return Err(abort(UpdateError::Rejected(Rejection::NotFound)));
            };
            let old: Conversation = decode("conversations", &b).map_err(storage)?;
            let mut conv = old.clone();
            if let Some(agent) = author {
                if conv.state == ConversationState::Closed {
                    return Err(abort(UpdateError::Rejected(Rejection::Conflict(
                        "the conversation is closed".into(),
                    ))));
                }
                if let Some(owner) = &conv.owner
                    && owner != agent
                {
                    return Err(abort(UpdateError::Rejected(Rejection::Conflict(format!(
                        "the conversation is owned by {owner}"
                    )))));
                }
                if conv.state == ConversationState::Queued {
                    conv.assign(agent);
                }
            }
            conv.last_seq += 1;
            conv.updated_at = now;
            let message = Message {
                conversation,
                seq: conv.last_seq,
                direction: Direction::Outbound,
                provider_id: None,
                text: draft.text.clone(),
                attachments: draft.attachments.clone(),
                author: author.map(str::to_owned),
                created_at: now,
                status: MessageStatus::Pending,
                error: None,
                note: None,
                template: draft.template.clone(),
            };
            let key = message_key(conversation, message.seq);
            msgs.insert(&key, encode(&message))?;
            outbox.insert(
                &key,
                encode(&OutboxEntry {
                    conversation,
                    seq: message.seq,
                    attempts: 0,
                    next_at: 0,
                }),
            )?;
            put_conversation(convs, queued, owned, Some(&old), &conv).map_err(|e| match e {
                ConflictableTransactionError::Abort(e) => storage(e),
                ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
                ConflictableTransactionError::Storage(e) => {
                    ConflictableTransactionError::Storage(e)
                }
            })?;
            Ok((conv, message))
        })?;
        Ok(out)
    }

    /// Records a channel's administrative state (`disabled`, `deleted`; `enabled` removes it).
    pub fn set_channel_state(&self, channel: &str, state: &str) -> Result<(), StorageError> {
        if state == "enabled" {
            self.channel_admin.remove(channel.as_bytes())?;
        } else {
            self.channel_admin
                .insert(channel.as_bytes(), state.as_bytes())?;
        }
        // Rare and must not be undone by a crash: flush now.
        self.channel_admin.flush()?;
        Ok(())
    }

    /// Every channel's recorded administrative state.
    pub fn channel_states(&self) -> Result<Vec<(String, String)>, StorageError> {
        self.channel_admin
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// Records a web chat visitor session: the SHA-256 of its token maps to the visitor.
    pub fn put_visitor(&self, token_hash: &[u8], visitor: &Visitor) -> Result<(), StorageError> {
        self.visitors.insert(token_hash, encode(visitor))?;
        Ok(())
    }

    /// Drops every visitor session for which `keep` is false; returns how many went.
    pub fn retain_visitors(
        &self,
        mut keep: impl FnMut(&Visitor) -> bool,
    ) -> Result<usize, StorageError> {
        let mut removed = 0;
        for item in self.visitors.iter() {
            let (k, v) = item?;
            let gone = match decode::<Visitor>("visitors", &v) {
                Ok(visitor) => !keep(&visitor),
                Err(_) => true,
            };
            if gone {
                self.visitors.remove(k)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The visitor whose token hashes to `token_hash`.
    pub fn visitor(&self, token_hash: &[u8]) -> Result<Option<Visitor>, StorageError> {
        match self.visitors.get(token_hash)? {
            Some(b) => Ok(Some(decode("visitors", &b)?)),
            None => Ok(None),
        }
    }

    /// The conversation with `address` on `channel`, if any.
    pub fn conversation_by_key(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Option<Conversation>, StorageError> {
        match self.conversation_keys.get(key2(channel, address))? {
            Some(id) => {
                let id = u64::from_be_bytes(id.as_ref().try_into().map_err(|_| {
                    StorageError::Corrupt {
                        tree: "conversation_keys",
                        reason: "id is not 8 bytes".into(),
                    }
                })?);
                self.conversation(id)
            }
            None => Ok(None),
        }
    }

    /// Ids of every queued conversation.
    pub fn queued_ids(&self) -> Result<Vec<u64>, StorageError> {
        self.queued
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                Ok(u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                    StorageError::Corrupt {
                        tree: "queued",
                        reason: "key is not 8 bytes".into(),
                    }
                })?))
            })
            .collect()
    }

    /// How many open conversations `agent` owns.
    pub fn owned_count(&self, agent: &str) -> u32 {
        let mut prefix = agent.as_bytes().to_vec();
        prefix.push(0);
        self.owned.scan_prefix(prefix).count() as u32
    }

    /// Every agent's stored routing facts.
    pub fn agent_records(&self) -> Result<Vec<(String, AgentRecord)>, StorageError> {
        self.agents
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("agents", &v)?,
                ))
            })
            .collect()
    }

    /// Stores one agent's routing facts.
    pub fn put_agent_record(&self, agent: &str, record: &AgentRecord) -> Result<(), StorageError> {
        self.agents.insert(agent.as_bytes(), encode(record))?;
        Ok(())
    }

    /// Adds or renames a contact.
    pub fn put_contact(&self, contact: &Contact) -> Result<(), StorageError> {
        self.contacts
            .insert(contact.address.as_bytes(), encode(contact))?;
        Ok(())
    }

    /// The contact with this address.
    pub fn contact(&self, address: &str) -> Result<Option<Contact>, StorageError> {
        match self.contacts.get(address.as_bytes())? {
            Some(b) => Ok(Some(decode("contacts", &b)?)),
            None => Ok(None),
        }
    }

    /// The whole directory, by address.
    pub fn contacts(&self) -> Result<Vec<Contact>, StorageError> {
        self.contacts
            .iter()
            .map(|item| decode("contacts", &item?.1))
            .collect()
    }

    /// Appends an event to the log and returns it with its id.
    pub fn append_event(
        &self,
        kind: &str,
        audience: Vec<String>,
        conversation: Option<u64>,
        data: serde_json::Value,
        now: u64,
    ) -> Result<StoredEvent, StorageError> {
        let id = self.db.generate_id()? + 1;
        let event = StoredEvent {
            id,
            kind: kind.to_owned(),
            audience,
            conversation: conversation.map(|c| c.to_string()),
            data,
            at: now,
        };
        self.events.insert(id.to_be_bytes(), encode(&event))?;
        Ok(event)
    }

    /// The id of the newest logged event.
    pub fn last_event_id(&self) -> Option<u64> {
        let (k, _) = self.events.last().ok()??;
        Some(u64::from_be_bytes(k.as_ref().try_into().ok()?))
    }

    /// Events after `after` in order, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StorageError> {
        self.events
            .range((after + 1).to_be_bytes()..)
            .take(limit)
            .map(|item| decode("events", &item?.1))
            .collect()
    }

    /// Every send waiting in the outbox (after a restart: the ones to resume).
    pub fn pending_sends(&self) -> Result<Vec<OutboxEntry>, StorageError> {
        self.outbox
            .iter()
            .map(|item| {
                let (_, v) = item?;
                decode("outbox", &v)
            })
            .collect()
    }

    /// Records a send's outcome and takes it out of the outbox, atomically.
    pub fn complete_send(
        &self,
        channel: &str,
        conversation: u64,
        seq: u64,
        outcome: Result<String, String>,
    ) -> Result<Option<Message>, StorageError> {
        let key = message_key(conversation, seq);
        let trees = (&self.messages, &self.sent_ids, &self.outbox);
        let out = trees.transaction(|(msgs, sent, outbox)| {
            outbox.remove(&key)?;
            let Some(b) = msgs.get(key)? else {
                return Ok(None);
            };
            let mut message: Message = tx_decode("messages", &b)?;
            match &outcome {
                Ok(provider_id) => {
                    message.provider_id = Some(provider_id.clone());
                    // A retry note from an earlier attempt no longer applies.
                    message.error = None;
                    if status_advances(message.status, MessageStatus::Queued) {
                        message.status = MessageStatus::Queued;
                    }
                    sent.insert(key2(channel, provider_id), &key)?;
                }
                Err(reason) => {
                    message.status = MessageStatus::Failed;
                    message.error = Some(reason.clone());
                }
            }
            msgs.insert(&key, encode(&message))?;
            Ok(Some(message))
        })?;
        Ok(out)
    }

    /// The outbox entry of one send, if it is still waiting.
    pub fn outbox_entry(
        &self,
        conversation: u64,
        seq: u64,
    ) -> Result<Option<OutboxEntry>, StorageError> {
        match self.outbox.get(message_key(conversation, seq))? {
            Some(b) => Ok(Some(decode("outbox", &b)?)),
            None => Ok(None),
        }
    }

    /// Records a failed attempt that will be retried, atomically: the outbox entry gets the
    /// attempt count and when the next attempt is due, and the message (still `pending`) gets
    /// `note` as its error. Does nothing (returns `None`) when the send is no longer waiting.
    pub fn record_retry(
        &self,
        conversation: u64,
        seq: u64,
        attempts: u32,
        next_at: u64,
        note: &str,
    ) -> Result<Option<Message>, StorageError> {
        let key = message_key(conversation, seq);
        let trees = (&self.messages, &self.outbox);
        let out = trees.transaction(|(msgs, outbox)| {
            if outbox.get(key)?.is_none() {
                return Ok(None);
            }
            outbox.insert(
                &key,
                encode(&OutboxEntry {
                    conversation,
                    seq,
                    attempts,
                    next_at,
                }),
            )?;
            let Some(b) = msgs.get(key)? else {
                return Ok(None);
            };
            let mut message: Message = tx_decode("messages", &b)?;
            if message.status == MessageStatus::Pending {
                message.error = Some(note.to_owned());
                msgs.insert(&key, encode(&message))?;
            }
            Ok(Some(message))
        })?;
        Ok(out)
    }

    /// Marks `address` as opted out of `channel` (or opted back in), as an opt-out webhook
    /// event would; later sends to it are refused before any provider call.
    pub fn set_opted_out(
        &self,
        channel: &str,
        address: &str,
        opted_out: bool,
    ) -> Result<(), StorageError> {
        let key = key2(channel, address);
        if opted_out {
            let now = crate::sandbox::Clock::System.now_millis();
            self.optouts.insert(key, &now.to_be_bytes())?;
        } else {
            self.optouts.remove(key)?;
        }
        Ok(())
    }
}

/// The group-commit loop: each flush covers every write registered before it started.
async fn flusher(db: sled::Db, d: Arc<Durability>) {
    loop {
        d.kick.notified().await;
        if d.failed.get().is_some() {
            // Out of service: every flush would fail; waiting writers fail at once instead.
            d.flushed.send_modify(|_| {});
            continue;
        }
        let target = d.written.load(Ordering::SeqCst);
        if target <= *d.flushed.borrow() {
            continue;
        }
        let mark = d.mark.stage(&db, false);
        match db.flush_async().await {
            Ok(_) => {
                d.flushed.send_replace(target);
                if let Some(mark) = mark {
                    d.mark.commit(mark);
                }
            }
            Err(e) => {
                d.record(&e);
                if d.failed.get().is_none() {
                    tracing::error!("storage flush failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                d.kick.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> ConversationTarget {
        ConversationTarget::Queue {
            queue: "q".into(),
            skills: vec![],
        }
    }

    fn msg(id: &str, from: &str) -> InboundEvent {
        InboundEvent::Message {
            provider_id: id.into(),
            from: from.into(),
            text: Some("hi".into()),
            attachments: vec![],
            contact_name: None,
            thread: vec![],
            note: None,
        }
    }

    #[tokio::test]
    async fn duplicate_provider_ids_are_stored_once() {
        let dir = tempdir();
        let s = Storage::open(&dir).unwrap();
        let r1 = s.ingest("sms", &q(), &[msg("SM1", "+1555")], 1).unwrap();
        let r2 = s
            .ingest("sms", &q(), &[msg("SM1", "+1555"), msg("SM2", "+1555")], 2)
            .unwrap();
        assert_eq!((r1.stored, r1.duplicates, r1.to_route.len()), (1, 0, 1));
        assert_eq!((r2.stored, r2.duplicates, r2.to_route.len()), (1, 1, 0));
        s.wait_durable().await.unwrap();
        let convs = s.conversations(|_| true).unwrap();
        assert_eq!(convs.len(), 1);
        assert_eq!(s.messages(convs[0].id).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn status_never_moves_backwards() {
        let dir = tempdir();
        let s = Storage::open(&dir).unwrap();
        s.ingest("sms", &q(), &[msg("SM1", "+1555")], 1).unwrap();
        let conv = s.conversations(|_| true).unwrap()[0].id;
        let (_, m) = s
            .add_outbound(
                conv,
                Some("a"),
                OutboundDraft {
                    text: Some("yo".into()),
                    ..Default::default()
                },
                2,
            )
            .unwrap();
        s.complete_send("sms", conv, m.seq, Ok("SMout".into()))
            .unwrap();
        let status = |st| InboundEvent::Status {
            provider_id: "SMout".into(),
            status: st,
            error: None,
        };
        s.ingest("sms", &q(), &[status(MessageStatus::Delivered)], 3)
            .unwrap();
        let r = s
            .ingest("sms", &q(), &[status(MessageStatus::Sent)], 4)
            .unwrap();
        assert_eq!(r.statuses_ignored, 1);
        assert_eq!(
            s.message(conv, m.seq).unwrap().unwrap().status,
            MessageStatus::Delivered
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_webhooks_share_batches_without_losing_order_or_idempotency() {
        let dir = tempdir();
        let s = Storage::open(&dir).unwrap();
        // 200 webhooks at once: 100 messages from one sender, each delivered twice (a provider
        // retry racing its original), plus 100 other senders' first messages.
        let mut tasks = Vec::new();
        for i in 0..100 {
            for _ in 0..2 {
                let s = s.clone();
                let event = msg(&format!("SMsame{i}"), "+1555");
                tasks.push(tokio::spawn(async move {
                    s.ingest_batched("sms".into(), q(), vec![event], i).await
                }));
            }
            let s = s.clone();
            let event = msg(&format!("SMother{i}"), &format!("+1666{i:04}"));
            tasks.push(tokio::spawn(async move {
                s.ingest_batched("sms".into(), q(), vec![event], i).await
            }));
        }
        let mut stored = 0;
        let mut duplicates = 0;
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            stored += r.stored;
            duplicates += r.duplicates;
        }
        assert_eq!((stored, duplicates), (200, 100));
        s.wait_durable().await.unwrap();
        let convs = s.conversations(|_| true).unwrap();
        assert_eq!(convs.len(), 101);
        let same = convs.iter().find(|c| c.customer == "+1555").unwrap();
        let seqs: Vec<u64> = s.messages(same.id).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
        assert_eq!(same.last_seq, 100);
    }

    #[test]
    fn a_failed_write_is_named_in_the_os_words_however_often_sled_wrapped_it() {
        let os = std::io::Error::from_raw_os_error(28);
        let once = std::io::Error::new(os.kind(), format!("{os:?}"));
        let twice = std::io::Error::new(once.kind(), format!("{once:?}"));
        let want = format!("No space left on device ({})", os.kind());
        assert_eq!(os_message(&once), want);
        assert_eq!(os_message(&twice), want);
    }

    #[test]
    fn a_database_behind_its_flush_mark_is_refused_as_corrupt() {
        let dir = tempdir();
        let db = sled::Config::new().path(&dir).open().unwrap();
        let mark = FlushMark::check(&db, &dir).expect("a new database has no mark");
        let staged = mark.stage(&db, true).unwrap();
        db.flush().unwrap();
        mark.commit(staged);
        assert!(FlushMark::check(&db, &dir).is_ok());
        // What sled leaves of a damaged file: the records holding the latest mark are gone.
        db.remove(FlushMark::KEY).unwrap();
        let err = FlushMark::check(&db, &dir).err().expect("refused");
        assert!(
            matches!(&err, StorageError::CorruptDatabase { dir: d, .. } if *d == dir),
            "{err}"
        );
        assert!(err.to_string().contains("move it aside"), "{err}");
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "plugboard-storage-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
