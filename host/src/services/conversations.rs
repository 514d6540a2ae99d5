//! What agents do, past the walls: take, transfer or close a conversation (each asks the walls
//! again inside the atomic update, as the conversation may have changed since it was read),
//! start one, reply, and change their presence; then the agents concerned and the dispatcher
//! are told. HTTP handlers call these and map the typed errors to status codes.

use serde_json::json;

use crate::config::AgentConfig;
use crate::metrics::OfferOutcome;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::model::{
    Conversation, ConversationState, ConversationTarget, Message, OutboundDraft, Rejection,
};
use crate::services::agents::access::{self, Refused};
use crate::services::agents::{Agents, Presence};
use crate::services::app::App;
use crate::services::audit;
use crate::services::automated::{Automated, Sender};
use crate::services::events::{self, EventHub};
use crate::services::outbox::Outbox;
use crate::services::routing::Dispatcher;
use crate::store::{StoreError, UpdateError};

/// What the actions need.
#[derive(Clone, Copy)]
pub struct Actions<'a> {
    /// Configuration and storage.
    pub app: &'a App,
    /// Agents' routing facts.
    pub agents: &'a Agents,
    /// The event log.
    pub events: &'a EventHub,
    /// Offers waiting work.
    pub dispatcher: &'a Dispatcher,
    /// Sends replies.
    pub outbox: &'a Arc<Outbox>,
}

/// How long a reply waits for the provider's answer before it is answered as still pending.
pub const SEND_WAIT: Duration = Duration::from_secs(10);

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The walls refuse it.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The update was refused on the current state, or storage failed.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// Another agent has it: the conflict names the owner.
    #[error("{message}")]
    Taken {
        /// What happened.
        message: String,
        /// Who owns it now, if anyone.
        owner: Option<String>,
    },
}

