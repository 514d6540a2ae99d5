//! The dispatcher: offers waiting conversations to agents through their queue's router plugin.
//!
//! Work is looked at when something changes, never by polling everything waiting:
//! * a kick for specific conversations (new or reopened work) looks at those alone;
//! * a full kick (an agent came online, capacity was freed) looks at everything waiting;
//! * every evaluation that leaves work waiting schedules the next look for when it can matter:
//!   an open offer lapsing, the queue's `max_wait`, a router that said wait (a second later);
//!   work nobody can take (no agent online) waits for a full kick or its overflow time.
//!
//! For each look at a conversation it:
//! * moves it to the overflow queue once it has waited `max_wait`;
//! * withdraws a lapsed offer, counts the miss against each agent offered and sets an agent who
//!   keeps missing offers away (an absent agent never stalls the queue);
//! * when nobody in the queue is online, sends the queue's offline message once per
//!   conversation (an overflow queue's is not sent after the first queue's);
//! * otherwise asks the router, excluding the agents already tried; when the router finds nobody
//!   left to try, a new round starts with everyone (their misses keep counting).
//!
//! So a steady stream of webhooks costs one evaluation per new conversation however much work is
//! already waiting. Every offer, withdrawal, overflow and presence change is an event. The router
//! is pure: the host gathers every fact and the plugin only decides.

use crate::metrics::OfferOutcome;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::model::{Conversation, ConversationState, Rejection};
use crate::runtime::bindings::wit;
use crate::services::agents::{Agents, Presence, WorkFacts};
use crate::services::app::App;
use crate::services::decisions::{self, Decision, Snapshot};
use crate::services::events::EventHub;
use crate::services::outbox::Outbox;
use crate::store::UpdateError;

/// Moves waiting work to its `target` overflow queue. It is the same wait, so a customer who
/// was sent the first queue's offline message is not sent the overflow queue's too (the
/// offline message goes out once per conversation; a reopened conversation starts a new wait).
fn overflow(c: &mut Conversation, target: &str, now: u64) {
    let notified = (c.offline_notified, c.closed_notified);
    c.enqueue(target, now);
    (c.offline_notified, c.closed_notified) = notified;
}

/// What the host tells a waiting customer by itself, once per wait.
#[derive(Debug, Clone, Copy)]
enum Notice {
    /// The queue is open but nobody in it is online (`offline_message`).
    Offline,
    /// The queue is closed: outside its business hours (`closed_message`).
    Closed,
}

impl Notice {
    /// The conversation's flag that says it was sent.
    fn sent(self, c: &mut Conversation) -> &mut bool {
        match self {
            Notice::Offline => &mut c.offline_notified,
            Notice::Closed => &mut c.closed_notified,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Notice::Offline => "offline_message",
            Notice::Closed => "closed_message",
        }
    }
}

/// How often scheduled looks (lapsed offers, overflow, router rechecks) are due at the latest.
const TICK: Duration = Duration::from_millis(200);
/// How long work that the router left waiting waits before it is asked again without a kick.
const RECHECK_MS: u64 = 1000;
/// How often the waiting set is compared with storage, so work that became queued without a
/// kick is still seen (a key scan and a map lookup per waiting conversation; nothing decoded).
const SWEEP: Duration = Duration::from_secs(30);

/// How often a host that does not dispatch tries to take the role over.
const LEAD_RETRY: Duration = Duration::from_secs(1);

/// The dispatcher role as this host holds it.
#[derive(Default)]
struct Role {
    held: Option<crate::store::Leadership>,
    next_try: Option<tokio::time::Instant>,
}

/// Offers waiting work to agents.
pub struct Dispatcher {
    app: Arc<App>,
    agents: Arc<Agents>,
    events: Arc<EventHub>,
    outbox: Arc<Outbox>,
    kick: Notify,
    schedule: Mutex<Schedule>,
    /// Held (shared) by every intake from storing new work until it is announced; a scan of
    /// storage takes it exclusively, so it never offers work whose message agents were not told.
    intake: tokio::sync::RwLock<()>,
    /// What a kick asks for: specific conversations, or (`full`) every waiting one.
    kicked: Mutex<Kicked>,
}

