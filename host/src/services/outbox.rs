//! The outbox worker: sends agents' messages through their channel plugin and the provider
//! client, retries the failures worth retrying, and records the provider's message id or the
//! final error.
//!
//! Sends are queued durably by [`crate::store::Store::add_outbound`] before they are
//! submitted here, and every pending send is resubmitted at start-up, so a crash between
//! queueing and sending loses nothing. Outbound is never silently dropped: a send ends
//! `queued` (the provider took it) or `failed` with its reason, and in between it stays
//! `pending` in the durable outbox.
//!
//! # Retries
//!
//! Each attempt's failure is classified:
//!
//! * **retryable**: the provider could not be reached or did not answer in time
//!   ([`TransportError::Unreachable`]), answered 5xx ([`wit::SendError::Unavailable`]) or
//!   429 ([`wit::SendError::RateLimited`], whose `Retry-After` is honoured as the least
//!   delay), or the plugin was busy or ran past its deadline while *building* the request
//!   (load, not a defect);
//! * **permanent**: the request is invalid, the address opted out (which also marks it opted
//!   out for the channel, so later sends are refused before any provider call), the
//!   credentials are refused, the channel is misconfigured or gone, the host refused the
//!   request ([`TransportError::Refused`]), or the plugin trapped or ran out of memory building
//!   it (the same input traps again). A plugin failure while *reading* the provider's answer
//!   is permanent too: the provider may have accepted the message, and a retry could deliver
//!   it twice.
//!
//! A retryable failure is retried after an exponential backoff with jitter (see
//! [`RetryPolicy`]); while it waits the message is `pending` with the error
//! `attempt k failed: <reason>; retrying in Xs`. The attempt count and the due time live in
//! the durable [`crate::model::OutboxEntry`], so a restart resumes the backoff where it
//! stood. After the last attempt the send is dead-lettered: `failed` with
//! `dead-lettered after N attempts: <last reason>`, and a `dead_lettered` event goes to the
//! message's author and the conversation's owner (a permanent failure sends `send_failed`).
//!
//! # Failover
//!
//! When a channel names a `fallback` and a send's last failure on it is one another provider
//! could get past ([`Failure::may_move`]: unavailable through every retry, or
//! [`Failure::Provider`]), the send moves there once ([`crate::store::Store::move_send`]):
//! its attempts start again with the fallback's plugin, and its outcome, provider id included,
//! is recorded under the fallback channel. Invalid messages and opted-out customers never move.
//!
//! # Crashes and duplicates
//!
//! Delivery is at least once. A send whose request reached the provider but whose answer was
//! not yet on disk when the process died is attempted again after the restart; nothing tells
//! the host whether the provider took it. To keep that window small, at most
//! [`DEFAULT_IN_FLIGHT_PER_CHANNEL`] attempts per channel are in flight at once (so a crash can
//! repeat at most that many sends per channel), and the first thing done with a provider's
//! answer is reading it and making the outcome durable, before waiters are told or events go
//! out. Where the provider takes an idempotency key, the plugin sends one derived from the
//! outbound message's `id`, which is the same on every attempt and after restarts (LINE push:
//! `X-Line-Retry-Key`), so the provider drops the repeat.
//!
//! # Order
//!
//! A conversation's sends go out in the order they were written: a send starts only once
//! every earlier send of its conversation on this host is settled (sent, failed for good, or
//! moved on). A send in backoff holds the later ones of its conversation back, never another
//! conversation's; whoever waits on a held-back send hears at once that it is pending. Hosts
//! sharing a store order the sends each one works on, not across hosts.
//!
//! # Shutdown
//!
//! [`Outbox::drain`] stops starting attempts, lets the attempts in flight finish and record
//! their outcome (bounded), and leaves every other send pending in the durable outbox for the
//! next start.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot, watch};

use crate::clock::Clock;
use crate::metrics::AttemptOutcome;
use crate::model::{Attachment, Conversation, Failover, Message, OutboxEntry};
use crate::runtime::bindings::{describe_send_error, wit};
use crate::runtime::provider_http::{ProviderClient, TransportError};
use crate::runtime::sandbox::PluginError;
use crate::services::app::App;
use crate::services::events::{self, EventHub};
use crate::services::tokens::TokenError;
use crate::store::{NewEvent, StoreError};

/// How many provider attempts run at once, over all channels.
const MAX_CONCURRENT_SENDS: u32 = 32;

/// How many provider attempts run at once on one channel (override:
/// `PLUGBOARD_OUTBOX_IN_FLIGHT`): the most sends a crash can leave in doubt per channel.
pub const DEFAULT_IN_FLIGHT_PER_CHANNEL: usize = 8;

