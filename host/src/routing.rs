//! The dispatcher: offers waiting conversations to agents through their queue's router plugin.
//!
//! It wakes on a kick (new work, an agent coming online, work released) and on a short tick,
//! and for every queued conversation:
//! * moves it to the overflow queue once it has waited `max_wait`;
//! * withdraws a lapsed offer, counts the miss against each agent offered and sets an agent who
//!   keeps missing offers away (an absent agent never stalls the queue);
//! * when nobody in the queue is online, sends the queue's offline message once;
//! * otherwise asks the router, excluding the agents already tried; when the router finds nobody
//!   left to try, a new round starts with everyone (their misses keep counting).
//!
//! Every offer, withdrawal, overflow and presence change is an event. The router is pure: the
//! host gathers every fact and the plugin only decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::agents::{Agents, Presence};
use crate::app::App;
use crate::bindings::wit;
use crate::events::EventHub;
use crate::outbox::Outbox;
use crate::sandbox::Clock;
use crate::storage::{Conversation, ConversationState, Rejection, UpdateError};

/// How often waiting work is looked at without a kick.
const TICK: Duration = Duration::from_millis(200);
/// How long work that the router left waiting waits before it is asked again without a kick.
const RECHECK_MS: u64 = 1000;

/// Offers waiting work to agents.
pub struct Dispatcher {
    app: Arc<App>,
    agents: Arc<Agents>,
    events: Arc<EventHub>,
    outbox: Arc<Outbox>,
    kick: Notify,
    recheck_at: Mutex<HashMap<u64, u64>>,
    /// What a kick asks for: specific conversations, or (`full`) every waiting one.
    kicked: Mutex<Kicked>,
}

/// Work a kick asked the loop to look at.
#[derive(Default)]
struct Kicked {
    full: bool,
    ids: Vec<u64>,
}

impl Dispatcher {
    /// Starts the dispatcher loop.
    pub fn start(
        app: Arc<App>,
        agents: Arc<Agents>,
        events: Arc<EventHub>,
        outbox: Arc<Outbox>,
    ) -> Arc<Dispatcher> {
        let d = Arc::new(Dispatcher {
            app,
            agents,
            events,
            outbox,
            kick: Notify::new(),
            recheck_at: Mutex::new(HashMap::new()),
            kicked: Mutex::new(Kicked::default()),
        });
        let worker = d.clone();
        tokio::spawn(async move {
            let mut next_scan = tokio::time::Instant::now() + TICK;
            loop {
                tokio::select! {
                    _ = worker.kick.notified() => {}
                    _ = tokio::time::sleep_until(next_scan) => {}
                }
                let kicked = std::mem::take(&mut *worker.kicked.lock().expect("kick lock"));
                if kicked.full || tokio::time::Instant::now() >= next_scan {
                    // The tick (and a kick for everything) scans all waiting work.
                    worker.run_once().await;
                    next_scan = tokio::time::Instant::now() + TICK;
                } else {
                    // New work is looked at alone: a burst of webhooks costs one evaluation each,
                    // not a scan of everything waiting per webhook.
                    let now = Clock::System.now_millis();
                    for id in kicked.ids {
                        if let Err(e) = worker.evaluate(id, now).await {
                            tracing::error!(conversation = id, "dispatching failed: {e}");
                        }
                    }
                }
            }
        });
        d
    }

    /// Asks the loop to look at all waiting work now (an agent came online or freed capacity).
    pub fn kick(&self) {
        self.recheck_at.lock().expect("recheck lock").clear();
        self.kicked.lock().expect("kick lock").full = true;
        self.kick.notify_one();
    }

    /// Asks the loop to look at these conversations now (new or reopened work).
    pub fn kick_conversations(&self, ids: &[u64]) {
        let mut recheck = self.recheck_at.lock().expect("recheck lock");
        for id in ids {
            recheck.remove(id);
        }
        drop(recheck);
        self.kicked
            .lock()
            .expect("kick lock")
            .ids
            .extend_from_slice(ids);
        self.kick.notify_one();
    }

