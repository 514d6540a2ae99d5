//! One webhook's events applied inside a sled transaction: messages stored once per provider
//! id, conversations created or reopened, statuses moved forward only, opt-changes applied
//! once. The intake thread (`batch`) runs many webhooks' [`IngestTx::apply`] in one
//! transaction.

use sled::Tree;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::codec::{be_u64, decode, encode, key2, message_key};
use super::counters::Counts;
use super::index;
use crate::model::{Conversation, ConversationTarget, InboundEvent, IngestReport, Message};
use crate::store::StoreError;
use crate::store::rules::{self, IntakeState};

/// A transaction step's result: aborting with a [`StoreError`].
pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

/// Writes a conversation going from `old` to `new` at `now`, keeps the conversation index in
/// step with it, and adds what the change counts to the statistics.
pub(super) fn put_conversation(
    convs: &TransactionalTree,
    index: &TransactionalTree,
    counts: Counts<'_>,
    old: Option<&Conversation>,
    new: &Conversation,
    now: u64,
) -> TxResult<()> {
    index::update(index, old, new)?;
    counts.add(&crate::stats::conversation_tallies(old, new, now))?;
    convs.insert(&new.id.to_be_bytes(), encode(new))?;
    Ok(())
}

/// One conversation, inside a transaction.
pub(super) fn tx_conversation(
    convs: &TransactionalTree,
    id: u64,
) -> TxResult<Option<Conversation>> {
    match convs.get(id.to_be_bytes())? {
        Some(b) => Ok(Some(decode("conversations", &b).map_err(abort)?)),
        None => Ok(None),
    }
}

