//! The rules every backend applies the same way, written once over what a backend reads and
//! writes: a webhook's events (messages stored once per provider id, conversations created or
//! reopened, statuses moved forward only, opt-changes applied once), an agent's reply, an
//! agent starting a conversation, and a send's outcome.
//!
//! A backend implements [`IntakeState`] over its own transaction (sled's transactional trees,
//! or PostgreSQL rows read up front and written back as sets) and calls [`apply_intake`].
//!
//! Text a provider or an agent sends is stored with any NUL character (U+0000) replaced by
//! U+FFFD on every backend: PostgreSQL's `text` and `jsonb` refuse NUL, and a message that can
//! never be stored would be retried by its provider until it gives up, then lost.

use std::collections::HashSet;

use crate::model::{
    Attachment, Conversation, ConversationState, ConversationTarget, Direction, InboundEvent,
    IngestReport, Message, MessageStatus, OutboundDraft, Rejection, StatusChange, StoredInbound,
    status_advances,
};
use crate::store::SendOutcome;

/// What intake reads and writes inside a backend's atomic write.
pub trait IntakeState {
    /// The backend's failure.
    type Error;

    /// Whether the message `provider_id` on `channel` is stored already.
    fn inbound_seen(&mut self, channel: &str, provider_id: &str) -> Result<bool, Self::Error>;

    /// The conversation with `customer` on `channel`.
    fn conversation_by_key(
        &mut self,
        channel: &str,
        customer: &str,
    ) -> Result<Option<Conversation>, Self::Error>;

    /// Takes the next conversation id (dense, from 1).
    fn next_conversation_id(&mut self) -> Result<u64, Self::Error>;

    /// Stores `message`, received on `channel` as `provider_id`, with its conversation `conv`
    /// (`old` is what was stored before; `None`: created by this intake).
    fn put_inbound(
        &mut self,
        channel: &str,
        provider_id: &str,
        old: Option<&Conversation>,
        conv: &Conversation,
        message: &Message,
    ) -> Result<(), Self::Error>;

    /// The message sent on `channel` that the provider calls `provider_id`.
    fn sent_message(
        &mut self,
        channel: &str,
        provider_id: &str,
    ) -> Result<Option<Message>, Self::Error>;

    /// Rewrites a stored message (its status moved).
    fn put_message(&mut self, message: &Message) -> Result<(), Self::Error>;

    /// Records that the opt-change `provider_id` was applied on `channel`; whether this is the
    /// first time.
    fn first_opt_application(
        &mut self,
        channel: &str,
        provider_id: &str,
    ) -> Result<bool, Self::Error>;

    /// Marks `address` as opted out of `channel` at `now`, or back in.
    fn set_opted_out(
        &mut self,
        channel: &str,
        address: &str,
        opted_out: bool,
        now: u64,
    ) -> Result<(), Self::Error>;
}

/// The senders whose every message in `events` was stored before: this call is a provider's
/// retry for them, so the opt-outs and opt-ins it carries for them were applied already.
fn retried_senders<'e, S: IntakeState>(
    state: &mut S,
    channel: &str,
    events: &'e [InboundEvent],
) -> Result<HashSet<&'e str>, S::Error> {
    let mut retried = HashSet::new();
    let mut fresh = HashSet::new();
    for event in events {
        if let InboundEvent::Message {
            provider_id, from, ..
        } = event
        {
            if state.inbound_seen(channel, provider_id)? {
                retried.insert(from.as_str());
            } else {
                fresh.insert(from.as_str());
            }
        }
    }
    retried.retain(|from| !fresh.contains(from));
    Ok(retried)
}

/// `text` with NUL characters replaced (see the module's doc).
fn scrub(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
    }
}

fn scrub_all<'a>(texts: impl IntoIterator<Item = &'a mut String>) {
    texts.into_iter().for_each(scrub);
}