/// Attempts per send before it is dead-lettered (override: `PLUGBOARD_OUTBOX_MAX_ATTEMPTS`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;

/// The first retry's nominal delay, in milliseconds; each further retry doubles it (override:
/// `PLUGBOARD_OUTBOX_BASE_MS`).
pub const DEFAULT_BASE_DELAY_MS: u64 = 500;

/// The longest backoff between two attempts, in milliseconds.
pub const MAX_DELAY_MS: u64 = 60_000;

/// The longest provider `Retry-After` honoured, in seconds; a longer one is cut to this so a
/// misbehaving provider cannot park a send for days.
pub const MAX_RETRY_AFTER_SECS: u64 = 900;

type SendKey = (u64, u64);

/// When failed attempts are retried: exponential backoff with "equal jitter" (half the nominal
/// delay fixed, half random), capped, at least the provider's `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per send, the first included (at least 1).
    pub max_attempts: u32,
    /// The nominal delay after the first failed attempt.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base: Duration::from_millis(DEFAULT_BASE_DELAY_MS),
            cap: Duration::from_millis(MAX_DELAY_MS),
        }
    }
}

impl RetryPolicy {
    /// The defaults, with `PLUGBOARD_OUTBOX_MAX_ATTEMPTS` and `PLUGBOARD_OUTBOX_BASE_MS` applied
    /// when set to a positive number (tests use them to fail fast).
    pub fn from_env() -> RetryPolicy {
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&v| v > 0)
        };
        let mut policy = RetryPolicy::default();
        if let Some(n) = num("PLUGBOARD_OUTBOX_MAX_ATTEMPTS") {
            policy.max_attempts = n.min(u64::from(u32::MAX)) as u32;
        }
        if let Some(ms) = num("PLUGBOARD_OUTBOX_BASE_MS") {
            policy.base = Duration::from_millis(ms);
            policy.cap = policy.cap.max(policy.base);
        }
        policy
    }

    /// The nominal (jitter-free) delay after failed attempt `attempt` (from 1).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        self.base
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.cap)
    }

    /// The delay after failed attempt `attempt`, jittered, and no shorter than `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let nominal = self.nominal(attempt);
        let half = nominal / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
        let backoff = half + Duration::from_millis(jitter_ms);
        match retry_after {
            Some(after) => backoff.max(after.min(Duration::from_secs(MAX_RETRY_AFTER_SECS))),
            None => backoff,
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt, no earlier than `after` when the provider said so.
    Retryable {
        /// What happened.
        reason: String,
        /// The provider's `Retry-After`.
        after: Option<Duration>,
    },
    /// Another attempt would fail the same way, on any provider (the message is invalid, or
    /// the provider may have taken it).
    Permanent(String),
    /// This provider cannot take it, however often asked: the channel is misconfigured, gone
    /// or unavailable, its credentials are refused, the host refuses its address, or its
    /// plugin fails building the request. Another provider (the channel's `fallback`) may.
    Provider(String),
    /// The provider says the address opted out.
    OptedOut(String),
}

impl Failure {
    /// The reason as stored on the message.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Retryable { reason, .. } => reason,
            Failure::Permanent(r) | Failure::Provider(r) | Failure::OptedOut(r) => r,
        }
    }

    /// Whether the send may move to the channel's fallback once this failure is the last on
    /// its channel: the provider was unavailable through every retry, or cannot take it at
    /// all. Never for an invalid message or an opted-out customer.
    pub fn may_move(&self) -> bool {
        matches!(self, Failure::Retryable { .. } | Failure::Provider(_))
    }

    /// Classifies a plugin's send error.
    pub fn from_send_error(e: &wit::SendError) -> Failure {
        let reason = describe_send_error(e);
        match e {
            wit::SendError::RateLimited(s) => Failure::Retryable {
                reason,
                after: s.map(|s| Duration::from_secs(u64::from(s))),
            },
            wit::SendError::Unavailable(_) => Failure::Retryable {
                reason,
                after: None,
            },
            wit::SendError::OptedOut(_) => Failure::OptedOut(reason),
            wit::SendError::Invalid(_) => Failure::Permanent(reason),
            wit::SendError::Unauthorized(_) | wit::SendError::Misconfigured(_) => {
                Failure::Provider(reason)
            }
        }
    }

    /// Classifies a provider request that got no answer.
    pub fn from_transport(e: &TransportError) -> Failure {
        match e {
            TransportError::Refused(_) => Failure::Provider(e.to_string()),
            TransportError::Unreachable(_) => Failure::Retryable {
                reason: e.to_string(),
                after: None,
            },
        }
    }

    /// Classifies a failed plugin call; `before_send` tells whether the provider has not been
    /// called yet (building the request) or has answered (reading the answer).
    pub fn from_plugin(e: &PluginError, before_send: bool) -> Failure {
        let reason = format!("plugin error: {e}");
        if !before_send {
            return Failure::Permanent(format!(
                "{reason} (after the provider answered; not retried, the message may have been sent)"
            ));
        }
        match e {
            PluginError::Timeout { .. } | PluginError::Busy { .. } => Failure::Retryable {
                reason,
                after: None,
            },
            _ => Failure::Provider(reason),
        }
    }
}

