//! One webhook's events applied inside a sled transaction: messages stored once per provider
//! id, conversations created or reopened, statuses moved forward only, opt-changes applied
//! once. The intake thread (`batch`) runs many webhooks' [`IngestTx::apply`] in one
//! transaction.

use std::collections::HashSet;

use sled::Tree;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::codec::{be_u64, decode, encode, key2, message_key};
use super::index;
use crate::model::{
    Conversation, ConversationState, ConversationTarget, Direction, InboundEvent, IngestReport,
    Message, MessageStatus, OptChange, StoredInbound, status_advances,
};
use crate::store::StoreError;

/// A transaction step's result: aborting with a [`StoreError`].
pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

/// Writes a conversation and keeps the conversation index in step with it.
pub(super) fn put_conversation(
    convs: &TransactionalTree,
    index: &TransactionalTree,
    old: Option<&Conversation>,
    new: &Conversation,
) -> TxResult<()> {
    index::update(index, old, new)?;
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
}

impl<'a> From<&'a IntakeTxTrees> for IngestTx<'a> {
    fn from(t: &'a IntakeTxTrees) -> Self {
        let (convs, keys, msgs, inbound, sent, optouts, index, _events) = t;
        IngestTx {
            convs,
            keys,
            msgs,
            inbound,
            sent,
            optouts,
            index,
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
    index: Tree,
    /// The event log, which the intake thread alone writes.
    pub(super) events: Tree,
}

impl IntakeTrees {
    /// The handles of `db`'s intake trees.
    pub(crate) fn open(db: &sled::Db) -> sled::Result<IntakeTrees> {
        Ok(IntakeTrees {
            conversations: db.open_tree("conversations")?,
            conversation_keys: db.open_tree("conversation_keys")?,
            messages: db.open_tree("messages")?,
            inbound_ids: db.open_tree("inbound_ids")?,
            sent_ids: db.open_tree("sent_ids")?,
            optouts: db.open_tree("optouts")?,
            index: db.open_tree(super::INDEX_TREE)?,
            events: db.open_tree("events")?,
        })
    }

    /// The trees as one `Transactional` tuple.
    #[allow(clippy::type_complexity)]
    pub(crate) fn trees(&self) -> (&Tree, &Tree, &Tree, &Tree, &Tree, &Tree, &Tree, &Tree) {
        (
            &self.conversations,
            &self.conversation_keys,
            &self.messages,
            &self.inbound_ids,
            &self.sent_ids,
            &self.optouts,
            &self.index,
            &self.events,
        )
    }
}

/// The senders whose every message in `events` was stored before: this call is a provider's
/// retry for them, so the opt-outs and opt-ins it carries for them were applied already.
fn retried_senders<'e>(
    inbound: &TransactionalTree,
    channel: &str,
    events: &'e [InboundEvent],
) -> TxResult<HashSet<&'e str>> {
    let mut retried = HashSet::new();
    let mut fresh = HashSet::new();
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
    /// Applies one webhook's events (see [`crate::store::Store::intake`]).
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
            index,
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
                    let existing = tx_conversation_by_key(convs, keys, channel, from)?;
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
                    put_conversation(convs, index, existing.as_ref(), &conv)?;
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
                    let mut message: Message = decode("messages", &bytes).map_err(abort)?;
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
