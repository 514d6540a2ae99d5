//! Intake: what every authentic inbound call does once its channel plugin has parsed it. The
//! plugin's events are normalized (malformed ones dropped), single-use signature values
//! claimed, the events stored durably in one write, the agents concerned told, and new work
//! handed to the dispatcher (or to the bot holding it). Webhooks and the web chat share it; each maps [`IntakeError`] to
//! its own answer.

use crate::clock::Clock;
use crate::metrics::Direction;
use crate::model::{
    Attachment, ConversationTarget, InboundEvent, IngestReport, MessageStatus, OptChange,
};
use crate::runtime::bindings::wit;
use crate::services::app::App;
use crate::services::catalog::ChannelInstance;
use crate::services::channel_rules;
use crate::services::events::{self, EventHub};
use crate::services::nonce::{self, NonceError};
use crate::services::routing::Dispatcher;
use crate::store::StoreError;
use serde_json::json;

/// What intake needs: the application, the event log, the dispatcher and the outbox.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    /// Configuration, plugins, storage.
    pub app: &'a App,
    /// The event log and live streams.
    pub events: &'a EventHub,
    /// Offers waiting work.
    pub dispatcher: &'a Dispatcher,
    /// Sends the greetings of new conversations.
    pub outbox: &'a std::sync::Arc<crate::services::outbox::Outbox>,
    /// Runs the turns of the bots holding conversations.
    pub bots: &'a std::sync::Arc<crate::services::bots::Bots>,
}

/// Why an authentic call's events were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// A single-use value the signature covers was used before for another message.
    #[error("authentication failed: {}", NonceError::Replayed)]
    Replayed,
    /// Storage could not make the events durable: the provider should retry.
    #[error("storage unavailable; retry later")]
    Storage(#[source] StoreError),
}

/// The largest webhook answer a plugin may give, headers and body (the provider gets it
/// verbatim).
pub const MAX_PLUGIN_RESPONSE_BYTES: usize = 1024 * 1024;
/// The most events one webhook call may carry (Meta batches up to 1,000 updates).
pub const MAX_EVENTS_PER_CALL: usize = 1000;

/// Refuses a plugin answer too large to carry: the memory cap bounds what a plugin can hold,
/// this bounds what it can make the host store and send.
pub fn check_outcome_size(outcome: &wit::WebhookOutcome) -> Result<(), String> {
    let headers: usize = outcome
        .response
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let size = outcome.response.body.len() + headers;
    if size > MAX_PLUGIN_RESPONSE_BYTES {
        return Err(format!(
            "answered with a {size}-byte response ({headers} bytes of headers); the limit is {MAX_PLUGIN_RESPONSE_BYTES}"
        ));
    }
    if outcome.events.len() > MAX_EVENTS_PER_CALL {
        return Err(format!(
            "returned {} events; the limit is {MAX_EVENTS_PER_CALL} per call",
            outcome.events.len()
        ));
    }
    Ok(())
}

/// Stores a plugin's events durably, tells the agents concerned and hands new work to the
/// dispatcher: what every authentic inbound call does after the plugin parsed it.
pub async fn accept(
    state: Services<'_>,
    channel: &ChannelInstance,
    events: Vec<wit::Event>,
) -> Result<IngestReport, IntakeError> {
    let app = &state.app;
    let mut events = normalize(channel, events);
    let nonces = nonce::take(&mut events);
    if events.is_empty() {
        tracing::info!(channel = %channel.name, "authentic call with no event this channel handles; acknowledged");
        return Ok(Default::default());
    }
    let _intake = state.dispatcher.intake().await;
    let now = Clock::System.now_millis();
    match nonce::claim(
        app.storage.as_ref(),
        &channel.plugin.info.name,
        &nonces,
        now,
    )
    .await
    {
        Ok(()) => {}
        Err(NonceError::Replayed) => {
            tracing::warn!(channel = %channel.name, "webhook refused: replayed signature");
            return Err(IntakeError::Replayed);
        }
        Err(NonceError::Storage(e)) => {
            tracing::error!(channel = %channel.name, "claiming the call's nonce failed: {e}");
            return Err(IntakeError::Storage(e));
        }
    };
    let mut report = IngestReport::default();
    for (target, events) in classify(app, channel, events, now).await {
        let part = app
            .storage
            .intake_with(
                &channel.name,
                &target,
                events,
                now,
                state.events.intake_notices(),
            )
            .await
            .map_err(|e| {
                tracing::error!(channel = %channel.name, "storing events failed: {e}");
                IntakeError::Storage(e)
            })?;
        merge(&mut report, part);
    }
    let metrics = &app.metrics;
    metrics.messages(&channel.name, Direction::Inbound, report.stored as u64);
    for s in &report.status_changes {
        metrics.delivery(&channel.name, s.status);
    }
    tracing::info!(
        channel = %channel.name,
        stored = report.stored,
        duplicates = report.duplicates,
        statuses = report.statuses,
        statuses_ignored = report.statuses_ignored,
        "events stored"
    );
    state.events.broadcast(std::mem::take(&mut report.events));
    if !report.to_route.is_empty() {
        state.dispatcher.kick_conversations(&report.to_route);
    }
    announce_changes(state, &channel.name, &report).await;
    greet(&state, channel, &report).await;
    // After the greeting, so the bot's first answer follows it.
    if !report.to_bot.is_empty() {
        state.bots.kick(&report.to_bot);
    }
    Ok(report)
}