/// The handle request handlers use to submit sends and wait for their outcome.
pub struct Outbox {
    app: Arc<App>,
    client: ProviderClient,
    events: Arc<EventHub>,
    policy: RetryPolicy,
    slots: Arc<Semaphore>,
    /// Attempts in flight per channel, at most `per_channel` each.
    channel_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_channel: usize,
    waiters: Mutex<HashMap<SendKey, Vec<oneshot::Sender<Message>>>>,
    /// Sends with a task working on them, by conversation, so a double submission runs once
    /// and a conversation's sends go out in order.
    lanes: Mutex<HashMap<u64, Lane>>,
    draining: AtomicBool,
    drain_signal: watch::Sender<bool>,
    /// This process as a holder of send claims (a shared store only).
    holder: String,
    /// How long a claim lasts, ms.
    lease_ms: u64,
}

/// One conversation's sends with a task working on them: the lowest seq goes first.
#[derive(Default)]
struct Lane {
    seqs: BTreeSet<u64>,
    /// The first send waits out a retry's backoff.
    backing_off: bool,
    /// Woken whenever a send leaves the lane.
    turn: Arc<tokio::sync::Notify>,
}

impl Outbox {
    /// Starts the worker with the retry policy from the environment ([`RetryPolicy::from_env`])
    /// and resubmits every send left pending by an earlier run; each waits until its next
    /// attempt is due.
    pub async fn start(
        app: Arc<App>,
        client: ProviderClient,
        events: Arc<EventHub>,
    ) -> Result<Arc<Outbox>, StoreError> {
        Outbox::start_with(app, client, events, RetryPolicy::from_env()).await
    }

