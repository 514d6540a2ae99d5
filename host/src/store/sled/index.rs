//! The conversation index: one sled tree whose keys place every conversation in the ranges the
//! lists read (its queue and state; its owner while assigned; each agent who handled it, once
//! closed), each range ordered most recently updated first. A conversation and its index
//! entries change in one transaction, and a page merges its selectors' ranges, reading about
//! `limit` entries however many conversations are stored.

use std::collections::BTreeSet;
use std::ops::Bound;

use sled::Tree;
use sled::transaction::TransactionalTree;

use crate::model::{Conversation, ConversationState};
use crate::store::{ConversationCursor, Selector, StoreError};

/// The index entries of one conversation.
pub(super) fn entries(c: &Conversation) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let place = |selector: &Selector| {
        let mut key = prefix(selector);
        key.extend_from_slice(&suffix(c.updated_at, c.id));
        key
    };
    out.insert(place(&Selector::Queue {
        queue: c.queue.clone(),
        state: c.state,
    }));
    match c.state {
        ConversationState::Assigned => {
            if let Some(owner) = &c.owner {
                out.insert(place(&Selector::OwnedBy(owner.clone())));
            }
        }
        ConversationState::Closed => {
            for agent in &c.handled_by {
                out.insert(place(&Selector::HandledBy(agent.clone())));
            }
        }
        ConversationState::Queued | ConversationState::Bot => {}
    }
    out
}

/// Keeps `index` in step with a conversation going from `old` to `new`: only the entries that
/// change are written.
pub(super) fn update(
    index: &TransactionalTree,
    old: Option<&Conversation>,
    new: &Conversation,
) -> sled::transaction::ConflictableTransactionResult<(), StoreError> {
    let before = old.map(entries).unwrap_or_default();
    let after = entries(new);
    for gone in before.difference(&after) {
        index.remove(gone.as_slice())?;
    }
    for added in after.difference(&before) {
        index.insert(added.as_slice(), id_value(new.id).as_slice())?;
    }
    Ok(())
}

/// The entry's value: the conversation id (the key's suffix holds it too, inverted).
fn id_value(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn state_byte(state: ConversationState) -> u8 {
    match state {
        ConversationState::Queued => b'q',
        ConversationState::Assigned => b'a',
        ConversationState::Closed => b'c',
        ConversationState::Bot => b'b',
    }
}

/// Where a selector's range starts: a tag, the state (for queues), the name, NUL.
pub(super) fn prefix(selector: &Selector) -> Vec<u8> {
    let (tag, state, name) = match selector {
        Selector::Queue { queue, state } => (b'q', Some(*state), queue),
        Selector::OwnedBy(agent) => (b'o', None, agent),
        Selector::HandledBy(agent) => (b'h', None, agent),
    };
    let mut key = Vec::with_capacity(name.len() + 19);
    key.push(tag);
    if let Some(state) = state {
        key.push(state_byte(state));
    }
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key
}

/// Every queued conversation's entries start with this (whatever the queue).
pub(super) fn queued_prefix() -> [u8; 2] {
    [b'q', state_byte(ConversationState::Queued)]
}

/// The order within a range: newest first, then highest id, as ascending bytes.
fn suffix(updated_at: u64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(u64::MAX - updated_at).to_be_bytes());
    k[8..].copy_from_slice(&(u64::MAX - id).to_be_bytes());
    k
}

/// The `(updated_at, id)` an entry's key ends with.
pub(super) fn position(key: &[u8]) -> Result<(u64, u64), StoreError> {
    let corrupt = || StoreError::Corrupt {
        tree: "conversation_index",
        reason: "an entry shorter than its position".into(),
    };
    let tail = key.len().checked_sub(16).ok_or_else(corrupt)?;
    let num = |at: usize| {
        key[at..at + 8]
            .try_into()
            .map(|b| u64::MAX - u64::from_be_bytes(b))
            .map_err(|_| corrupt())
    };
    Ok((num(tail)?, num(tail + 8)?))
}

/// The ids a query's selectors hold, newest first, each once: after `after`, and not older
/// than `since`.
pub(super) struct Merge {
    ranges: Vec<std::iter::Peekable<sled::Iter>>,
    since: Option<u64>,
    last: Option<(u64, u64)>,
}

impl Merge {
    /// Opens one range per selector of `index`.
    pub(super) fn new(
        index: &Tree,
        selectors: &[Selector],
        after: Option<ConversationCursor>,
        since: Option<u64>,
    ) -> Merge {
        let ranges = selectors
            .iter()
            .map(|selector| {
                let start = prefix(selector);
                let mut end = start.clone();
                end.extend_from_slice(&[0xff; 16]);
                let from = match after {
                    Some(cursor) => {
                        let mut key = start;
                        key.extend_from_slice(&suffix(cursor.updated_at, cursor.id));
                        Bound::Excluded(key)
                    }
                    None => Bound::Included(start),
                };
                index
                    .range::<Vec<u8>, _>((from, Bound::Included(end)))
                    .peekable()
            })
            .collect();
        Merge {
            ranges,
            since,
            last: None,
        }
    }
}

impl Iterator for Merge {
    /// An entry's key and its `(updated_at, id)`.
    type Item = Result<(sled::IVec, (u64, u64)), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // The newest head among the ranges (the smallest key suffix).
            let mut best: Option<(usize, (u64, u64))> = None;
            for (i, range) in self.ranges.iter_mut().enumerate() {
                let head = match range.peek() {
                    None => continue,
                    Some(Err(_)) => {
                        let Some(Err(e)) = range.next() else {
                            unreachable!("peeked an error")
                        };
                        return Some(Err(StoreError::Backend(e.to_string())));
                    }
                    Some(Ok((key, _))) => match position(key) {
                        Ok(p) => p,
                        Err(e) => return Some(Err(e)),
                    },
                };
                if best.is_none_or(|(_, b)| head > b) {
                    best = Some((i, head));
                }
            }
            let (i, head) = best?;
            let Some(Ok((key, _))) = self.ranges[i].next() else {
                unreachable!("the head was peeked")
            };
            if self.since.is_some_and(|since| head.0 < since) {
                return None;
            }
            // The same conversation in two ranges comes out once.
            if self.last == Some(head) {
                continue;
            }
            self.last = Some(head);
            return Some(Ok((key, head)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_the_state_and_positions_read_back() {
        let mut c = Conversation::new(7, "sms", "+1", "support", 100);
        c.enqueue("support", 100);
        assert_eq!(entries(&c).len(), 1);
        c.assign("alice");
        c.updated_at = 123;
        let e = entries(&c);
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|k| position(k).unwrap() == (123, 7)));
        assert!(
            e.iter()
                .any(|k| k.starts_with(&prefix(&Selector::OwnedBy("alice".into()))))
        );
    }
}
