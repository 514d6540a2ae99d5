//! The storage interface: every durable thing the host keeps, behind one `dyn`-usable trait
//! that a backend implements (sled, the embedded default, in [`sled`]; PostgreSQL next).
//!
//! Two promises hold for every backend:
//! - **a write is durable when it returns**: group commit lives inside the backend, so no
//!   caller waits for a flush of its own, and no provider gets its 2xx, nor an agent a 201,
//!   before the write is on disk;
//! - **lists are served by indexes**: a [`ConversationQuery`] names the index ranges it reads
//!   ([`Selector`]s), and a page of `limit` costs about `limit` reads however many
//!   conversations are stored.
//!
//! [`conformance`] states each operation's contract as a test any backend must pass.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{
    AgentRecord, AgentSession, Contact, Conversation, ConversationState, ConversationTarget,
    Failover, InboundEvent, IngestReport, Message, OutboundDraft, OutboxEntry, Rejection,
    StoredEvent, StoredInbound, Visitor,
};

pub mod conformance;
mod jobs;
pub mod postgres;
pub mod rules;
pub mod sled;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("storage: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("storage: corrupt record in {tree}: {reason}")]
    Corrupt {
        /// Where it is kept.
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
    /// Another process has the database open.
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
        /// What the backend reported.
        reason: String,
    },
    /// The data was written by a newer release whose records this one cannot read.
    #[error(
        "the data in {} has schema version {found}, newer than this release's {supported}: run the release that wrote it",
        dir.display()
    )]
    NewerSchema {
        /// The database directory.
        dir: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this release reads.
        supported: u32,
    },
    /// A disk write failed earlier (disk full, I/O error): nothing more is acknowledged
    /// until the process restarts.
    #[error(
        "storage is out of service since a disk write failed ({0}); restart plugboard once the disk is fixed (free space, for a full disk)"
    )]
    OutOfService(String),
}

/// A conversation change that failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The change was refused.
    #[error("refused: {0:?}")]
    Rejected(Rejection),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConversationCursor {
    /// The last listed conversation's `updated_at`.
    pub updated_at: u64,
    /// Its id.
    pub id: u64,
}

impl ConversationCursor {
    /// The cursor just after `c`.
    pub fn of(c: &Conversation) -> ConversationCursor {
        ConversationCursor {
            updated_at: c.updated_at,
            id: c.id,
        }
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

/// One index range of conversations a list reads: a backend keeps an index per kind, ordered
/// most recently updated first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The conversations of `queue` in `state`.
    Queue {
        /// The queue.
        queue: String,
        /// The state.
        state: ConversationState,
    },
    /// The open conversations `agent` owns (assigned to them).
    OwnedBy(String),
    /// The closed conversations `agent` handled (owned at some point).
    HandledBy(String),
}

/// A typed list query: the conversations any of `any_of` selects (each once), narrowed by
/// the optional `channel`, `queue`, `state` and `owner`, updated at or after `updated_since`,
/// after `after`, at most `limit`. The selectors are what the backend's indexes serve; the
/// narrowing filters what they yield.
#[derive(Debug, Clone, Default)]
pub struct ConversationQuery {
    /// The index ranges to merge (none: an empty list).
    pub any_of: Vec<Selector>,
    /// Only conversations on this channel.
    pub channel: Option<String>,
    /// Only conversations of this queue.
    pub queue: Option<String>,
    /// Only conversations in this state.
    pub state: Option<ConversationState>,
    /// Only conversations this agent owns (assigned, or closed by them last).
    pub owner: Option<String>,
    /// Only conversations updated at or after this time, Unix milliseconds.
    pub updated_since: Option<u64>,
    /// The cursor of the previous page.
    pub after: Option<ConversationCursor>,
    /// The page size.
    pub limit: usize,
}

impl ConversationQuery {
    /// Whether `c` passes the narrowing filters.
    pub fn narrows_to(&self, c: &Conversation) -> bool {
        self.channel.as_ref().is_none_or(|ch| *ch == c.channel)
            && self.queue.as_ref().is_none_or(|q| *q == c.queue)
            && self.state.is_none_or(|s| s == c.state)
            && self
                .owner
                .as_ref()
                .is_none_or(|o| Some(o) == c.owner.as_ref())
    }
}

/// An event to append to the log; the store gives it its id.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What happened (`message`, `offered`, ...).
    pub kind: String,
    /// The agents it concerns.
    pub audience: Vec<String>,
    /// The conversation, if any.
    pub conversation: Option<u64>,
    /// The details.
    pub data: serde_json::Value,
}