fn scrub_attachments(attachments: &mut [Attachment]) {
    for a in attachments {
        scrub(&mut a.url);
        scrub_all(a.content_type.as_mut());
    }
}

/// `events` with NUL characters replaced (see the module's doc): every backend's intake
/// takes its events through this before it reads or writes anything keyed by them.
pub fn scrub_events(mut events: Vec<InboundEvent>) -> Vec<InboundEvent> {
    // Each text is searched (a `memchr`); only one with a NUL is copied.
    for event in &mut events {
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
                scrub_all([provider_id, from]);
                scrub_all(text.as_mut());
                scrub_all(contact_name.as_mut());
                scrub_all(note.as_mut());
                scrub_attachments(attachments);
                for (k, v) in thread {
                    scrub_all([k, v]);
                }
            }
            InboundEvent::Status {
                provider_id, error, ..
            } => {
                scrub(provider_id);
                scrub_all(error.as_mut());
            }
            InboundEvent::OptOut(change) | InboundEvent::OptIn(change) => {
                scrub(&mut change.address);
                scrub_all(change.provider_id.as_mut());
            }
        }
    }
    events
}

/// Applies one webhook's `events` on `channel` (see [`crate::store::Store::intake_with`]),
/// scrubbed by [`scrub_events`]; the report's `events` are left for the caller to log.
pub fn apply_intake<S: IntakeState>(
    state: &mut S,
    channel: &str,
    target: &ConversationTarget,
    events: &[InboundEvent],
    now: u64,
) -> Result<IngestReport, S::Error> {
    let mut report = IngestReport::default();
    let retried = retried_senders(state, channel, events)?;
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
                if state.inbound_seen(channel, provider_id)? {
                    report.duplicates += 1;
                    continue;
                }
                let existing = state.conversation_by_key(channel, from)?;
                let mut conv = match &existing {
                    Some(c) => c.clone(),
                    None => {
                        let id = state.next_conversation_id()?;
                        report.created.push(id);
                        let mut c = Conversation::new(id, channel, from, "", now);
                        if let ConversationTarget::Queue {
                            skills, priority, ..
                        } = target
                        {
                            c.skills = skills.clone();
                            c.priority = *priority;
                        }
                        c
                    }
                };
                let mut reopened = false;
                let rating = text.as_deref().and_then(parse_rating).filter(|_| {
                    conv.state == ConversationState::Closed
                        && conv.rating.is_none()
                        && conv.survey_until.is_some_and(|until| now <= until)
                });
                if let Some(rating) = rating {
                    // The answer to the survey: the rating, stored with the message; the
                    // conversation stays closed.
                    conv.rating = Some(rating);
                    conv.survey_until = None;
                } else if conv.state == ConversationState::Closed {
                    reopened = existing.is_some();
                    match target {
                        ConversationTarget::Queue {
                            queue,
                            skills,
                            priority,
                            bot,
                        } => {
                            conv.enqueue(queue, now);
                            conv.skills = skills.clone();
                            conv.priority = *priority;
                            match bot {
                                Some(bot) => conv.hold_for_bot(bot),
                                None => report.to_route.push(conv.id),
                            }
                        }
                        ConversationTarget::Agent(agent) => conv.assign(agent),
                    }
                }
                if conv.state == ConversationState::Bot && !report.to_bot.contains(&conv.id) {
                    report.to_bot.push(conv.id);
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
                    automated: None,
                    failover: None,
                };
                state.put_inbound(channel, provider_id, existing.as_ref(), &conv, &message)?;
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
                    held_by_bot: conv.state == ConversationState::Bot,
                    created: existing.is_none(),
                    reopened,
                });
            }
            InboundEvent::Status {
                provider_id,
                status,
                error,
            } => {
                let Some(mut message) = state.sent_message(channel, provider_id)? else {
                    report.statuses_ignored += 1;
                    continue;
                };
                if !status_advances(message.status, *status) {
                    report.statuses_ignored += 1;
                    continue;
                }
                message.status = *status;
                if error.is_some() {
                    message.error = error.clone();
                }
                state.put_message(&message)?;
                report.statuses += 1;
                report.status_changes.push(StatusChange {
                    conversation: message.conversation,
                    seq: message.seq,
                    status: message.status,
                    error: message.error.clone(),
                });
            }
            // A provider's retry of a message that carried an opt-out or opt-in without an id
            // of its own (a 0.2.0 plugin's) must not apply it again: a retried STOP arriving
            // after a later START would leave the address opted out. Changes with an id are
            // applied once by that id, below.
            InboundEvent::OptOut(change) | InboundEvent::OptIn(change)
                if change.provider_id.is_none() && retried.contains(change.address.as_str()) =>
            {
                report.duplicates += 1;
            }
            InboundEvent::OptOut(change) | InboundEvent::OptIn(change) => {
                // A provider's redelivery of a change it identifies (LINE's `unfollow` after
                // a newer `follow`) is applied once.
                if let Some(id) = &change.provider_id
                    && !state.first_opt_application(channel, id)?
                {
                    report.duplicates += 1;
                    continue;
                }
                let out = matches!(event, InboundEvent::OptOut(_));
                state.set_opted_out(channel, &change.address, out, now)?;
                report.opt_changes.push((change.address.clone(), out));
            }
        }
    }
    Ok(report)
}