/// The conversation `keys` maps `channel` and `address` to, inside a transaction.
pub(super) fn tx_conversation_by_key(
    convs: &TransactionalTree,
    keys: &TransactionalTree,
    channel: &str,
    address: &str,
) -> TxResult<Option<Conversation>> {
    let Some(id) = keys.get(key2(channel, address))? else {
        return Ok(None);
    };
    let id = be_u64("conversation_keys", &id).map_err(abort)?;
    match tx_conversation(convs, id)? {
        Some(c) => Ok(Some(c)),
        None => Err(abort(StoreError::Corrupt {
            tree: "conversations",
            reason: format!("conversation {id} missing"),
        })),
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
    index: &'a TransactionalTree,
    counts: Counts<'a>,
    now: u64,
}

impl<'a> IngestTx<'a> {
    /// The intake view of `t`, counting in `zone`, for a webhook taken in at `now`.
    pub(crate) fn new(t: &'a IntakeTxTrees, zone: &'a jiff::tz::TimeZone, now: u64) -> Self {
        let (convs, keys, msgs, inbound, sent, optouts, index, _events, counters) = t;
        IngestTx {
            convs,
            keys,
            msgs,
            inbound,
            sent,
            optouts,
            index,
            counts: Counts {
                tree: counters,
                zone,
            },
            now,
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
    index: Tree,
    /// The event log, which the intake thread alone writes.
    pub(super) events: Tree,
    counters: Tree,
    /// The time zone whose local days the statistics count in.
    pub(super) zone: jiff::tz::TimeZone,
}

impl IntakeTrees {
    /// The handles of `db`'s intake trees.
    pub(crate) fn open(db: &sled::Db, zone: jiff::tz::TimeZone) -> sled::Result<IntakeTrees> {
        Ok(IntakeTrees {
            conversations: db.open_tree("conversations")?,
            conversation_keys: db.open_tree("conversation_keys")?,
            messages: db.open_tree("messages")?,
            inbound_ids: db.open_tree("inbound_ids")?,
            sent_ids: db.open_tree("sent_ids")?,
            optouts: db.open_tree("optouts")?,
            index: db.open_tree(super::INDEX_TREE)?,
            events: db.open_tree("events")?,
            counters: db.open_tree(super::COUNTERS_TREE)?,
            zone,
        })
    }

    /// The trees as one `Transactional` tuple.
    #[allow(clippy::type_complexity)]
    pub(crate) fn trees(
        &self,
    ) -> (
        &Tree,
        &Tree,
        &Tree,
        &Tree,
        &Tree,
        &Tree,
        &Tree,
        &Tree,
        &Tree,
    ) {
        (
            &self.conversations,
            &self.conversation_keys,
            &self.messages,
            &self.inbound_ids,
            &self.sent_ids,
            &self.optouts,
            &self.index,
            &self.events,
            &self.counters,
        )
    }
}

/// Where `conversation_keys` keeps the next conversation id. Its other keys start with a
/// channel name, which is never empty and never starts with `0xff`.
pub(super) const NEXT_CONVERSATION_ID: &[u8] = b"\xffnext-conversation-id";

/// Takes the next conversation id: ids are dense and start at 1 in each data directory, apart
/// from the event log's positions.
pub(super) fn next_conversation_id<E>(
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

/// The prefix that keeps opt-change ids apart from message ids in the inbound-id tree.
const OPT_CHANGE_KEY: &str = "\u{1}opt-change:";

impl IngestTx<'_> {
    /// Applies one webhook's events (see [`crate::store::Store::intake`]).
    pub(crate) fn apply(
        mut self,
        channel: &str,
        target: &ConversationTarget,
        events: &[InboundEvent],
        now: u64,
    ) -> TxResult<IngestReport> {
        rules::apply_intake(&mut self, channel, target, events, now)
    }
}

impl IntakeState for IngestTx<'_> {
    type Error = ConflictableTransactionError<StoreError>;

    fn inbound_seen(&mut self, channel: &str, provider_id: &str) -> TxResult<bool> {
        Ok(self.inbound.get(key2(channel, provider_id))?.is_some())
    }

    fn conversation_by_key(
        &mut self,
        channel: &str,
        customer: &str,
    ) -> TxResult<Option<Conversation>> {
        tx_conversation_by_key(self.convs, self.keys, channel, customer)
    }

    fn next_conversation_id(&mut self) -> TxResult<u64> {
        next_conversation_id(self.keys)
    }

    fn put_inbound(
        &mut self,
        channel: &str,
        provider_id: &str,
        old: Option<&Conversation>,
        conv: &Conversation,
        message: &Message,
    ) -> TxResult<()> {
        if old.is_none() {
            self.keys
                .insert(key2(channel, &conv.customer), &conv.id.to_be_bytes())?;
        }
        let mkey = message_key(conv.id, message.seq);
        self.msgs.insert(&mkey, encode(message))?;
        self.inbound.insert(key2(channel, provider_id), &mkey)?;
        self.counts
            .add(&[crate::stats::Tally::received(channel, self.now)])?;
        put_conversation(self.convs, self.index, self.counts, old, conv, self.now)
    }

    fn sent_message(&mut self, channel: &str, provider_id: &str) -> TxResult<Option<Message>> {
        let Some(mkey) = self.sent.get(key2(channel, provider_id))? else {
            return Ok(None);
        };
        match self.msgs.get(&mkey)? {
            Some(bytes) => Ok(Some(decode("messages", &bytes).map_err(abort)?)),
            None => Ok(None),
        }
    }

    fn put_message(&mut self, message: &Message) -> TxResult<()> {
        self.msgs.insert(
            &message_key(message.conversation, message.seq),
            encode(message),
        )?;
        Ok(())
    }

    fn first_opt_application(&mut self, channel: &str, provider_id: &str) -> TxResult<bool> {
        let key = key2(channel, &format!("{OPT_CHANGE_KEY}{provider_id}"));
        Ok(self.inbound.insert(key, &[][..])?.is_none())
    }

    fn set_opted_out(
        &mut self,
        channel: &str,
        address: &str,
        opted_out: bool,
        now: u64,
    ) -> TxResult<()> {
        let key = key2(channel, address);
        if opted_out {
            self.optouts.insert(key, &now.to_be_bytes())?;
        } else {
            self.optouts.remove(key)?;
        }
        Ok(())
    }
}