/// What intake logs about each message it stores, decided by the services and appended by the
/// store in the same write as the message (so a webhook costs one write, and the log never
/// misses a stored message).
pub trait IntakeNotices: Send + Sync {
    /// The events for `message`, stored on `channel`; `new_contact` when its conversation was
    /// created by this intake and the customer is not in the contact directory.
    fn notices(&self, channel: &str, message: &StoredInbound, new_contact: bool) -> Vec<NewEvent>;
}

/// What [`Store::add_outbound_with`] logs about the reply it wrote, decided by the services.
pub type OutboundNotices<'a> = &'a (dyn Fn(&Conversation, &Message) -> Vec<NewEvent> + Send + Sync);

/// What [`Store::complete_send_with`] logs about the send it recorded, decided by the services.
pub type SendNotices<'a> = &'a (dyn Fn(&Message) -> Vec<NewEvent> + Send + Sync);

/// Intake that logs nothing about the messages it stores.
pub struct NoNotices;

impl IntakeNotices for NoNotices {
    fn notices(&self, _: &str, _: &StoredInbound, _: bool) -> Vec<NewEvent> {
        Vec::new()
    }
}

/// What [`Store::claim_nonce`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceClaim {
    /// First use within the window: it is now claimed for this message.
    Claimed,
    /// Used before for the same message: the provider retrying one delivery.
    Retry,
    /// Used before for a different message: a replayed signature.
    Replayed,
}

/// A conversation change run against the current record, inside the backend's atomic
/// update: it changes the record or refuses. It may run more than once (a backend retries on
/// a conflicting concurrent write), so it must only depend on the record it is given.
pub type Change<'a> = dyn Fn(&mut Conversation) -> Result<(), Rejection> + Send + Sync + 'a;

/// Which visitor sessions are over, for [`Store::expire_visitors`].
pub type VisitorExpiry<'a> = dyn Fn(&Visitor) -> bool + Send + Sync + 'a;

/// A send's outcome, for [`Store::complete_send`]: the provider's message id, or why it failed
/// for good.
pub type SendOutcome = Result<String, String>;

/// A role one host at a time plays among the hosts sharing a store (the dispatcher), held
/// while [`Leadership::is_held`]; dropping it gives the role up.
pub struct Leadership {
    held: tokio::sync::watch::Receiver<bool>,
    _release: Box<dyn Send + Sync>,
}

impl Leadership {
    /// A role held for as long as the process lives: the only host of an embedded store.
    pub fn sole() -> Leadership {
        let (keep, held) = tokio::sync::watch::channel(true);
        Leadership {
            held,
            _release: Box::new(keep),
        }
    }

    /// A role held while `held` says so; `release`, dropped with it, gives the role up.
    pub fn new(
        held: tokio::sync::watch::Receiver<bool>,
        release: Box<dyn Send + Sync>,
    ) -> Leadership {
        Leadership {
            held,
            _release: release,
        }
    }

    /// Whether the role is still held (the backend can still vouch for it).
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits until the role is lost.
    pub async fn lost(&mut self) {
        let _ = self.held.wait_for(|held| !*held).await;
    }
}

/// Everything the host keeps. Every write is durable when it returns.
#[async_trait]
pub trait Store: Send + Sync {
    /// Why storage is out of service, if it is (a disk write failed; the database cannot be
    /// reached), in words for an operator: `/healthz` answers 503 with it.
    fn failure(&self) -> Option<String>;

    /// Whether other hosts write to this store too: their events, conversations and sends
    /// appear without this host's doing, so it must follow the event log and claim sends.
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes `role` if no other host sharing the store holds it; `None` when one does. The
    /// role is lost when this host's hold on it ends (its database session dies with it).
    async fn try_lead(&self, role: &str) -> Result<Option<Leadership>, StoreError> {
        let _ = role;
        Ok(Some(Leadership::sole()))
    }

    /// Records each intake batch's size and commit time into `metrics` from now on (the first
    /// call wins; a backend without batches records nothing).
    fn observe(&self, metrics: crate::metrics::Metrics) {
        let _ = metrics;
    }

    /// Makes everything durable before the process exits (a clean shutdown).
    async fn close(&self) -> Result<(), StoreError>;

    /// Applies one webhook's events atomically: each message is stored once per provider id,
    /// conversations are created (or reopened when closed: back to the queue, unowned, with
    /// their history), statuses only move forward, opt-changes apply once. With the messages,
    /// the events `notices` names for them are appended to the log, in the same write; the
    /// report carries them ([`IngestReport::events`]).
    async fn intake_with(
        &self,
        channel: &str,
        target: &ConversationTarget,
        events: Vec<InboundEvent>,
        now: u64,
        notices: Arc<dyn IntakeNotices>,
    ) -> Result<IngestReport, StoreError>;