/// An agent's reply (or, with `author = None`, the host's notice) added to `conv` at `now`:
/// the message to store and queue. A closed conversation or one another agent owns refuses an
/// agent; the first agent to reply to a queued conversation takes it.
pub fn add_reply(
    conv: &mut Conversation,
    author: Option<&str>,
    mut draft: OutboundDraft,
    now: u64,
) -> Result<Message, Rejection> {
    scrub_all(draft.text.as_mut());
    scrub_attachments(&mut draft.attachments);
    if let Some(t) = &mut draft.template {
        scrub_all([&mut t.name, &mut t.content_sid, &mut t.variables]);
    }
    if let Some(agent) = author {
        if conv.state == ConversationState::Closed {
            return Err(Rejection::Conflict("the conversation is closed".into()));
        }
        if let Some(owner) = &conv.owner
            && owner != agent
        {
            return Err(Rejection::Conflict(format!(
                "the conversation is owned by {owner}"
            )));
        }
        // An agent's reply to work waiting in its queue, or held by a bot (a manager stepping
        // in), takes it.
        if matches!(
            conv.state,
            ConversationState::Queued | ConversationState::Bot
        ) {
            conv.assign(agent);
        }
        conv.first_reply_at.get_or_insert(now);
    }
    conv.last_seq += 1;
    conv.updated_at = now;
    Ok(Message {
        conversation: conv.id,
        seq: conv.last_seq,
        direction: Direction::Outbound,
        provider_id: None,
        text: draft.text,
        attachments: draft.attachments,
        author: author.map(str::to_owned),
        created_at: now,
        status: MessageStatus::Pending,
        error: None,
        note: None,
        template: draft.template,
        automated: draft.automated,
        failover: None,
    })
}

/// The internal note `text` by `author` added to `conv` at `now`: the next message of it,
/// which nothing sends.
pub fn add_note(conv: &mut Conversation, author: &str, text: &str, now: u64) -> Message {
    let mut text = text.to_owned();
    scrub_all([&mut text]);
    conv.last_seq += 1;
    conv.updated_at = now;
    Message {
        conversation: conv.id,
        seq: conv.last_seq,
        direction: Direction::Note,
        provider_id: None,
        text: Some(text),
        attachments: Vec::new(),
        author: Some(author.to_owned()),
        created_at: now,
        status: MessageStatus::Received,
        error: None,
        note: None,
        template: None,
        automated: None,
        failover: None,
    }
}