/// Tells the agents of each conversation a webhook changed without a new message: delivery
/// statuses (`status`) and opt-outs or opt-ins (`opted_out`, `opted_in`). They follow the
/// stored change; one lost to a crash in between is seen on the next read of the history.
async fn announce_changes(state: Services<'_>, channel: &str, report: &IngestReport) {
    let storage = &state.app.storage;
    let config = &state.app.config();
    for s in &report.status_changes {
        let Ok(Some(conv)) = storage.conversation(s.conversation).await else {
            continue;
        };
        state
            .events
            .publish(
                "status",
                events::audience(config, &conv, None),
                Some(conv.id),
                json!({"seq": s.seq, "id": format!("{}-{}", s.conversation, s.seq), "status": s.status, "error": s.error}),
            )
            .await;
    }
    for (address, out) in &report.opt_changes {
        let Ok(Some(conv)) = storage.conversation_by_key(channel, address).await else {
            continue;
        };
        state
            .events
            .publish(
                if *out { "opted_out" } else { "opted_in" },
                events::audience(config, &conv, None),
                Some(conv.id),
                json!({"address": address, "channel": channel}),
            )
            .await;
    }
}

/// Turns the plugin's events into storage events, dropping (and logging) malformed ones.
fn normalize(instance: &ChannelInstance, events: Vec<wit::Event>) -> Vec<InboundEvent> {
    let channel = instance.name.as_str();
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        match event {
            wit::Event::Message(m) => {
                if m.provider_id.is_empty() || m.from.is_empty() {
                    tracing::error!(
                        channel,
                        "plugin returned a message without provider id or sender; dropped"
                    );
                    continue;
                }
                let mut note = None;
                let mut attachments: Vec<Attachment> = m
                    .attachments
                    .into_iter()
                    .map(|a| Attachment {
                        url: a.url,
                        content_type: a.content_type,
                    })
                    .collect();
                if !instance.customer_attachments && !attachments.is_empty() {
                    note = Some(format!(
                        "{} attachment(s) dropped: customer attachments are off for channel {channel}",
                        attachments.len()
                    ));
                    attachments.clear();
                }
                let keyword = instance
                    .rules()
                    .opt_out_keywords
                    .then(|| m.text.as_deref().and_then(channel_rules::keyword))
                    .flatten();
                let change = OptChange {
                    address: m.from.clone(),
                    provider_id: Some(m.provider_id.clone()),
                };
                out.push(InboundEvent::Message {
                    provider_id: m.provider_id,
                    from: m.from,
                    text: m.text,
                    attachments,
                    contact_name: m.contact_name,
                    thread: m.thread,
                    note,
                });
                match keyword {
                    Some(channel_rules::Keyword::OptOut) => out.push(InboundEvent::OptOut(change)),
                    Some(channel_rules::Keyword::OptIn) => out.push(InboundEvent::OptIn(change)),
                    None => {}
                }
            }
            wit::Event::Status(s) => {
                let status = match s.state {
                    wit::DeliveryState::Queued => MessageStatus::Queued,
                    wit::DeliveryState::Sent => MessageStatus::Sent,
                    wit::DeliveryState::Delivered => MessageStatus::Delivered,
                    wit::DeliveryState::Read => MessageStatus::Read,
                    wit::DeliveryState::Failed => MessageStatus::Failed,
                };
                let error = match (s.error_code, s.error_message) {
                    (None, None) => None,
                    (Some(c), None) => Some(format!("provider error {c}")),
                    (None, Some(m)) => Some(m),
                    (Some(c), Some(m)) => Some(format!("provider error {c}: {m}")),
                };
                out.push(InboundEvent::Status {
                    provider_id: s.provider_id,
                    status,
                    error,
                });
            }
            wit::Event::OptOut(c) => out.push(InboundEvent::OptOut(opt_change(c))),
            wit::Event::OptIn(c) => out.push(InboundEvent::OptIn(opt_change(c))),
        }
    }
    out
}

/// The stored form of a plugin's opt-change; an empty provider id counts as none.
fn opt_change(c: wit::OptChange) -> OptChange {
    OptChange {
        address: c.address,
        provider_id: c.provider_id.filter(|id| !id.is_empty()),
    }
}