    /// [`Outbox::start`] with an explicit retry policy (the per-channel cap still comes from
    /// `PLUGBOARD_OUTBOX_IN_FLIGHT`, default [`DEFAULT_IN_FLIGHT_PER_CHANNEL`]).
    pub async fn start_with(
        app: Arc<App>,
        client: ProviderClient,
        events: Arc<EventHub>,
        policy: RetryPolicy,
    ) -> Result<Arc<Outbox>, StoreError> {
        let (drain_signal, _) = watch::channel(false);
        let provider_timeout = app.config().limits.provider_timeout();
        let holder = app.host_id.clone();
        let outbox = Arc::new(Outbox {
            app,
            client,
            events,
            policy: RetryPolicy {
                max_attempts: policy.max_attempts.max(1),
                ..policy
            },
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_SENDS as usize)),
            channel_slots: Mutex::new(HashMap::new()),
            per_channel: in_flight_per_channel(),
            waiters: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            drain_signal,
            holder,
            lease_ms: lease_ms(provider_timeout),
        });
        let pending = outbox.app.storage.pending_sends().await?;
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "resuming pending sends");
        }
        for entry in pending {
            outbox.clone().spawn((entry.conversation, entry.seq));
        }
        if outbox.app.storage.is_shared() {
            tokio::spawn(sweep_shared(Arc::downgrade(&outbox)));
        }
        Ok(outbox)
    }

    /// Claims a due send for this host before an attempt, when other hosts share the store
    /// (one host attempts it; a host that dies mid-send leaves a claim that lapses, and
    /// another resumes). The entry as claimed, or `None` when another host holds it or it is
    /// done. A store of this host's alone needs no claim.
    async fn claim(&self, entry: OutboxEntry, now: u64) -> Result<Option<OutboxEntry>, StoreError> {
        if !self.app.storage.is_shared() {
            return Ok(Some(entry));
        }
        self.app
            .storage
            .claim_send(
                entry.conversation,
                entry.seq,
                &self.holder,
                now,
                self.lease_ms,
            )
            .await
    }

    /// The retry policy in force.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Registers interest in a send's outcome; call before [`Outbox::submit`]. The receiver
    /// gets the message after the first attempt, whether it succeeded, failed for good, or
    /// will be retried (then it is `pending` with the retry note), or at once if the host is
    /// shutting down.
    pub fn watch(&self, conversation: u64, seq: u64) -> oneshot::Receiver<Message> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("outbox waiters lock")
            .entry((conversation, seq))
            .or_default()
            .push(tx);
        rx
    }

    /// Submits a durably queued send.
    pub fn submit(self: &Arc<Self>, conversation: u64, seq: u64) {
        self.clone().spawn((conversation, seq));
    }

    /// Waits up to `timeout` for a watched send's outcome.
    pub async fn wait(&self, rx: oneshot::Receiver<Message>, timeout: Duration) -> Option<Message> {
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }

    /// Stops starting attempts and waits up to `timeout` for the attempts in flight to finish
    /// and be recorded. Returns whether they all did; sends not attempted stay pending in the
    /// durable outbox.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        self.drain_signal.send_replace(true);
        // Every attempt holds a slot from before it starts until its outcome is durable, and
        // the semaphore is fair: holding all slots means none is in flight.
        match tokio::time::timeout(timeout, self.slots.acquire_many(MAX_CONCURRENT_SENDS)).await {
            Ok(Ok(permits)) => {
                permits.forget();
                true
            }
            _ => false,
        }
    }

    /// The semaphore bounding the attempts in flight on `channel`.
    fn channel_slot(&self, channel: &str) -> Arc<Semaphore> {
        self.channel_slots
            .lock()
            .expect("outbox channel slots lock")
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_channel)))
            .clone()
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn notify(&self, key: SendKey, message: Message) {
        let waiters = self
            .waiters
            .lock()
            .expect("outbox waiters lock")
            .remove(&key)
            .unwrap_or_default();
        for w in waiters {
            let _ = w.send(message.clone());
        }
    }

    /// Tells waiters the current state of the message (used when no attempt will run now).
    async fn notify_current(&self, key: SendKey) {
        if let Ok(Some(message)) = self.app.storage.message(key.0, key.1).await {
            self.notify(key, message);
        }
    }

    fn spawn(self: Arc<Self>, key: SendKey) {
        if !self
            .lanes
            .lock()
            .expect("outbox lanes lock")
            .entry(key.0)
            .or_default()
            .seqs
            .insert(key.1)
        {
            return;
        }
        tokio::spawn(async move {
            let result = match self.wait_turn(key).await {
                true => self.run(key).await,
                false => Ok(()),
            };
            if let Err(e) = result {
                tracing::error!(conversation = key.0, seq = key.1, "send not recorded: {e}");
            }
            self.leave_lane(key);
            // Anyone still waiting (storage failed, or the host is shutting down) hears the
            // message as it stands.
            self.notify_current(key).await;
        });
    }

    /// Waits until every earlier send of the conversation is settled, so a customer gets a
    /// conversation's messages in the order they were written (a send in backoff holds the
    /// later ones back). False when the host starts shutting down first.
    async fn wait_turn(&self, key: SendKey) -> bool {
        let (conversation, seq) = key;
        let mut drain = self.drain_signal.subscribe();
        let mut told = false;
        loop {
            let turn;
            let mut notified;
            let backing_off;
            {
                // Waiters are woken under this lock: enabled before it is let go, the wait
                // cannot miss a wake-up.
                let lanes = self.lanes.lock().expect("outbox lanes lock");
                let Some(lane) = lanes.get(&conversation) else {
                    return true;
                };
                if lane.seqs.first().is_none_or(|&first| first == seq) {
                    return true;
                }
                backing_off = lane.backing_off;
                turn = lane.turn.clone();
                notified = Box::pin(turn.notified());
                notified.as_mut().enable();
            }
            if backing_off && !told {
                // Whoever waits on this send hears now that it is pending, not after the
                // earlier send's backoff.
                told = true;
                self.notify_current(key).await;
            }
            tokio::select! {
                _ = notified => {}
                _ = drain.wait_for(|d| *d) => return false,
            }
        }
    }

    /// Marks whether the head of `conversation`'s lane waits out a backoff.
    fn backing_off(&self, conversation: u64, waiting: bool) {
        if let Some(lane) = self
            .lanes
            .lock()
            .expect("outbox lanes lock")
            .get_mut(&conversation)
        {
            lane.backing_off = waiting;
            lane.turn.notify_waiters();
        }
    }

    /// The send `key` is done with: the conversation's next send may go.
    fn leave_lane(&self, (conversation, seq): SendKey) {
        let mut lanes = self.lanes.lock().expect("outbox lanes lock");
        if let Some(lane) = lanes.get_mut(&conversation) {
            lane.seqs.remove(&seq);
            lane.turn.notify_waiters();
            if lane.seqs.is_empty() {
                lanes.remove(&conversation);
            }
        }
    }

    /// Attempts one send until it succeeds, fails for good, or the host shuts down.
    async fn run(&self, key: SendKey) -> Result<(), StoreError> {
        let (conversation, seq) = key;
        let storage = &self.app.storage;
        let mut drain = self.drain_signal.subscribe();
        loop {
            let Some(entry) = storage.outbox_entry(conversation, seq).await? else {
                return Ok(());
            };
            let now = Clock::System.now_millis();
            if entry.next_at > now {
                let wait = Duration::from_millis(entry.next_at - now);
                self.backing_off(conversation, true);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = drain.wait_for(|d| *d) => return Ok(()),
                }
                self.backing_off(conversation, false);
            }
            let Some(conv) = storage.conversation(conversation).await? else {
                return Ok(());
            };
            let Some(message) = storage.message(conversation, seq).await? else {
                return Ok(());
            };
            // Both permits are held until the outcome is durable: the channel's bounds how many
            // of its sends a crash can leave in doubt, the global one lets `drain` wait.
            let channel_slot = self.channel_slot(message.send_channel(&conv.channel));
            let at_once = (
                channel_slot.clone().try_acquire_owned(),
                self.slots.clone().try_acquire_owned(),
            );
            let (_channel_slot, _slot, waited) = match at_once {
                (Ok(channel), Ok(global)) => (channel, global, false),
                partial => {
                    // A slot taken at once is given back before waiting for the other.
                    drop(partial);
                    let channel = tokio::select! {
                        permit = channel_slot.acquire_owned() => match permit {
                            Ok(p) => p,
                            Err(_) => return Ok(()),
                        },
                        _ = drain.wait_for(|d| *d) => return Ok(()),
                    };
                    let Ok(global) = self.slots.clone().acquire_owned().await else {
                        return Ok(());
                    };
                    (channel, global, true)
                }
            };
            if self.is_draining() {
                return Ok(());
            }
            // What waited for a slot is read again: the conversation may have moved on.
            let (conv, message) = if waited {
                let Some(conv) = storage.conversation(conversation).await? else {
                    return Ok(());
                };
                let Some(message) = storage.message(conversation, seq).await? else {
                    return Ok(());
                };
                (conv, message)
            } else {
                (conv, message)
            };
            let now = Clock::System.now_millis();
            let Some(entry) = self.claim(entry, now).await? else {
                return Ok(());
            };
            if entry.next_at > now {
                // Another host attempted it meanwhile and set a later retry.
                continue;
            }
            let attempt_no = entry.attempts.saturating_add(1);
            let via = message.send_channel(&conv.channel).to_owned();
            let outcome = attempt(&self.app, &self.client, &conv, &message, &via).await;
            let retry_in = match &outcome {
                Err(Failure::Retryable { after, .. }) if attempt_no < self.policy.max_attempts => {
                    Some(self.policy.delay(attempt_no, *after))
                }
                _ => None,
            };
            let channel = via.as_str();
            if retry_in.is_none()
                && let Err(failure) = &outcome
                && failure.may_move()
                && message.failover.is_none()
                && let Some(moved) = self
                    .move_to_fallback(&conv, seq, attempt_no, failure)
                    .await?
            {
                if moved {
                    continue;
                }
                return Ok(());
            }
            match (&outcome, retry_in) {
                (Ok(id), _) => {
                    tracing::info!(event = "sent", conversation, seq, channel, attempt = attempt_no, provider_id = %id, "message sent");
                    let status = |m: &Message| self.status_notice(&conv, m).into_iter().collect();
                    self.settle(key, channel, Ok(id.clone()), AttemptOutcome::Sent, &status)
                        .await?;
                    // The next send of the conversation waits for this one to finish, so it
                    // never sees the spent facts.
                    if via == conv.channel
                        && conv.thread.iter().any(|(k, _)| k.starts_with("once:"))
                    {
                        // Single-use provider facts (a LINE reply token) are spent by a successful send.
                        if let Err(e) = crate::store::update(storage.as_ref(), conversation, |c| {
                            c.thread.retain(|(k, _)| !k.starts_with("once:"));
                            Ok(())
                        })
                        .await
                        {
                            tracing::warn!(conversation, "could not drop spent thread facts: {e}");
                        }
                    }
                    self.events
                        .conversation_changed(&conv.channel, &conv.customer);
                    return Ok(());
                }
                (Err(failure), Some(delay)) => {
                    let note = format!(
                        "attempt {attempt_no} failed: {}; retrying in {}",
                        failure.reason(),
                        seconds(delay)
                    );
                    tracing::warn!(
                        event = "send_retry",
                        conversation,
                        seq,
                        channel,
                        attempt = attempt_no,
                        "{note}"
                    );
                    let next_at = Clock::System
                        .now_millis()
                        .saturating_add(delay.as_millis() as u64);
                    let updated = storage
                        .record_retry(conversation, seq, attempt_no, next_at, &note)
                        .await?;
                    self.app.metrics.attempt(channel, AttemptOutcome::Retry);
                    match updated {
                        Some(m) => self.notify(key, m),
                        None => return Ok(()),
                    }
                }
                (Err(failure), None) => {
                    let (kind, outcome, reason) = match failure {
                        Failure::Retryable { reason, .. } => (
                            "dead_lettered",
                            AttemptOutcome::DeadLettered,
                            format!("dead-lettered after {attempt_no} attempts: {reason}"),
                        ),
                        Failure::OptedOut(reason) => {
                            storage
                                .set_opted_out(
                                    channel,
                                    &conv.customer,
                                    true,
                                    Clock::System.now_millis(),
                                )
                                .await?;
                            ("send_failed", AttemptOutcome::OptedOut, reason.clone())
                        }
                        Failure::Permanent(reason) | Failure::Provider(reason) => {
                            ("send_failed", AttemptOutcome::Failed, reason.clone())
                        }
                    };
                    tracing::warn!(
                        event = kind,
                        conversation,
                        seq,
                        channel,
                        attempt = attempt_no,
                        "send failed: {reason}"
                    );
                    let notices = |m: &Message| {
                        self.status_notice(&conv, m)
                            .into_iter()
                            .chain(self.failure_notice(kind, &conv, m, attempt_no, &reason))
                            .collect()
                    };
                    self.settle(key, channel, Err(reason.clone()), outcome, &notices)
                        .await?;
                    return Ok(());
                }
            }
        }
    }

    /// Makes a send's last attempt on `channel` its outcome (durable first, with `notices`
    /// logged in the same write), then counts it and tells the waiters and the agents.
    async fn settle(
        &self,
        key: SendKey,
        channel: &str,
        outcome: Result<String, String>,
        attempt: AttemptOutcome,
        notices: crate::store::SendNotices<'_>,
    ) -> Result<(), StoreError> {
        let updated = self
            .app
            .storage
            .complete_send_with(
                channel,
                key.0,
                key.1,
                outcome,
                Clock::System.now_millis(),
                notices,
            )
            .await?;
        self.app.metrics.attempt(channel, attempt);
        if let Some((m, logged)) = updated {
            self.app.metrics.delivery(channel, m.status);
            self.notify(key, m);
            self.events.broadcast(logged);
        }
        Ok(())
    }

    /// Moves send `seq` of `conv` to its channel's fallback after `failure` ended its last
    /// attempt there. `None` when the channel names no fallback (the failure stands);
    /// `Some(true)` when it moved (attempts start again there); `Some(false)` when the send
    /// is no longer waiting.
    async fn move_to_fallback(
        &self,
        conv: &Conversation,
        seq: u64,
        attempts: u32,
        failure: &Failure,
    ) -> Result<Option<bool>, StoreError> {
        let Some(fallback) = self
            .app
            .config()
            .channel(&conv.channel)
            .and_then(|c| c.fallback.clone())
        else {
            return Ok(None);
        };
        let reason = match failure {
            Failure::Retryable { reason, .. } => {
                format!("unavailable after {attempts} attempts: {reason}")
            }
            other => other.reason().to_owned(),
        };
        let failover = Failover {
            from: conv.channel.clone(),
            to: fallback,
            reason,
            at: Clock::System.now_millis(),
        };
        let Some(message) = self.app.storage.move_send(conv.id, seq, &failover).await? else {
            return Ok(Some(false));
        };
        if message.failover.as_ref() != Some(&failover) {
            // Another host moved it first; its move stands.
            return Ok(Some(true));
        }
        tracing::warn!(
            event = "failover",
            conversation = conv.id,
            seq,
            channel = %failover.from,
            fallback = %failover.to,
            "send moves to the fallback channel: {}",
            failover.reason
        );
        self.app.metrics.failover(&failover.from, &failover.to);
        Ok(Some(true))
    }

    /// What tells the conversation's agents (and the message's author) where a send stands
    /// once it is settled: its `status` now (taken by the provider, or failed for good).
    fn status_notice(&self, conv: &Conversation, message: &Message) -> Option<NewEvent> {
        self.events.notice(
            "status",
            events::audience(&self.app.config(), conv, message.author.as_deref()),
            Some(conv.id),
            serde_json::json!({
                "seq": message.seq,
                "id": message.id(),
                "status": message.status,
                "error": message.error,
                "failover": message.failover,
                "settled": true,
            }),
        )
    }

    /// What tells the conversation's agents (and the message's author) that a send failed for
    /// good (`kind`: `send_failed` or `dead_lettered`).
    fn failure_notice(
        &self,
        kind: &str,
        conv: &Conversation,
        message: &Message,
        attempts: u32,
        reason: &str,
    ) -> Option<NewEvent> {
        self.events.notice(
            kind,
            events::audience(&self.app.config(), conv, message.author.as_deref()),
            Some(conv.id),
            serde_json::json!({
                "message": message.id(),
                "id": message.id(),
                "seq": message.seq,
                "status": message.status,
                "attempts": attempts,
                "error": reason,
            }),
        )
    }
}