/// Work a kick asked the loop to look at.
#[derive(Default)]
struct Kicked {
    full: bool,
    ids: Vec<u64>,
}

/// When each waiting conversation is to be looked at next (`u64::MAX`: only on a full kick).
#[derive(Default)]
struct Schedule {
    due: BTreeSet<(u64, u64)>,
    at: HashMap<u64, u64>,
}

impl Schedule {
    fn set(&mut self, id: u64, at: u64) {
        if let Some(old) = self.at.insert(id, at) {
            self.due.remove(&(old, id));
        }
        self.due.insert((at, id));
    }

    fn remove(&mut self, id: u64) {
        if let Some(old) = self.at.remove(&id) {
            self.due.remove(&(old, id));
        }
    }

    /// Takes every conversation due at `now`.
    fn take_due(&mut self, now: u64) -> Vec<u64> {
        let mut ids = Vec::new();
        while let Some(&(at, id)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            self.at.remove(&id);
            ids.push(id);
        }
        ids
    }

    fn clear(&mut self) {
        self.due.clear();
        self.at.clear();
    }
}

impl Dispatcher {
    /// Starts the dispatcher loop; its first pass looks at everything waiting in storage.
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
            schedule: Mutex::new(Schedule::default()),
            intake: tokio::sync::RwLock::new(()),
            kicked: Mutex::new(Kicked {
                full: true,
                ids: Vec::new(),
            }),
        });
        let worker = d.clone();
        tokio::spawn(async move {
            let mut next_sweep = tokio::time::Instant::now() + SWEEP;
            let mut first = true;
            let mut role = Role::default();
            loop {
                if !first {
                    tokio::select! {
                        _ = worker.kick.notified() => {}
                        _ = tokio::time::sleep(TICK) => {}
                    }
                }
                first = false;
                if !worker.leads(&mut role).await {
                    // Another host dispatches; what was asked of this one is its to do.
                    std::mem::take(&mut *worker.kicked.lock().expect("kick lock"));
                    continue;
                }
                let kicked = std::mem::take(&mut *worker.kicked.lock().expect("kick lock"));
                let now = Clock::System.now_millis();
                let mut ids = if kicked.full {
                    worker.schedule().clear();
                    worker.queued_ids().await
                } else if tokio::time::Instant::now() >= next_sweep {
                    next_sweep = tokio::time::Instant::now() + SWEEP;
                    worker.unscheduled_ids().await
                } else {
                    Vec::new()
                };
                ids.extend(kicked.ids);
                ids.extend(worker.schedule().take_due(now));
                let mut seen = HashSet::with_capacity(ids.len());
                ids.retain(|id| seen.insert(*id));
                for id in worker.by_priority(ids).await {
                    if let Err(e) = worker.evaluate(id, now).await {
                        tracing::error!(conversation = id, "dispatching failed: {e}");
                        worker.park_until(id, now + RECHECK_MS);
                    }
                }
            }
        });
        d
    }

    /// Whether this host dispatches: with a store other hosts share, one host at a time holds
    /// the dispatcher role (tried for again every [`LEAD_RETRY`] while another holds it); the
    /// host that takes it over looks at all waiting work first, so offers made and timed by a
    /// host that died are looked at again and lapse or stand as stored.
    async fn leads(&self, role: &mut Role) -> bool {
        if role.held.as_ref().is_some_and(|l| l.is_held()) {
            return true;
        }
        if role.held.take().is_some() {
            tracing::warn!("this host no longer dispatches (its hold on the role ended)");
            self.schedule().clear();
        }
        let now = tokio::time::Instant::now();
        if role.next_try.is_some_and(|at| now < at) {
            return false;
        }
        role.next_try = Some(now + LEAD_RETRY);
        match self.app.storage.try_lead("dispatcher").await {
            Ok(Some(leadership)) => {
                if self.app.storage.is_shared() {
                    // The agents' facts as the previous dispatcher left them.
                    self.agents.reload(None).await;
                    tracing::info!("this host now dispatches waiting work");
                }
                role.held = Some(leadership);
                self.schedule().clear();
                self.kicked.lock().expect("kick lock").full = true;
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!("cannot tell whether this host should dispatch: {e}");
                false
            }
        }
    }

    /// `ids` in the order their work is offered: higher priority first, then longest waiting
    /// (an id that cannot be read keeps its place at the end, to be looked at as before).
    /// Only a configuration with classification rules gives priorities, so only then does a
    /// pass read its work once more to order it.
    async fn by_priority(&self, ids: Vec<u64>) -> Vec<u64> {
        if ids.len() < 2 || self.app.catalog().rules.is_empty() {
            return ids;
        }
        let mut keyed = Vec::with_capacity(ids.len());
        for id in ids {
            let key = match self.app.storage.conversation(id).await {
                Ok(Some(c)) => (std::cmp::Reverse(c.priority), c.queued_since),
                _ => (std::cmp::Reverse(i32::MIN), u64::MAX),
            };
            keyed.push((key, id));
        }
        keyed.sort_by_key(|(key, _)| *key);
        keyed.into_iter().map(|(_, id)| id).collect()
    }

    /// Asks the loop to look at all waiting work now (an agent came online or freed capacity).
    pub fn kick(&self) {
        self.kicked.lock().expect("kick lock").full = true;
        self.kick.notify_one();
    }

    /// Asks the loop to look at these conversations now (new or reopened work).
    pub fn kick_conversations(&self, ids: &[u64]) {
        self.kicked
            .lock()
            .expect("kick lock")
            .ids
            .extend_from_slice(ids);
        self.kick.notify_one();
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().expect("schedule lock")
    }

    /// Marks an intake in progress (see `intake`): hold the guard from storing new work until
    /// it is announced and kicked.
    pub async fn intake(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.intake.read().await
    }

    /// Every waiting conversation in storage, read between intakes.
    async fn queued_ids(&self) -> Vec<u64> {
        let _quiet = self.intake.write().await;
        match self.app.storage.queued_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!("dispatcher cannot read queued work: {e}");
                Vec::new()
            }
        }
    }

    /// Waiting work in storage that has no next look scheduled.
    async fn unscheduled_ids(&self) -> Vec<u64> {
        let ids = self.queued_ids().await;
        let schedule = self.schedule();
        ids.into_iter()
            .filter(|id| !schedule.at.contains_key(id))
            .collect()
    }

    fn members(&self, queue: &str) -> Vec<String> {
        self.app
            .config()
            .queue_members(queue)
            .map(|a| a.id.clone())
            .collect()
    }

    async fn evaluate(&self, id: u64, now: u64) -> Result<(), UpdateError> {
        let conv = match self.app.storage.conversation(id).await? {
            Some(c) if c.state == ConversationState::Queued => c,
            _ => {
                self.schedule().remove(id);
                return Ok(());
            }
        };
        let Some(queue) = self.app.config().queue(&conv.queue).cloned() else {
            self.schedule().remove(id);
            return Ok(());
        };
        let overflow_at = queue
            .max_wait
            .filter(|_| queue.overflow.is_some())
            .map(|w| conv.queued_since + w * 1000);

        // Overflow after max_wait.
        if let (Some(at), Some(target)) = (overflow_at, &queue.overflow)
            && now >= at
        {
            let withdrawn = conv.offered_to.clone();
            let (moved, _) = crate::store::update(self.app.storage.as_ref(), id, |c| {
                if c.state != ConversationState::Queued || c.queue != queue.name {
                    return Err(Rejection::Conflict("changed".into()));
                }
                overflow(c, target, now);
                Ok(())
            })
            .await?;
            self.app
                .metrics
                .offers(&queue.name, OfferOutcome::Withdrawn, withdrawn.len() as u64);
            self.events
                .offer_withdrawn(moved.id, withdrawn, "overflow", None)
                .await;
            let mut audience = self.members(&queue.name);
            audience.extend(self.members(target));
            audience.sort();
            audience.dedup();
            self.events
                .publish(
                    "overflowed",
                    audience,
                    Some(id),
                    json!({"from": queue.name, "to": target}),
                )
                .await;
            tracing::info!(event = "overflowed", conversation = id, from = %queue.name, to = %target, "max_wait reached");
            self.look_again_now(id, now);
            return Ok(());
        }
        // The next look is due no later than the overflow, whatever else waits.
        let park = |at: u64| self.park_until(id, overflow_at.map_or(at, |o| o.min(at)));

        // An offer outstanding: wait for it, or withdraw it once lapsed.
        let mut conv = conv;
        if !conv.offered_to.is_empty() {
            if let Some(t) = conv.offer_expires_at.filter(|t| now < *t) {
                park(t);
                return Ok(());
            }
            let lapsed = conv.offered_to.clone();
            let (updated, _) = crate::store::update(self.app.storage.as_ref(), id, |c| {
                if c.state != ConversationState::Queued || c.offered_to != lapsed {
                    return Err(Rejection::Conflict("changed".into()));
                }
                c.tried.append(&mut c.offered_to);
                c.offer_expires_at = None;
                Ok(())
            })
            .await?;
            self.app
                .metrics
                .offers(&queue.name, OfferOutcome::Expired, lapsed.len() as u64);
            self.events
                .offer_withdrawn(updated.id, lapsed.clone(), "timeout", None)
                .await;
            for agent in &lapsed {
                let missed = self.agents.missed(agent).await;
                if missed >= queue.missed_offers_before_away
                    && self.agents.presence(agent) == Presence::Online
                {
                    self.agents.set_presence(agent, Presence::Away, now).await;
                    self.events.publish(
                        "presence",
                        crate::services::events::presence_audience(&self.app.config(), agent),
                        None,
                        json!({"agent": agent, "presence": "away", "reason": format!("missed {missed} offers in a row")}),
                    ).await;
                    tracing::info!(event = "set_away", agent = %agent, missed, "agent missed offers; set away");
                }
            }
            conv = updated;
        }

        // Closed (outside business hours): say so once per wait, offer nothing, and look
        // again when it opens.
        let hours = self
            .app
            .catalog()
            .queues
            .get(&queue.name)
            .and_then(|q| q.hours.clone());
        if let Some(hours) = hours
            && !hours.is_open(now)
        {
            if let Some(text) = queue.closed_message.as_deref()
                && !conv.closed_notified
            {
                self.send_notice(&conv, Notice::Closed, text, now).await?;
            }
            park(hours.next_open(now).unwrap_or(u64::MAX));
            return Ok(());
        }

        let members = self.members(&queue.name);
        let facts = WorkFacts {
            // The configuration allows at most 64; a conversation stored before that rule keeps
            // its first 64 (the contract's skill set has 64 bits).
            skills: conv
                .skills
                .iter()
                .take(crate::config::MAX_WORK_SKILLS)
                .map(|s| s.to_lowercase())
                .collect(),
            tried: conv.tried.clone(),
        };
        let view = self
            .agents
            .states(&self.app.config(), &members, &facts)
            .await;
        if !view
            .agents
            .iter()
            .any(|a| matches!(a.presence, wit::Presence::Online))
        {
            if let Some(text) = queue.offline_message.as_deref()
                && !conv.offline_notified
            {
                self.send_notice(&conv, Notice::Offline, text, now).await?;
            }
            // Nobody can take it until an agent comes online (a full kick) or it overflows.
            park(u64::MAX);
            return Ok(());
        }

        let Some(router) = self
            .app
            .catalog()
            .queues
            .get(&queue.name)
            .map(|q| q.router.clone())
        else {
            park(now + RECHECK_MS);
            return Ok(());
        };
        let work = wit::WaitingWork {
            conversation: id.to_string(),
            queue: queue.name.clone(),
            channel: conv.channel.clone(),
            skills: facts.skills,
            waiting_since: conv.queued_since / 1000,
            now: now / 1000,
        };
        // What the router is given is kept only for a queue that records its decisions.
        let call = (queue.record_decisions > 0).then(|| (work.clone(), view.agents.clone()));
        let decision = match router.decide(&self.app.sandbox, work, view.agents).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(conversation = id, queue = %queue.name, "router failed; work waits: {e}");
                park(now + RECHECK_MS);
                return Ok(());
            }
        };
        if let Some((work, agents)) = call {
            decisions::record(&self.app, &queue.name, || {
                let label = format!("{} sha256:{}", router.info.name, &router.info.sha256[..12]);
                Snapshot::of(&label, &work, &agents, &view.ids, &decision)
            });
        }
        // Names the router gave that are not in its list are ignored; repeats count once.
        match Decision::from_wit(&decision, &view.ids) {
            Decision::Offer(ids) => {
                if ids.is_empty() {
                    park(now + RECHECK_MS);
                    return Ok(());
                }
                let expires = now + queue.offer_timeout * 1000;
                let offered = ids.clone();
                crate::store::update(self.app.storage.as_ref(), id, |c| {
                    if c.state != ConversationState::Queued || !c.offered_to.is_empty() {
                        return Err(Rejection::Conflict("changed".into()));
                    }
                    c.offered_to = offered.clone();
                    c.offer_expires_at = Some(expires);
                    Ok(())
                })
                .await?;
                park(expires);
                self.app
                    .metrics
                    .offers(&queue.name, OfferOutcome::Made, ids.len() as u64);
                self.agents.offered(&ids, now);
                self.events.publish(
                    "offered",
                    ids.clone(),
                    Some(id),
                    json!({"queue": queue.name, "channel": conv.channel, "customer": conv.customer, "expires_at": expires}),
                ).await;
                tracing::info!(event = "offered", conversation = id, queue = %queue.name, agents = ?ids, "conversation offered");
            }
            Decision::Wait => {
                if !conv.tried.is_empty() {
                    // Everyone available was tried: start a new round. Misses keep counting,
                    // so an absent agent is set away after a few rounds.
                    crate::store::update(self.app.storage.as_ref(), id, |c| {
                        c.tried.clear();
                        Ok(())
                    })
                    .await?;
                    self.look_again_now(id, now);
                } else {
                    park(now + RECHECK_MS);
                }
            }
            Decision::Overflow => {
                if let Some(target) = &queue.overflow {
                    crate::store::update(self.app.storage.as_ref(), id, |c| {
                        overflow(c, target, now);
                        Ok(())
                    })
                    .await?;
                    self.events
                        .publish(
                            "overflowed",
                            self.members(target),
                            Some(id),
                            json!({"from": queue.name, "to": target, "reason": "router"}),
                        )
                        .await;
                    self.look_again_now(id, now);
                } else {
                    park(now + RECHECK_MS);
                }
            }
        }
        Ok(())
    }

    /// Schedules the next look at `id` for `at` (a full kick looks at everything earlier).
    fn park_until(&self, id: u64, at: u64) {
        self.schedule().set(id, at);
    }

    /// Looks at `id` again on the loop's next pass (it moved queue or starts a new round).
    fn look_again_now(&self, id: u64, now: u64) {
        self.park_until(id, now);
        self.kick.notify_one();
    }

    /// Sends `text` as the `notice` of `conv`'s wait, unless it went out already (the flag
    /// and the message are written before the send, so it goes out once).
    async fn send_notice(
        &self,
        conv: &Conversation,
        notice: Notice,
        text: &str,
        now: u64,
    ) -> Result<(), UpdateError> {
        let (_, first) = crate::store::update(self.app.storage.as_ref(), conv.id, |c| {
            let first = !*notice.sent(c);
            *notice.sent(c) = true;
            Ok(first)
        })
        .await?;
        if !first {
            return Ok(());
        }
        let draft = crate::model::OutboundDraft {
            text: Some(text.to_owned()),
            automated: Some(notice.name().to_owned()),
            ..Default::default()
        };
        let (_, message) = self
            .app
            .storage
            .add_outbound(conv.id, None, draft, now)
            .await?;
        self.outbox.submit(message.conversation, message.seq);
        self.app
            .metrics
            .messages(&conv.channel, crate::metrics::Direction::Outbound, 1);
        tracing::info!(
            event = notice.name(),
            conversation = conv.id,
            "{} sent",
            notice.name()
        );
        Ok(())
    }
}