/// Sends the greeting of each conversation this intake created, when one is configured (a
/// failure is logged: the webhook's events are stored).
async fn greet(state: &Services<'_>, channel: &ChannelInstance, report: &IngestReport) {
    use crate::services::automated::{Automated, Sender, configured};
    let queue = match &channel.target {
        crate::model::ConversationTarget::Queue { queue, .. } => queue.as_str(),
        crate::model::ConversationTarget::Agent(_) => "",
    };
    if report.created.is_empty()
        || configured(
            &state.app.config(),
            &channel.name,
            queue,
            Automated::Greeting,
        )
        .is_none()
    {
        return;
    }
    let sender = Sender {
        app: state.app,
        outbox: state.outbox,
        events: state.events,
    };
    for id in &report.created {
        let sent = match state.app.storage.conversation(*id).await {
            Ok(Some(conv)) => sender.send(&conv, Automated::Greeting, None).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = sent {
            tracing::error!(conversation = id, "greeting not queued: {e}");
        }
    }
}

/// `events` grouped by where a new or reopened conversation of theirs goes: the work
/// classification rules look at each sender's first message here (the target matters only
/// when intake creates or reopens a conversation); without rules, or for a channel that feeds
/// one agent, everything goes where the channel says. The bot of the channel, else of the
/// queue decided, answers first.
async fn classify(
    app: &App,
    channel: &ChannelInstance,
    events: Vec<InboundEvent>,
    now: u64,
) -> Vec<(ConversationTarget, Vec<InboundEvent>)> {
    use crate::services::classify::{Facts, decide};
    let catalog = app.catalog();
    let ConversationTarget::Queue { queue, .. } = &channel.target else {
        return vec![(channel.target.clone(), events)];
    };
    let with_bot = |mut target: ConversationTarget| {
        if let ConversationTarget::Queue { queue, bot, .. } = &mut target {
            *bot = catalog
                .config
                .bot_for(&channel.name, queue)
                .map(str::to_owned);
        }
        target
    };
    if catalog.rules.is_empty() {
        return vec![(with_bot(channel.target.clone()), events)];
    }
    let open = catalog.queues.get(queue).is_none_or(|q| q.is_open(now));
    let needs_contact = catalog.rules.iter().any(|r| r.needs_contact());
    let mut targets: std::collections::HashMap<String, ConversationTarget> = Default::default();
    let mut groups: Vec<(ConversationTarget, Vec<InboundEvent>)> = Vec::new();
    for event in events {
        let target = match &event {
            InboundEvent::Message {
                from,
                text,
                contact_name,
                ..
            } => match targets.get(from) {
                Some(t) => t.clone(),
                None => {
                    let existing = app
                        .storage
                        .conversation_by_key(&channel.name, from)
                        .await
                        .ok()
                        .flatten();
                    // An open conversation is not moved: nothing to classify (and no
                    // classifier plugin is called for every message of a chat).
                    let open_already = existing
                        .as_ref()
                        .is_some_and(|c| c.state != crate::model::ConversationState::Closed);
                    let known = if needs_contact && !open_already {
                        Some(app.storage.contact(from).await.ok().flatten().is_some())
                    } else {
                        None
                    };
                    let facts = Facts {
                        channel: &channel.name,
                        kind: channel.kind(),
                        text: text.as_deref().unwrap_or(""),
                        known,
                        open,
                    };
                    let plugin_facts =
                        || crate::runtime::bindings::wit_conversations::ConversationFacts {
                            conversation: existing
                                .as_ref()
                                .map(|c| c.id.to_string())
                                .unwrap_or_default(),
                            channel: channel.name.clone(),
                            kind: channel.kind().to_owned(),
                            queue: queue.clone(),
                            contact: from.clone(),
                            contact_name: contact_name.clone(),
                            known_contact: known.unwrap_or(false),
                            now: now / 1000,
                        };
                    let decided = match open_already {
                        true => None,
                        false => decide(app, &catalog.rules, &facts, queue, plugin_facts).await,
                    };
                    let t = decided.unwrap_or_else(|| channel.target.clone());
                    let t = with_bot(t);
                    targets.insert(from.clone(), t.clone());
                    t
                }
            },
            _ => with_bot(channel.target.clone()),
        };
        match groups.iter_mut().find(|(t, _)| *t == target) {
            Some((_, group)) => group.push(event),
            None => groups.push((target, vec![event])),
        }
    }
    groups
}

/// Adds `part` (one group's intake) to `report`.
fn merge(report: &mut IngestReport, mut part: IngestReport) {
    report.stored += part.stored;
    report.duplicates += part.duplicates;
    report.statuses += part.statuses;
    report.statuses_ignored += part.statuses_ignored;
    report.to_route.append(&mut part.to_route);
    report.to_bot.append(&mut part.to_bot);
    report.created.append(&mut part.created);
    report.messages.append(&mut part.messages);
    report.events.append(&mut part.events);
    report.status_changes.append(&mut part.status_changes);
    report.opt_changes.append(&mut part.opt_changes);
}