/// The rating an answer to the survey gives: `1` to `5` alone (`4`, ` 5 `, `5/5`, `3.`, `5!`);
/// anything else is not an answer (the conversation reopens as usual).
pub fn parse_rating(text: &str) -> Option<u8> {
    let t = text.trim();
    let t = t.strip_suffix("/5").unwrap_or(t);
    let t = t.trim_end_matches(['.', '!', ' ']);
    match t {
        "1" | "2" | "3" | "4" | "5" => t.parse().ok(),
        _ => None,
    }
}

/// `agent` starting the conversation `conv` (the stored one with that customer, or a new
/// one) or taking it over at `now`: refused when another agent owns it.
pub fn start_by(mut conv: Conversation, agent: &str, now: u64) -> Result<Conversation, Rejection> {
    if conv.state == ConversationState::Assigned
        && let Some(owner) = &conv.owner
        && owner != agent
    {
        return Err(Rejection::Conflict(format!(
            "a conversation with {} on {} exists and is owned by {owner}",
            conv.customer, conv.channel
        )));
    }
    if conv.state == ConversationState::Closed {
        // A new contact: its times count from now.
        conv.queued_since = now;
        conv.first_reply_at = None;
    }
    conv.assign(agent);
    conv.updated_at = now;
    Ok(conv)
}

/// A send's outcome recorded on its message: the provider's id (and `queued`), or the
/// failure for good.
pub fn record_outcome(message: &mut Message, outcome: &SendOutcome) {
    match outcome {
        Ok(provider_id) => {
            message.provider_id = Some(provider_id.clone());
            // A retry note from an earlier attempt no longer applies.
            message.error = None;
            if status_advances(message.status, MessageStatus::Queued) {
                message.status = MessageStatus::Queued;
            }
        }
        Err(reason) => {
            message.status = MessageStatus::Failed;
            message.error = Some(reason.clone());
        }
    }
}

/// A failed attempt's note on a message still waiting to be sent; whether it changed.
pub fn note_retry(message: &mut Message, note: &str) -> bool {
    if message.status != MessageStatus::Pending {
        return false;
    }
    message.error = Some(note.to_owned());
    true
}

/// What a backend's reschedule of a waiting send does to its message: whether the message
/// changed, and the entry's new attempt count and due time, if they change.
pub type Reschedule = (bool, Option<(u32, u64)>);

/// A retry's reschedule: the note on the message, the entry's attempts and due time.
pub fn retried(note: &str, attempts: u32, next_at: u64) -> impl Fn(&mut Message) -> Reschedule {
    move |m| (note_retry(m, note), Some((attempts, next_at)))
}

/// A move's reschedule: the failover on the message and, only when it moved, attempts
/// starting again from none, due at once (a second move leaves the entry as it stands).
pub fn moved(failover: &crate::model::Failover) -> impl Fn(&mut Message) -> Reschedule {
    move |m| {
        let moved = record_failover(m, failover);
        (moved, moved.then_some((0, 0)))
    }
}

/// Moves a waiting send to its fallback channel, once; whether it moved (not when it is no
/// longer waiting or moved already). Its error says where it went and why until an attempt
/// there settles it.
pub fn record_failover(message: &mut Message, failover: &crate::model::Failover) -> bool {
    if message.status != MessageStatus::Pending || message.failover.is_some() {
        return false;
    }
    message.error = Some(format!(
        "moved to channel {}: {}",
        failover.to, failover.reason
    ));
    message.failover = Some(failover.clone());
    true
}

#[cfg(test)]
mod tests {
    use super::parse_rating;

    #[test]
    fn a_rating_is_one_to_five_alone() {
        for (text, rating) in [
            ("5", Some(5)),
            (" 1 ", Some(1)),
            ("4/5", Some(4)),
            ("3.", Some(3)),
            ("5!", Some(5)),
        ] {
            assert_eq!(parse_rating(text), rating, "{text:?}");
        }
        for text in ["0", "6", "10", "five", "5 stars", "it was 5", "", "4.5"] {
            assert_eq!(parse_rating(text), None, "{text:?}");
        }
    }
}