    /// [`Store::intake_with`] logging nothing.
    async fn intake(
        &self,
        channel: &str,
        target: &ConversationTarget,
        events: Vec<InboundEvent>,
        now: u64,
    ) -> Result<IngestReport, StoreError> {
        self.intake_with(channel, target, events, now, Arc::new(NoNotices))
            .await
    }

    /// Claims a single-use value a provider's signature covers (Mailgun's `token`) for the
    /// message `provider_id` under `scope` (the plugin) until `now + window_ms`. Of two calls
    /// racing with one value, one claims it. An expired claim counts as absent.
    async fn claim_nonce(
        &self,
        scope: &str,
        nonce: &str,
        provider_id: &str,
        now: u64,
        window_ms: u64,
    ) -> Result<NonceClaim, StoreError>;

    /// One conversation.
    async fn conversation(&self, id: u64) -> Result<Option<Conversation>, StoreError>;

    /// The conversation with `address` on `channel`, if any.
    async fn conversation_by_key(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Option<Conversation>, StoreError>;

    /// One page of a list query, most recently updated first. A conversation updated between
    /// two pages sorts before the cursor: later pages never repeat one, and a client finds
    /// the ones that moved with `updated_since`.
    async fn conversations(
        &self,
        query: &ConversationQuery,
    ) -> Result<Page<Conversation, ConversationCursor>, StoreError>;

    /// Ids of every queued conversation (to offer again after a restart).
    async fn queued_ids(&self) -> Result<Vec<u64>, StoreError>;

    /// How many open conversations `agent` owns.
    async fn owned_count(&self, agent: &str) -> Result<u32, StoreError>;

    /// How many conversations wait in `queue`, counted from its index.
    async fn queued_count(&self, queue: &str) -> Result<u64, StoreError>;

    /// The statistics counters of `scope` on the days `from..=to` (days since 1970-01-01, local
    /// to the zone the store counts in), read from their range without touching history.
    async fn statistics(
        &self,
        scope: crate::stats::Scope,
        from: i32,
        to: i32,
    ) -> Result<Vec<crate::stats::Counter>, StoreError>;

    /// Changes one conversation atomically: `change` sees the current record and changes it
    /// or refuses ([`UpdateError::Rejected`]; `NotFound` when there is none).
    async fn update_conversation(
        &self,
        id: u64,
        change: &Change<'_>,
    ) -> Result<Conversation, UpdateError>;

    /// Opens a conversation from `agent` to `customer` on `channel`, or takes over the existing
    /// one; refuses when another agent owns it.
    async fn start_conversation(
        &self,
        channel: &str,
        customer: &str,
        queue: &str,
        agent: &str,
        now: u64,
    ) -> Result<Conversation, UpdateError>;

    /// Up to `limit` messages of a conversation in order, after sequence number `after`.
    async fn messages(
        &self,
        conversation: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<Message, u64>, StoreError>;

    /// One message.
    async fn message(&self, conversation: u64, seq: u64) -> Result<Option<Message>, StoreError>;

    /// Adds a message to a conversation and queues it for sending, atomically. With an agent
    /// as `author`, a closed conversation or one another agent owns is refused, and the first
    /// agent to reply to a queued conversation takes it. `author = None` is the host itself
    /// (an offline notice): it takes nothing. An agent's read marker moves up to their reply.
    async fn add_outbound(
        &self,
        conversation: u64,
        author: Option<&str>,
        draft: OutboundDraft,
        now: u64,
    ) -> Result<(Conversation, Message), UpdateError>;

    /// [`Store::add_outbound`], logging the events `notices` makes of its result (the
    /// conversation and message as written) in the same durable write, so a reply costs one
    /// disk sync; returns them too. The default logs them in a second write.
    async fn add_outbound_with(
        &self,
        conversation: u64,
        author: Option<&str>,
        draft: OutboundDraft,
        now: u64,
        notices: OutboundNotices<'_>,
    ) -> Result<(Conversation, Message, Vec<StoredEvent>), UpdateError> {
        let (conv, message) = self.add_outbound(conversation, author, draft, now).await?;
        let logged = self.append_events(notices(&conv, &message), now).await?;
        Ok((conv, message, logged))
    }

    /// Adds an internal note by `author` to a conversation, open or closed: a message agents
    /// see and nothing sends (no outbox entry). The author's read marker moves up to it.
    async fn add_note(
        &self,
        conversation: u64,
        author: &str,
        text: &str,
        now: u64,
    ) -> Result<(Conversation, Message), UpdateError>;

    /// Records that `agent` has read `conversation` up to `seq`; a marker only moves forward.
    async fn mark_read(&self, agent: &str, conversation: u64, seq: u64) -> Result<(), StoreError>;

    /// `agent`'s read markers of `conversations`, in their order (0: nothing read yet).
    async fn read_marks(&self, agent: &str, conversations: &[u64]) -> Result<Vec<u64>, StoreError>;

    /// Keeps a console session under the hash of its token, dropping sessions that ended
    /// before `now`.
    async fn put_session(
        &self,
        token_hash: &[u8],
        session: &AgentSession,
        now: u64,
    ) -> Result<(), StoreError>;

    /// The session under a token's hash, if it was kept and not ended (its expiry is the
    /// caller's to check).
    async fn session(&self, token_hash: &[u8]) -> Result<Option<AgentSession>, StoreError>;

    /// Ends a session (sign-out): later requests with its token find none.
    async fn end_session(&self, token_hash: &[u8]) -> Result<(), StoreError>;

    /// Every send waiting in the outbox, by conversation, then in the order queued.
    async fn pending_sends(&self) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The outbox entry of one send, if it is still waiting.
    async fn outbox_entry(
        &self,
        conversation: u64,
        seq: u64,
    ) -> Result<Option<OutboxEntry>, StoreError>;

    /// Records that `host` is alive at `now`, with event streams of `agents` open on it. Only
    /// a store other hosts share keeps it (see [`Store::orphaned_agents`]); such a backend may
    /// measure both with a clock of its own instead of the hosts' (which may disagree).
    async fn beat(&self, host: &str, agents: &[String], now: u64) -> Result<(), StoreError> {
        let _ = (host, agents, now);
        Ok(())
    }

    /// The agents whose every open event stream was on a host not heard from since
    /// `now - window_ms`; those hosts' records are dropped, so each agent is returned once,
    /// to one caller.
    async fn orphaned_agents(&self, now: u64, window_ms: u64) -> Result<Vec<String>, StoreError> {
        let _ = (now, window_ms);
        Ok(Vec::new())
    }

    /// Claims the waiting send `(conversation, seq)` for `holder` until `now + lease_ms`, so
    /// only one host attempts it: granted when nobody holds it, the claim lapsed, or `holder`
    /// holds it already (renewed). Returns the entry when granted; `None` when another holder's
    /// claim stands or the send is no longer waiting.
    async fn claim_send(
        &self,
        conversation: u64,
        seq: u64,
        holder: &str,
        now: u64,
        lease_ms: u64,
    ) -> Result<Option<OutboxEntry>, StoreError>;

    /// Records a failed attempt that will be retried: the entry gets the attempt count and
    /// when the next one is due, the message (still `pending`) gets `note` as its error.
    /// `None` when the send is no longer waiting.
    async fn record_retry(
        &self,
        conversation: u64,
        seq: u64,
        attempts: u32,
        next_at: u64,
        note: &str,
    ) -> Result<Option<Message>, StoreError>;

    /// Moves a waiting send to its fallback channel, once: the message records `failover`,
    /// the entry's attempts start again from none, due at once. Returns the message as it
    /// stands (unchanged when it had moved already); `None` when the send is no longer waiting.
    async fn move_send(
        &self,
        conversation: u64,
        seq: u64,
        failover: &Failover,
    ) -> Result<Option<Message>, StoreError>;

    /// Records a send's outcome (the provider's id, or a failure for good: the dead letter)
    /// and takes it out of the outbox, atomically. `None` when the message is gone.
    async fn complete_send(
        &self,
        channel: &str,
        conversation: u64,
        seq: u64,
        outcome: SendOutcome,
    ) -> Result<Option<Message>, StoreError>;

    /// [`Store::complete_send`], logging the events `notices` makes of the message as
    /// recorded (at `now`) in the same durable write; returns them too. The default logs them
    /// in a second write.
    async fn complete_send_with(
        &self,
        channel: &str,
        conversation: u64,
        seq: u64,
        outcome: SendOutcome,
        now: u64,
        notices: SendNotices<'_>,
    ) -> Result<Option<(Message, Vec<StoredEvent>)>, StoreError> {
        let Some(message) = self
            .complete_send(channel, conversation, seq, outcome)
            .await?
        else {
            return Ok(None);
        };
        let logged = self.append_events(notices(&message), now).await?;
        Ok(Some((message, logged)))
    }

    /// Whether `address` opted out of `channel`.
    async fn is_opted_out(&self, channel: &str, address: &str) -> Result<bool, StoreError>;

    /// Marks `address` as opted out of `channel` (or back in), as an opt-out event would.
    async fn set_opted_out(
        &self,
        channel: &str,
        address: &str,
        opted_out: bool,
        now: u64,
    ) -> Result<(), StoreError>;

    /// Every agent's stored routing facts.
    async fn agent_records(&self) -> Result<Vec<(String, AgentRecord)>, StoreError>;

    /// Stores one agent's routing facts.
    async fn put_agent_record(&self, agent: &str, record: &AgentRecord) -> Result<(), StoreError>;

    /// Adds or renames a contact.
    async fn put_contact(&self, contact: &Contact) -> Result<(), StoreError>;

    /// The contact with this address.
    async fn contact(&self, address: &str) -> Result<Option<Contact>, StoreError>;

    /// The whole directory, by address.
    async fn contacts(&self) -> Result<Vec<Contact>, StoreError>;

    /// Records a web chat visitor session under the SHA-256 of its token.
    async fn put_visitor(&self, token_hash: &[u8], visitor: &Visitor) -> Result<(), StoreError>;

    /// The visitor whose token hashes to `token_hash`.
    async fn visitor(&self, token_hash: &[u8]) -> Result<Option<Visitor>, StoreError>;

    /// Drops `channel`'s visitor sessions that `expired` says are over; returns how many.
    async fn expire_visitors(
        &self,
        channel: &str,
        expired: &VisitorExpiry<'_>,
    ) -> Result<usize, StoreError>;

    /// Records a channel's administrative state (`disabled`, `deleted`; `enabled` removes it).
    /// A deletion is final: later states for that channel are ignored (a host that has not
    /// seen the deletion yet cannot bring the channel back).
    async fn set_channel_state(&self, channel: &str, state: &str) -> Result<(), StoreError>;

    /// Every channel's recorded administrative state.
    async fn channel_states(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Stores `value` under `key` in `space`, replacing what was there: small documents the
    /// services keep for themselves (event deliveries, what an integration remembers).
    async fn put_document(&self, space: &str, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// The document under `key` in `space`, if any.
    async fn document(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The documents of `space` whose keys sort after `after` (byte order), at most `limit`,
    /// in key order.
    async fn documents(
        &self,
        space: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Removes the document under `key` in `space` (nothing if there is none).
    async fn delete_document(&self, space: &str, key: &str) -> Result<(), StoreError>;

    /// Appends an event to the log and returns it with its id (its position: ids only grow).
    async fn append_event(
        &self,
        kind: &str,
        audience: Vec<String>,
        conversation: Option<u64>,
        data: serde_json::Value,
        now: u64,
    ) -> Result<StoredEvent, StoreError> {
        let event = NewEvent {
            kind: kind.to_owned(),
            audience,
            conversation,
            data,
        };
        self.append_events(vec![event], now)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("the log took no event".into()))
    }

    /// Appends `events` to the log in order, in one durable write, and returns them with
    /// their ids (none: returns once everything written before the call is durable).
    async fn append_events(
        &self,
        events: Vec<NewEvent>,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Events after id `after` in order, at most `limit`.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// The id of the newest logged event (0 when there is none).
    async fn last_event_id(&self) -> Result<u64, StoreError>;
}

/// Every document of `space` in key order, read a page at a time (for spaces whose services
/// bound them: deliveries, kept requests, a corpus).
pub async fn all_documents(
    store: &dyn Store,
    space: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    loop {
        let after = out.last().map(|(k, _)| k.clone()).unwrap_or_default();
        let page = store.documents(space, &after, 1000).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// [`Store::update_conversation`] with a change that also returns a value: the value of the
/// run that was applied.
pub async fn update<T: Send>(
    store: &dyn Store,
    id: u64,
    change: impl Fn(&mut Conversation) -> Result<T, Rejection> + Send + Sync,
) -> Result<(Conversation, T), UpdateError> {
    let value = std::sync::Mutex::new(None);
    let conversation = store
        .update_conversation(id, &|c| {
            let v = change(c)?;
            *value.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
            Ok(())
        })
        .await?;
    let value = value
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .ok_or_else(|| {
            UpdateError::Storage(StoreError::Backend(
                "an applied change left no value".into(),
            ))
        })?;
    Ok((conversation, value))
}