    async fn run_once(&self) {
        let ids = match self.app.storage.queued_ids() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!("dispatcher cannot read queued work: {e}");
                return;
            }
        };
        let now = Clock::System.now_millis();
        let due: Vec<u64> = {
            let mut recheck = self.recheck_at.lock().expect("recheck lock");
            let queued: std::collections::HashSet<u64> = ids.iter().copied().collect();
            recheck.retain(|id, _| queued.contains(id));
            // Work parked until a time (an open offer, a router that said wait) is not even loaded
            // before then: a tick costs a lookup per waiting conversation, not a decode.
            ids.into_iter()
                .filter(|id| recheck.get(id).is_none_or(|t| now >= *t))
                .collect()
        };
        for id in due {
            if let Err(e) = self.evaluate(id, now).await {
                tracing::error!(conversation = id, "dispatching failed: {e}");
            }
        }
    }

    fn members(&self, queue: &str) -> Vec<String> {
        self.app
            .config
            .queue_members(queue)
            .map(|a| a.id.clone())
            .collect()
    }

    async fn evaluate(&self, id: u64, now: u64) -> Result<(), UpdateError> {
        let Some(conv) = self.app.storage.conversation(id)? else {
            return Ok(());
        };
        if conv.state != ConversationState::Queued {
            return Ok(());
        }
        let Some(queue) = self.app.config.queue(&conv.queue).cloned() else {
            return Ok(());
        };

        // Overflow after max_wait.
        if let (Some(max_wait), Some(target)) = (queue.max_wait, &queue.overflow)
            && now.saturating_sub(conv.queued_since) >= max_wait * 1000
        {
            let withdrawn = conv.offered_to.clone();
            let (moved, _) = self.app.storage.update_conversation(id, |c| {
                if c.state != ConversationState::Queued || c.queue != queue.name {
                    return Err(Rejection::Conflict("changed".into()));
                }
                c.enqueue(target, now);
                Ok(())
            })?;
            self.withdraw(&moved, &withdrawn, "overflow");
            let mut audience = self.members(&queue.name);
            audience.extend(self.members(target));
            audience.sort();
            audience.dedup();
            self.events.publish(
                "overflowed",
                audience,
                Some(id),
                json!({"from": queue.name, "to": target}),
            );
            tracing::info!(event = "overflowed", conversation = id, from = %queue.name, to = %target, "max_wait reached");
            self.kick.notify_one();
            return Ok(());
        }

        // An offer outstanding: wait for it, or withdraw it once lapsed.
        let mut conv = conv;
        if !conv.offered_to.is_empty() {
            if let Some(t) = conv.offer_expires_at.filter(|t| now < *t) {
                let overflow_at = queue
                    .max_wait
                    .filter(|_| queue.overflow.is_some())
                    .map(|w| conv.queued_since + w * 1000);
                self.park_until(id, overflow_at.map_or(t, |o| o.min(t)));
                return Ok(());
            }
            let lapsed = conv.offered_to.clone();
            let (updated, _) = self.app.storage.update_conversation(id, |c| {
                if c.state != ConversationState::Queued || c.offered_to != lapsed {
                    return Err(Rejection::Conflict("changed".into()));
                }
                c.tried.append(&mut c.offered_to);
                c.offer_expires_at = None;
                Ok(())
            })?;
            self.withdraw(&updated, &lapsed, "timeout");
            for agent in &lapsed {
                let missed = self.agents.missed(agent);
                if missed >= queue.missed_offers_before_away
                    && self.agents.presence(agent) == Presence::Online
                {
                    self.agents.set_presence(agent, Presence::Away, now);
                    self.events.publish(
                        "presence",
                        vec![agent.clone()],
                        None,
                        json!({"agent": agent, "presence": "away", "reason": format!("missed {missed} offers in a row")}),
                    );
                    tracing::info!(event = "set_away", agent = %agent, missed, "agent missed offers; set away");
                }
            }
            conv = updated;
        }

        let members = self.members(&queue.name);
        let states = self.agents.states(&self.app.config, &members);
        if !states
            .iter()
            .any(|a| matches!(a.presence, wit::Presence::Online))
        {
            if !conv.offline_notified {
                self.send_offline_message(&conv, queue.offline_message.as_deref(), now)
                    .await?;
            }
            self.recheck_later(id, now);
            return Ok(());
        }

        let Some(router) = self
            .app
            .catalog()
            .queues
            .get(&queue.name)
            .map(|q| q.router.clone())
        else {
            return Ok(());
        };
        let work = wit::WaitingWork {
            conversation: id.to_string(),
            queue: queue.name.clone(),
            channel: conv.channel.clone(),
            skills: conv.skills.clone(),
            waiting_since: conv.queued_since / 1000,
            now: now / 1000,
            tried: conv.tried.clone(),
        };
        let decision = match router.decide(&self.app.sandbox, work, states).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(conversation = id, queue = %queue.name, "router failed; work waits: {e}");
                self.recheck_later(id, now);
                return Ok(());
            }
        };
        match decision {
            wit::Decision::Offer(ids) => {
                let ids: Vec<String> = ids.into_iter().filter(|a| members.contains(a)).collect();
                if ids.is_empty() {
                    self.recheck_later(id, now);
                    return Ok(());
                }
                let expires = now + queue.offer_timeout * 1000;
                let offered = ids.clone();
                self.app.storage.update_conversation(id, |c| {
                    if c.state != ConversationState::Queued || !c.offered_to.is_empty() {
                        return Err(Rejection::Conflict("changed".into()));
                    }
                    c.offered_to = offered.clone();
                    c.offer_expires_at = Some(expires);
                    Ok(())
                })?;
                self.agents.offered(&ids, now);
                self.events.publish(
                    "offered",
                    ids.clone(),
                    Some(id),
                    json!({"queue": queue.name, "channel": conv.channel, "customer": conv.customer, "expires_at": expires}),
                );
                tracing::info!(event = "offered", conversation = id, queue = %queue.name, agents = ?ids, "conversation offered");
            }
            wit::Decision::Wait => {
                if !conv.tried.is_empty() {
                    // Everyone available was tried: start a new round. Misses keep counting,
                    // so an absent agent is set away after a few rounds.
                    self.app.storage.update_conversation(id, |c| {
                        c.tried.clear();
                        Ok(())
                    })?;
                    self.kick.notify_one();
                } else {
                    self.recheck_later(id, now);
                }
            }
            wit::Decision::Overflow => {
                if let Some(target) = &queue.overflow {
                    self.app.storage.update_conversation(id, |c| {
                        c.enqueue(target, now);
                        Ok(())
                    })?;
                    self.events.publish(
                        "overflowed",
                        self.members(target),
                        Some(id),
                        json!({"from": queue.name, "to": target, "reason": "router"}),
                    );
                } else {
                    self.recheck_later(id, now);
                }
            }
        }
        Ok(())
    }

    fn recheck_later(&self, id: u64, now: u64) {
        self.park_until(id, now + RECHECK_MS);
    }

    /// Skips `id` on every tick before `at` (a kick clears all parking).
    fn park_until(&self, id: u64, at: u64) {
        self.recheck_at.lock().expect("recheck lock").insert(id, at);
    }

    fn withdraw(&self, conv: &Conversation, agents: &[String], reason: &str) {
        if agents.is_empty() {
            return;
        }
        self.events.publish(
            "offer_withdrawn",
            agents.to_vec(),
            Some(conv.id),
            json!({"reason": reason}),
        );
        tracing::info!(event = "offer_withdrawn", conversation = conv.id, agents = ?agents, reason, "offer withdrawn");
    }

    async fn send_offline_message(
        &self,
        conv: &Conversation,
        text: Option<&str>,
        now: u64,
    ) -> Result<(), UpdateError> {
        let (updated, first) = self.app.storage.update_conversation(conv.id, |c| {
            let first = !c.offline_notified;
            c.offline_notified = true;
            Ok(first)
        })?;
        if !first {
            return Ok(());
        }
        let _ = updated;
        if let Some(text) = text {
            let draft = crate::storage::OutboundDraft {
                text: Some(text.to_owned()),
                ..Default::default()
            };
            let (_, message) = self.app.storage.add_outbound(conv.id, None, draft, now)?;
            self.app.storage.wait_durable().await?;
            self.outbox.submit(message.conversation, message.seq);
            tracing::info!(
                event = "offline_message",
                conversation = conv.id,
                "no agent online; offline message sent"
            );
        }
        Ok(())
    }
}