impl Actions<'_> {
    /// Events for a conversation that just got an owner: the owner is told, and the others who
    /// were offered it or see it in their queue list have the card hidden.
    pub async fn announce_assigned(&self, before: &Conversation, after: &Conversation, how: &str) {
        self.count_assigned(before, after).await;
        self.events
            .record_all(self.assigned_notices(before, after, how))
            .await;
    }

    /// Notes that `after` got its owner (`before` was offered to some): the owner's routing
    /// facts and the offers' counts.
    async fn count_assigned(&self, before: &Conversation, after: &Conversation) {
        let Some(owner) = after.owner.as_deref() else {
            return;
        };
        self.agents
            .assigned(owner, Clock::System.now_millis())
            .await;
        let withdrawn = before.offered_to.iter().filter(|a| *a != owner).count() as u64;
        let taken = before.offered_to.len() as u64 - withdrawn;
        let metrics = &self.app.metrics;
        metrics.offers(&before.queue, OfferOutcome::Taken, taken);
        metrics.offers(&before.queue, OfferOutcome::Withdrawn, withdrawn);
    }

    /// What [`Actions::announce_assigned`] logs, in order (the offer withdrawn from the others,
    /// then `assigned`), for a write that logs it alongside.
    fn assigned_notices(
        &self,
        before: &Conversation,
        after: &Conversation,
        how: &str,
    ) -> Vec<crate::store::NewEvent> {
        let Some(owner) = after.owner.as_deref() else {
            return Vec::new();
        };
        let config = self.app.config();
        let others: Vec<String> = before
            .offered_to
            .iter()
            .filter(|a| *a != owner)
            .cloned()
            .collect();
        let mut audience: Vec<String> = config
            .queue_members(&after.queue)
            .map(|a| a.id.clone())
            .collect();
        for a in events::audience(&config, after, None) {
            if !audience.contains(&a) {
                audience.push(a);
            }
        }
        self.events
            .offer_withdrawn_notice(after.id, others, "taken", Some(owner))
            .into_iter()
            .chain(self.events.notice(
                "assigned",
                audience,
                Some(after.id),
                json!({"owner": owner, "how": how}),
            ))
            .collect()
    }

    /// Sends the automated message `which` for `conv` if one is configured (a failure is
    /// logged: the action it follows is done).
    async fn automated(&self, conv: &Conversation, which: Automated, agent: Option<&str>) {
        let sender = Sender {
            app: self.app,
            outbox: self.outbox,
            events: self.events,
        };
        if let Err(e) = sender.send(conv, which, agent).await {
            tracing::error!(
                conversation = conv.id,
                automated = which.name(),
                "automated message not queued: {e}"
            );
        }
    }

    /// Queues `agent`'s reply to `before` durably (the first reply to a queued conversation
    /// takes it), submits it, and waits up to [`SEND_WAIT`] for the provider: the message as it
    /// then stands (`pending` while not yet accepted).
    pub async fn reply(
        &self,
        agent: &AgentConfig,
        before: &Conversation,
        draft: OutboundDraft,
    ) -> Result<Message, UpdateError> {
        let now = Clock::System.now_millis();
        let config = self.app.config();
        // The first reply to a queued conversation assigns it: that is told first. Everything
        // is logged in the reply's own write, so it is told before the send's status can be.
        let first_reply = |after: &Conversation| {
            before.state == ConversationState::Queued && after.state == ConversationState::Assigned
        };
        let notices = |after: &Conversation, message: &Message| {
            let assigned = match first_reply(after) {
                true => self.assigned_notices(before, after, "first_reply"),
                false => Vec::new(),
            };
            assigned
                .into_iter()
                .chain(
                    self.events
                        .outbound_notice(&config, Some(&agent.id), after, message),
                )
                .collect()
        };
        let (after, message, logged) = self
            .app
            .storage
            .add_outbound_with(before.id, Some(&agent.id), draft, now, &notices)
            .await?;
        // The send starts first: telling the agents need not hold up the provider.
        let rx = self.outbox.watch(message.conversation, message.seq);
        self.outbox.submit(message.conversation, message.seq);
        audit::record(&agent.id, "reply", Some(after.id), &message.id());
        self.app
            .metrics
            .messages(&after.channel, crate::metrics::Direction::Outbound, 1);
        if first_reply(&after) {
            self.count_assigned(before, &after).await;
        }
        self.events.broadcast(logged);
        Ok(self.outbox.wait(rx, SEND_WAIT).await.unwrap_or(message))
    }

    /// `agent` takes `before` (read through the walls): theirs unless closed or another's.
    /// Taking one's own conversation changes nothing.
    pub async fn take(
        &self,
        agent: &AgentConfig,
        before: &Conversation,
    ) -> Result<Conversation, ActionError> {
        let me = agent.id.clone();
        let now = Clock::System.now_millis();
        let result = crate::store::update(self.app.storage.as_ref(), before.id, |c| {
            match (&c.state, &c.owner) {
                (ConversationState::Closed, _) => {
                    Err(Rejection::Conflict("the conversation is closed".into()))
                }
                (ConversationState::Assigned, Some(owner)) if owner == &me => Ok(false),
                (ConversationState::Assigned, Some(owner)) => Err(Rejection::Conflict(format!(
                    "the conversation is owned by {owner}"
                ))),
                _ => {
                    c.assign(&me);
                    c.updated_at = now;
                    Ok(true)
                }
            }
        })
        .await;
        match result {
            Ok((after, changed)) => {
                if changed {
                    audit::record(&me, "take", Some(after.id), "");
                    self.announce_assigned(before, &after, "take").await;
                    self.automated(&after, Automated::Take, Some(&agent.name))
                        .await;
                }
                Ok(after)
            }
            Err(UpdateError::Rejected(Rejection::Conflict(message))) => {
                let owner = self
                    .app
                    .storage
                    .conversation(before.id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.owner);
                Err(ActionError::Taken { message, owner })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `agent` hands `before` to `target`, with its whole history, if the walls allow it.
    pub async fn transfer(
        &self,
        agent: &AgentConfig,
        before: &Conversation,
        target: &str,
    ) -> Result<Conversation, ActionError> {
        let config = &self.app.config();
        access::may_transfer(config, agent, before, target)?;
        let now = Clock::System.now_millis();
        let (after, previous) = crate::store::update(self.app.storage.as_ref(), before.id, |c| {
            // Asked again on the current state: it may have moved queue or owner meanwhile.
            access::may_transfer(config, agent, c, target)?;
            Ok(c.transfer(target, now))
        })
        .await?;
        audit::record(&agent.id, "transfer", Some(after.id), target);
        self.agents.assigned(target, now).await;
        let mut audience = events::audience(config, &after, Some(&agent.id));
        if let Some(p) = &previous {
            self.agents.released(p, now).await;
            if !audience.contains(p) {
                audience.push(p.clone());
            }
        }
        self.app.metrics.offers(
            &before.queue,
            OfferOutcome::Withdrawn,
            before.offered_to.len() as u64,
        );
        self.events
            .offer_withdrawn(before.id, before.offered_to.clone(), "transferred", None)
            .await;
        self.events
            .publish(
                "transferred",
                audience,
                Some(after.id),
                json!({"from": previous, "to": target, "by": agent.id}),
            )
            .await;
        Ok(after)
    }

    /// `agent` moves `before` into `queue`, unowned, with its whole history, for that queue's
    /// agents to be offered, if the walls allow it.
    pub async fn transfer_to_queue(
        &self,
        agent: &AgentConfig,
        before: &Conversation,
        queue: &str,
    ) -> Result<Conversation, ActionError> {
        let config = &self.app.config();
        access::may_transfer_to_queue(config, agent, before, queue)?;
        let now = Clock::System.now_millis();
        let (after, (previous, offered, was)) =
            crate::store::update(self.app.storage.as_ref(), before.id, |c| {
                // Asked again on the current state: it may have moved queue or owner meanwhile.
                access::may_transfer_to_queue(config, agent, c, queue)?;
                let was = c.clone();
                let previous = c
                    .owner
                    .clone()
                    .filter(|_| c.state == ConversationState::Assigned);
                let offered = std::mem::take(&mut c.offered_to);
                c.enqueue(queue, now);
                // Put back by its owner: not offered straight back to them first.
                c.tried.extend(previous.clone());
                c.updated_at = now;
                Ok((previous, offered, was))
            })
            .await?;
        audit::record(
            &agent.id,
            "transfer",
            Some(after.id),
            &format!("queue {queue}"),
        );
        if let Some(p) = &previous {
            self.agents.released(p, now).await;
        }
        self.app
            .metrics
            .offers(&was.queue, OfferOutcome::Withdrawn, offered.len() as u64);
        self.events
            .offer_withdrawn(before.id, offered, "transferred", None)
            .await;
        // Those who saw it where it was (its owner, the old queue's agents and managers) hear
        // that it left; the new queue's hear that it arrived.
        let mut audience = events::audience(config, &was, None);
        for a in events::audience(config, &after, Some(&agent.id)) {
            if !audience.contains(&a) {
                audience.push(a);
            }
        }
        self.events
            .publish(
                "transferred",
                audience,
                Some(after.id),
                json!({"from": previous, "to": null, "queue": queue, "by": agent.id}),
            )
            .await;
        self.dispatcher.kick_conversations(&[after.id]);
        Ok(after)
    }

    /// `agent` reopens the closed `before` and owns it again, if the walls allow it.
    pub async fn reopen(
        &self,
        agent: &AgentConfig,
        before: &Conversation,
    ) -> Result<Conversation, ActionError> {
        let config = &self.app.config();
        access::may_reopen(config, agent, before)?;
        let now = Clock::System.now_millis();
        let (after, ()) = crate::store::update(self.app.storage.as_ref(), before.id, |c| {
            access::may_reopen(config, agent, c)?;
            c.assign(&agent.id);
            c.updated_at = now;
            Ok(())
        })
        .await?;
        audit::record(&agent.id, "reopen", Some(after.id), "");
        self.agents.assigned(&agent.id, now).await;
        self.events
            .publish(
                "reopened",
                events::audience(config, &after, Some(&agent.id)),
                Some(after.id),
                json!({"by": agent.id, "owner": agent.id}),
            )
            .await;
        Ok(after)
    }

    /// `agent` adds an internal note to `c` (one they read): stored with the history, shown
    /// to agents, never sent.
    pub async fn note(
        &self,
        agent: &AgentConfig,
        c: &Conversation,
        text: &str,
    ) -> Result<Message, UpdateError> {
        let now = Clock::System.now_millis();
        let (after, message) = self
            .app
            .storage
            .add_note(c.id, &agent.id, text, now)
            .await?;
        audit::record(&agent.id, "note", Some(after.id), &message.id());
        self.events
            .publish(
                "note",
                events::audience(&self.app.config(), &after, Some(&agent.id)),
                Some(after.id),
                json!({"seq": message.seq, "id": message.id(), "author": agent.id, "text": message.text}),
            )
            .await;
        Ok(message)
    }

    /// `agent` resolves and archives `before`, if the walls allow it; closing a closed one
    /// changes nothing.
    pub async fn close(
        &self,
        agent: &AgentConfig,
        before: &Conversation,
    ) -> Result<Conversation, ActionError> {
        let me = agent.id.clone();
        let config = &self.app.config();
        let now = Clock::System.now_millis();
        let (after, changed) = crate::store::update(self.app.storage.as_ref(), before.id, |c| {
            access::may_close(config, agent, c)?;
            Ok(c.close(&me, now))
        })
        .await?;
        if !changed {
            return Ok(after);
        }
        audit::record(&me, "close", Some(after.id), "");
        self.app.metrics.offers(
            &before.queue,
            OfferOutcome::Withdrawn,
            before.offered_to.len() as u64,
        );
        self.events
            .offer_withdrawn(before.id, before.offered_to.clone(), "closed", None)
            .await;
        if let Some(owner) = &after.owner {
            self.agents.released(owner, now).await;
        }
        // Those who saw it open (a queue's agents, its owner) hear that it left their view.
        let mut audience = events::audience(config, before, None);
        for a in events::audience(config, &after, Some(&me)) {
            if !audience.contains(&a) {
                audience.push(a);
            }
        }
        self.events
            .publish("closed", audience, Some(after.id), json!({"by": me}))
            .await;
        self.automated(&after, Automated::Closing, None).await;
        self.automated(&after, Automated::Survey, None).await;
        self.dispatcher.kick();
        Ok(after)
    }

    /// Sets `agent`'s presence, tells them, and has waiting work looked at again when they
    /// come online.
    pub async fn set_presence(&self, agent: &str, presence: Presence) {
        audit::record(agent, "presence", None, presence.as_str());
        self.agents
            .set_presence(agent, presence, Clock::System.now_millis())
            .await;
        self.events
            .publish(
                "presence",
                events::presence_audience(&self.app.config(), agent),
                None,
                json!({"agent": agent, "presence": presence}),
            )
            .await;
        if presence == Presence::Online {
            self.dispatcher.kick();
        }
    }

    /// `agent` opens a conversation with `to` (E.164) over `channel` (or the one the walls
    /// pick), or takes over the existing one with that customer when the walls allow it.
    pub async fn start(
        &self,
        agent: &AgentConfig,
        channel: Option<&str>,
        to: &str,
    ) -> Result<Conversation, StartError> {
        let channel_name = access::start_channel(&self.app.config(), agent, channel)?;
        let Some(channel) = self.app.live_channel(&channel_name) else {
            return Err(StartError::ChannelUnavailable(channel_name));
        };
        let number =
            plugboard_sdk::E164::parse(to).map_err(|e| StartError::NotE164(e.to_string()))?;
        let customer = channel.rules().address.address_for(number.as_str());
        if self
            .app
            .storage
            .is_opted_out(&channel.name, &customer)
            .await?
        {
            return Err(StartError::OptedOut {
                customer,
                channel: channel.name.clone(),
            });
        }
        let queue = match &channel.target {
            ConversationTarget::Queue { queue, .. } => queue.clone(),
            ConversationTarget::Agent(_) => String::new(),
        };
        let now = Clock::System.now_millis();
        let existing = self
            .app
            .storage
            .conversation_by_key(&channel.name, &customer)
            .await?;
        let conv = match &existing {
            Some(before) => {
                access::may_take_over(agent, before)?;
                // Asked again on the current state: it may have overflowed or been taken
                // meanwhile.
                crate::store::update(self.app.storage.as_ref(), before.id, |c| {
                    Ok(access::take_over(agent, c, now)?)
                })
                .await?
                .0
            }
            None => {
                self.app
                    .storage
                    .start_conversation(&channel.name, &customer, &queue, &agent.id, now)
                    .await?
            }
        };
        audit::record(&agent.id, "start", Some(conv.id), &conv.customer);
        match &existing {
            Some(before) if before.state == ConversationState::Queued => {
                self.announce_assigned(before, &conv, "started").await;
            }
            _ => {
                self.agents.assigned(&agent.id, now).await;
                self.events
                    .publish(
                        "assigned",
                        vec![agent.id.clone()],
                        Some(conv.id),
                        json!({"owner": agent.id, "how": "started"}),
                    )
                    .await;
            }
        }
        Ok(conv)
    }
}

/// Why a conversation could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The walls refuse it (the channel, or the existing conversation's queue or owner).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The channel takes no traffic.
    #[error("channel {0:?} is not configured, or is disabled or deleted")]
    ChannelUnavailable(String),
    /// `to` is not an E.164 number.
    #[error("`to` must be an E.164 number like +14155550100: {0}")]
    NotE164(String),
    /// The customer opted out of the channel.
    #[error("{customer} opted out of channel {channel}; nothing was sent")]
    OptedOut {
        /// The customer's address.
        customer: String,
        /// The channel.
        channel: String,
    },
    /// The update was refused on the current state.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}