/// The per-channel cap on attempts in flight: `PLUGBOARD_OUTBOX_IN_FLIGHT` when a positive
/// number, else [`DEFAULT_IN_FLIGHT_PER_CHANNEL`].
/// How often a host sharing its store looks for sends no host is attempting (one whose host
/// died mid-send is found once its claim lapses).
const SHARED_SWEEP: Duration = Duration::from_secs(2);

/// Resubmits, every [`SHARED_SWEEP`], each waiting send not running here: the attempt claims
/// it first, so a send another host holds is left to that host until its claim lapses.
async fn sweep_shared(outbox: std::sync::Weak<Outbox>) {
    loop {
        tokio::time::sleep(SHARED_SWEEP).await;
        let Some(outbox) = outbox.upgrade() else {
            return;
        };
        if outbox.is_draining() {
            return;
        }
        match outbox.app.storage.pending_sends().await {
            Ok(pending) => {
                for entry in pending {
                    outbox.clone().spawn((entry.conversation, entry.seq));
                }
            }
            Err(e) => tracing::warn!("cannot read the outbox: {e}"),
        }
    }
}

/// How long a send claim lasts (override: `PLUGBOARD_OUTBOX_LEASE_MS`): past the longest an
/// attempt can take (the provider timeout, twice, plus the plugin calls), so a live host's
/// claim never lapses mid-send.
fn lease_ms(provider_timeout: Duration) -> u64 {
    std::env::var("PLUGBOARD_OUTBOX_LEASE_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(provider_timeout.as_millis() as u64 * 2 + 10_000)
}

fn in_flight_per_channel() -> usize {
    std::env::var("PLUGBOARD_OUTBOX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .map_or(DEFAULT_IN_FLIGHT_PER_CHANNEL, |n| {
            n.min(MAX_CONCURRENT_SENDS as usize)
        })
}

