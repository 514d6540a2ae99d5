//! Hands waiting conversations to their queue's router plugin and records its decision.
//!
//! The router is pure: the host gathers every fact (the work, the queue's agents and their load)
//! and the plugin only decides. Offers are recorded on the conversation and logged as events.

use std::sync::Arc;

use crate::app::App;
use crate::bindings::wit;
use crate::storage::{ConversationState, StorageError};

/// What routing did with one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Offered to these agents.
    Offered(Vec<String>),
    /// Left waiting (no agent available).
    Waiting,
    /// The router asked to overflow; the queue has no overflow target yet, so it waits.
    Overflow,
    /// Nothing to do: the conversation is gone or no longer queued.
    Skipped,
}

/// Asks the conversation's queue router who should be offered it, and records the offer.
pub async fn route(app: &Arc<App>, conversation: u64) -> Result<RouteOutcome, StorageError> {
    let Some(conv) = app.storage.conversation(conversation)? else {
        return Ok(RouteOutcome::Skipped);
    };
    if conv.state != ConversationState::Queued {
        return Ok(RouteOutcome::Skipped);
    }
    let Some(queue) = app.queues.get(&conv.queue) else {
        tracing::error!(conversation, queue = %conv.queue, "conversation's queue is not configured; it waits");
        return Ok(RouteOutcome::Waiting);
    };
    let members: Vec<_> = app
        .config
        .agents
        .iter()
        .filter(|a| a.queues.iter().any(|q| q == &conv.queue))
        .collect();
    let owned = app
        .storage
        .conversations(|c| c.state == ConversationState::Assigned && c.owner.is_some())?;
    let agents: Vec<wit::AgentState> = members
        .iter()
        .map(|a| wit::AgentState {
            id: a.id.clone(),
            presence: wit::Presence::Online,
            active: owned
                .iter()
                .filter(|c| c.owner.as_deref() == Some(a.id.as_str()))
                .count() as u32,
            capacity: u32::MAX,
            idle_since: None,
            last_offered: None,
            last_assigned: None,
            skills: Vec::new(),
        })
        .collect();
    let now = crate::sandbox::Clock::System.now_millis() / 1000;
    let work = wit::WaitingWork {
        conversation: conversation.to_string(),
        queue: conv.queue.clone(),
        channel: conv.channel.clone(),
        skills: Vec::new(),
        waiting_since: conv.created_at / 1000,
        now,
        tried: Vec::new(),
    };
    let decision = match queue.router.decide(&app.sandbox, work, agents).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(conversation, queue = %queue.name, "router failed, conversation waits: {e}");
            return Ok(RouteOutcome::Waiting);
        }
    };
    match decision {
        wit::Decision::Offer(ids) => {
            let ids: Vec<String> = ids
                .into_iter()
                .filter(|id| members.iter().any(|a| &a.id == id))
                .collect();
            if ids.is_empty() {
                return Ok(RouteOutcome::Waiting);
            }
            app.storage.set_offers(conversation, &ids)?;
            tracing::info!(event = "offered", conversation, queue = %queue.name, agents = ?ids, "conversation offered");
            Ok(RouteOutcome::Offered(ids))
        }
        wit::Decision::Wait => {
            tracing::info!(event = "waiting", conversation, queue = %queue.name, "no agent available; conversation waits");
            Ok(RouteOutcome::Waiting)
        }
        wit::Decision::Overflow => {
            tracing::info!(event = "overflow", conversation, queue = %queue.name, "router asked to overflow; no overflow queue configured, conversation waits");
            Ok(RouteOutcome::Overflow)
        }
    }
}