/// `1.5s`, `12s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{:.1}s", s)
    } else {
        format!("{}s", s.round() as u64)
    }
}

/// Why one try failed: a plain failure, or the provider refusing the cached token.
enum TryError {
    Failed(Failure),
    TokenRefused(String),
}

impl From<Failure> for TryError {
    fn from(f: Failure) -> Self {
        TryError::Failed(f)
    }
}

/// One attempt. A send refused as unauthorized with a cached token drops the token and is
/// tried once more at once with a fresh one.
async fn attempt(
    app: &Arc<App>,
    client: &ProviderClient,
    conv: &Conversation,
    message: &Message,
    via: &str,
) -> Result<String, Failure> {
    match attempt_once(app, client, conv, message, via).await {
        Ok(id) => Ok(id),
        Err(TryError::Failed(f)) => Err(f),
        Err(TryError::TokenRefused(_)) => {
            app.tokens.invalidate(via);
            tracing::info!(channel = %via, "token refused; fetching a fresh one");
            match attempt_once(app, client, conv, message, via).await {
                Ok(id) => Ok(id),
                Err(TryError::Failed(f)) => Err(f),
                Err(TryError::TokenRefused(reason)) => Err(Failure::Provider(reason)),
            }
        }
    }
}

/// Build the request in the plugin of channel `via` (the conversation's, or its fallback),
/// perform it, read the answer in the plugin.
async fn attempt_once(
    app: &Arc<App>,
    client: &ProviderClient,
    conv: &Conversation,
    message: &Message,
    via: &str,
) -> Result<String, TryError> {
    let channel = app.live_channel(via).ok_or_else(|| {
        Failure::Provider(format!(
            "channel {via} is not configured, or is disabled or deleted"
        ))
    })?;
    let opted_out = app
        .storage
        .is_opted_out(via, &conv.customer)
        .await
        .map_err(|e| Failure::Retryable {
            reason: e.to_string(),
            after: None,
        })?;
    if opted_out {
        return Err(Failure::Permanent(format!(
            "opted out: {} opted out of this channel",
            conv.customer
        ))
        .into());
    }
    if channel.plugin.manifest.hosted_chat {
        // The visitor's widget reads the stored conversation: storing it is delivering it.
        return Ok(format!("webchat-{}", message.id()));
    }
    let token = app
        .tokens
        .get(&app.sandbox, client, &channel)
        .await
        .map_err(|e| match e {
            TokenError::Retryable(reason) => Failure::Retryable {
                reason,
                after: None,
            },
            TokenError::Permanent(reason) => Failure::Provider(reason),
        })?;
    let token_used = token.is_some();
    let now = Clock::System.now_millis();
    let outbound = wit::OutboundMessage {
        id: message.id(),
        to: conv.customer.clone(),
        text: message.text.clone(),
        attachments: message
            .attachments
            .iter()
            .map(|a: &Attachment| wit::Attachment {
                url: a.url.clone(),
                content_type: a.content_type.clone(),
            })
            .collect(),
        thread: outbound_thread(conv, message, via),
        since_last_inbound: conv.last_inbound_at.map(|t| now.saturating_sub(t) / 1000),
        token,
    };
    let plugin = &channel.plugin;
    let request = plugin
        .prepare_send(
            &app.sandbox,
            &channel.name,
            outbound,
            channel.settings.clone(),
        )
        .await
        .map_err(|e| Failure::from_plugin(&e, true))?
        .map_err(|e| Failure::from_send_error(&e))?;
    let response = client
        .perform(&channel.allowed_hosts, request)
        .await
        .map_err(|e| Failure::from_transport(&e))?;
    plugin
        .read_send_response(
            &app.sandbox,
            &channel.name,
            response,
            channel.settings.clone(),
        )
        .await
        .map_err(|e| Failure::from_plugin(&e, false))?
        .map_err(|e| match e {
            wit::SendError::Unauthorized(_) if token_used => {
                TryError::TokenRefused(describe_send_error(&e))
            }
            other => TryError::Failed(Failure::from_send_error(&other)),
        })
}

/// The provider facts passed to `prepare-send`: the conversation's latest inbound facts (its
/// own channel's provider's, so none on a fallback), plus the chosen template
/// (`template_content_sid`, `template_variables`) when the message sends one.
fn outbound_thread(conv: &Conversation, message: &Message, via: &str) -> Vec<(String, String)> {
    let mut thread = match via == conv.channel {
        true => conv.thread.clone(),
        false => Vec::new(),
    };
    if let Some(t) = &message.template {
        thread.push(("template_content_sid".to_owned(), t.content_sid.clone()));
        thread.push(("template_variables".to_owned(), t.variables.clone()));
    }
    thread
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.nominal(1), Duration::from_millis(500));
        assert_eq!(p.nominal(2), Duration::from_millis(1000));
        assert_eq!(p.nominal(5), Duration::from_millis(8000));
        assert_eq!(p.nominal(20), Duration::from_secs(60));
        assert_eq!(p.nominal(u32::MAX), Duration::from_secs(60));
        for attempt in 1..10 {
            let d = p.delay(attempt, None);
            let n = p.nominal(attempt);
            assert!(d >= n / 2 && d <= n, "{d:?} vs {n:?}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(1_000_000))),
            Duration::from_secs(MAX_RETRY_AFTER_SECS)
        );
    }

    #[test]
    fn send_errors_are_classified() {
        use wit::SendError as E;
        let retry = |e: &E| matches!(Failure::from_send_error(e), Failure::Retryable { .. });
        assert!(retry(&E::Unavailable("503".into())));
        assert!(retry(&E::RateLimited(Some(2))));
        assert!(!retry(&E::Invalid("21211".into())));
        assert!(!retry(&E::Unauthorized("20003".into())));
        assert!(!retry(&E::Misconfigured("from".into())));
        assert!(matches!(
            Failure::from_send_error(&E::OptedOut("21610".into())),
            Failure::OptedOut(_)
        ));
        assert_eq!(
            Failure::from_send_error(&E::RateLimited(Some(2))),
            Failure::Retryable {
                reason: "rate limited: retry after 2s".into(),
                after: Some(Duration::from_secs(2))
            }
        );
        assert!(matches!(
            Failure::from_transport(&TransportError::Refused("host".into())),
            Failure::Provider(_)
        ));
        assert!(matches!(
            Failure::from_transport(&TransportError::Unreachable("timeout".into())),
            Failure::Retryable { .. }
        ));
    }

    #[test]
    fn only_what_another_provider_could_take_moves_to_the_fallback() {
        use wit::SendError as E;
        let moves = |e: &E| Failure::from_send_error(e).may_move();
        assert!(moves(&E::Unavailable("503".into())));
        assert!(moves(&E::RateLimited(None)));
        assert!(moves(&E::Unauthorized("20003".into())));
        assert!(moves(&E::Misconfigured("from".into())));
        assert!(!moves(&E::Invalid("21211".into())));
        assert!(!moves(&E::OptedOut("21610".into())));
        let trap = PluginError::Trap {
            plugin: "twilio-sms".into(),
            function: "prepare-send",
            reason: "unreachable".into(),
        };
        assert!(Failure::from_plugin(&trap, true).may_move());
        assert!(
            !Failure::from_plugin(&trap, false).may_move(),
            "after the provider answered, it may have sent it"
        );
        assert!(Failure::from_transport(&TransportError::Refused("host".into())).may_move());
    }
}
