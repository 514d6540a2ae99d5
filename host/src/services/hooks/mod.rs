//! Events for the world outside: every conversation event is delivered to each
//! `[[subscriptions]]` URL as a signed webhook (Standard Webhooks) and to each
//! `[[integrations]]` plugin, durably, at least once.
//!
//! # How an event travels
//!
//! 1. Services log events as they happen ([`crate::services::events::EventHub`]); with targets
//!    configured, events no agent is told of are logged too, in the same write as the change
//!    where intake makes it.
//! 2. One task follows the log from a durable cursor and turns each event into its envelopes
//!    ([`envelope`]), one [`Delivery`] per target that wants it, stored before the cursor
//!    moves past the event (a crash repeats the fan-out; a delivery already stored is kept).
//! 3. A scheduler gives each target's pending deliveries their attempts: at most
//!    [`IN_FLIGHT_PER_TARGET`] at once per target, one at a time per conversation and in log
//!    order, so a conversation's events arrive in order; targets never wait on each other,
//!    and nothing here is on a webhook's or an agent's path.
//! 4. A failed attempt is retried with exponential backoff (5 s doubling to 2 h, with jitter,
//!    `Retry-After` honoured up to 15 min) until `max_attempts`; then it is dead-lettered with
//!    its reason. An answer that cannot change (a 4xx but 408 and 429, an integration's error)
//!    is final at once. An admin redelivers one or every failed delivery.
//!
//! With no subscription or integration configured, none of this reads or writes anything.
//!
//! On a store shared by several hosts, one host at a time (the `hooks` role) does this; it
//! reads the deliveries again every 15 s, so a redelivery asked of another host is seen.

pub mod delivery;
pub mod envelope;
pub mod integration;
pub mod signature;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::metrics::HookOutcome;
use crate::model::StoredEvent;
use crate::runtime::bindings::wit;
use crate::runtime::provider_http::{AllowList, ProviderClient, TransportError};
use crate::services::app::App;
use crate::services::catalog::IntegrationInstance;
use crate::services::events::EventHub;
use crate::services::outbox::RetryPolicy;
use crate::store::StoreError;
pub use delivery::{Attempt, Delivery, DeliveryState};
use envelope::Envelope;

/// Attempts in flight at once per target.
pub const IN_FLIGHT_PER_TARGET: usize = 4;

/// Delivered deliveries kept per target for the admin API; older ones are forgotten.
const KEEP_DELIVERED: usize = 1000;

/// Dead letters kept per target; older ones are forgotten.
const KEEP_FAILED: usize = 10_000;

/// Events read from the log at once.
const FAN_OUT_CHUNK: usize = 256;

/// The first retry's nominal delay unless `PLUGBOARD_HOOKS_BASE_MS` says otherwise.
const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(5);

/// The longest backoff between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(2 * 3600);

/// How often a host sharing its store reads its books of deliveries again.
const SHARED_REFRESH: Duration = Duration::from_secs(15);

/// Where the fan-out's cursor is kept.
const CURSOR_SPACE: &str = "hooks";
const CURSOR_KEY: &str = "cursor";

/// Why an admin's request about deliveries failed.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    /// No subscription or integration has that name.
    #[error("no subscription or integration named {0:?} is configured")]
    UnknownTarget(String),
    /// The target has no delivery of that event.
    #[error("{target} has no delivery of event {event:?}")]
    UnknownDelivery {
        /// The target.
        target: String,
        /// The event id asked for.
        event: String,
    },
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// A target's counts, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetSummary {
    /// Its name.
    pub name: String,
    /// `subscription` or `integration`.
    pub kind: &'static str,
    /// Deliveries not yet delivered.
    pub pending: usize,
    /// Dead letters.
    pub failed: usize,
    /// Deliveries delivered (the latest kept).
    pub delivered: usize,
    /// The newest error recorded on any of its deliveries.
    pub last_error: Option<String>,
}

/// Where one delivery goes.
#[derive(Clone)]
enum Sink {
    /// A subscription's URL, signed with its key.
    Webhook {
        url: String,
        key: Arc<Vec<u8>>,
        timeout: Duration,
    },
    /// An integration plugin.
    Integration(Arc<IntegrationInstance>),
}

/// A subscription or an integration, as configured now.
#[derive(Clone)]
struct Target {
    name: String,
    sink: Sink,
    max_attempts: u32,
    queues: Vec<String>,
    channels: Vec<String>,
}

impl Target {
    fn kind(&self) -> &'static str {
        match self.sink {
            Sink::Webhook { .. } => "subscription",
            Sink::Integration(_) => "integration",
        }
    }

    fn wants(&self, e: &Envelope, subscription_events: Option<&[String]>) -> bool {
        let kind_ok = match (&self.sink, subscription_events) {
            (Sink::Integration(i), _) => i.wants(e.kind),
            (Sink::Webhook { .. }, Some(events)) => {
                events.is_empty() || events.iter().any(|k| k == "*" || k == e.kind)
            }
            (Sink::Webhook { .. }, None) => true,
        };
        let listed = |list: &[String], value: &Option<String>| {
            list.is_empty() || value.as_ref().is_some_and(|v| list.contains(v))
        };
        kind_ok && listed(&self.queues, &e.queue) && listed(&self.channels, &e.channel)
    }
}

/// What the scheduler knows of one delivery.
#[derive(Debug, Clone, Copy)]
struct Summary {
    state: DeliveryState,
    conversation: Option<u64>,
    due: u64,
}

impl Summary {
    fn of(d: &Delivery) -> Summary {
        Summary {
            state: d.state,
            conversation: d.conversation,
            due: d.next_attempt_at.unwrap_or(0),
        }
    }
}

/// What the scheduler knows of one target's deliveries.
#[derive(Default)]
struct Book {
    items: BTreeMap<u64, Summary>,
    in_flight: HashSet<u64>,
}

/// The service: fan-out, scheduling, attempts and the admin's view of them.
pub struct Hooks {
    app: Arc<App>,
    events: Arc<EventHub>,
    /// Clients by timeout (subscriptions choose theirs).
    clients: Mutex<HashMap<Duration, ProviderClient>>,
    books: Mutex<HashMap<String, Book>>,
    wake: Notify,
    base_delay: Duration,
}

impl Hooks {
    /// Starts the fan-out and the scheduler (under the `hooks` role when the store is shared).
    /// On the first start, the fan-out's cursor is set to the log's end before this returns,
    /// so every event logged once the server serves is delivered.
    pub async fn start(app: Arc<App>, events: Arc<EventHub>) -> Arc<Hooks> {
        if app.config().has_event_targets()
            && let Err(e) = first_cursor(&app).await
        {
            tracing::warn!("cannot set the hooks cursor yet (it is set when storage answers): {e}");
        }
        let base_delay = crate::config::env_millis("PLUGBOARD_HOOKS_BASE_MS")
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_BASE_DELAY);
        let hooks = Arc::new(Hooks {
            app,
            events,
            clients: Mutex::default(),
            books: Mutex::default(),
            wake: Notify::new(),
            base_delay,
        });
        tokio::spawn(hooks.clone().run());
        hooks
    }

    async fn run(self: Arc<Self>) {
        loop {
            let lead = match self.app.storage.try_lead("hooks").await {
                Ok(Some(lead)) => lead,
                Ok(None) => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("cannot take the hooks role; trying again: {e}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            let mut lead = lead;
            tokio::select! {
                _ = self.clone().fan_out_loop() => {}
                _ = self.clone().schedule_loop() => {}
                _ = lead.lost() => tracing::warn!("the hooks role was lost; waiting to take it again"),
            }
            self.books.lock().expect("hooks books lock").clear();
        }
    }

    /// Every target configured now.
    fn targets(&self) -> Vec<Target> {
        let catalog = self.app.catalog();
        let config = &catalog.config;
        let mut out = Vec::new();
        for s in &config.subscriptions {
            let Ok(key) = crate::config::signing_key(&s.secret) else {
                continue;
            };
            out.push(Target {
                name: s.name.clone(),
                sink: Sink::Webhook {
                    url: s.url.clone(),
                    key: Arc::new(key),
                    timeout: Duration::from_secs(s.timeout_secs),
                },
                max_attempts: s.max_attempts,
                queues: s.queues.clone(),
                channels: s.channels.clone(),
            });
        }
        for i in catalog.integrations.values() {
            out.push(Target {
                name: i.config.name.clone(),
                sink: Sink::Integration(i.clone()),
                max_attempts: i.config.max_attempts,
                queues: i.config.queues.clone(),
                channels: i.config.channels.clone(),
            });
        }
        out
    }

    fn subscription_events(&self, name: &str) -> Option<Vec<String>> {
        self.app
            .config()
            .subscriptions
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.events.clone())
    }

    fn client(&self, timeout: Duration) -> Option<ProviderClient> {
        let mut clients = self.clients.lock().expect("hooks clients lock");
        if let Some(c) = clients.get(&timeout) {
            return Some(c.clone());
        }
        match ProviderClient::new(timeout) {
            Ok(c) => {
                clients.insert(timeout, c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::error!("cannot build an HTTP client for event deliveries: {e}");
                None
            }
        }
    }

    /// Reads `target`'s deliveries into its book, once.
    async fn ensure_loaded(&self, target: &str) -> Result<(), StoreError> {
        if self
            .books
            .lock()
            .expect("hooks books lock")
            .contains_key(target)
        {
            return Ok(());
        }
        let mut book = Book::default();
        let docs = crate::store::all_documents(self.app.storage.as_ref(), &delivery::space(target))
            .await?;
        for (_, bytes) in &docs {
            if let Ok(d) = serde_json::from_slice::<Delivery>(bytes) {
                book.items.insert(d.seq, Summary::of(&d));
            }
        }
        self.books
            .lock()
            .expect("hooks books lock")
            .entry(target.to_owned())
            .or_insert(book);
        Ok(())
    }

    /// Follows the event log and stores a delivery per target for each event it wants. While
    /// no target is configured it reads nothing and forgets its cursor, so a target added
    /// later (by a reload or a restart) hears what happens from then on.
    async fn fan_out_loop(self: Arc<Self>) {
        let mut live = self.events.subscribe();
        let storage = self.app.storage.clone();
        // Where the fan-out stands while targets are configured.
        let mut active: Option<u64> = None;
        let mut forgotten = false;
        loop {
            let targets = self.targets();
            if targets.is_empty() {
                if !forgotten {
                    match storage.delete_document(CURSOR_SPACE, CURSOR_KEY).await {
                        Ok(()) => forgotten = true,
                        Err(e) => tracing::warn!("forgetting the hooks cursor failed: {e}"),
                    }
                }
                active = None;
                tokio::select! {
                    _ = live.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            forgotten = false;
            let cursor = match active {
                Some(cursor) => cursor,
                None => match resume_point(&storage).await {
                    Ok(cursor) => cursor,
                    Err(e) => {
                        tracing::warn!("cannot read where the hooks stand; trying again: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            active = Some(cursor);
            let read = storage.events_after(cursor, FAN_OUT_CHUNK).await;
            let events = match read {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!("reading the event log for the hooks failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let full = events.len() == FAN_OUT_CHUNK;
            let mut reached = cursor;
            for event in &events {
                if let Err(e) = self.fan_out(&targets, event).await {
                    tracing::warn!(
                        event = event.id,
                        "storing event deliveries failed; trying again: {e}"
                    );
                    break;
                }
                reached = event.id;
            }
            if reached != cursor {
                active = Some(reached);
                let written = storage
                    .put_document(CURSOR_SPACE, CURSOR_KEY, reached.to_string().as_bytes())
                    .await;
                if let Err(e) = written {
                    tracing::warn!("keeping the hooks cursor failed: {e}");
                }
                self.wake.notify_one();
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = live.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Stores the deliveries of `event` for every target that wants them.
    async fn fan_out(&self, targets: &[Target], event: &StoredEvent) -> Result<(), StoreError> {
        if envelope::crm_types(&event.kind, &event.data).is_empty() {
            return Ok(());
        }
        let storage = &self.app.storage;
        let conversation = match event.conversation.as_deref().and_then(|c| c.parse().ok()) {
            Some(id) => storage.conversation(id).await?,
            None => None,
        };
        let message = match (
            &conversation,
            event.data.get("seq").and_then(serde_json::Value::as_u64),
        ) {
            (Some(c), Some(seq)) => storage.message(c.id, seq).await?,
            _ => None,
        };
        let now = Clock::System.now_millis();
        for (n, envelope) in envelope::envelopes(event, conversation.as_ref(), message.as_ref())
            .into_iter()
            .enumerate()
        {
            let seq = event.id.saturating_mul(8) + n as u64;
            let body = String::from_utf8(envelope.body()).unwrap_or_default();
            for target in targets {
                let events = self.subscription_events(&target.name);
                if !target.wants(&envelope, events.as_deref()) {
                    continue;
                }
                self.ensure_loaded(&target.name).await?;
                let known = self
                    .books
                    .lock()
                    .expect("hooks books lock")
                    .get(&target.name)
                    .is_some_and(|b| b.items.contains_key(&seq));
                if known {
                    continue;
                }
                let d = Delivery {
                    target: target.name.clone(),
                    event: envelope.id.clone(),
                    seq,
                    kind: envelope.kind.to_owned(),
                    conversation: envelope.conversation,
                    state: DeliveryState::Pending,
                    attempts: 0,
                    last_error: None,
                    next_attempt_at: Some(now),
                    created_at: now,
                    delivered_at: None,
                    body: body.clone(),
                };
                self.store(&d).await?;
            }
        }
        Ok(())
    }

    /// Writes `d` and notes it in its target's book.
    async fn store(&self, d: &Delivery) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(d).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.app
            .storage
            .put_document(&delivery::space(&d.target), &d.key(), &bytes)
            .await?;
        let mut books = self.books.lock().expect("hooks books lock");
        if let Some(book) = books.get_mut(&d.target) {
            book.items.insert(d.seq, Summary::of(d));
        }
        Ok(())
    }

    /// Starts the attempts that are due, then waits for the next one due or a wake-up.
    async fn schedule_loop(self: Arc<Self>) {
        let mut refreshed = tokio::time::Instant::now();
        loop {
            // On a shared store another host's admin may have redelivered: read the books
            // again now and then (those with attempts running stay).
            if self.app.storage.is_shared() && refreshed.elapsed() >= SHARED_REFRESH {
                refreshed = tokio::time::Instant::now();
                self.books
                    .lock()
                    .expect("hooks books lock")
                    .retain(|_, b| !b.in_flight.is_empty());
            }
            let woken = self.wake.notified();
            let next = self.clone().start_due().await;
            let wait = next
                .map(|due| Duration::from_millis(due.saturating_sub(Clock::System.now_millis())))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts every due attempt the limits allow; the earliest due time of those left waiting.
    async fn start_due(self: Arc<Self>) -> Option<u64> {
        let now = Clock::System.now_millis();
        let mut next: Option<u64> = None;
        for target in self.targets() {
            if let Err(e) = self.ensure_loaded(&target.name).await {
                tracing::warn!(target = %target.name, "cannot read its deliveries: {e}");
                continue;
            }
            let mut start = Vec::new();
            {
                let mut books = self.books.lock().expect("hooks books lock");
                let Some(book) = books.get_mut(&target.name) else {
                    continue;
                };
                let mut blocked = HashSet::new();
                let mut running = book.in_flight.len();
                for (&seq, s) in &book.items {
                    if s.state != DeliveryState::Pending {
                        continue;
                    }
                    if let Some(c) = s.conversation
                        && !blocked.insert(c)
                    {
                        continue;
                    }
                    if book.in_flight.contains(&seq) {
                        continue;
                    }
                    if s.due > now {
                        next = Some(next.map_or(s.due, |n| n.min(s.due)));
                        continue;
                    }
                    if running >= IN_FLIGHT_PER_TARGET {
                        break;
                    }
                    running += 1;
                    start.push(seq);
                }
                book.in_flight.extend(start.iter().copied());
            }
            for seq in start {
                tokio::spawn(self.clone().attempt(target.clone(), seq));
            }
        }
        next
    }

    /// One attempt of the delivery `seq` of `target`, and its outcome recorded.
    async fn attempt(self: Arc<Self>, target: Target, seq: u64) {
        let space = delivery::space(&target.name);
        let stored = self.app.storage.document(&space, &delivery::key(seq)).await;
        let mut d = match stored {
            Ok(Some(bytes)) => match serde_json::from_slice::<Delivery>(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(target = %target.name, seq, "an unreadable delivery is dropped: {e}");
                    self.forget(&target.name, seq);
                    return;
                }
            },
            Ok(None) => {
                self.forget(&target.name, seq);
                return;
            }
            Err(e) => {
                tracing::warn!(target = %target.name, "reading a delivery failed: {e}");
                self.finish(&target.name, seq, None);
                return;
            }
        };
        let outcome = match &target.sink {
            Sink::Webhook { url, key, timeout } => match self.client(*timeout) {
                Some(client) => post(&client, &target.name, url, key, &d).await,
                None => Attempt::Retry {
                    reason: "no HTTP client".into(),
                    after: None,
                },
            },
            Sink::Integration(i) => {
                match self.client(self.app.config().limits.provider_timeout()) {
                    Some(client) => integration::attempt(&self.app, &client, i, &d).await,
                    None => Attempt::Retry {
                        reason: "no HTTP client".into(),
                        after: None,
                    },
                }
            }
        };
        let now = Clock::System.now_millis();
        d.attempts += 1;
        let policy = RetryPolicy {
            max_attempts: target.max_attempts.max(1),
            base: self.base_delay,
            cap: MAX_DELAY.max(self.base_delay),
        };
        match outcome {
            Attempt::Delivered => {
                self.app
                    .metrics
                    .hook_attempt(&target.name, HookOutcome::Delivered);
                d.state = DeliveryState::Delivered;
                d.delivered_at = Some(now);
                d.next_attempt_at = None;
                tracing::info!(target = %target.name, event = %d.event, kind = %d.kind, attempts = d.attempts, "event delivered");
            }
            Attempt::Retry { reason, after } if d.attempts < policy.max_attempts => {
                self.app
                    .metrics
                    .hook_attempt(&target.name, HookOutcome::Retry);
                let delay = policy.delay(d.attempts, after);
                d.last_error = Some(format!(
                    "attempt {} failed: {reason}; retrying in {}s",
                    d.attempts,
                    delay.as_secs_f64().ceil() as u64
                ));
                d.next_attempt_at = Some(now + delay.as_millis() as u64);
                tracing::warn!(target = %target.name, event = %d.event, "event delivery failed: {reason}");
            }
            Attempt::Retry { reason, .. } => {
                self.app
                    .metrics
                    .hook_attempt(&target.name, HookOutcome::DeadLettered);
                d.state = DeliveryState::Failed;
                d.next_attempt_at = None;
                d.last_error = Some(format!(
                    "dead-lettered after {} attempts: {reason}",
                    d.attempts
                ));
                tracing::error!(target = %target.name, event = %d.event, "event dead-lettered: {reason}");
            }
            Attempt::Final(reason) => {
                self.app
                    .metrics
                    .hook_attempt(&target.name, HookOutcome::DeadLettered);
                d.state = DeliveryState::Failed;
                d.next_attempt_at = None;
                d.last_error = Some(format!("dead-lettered: {reason}"));
                tracing::error!(target = %target.name, event = %d.event, "event dead-lettered: {reason}");
            }
        }
        match self.store(&d).await {
            Ok(()) => self.finish(&target.name, seq, Some(d.state)),
            Err(e) => {
                tracing::error!(target = %target.name, event = %d.event, "recording a delivery's outcome failed: {e}");
                self.finish(&target.name, seq, None);
            }
        }
    }

    /// Ends an attempt in the book (and forgets the oldest settled deliveries past what is kept).
    fn finish(self: &Arc<Self>, target: &str, seq: u64, settled: Option<DeliveryState>) {
        let mut forgotten = Vec::new();
        {
            let mut books = self.books.lock().expect("hooks books lock");
            if let Some(book) = books.get_mut(target) {
                book.in_flight.remove(&seq);
                if let Some(state @ (DeliveryState::Delivered | DeliveryState::Failed)) = settled {
                    let keep = match state {
                        DeliveryState::Delivered => KEEP_DELIVERED,
                        _ => KEEP_FAILED,
                    };
                    let of_state: Vec<u64> = book
                        .items
                        .iter()
                        .filter(|(_, s)| s.state == state)
                        .map(|(&k, _)| k)
                        .collect();
                    for old in of_state.iter().take(of_state.len().saturating_sub(keep)) {
                        book.items.remove(old);
                        forgotten.push(*old);
                    }
                }
            }
        }
        if !forgotten.is_empty() {
            let this = self.clone();
            let space = delivery::space(target);
            tokio::spawn(async move {
                for seq in forgotten {
                    if let Err(e) = this
                        .app
                        .storage
                        .delete_document(&space, &delivery::key(seq))
                        .await
                    {
                        tracing::warn!("forgetting an old delivery failed: {e}");
                    }
                }
            });
        }
        self.wake.notify_one();
    }

    fn forget(&self, target: &str, seq: u64) {
        if let Some(book) = self.books.lock().expect("hooks books lock").get_mut(target) {
            book.in_flight.remove(&seq);
            book.items.remove(&seq);
        }
    }

    /// Whether `name` is a target now configured, or one whose deliveries are kept.
    async fn known_target(&self, name: &str) -> Result<(), HooksError> {
        if self.targets().iter().any(|t| t.name == name) {
            return Ok(());
        }
        let kept = self
            .app
            .storage
            .documents(&delivery::space(name), "", 1)
            .await?;
        if kept.is_empty() {
            return Err(HooksError::UnknownTarget(name.to_owned()));
        }
        Ok(())
    }

    /// Up to `limit` of `target`'s deliveries in event order after the cursor `after` (a
    /// delivery key), of `state` only when given (reading at most a few thousand), and the
    /// cursor of the next page.
    pub async fn deliveries(
        &self,
        target: &str,
        state: Option<DeliveryState>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<String>), HooksError> {
        self.known_target(target).await?;
        let space = delivery::space(target);
        let mut cursor = after.unwrap_or_default().to_owned();
        let mut out = Vec::new();
        let mut scanned = 0;
        loop {
            let page = self.app.storage.documents(&space, &cursor, 500).await?;
            let ended = page.len() < 500;
            for (key, bytes) in page {
                scanned += 1;
                cursor = key;
                let Ok(mut d) = serde_json::from_slice::<Delivery>(&bytes) else {
                    continue;
                };
                if state.is_none_or(|s| s == d.state) {
                    d.body.clear();
                    out.push(d);
                    if out.len() == limit {
                        return Ok((out, Some(cursor)));
                    }
                }
            }
            if ended {
                return Ok((out, None));
            }
            if scanned >= 20_000 {
                return Ok((out, Some(cursor)));
            }
        }
    }

    /// Makes `target`'s failed delivery of `event` (or, with none, every failed one) pending
    /// again, its attempts counted from zero; how many.
    pub async fn redeliver(&self, target: &str, event: Option<&str>) -> Result<usize, HooksError> {
        self.known_target(target).await?;
        let kept = self.kept(target).await?;
        let now = Clock::System.now_millis();
        let mut count = 0;
        let mut matched = false;
        for mut d in kept {
            if d.state != DeliveryState::Failed || event.is_some_and(|e| e != d.event) {
                continue;
            }
            matched = true;
            d.state = DeliveryState::Pending;
            d.attempts = 0;
            d.next_attempt_at = Some(now);
            d.last_error = d.last_error.map(|e| format!("redelivered after: {e}"));
            self.store(&d).await?;
            count += 1;
        }
        if let Some(event) = event
            && !matched
        {
            return Err(HooksError::UnknownDelivery {
                target: target.to_owned(),
                event: event.to_owned(),
            });
        }
        tracing::info!(
            target,
            redelivered = count,
            "failed deliveries queued again"
        );
        self.wake.notify_one();
        Ok(count)
    }

    /// Every delivery `target` keeps, whole, in event order.
    async fn kept(&self, target: &str) -> Result<Vec<Delivery>, StoreError> {
        let docs = crate::store::all_documents(self.app.storage.as_ref(), &delivery::space(target))
            .await?;
        Ok(docs
            .iter()
            .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
            .collect())
    }

    /// Every configured target with its counts.
    pub async fn summaries(&self) -> Result<Vec<TargetSummary>, HooksError> {
        let mut out = Vec::new();
        for target in self.targets() {
            let all = self.kept(&target.name).await?;
            let count = |s: DeliveryState| all.iter().filter(|d| d.state == s).count();
            out.push(TargetSummary {
                name: target.name.clone(),
                kind: target.kind(),
                pending: count(DeliveryState::Pending),
                failed: count(DeliveryState::Failed),
                delivered: count(DeliveryState::Delivered),
                last_error: all
                    .iter()
                    .filter(|d| d.last_error.is_some())
                    .max_by_key(|d| d.seq)
                    .and_then(|d| d.last_error.clone()),
            });
        }
        Ok(out)
    }
}

/// Where the fan-out resumes: its stored cursor, else the log's end.
async fn resume_point(storage: &Arc<dyn crate::store::Store>) -> Result<u64, StoreError> {
    match storage.document(CURSOR_SPACE, CURSOR_KEY).await? {
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .parse::<u64>()
            .map_err(|e| StoreError::Backend(format!("the hooks cursor does not parse: {e}"))),
        None => storage.last_event_id().await,
    }
}

/// Sets the fan-out's cursor to the log's end if it has none yet.
async fn first_cursor(app: &App) -> Result<(), StoreError> {
    if app
        .storage
        .document(CURSOR_SPACE, CURSOR_KEY)
        .await?
        .is_none()
    {
        let end = app.storage.last_event_id().await?;
        app.storage
            .put_document(CURSOR_SPACE, CURSOR_KEY, end.to_string().as_bytes())
            .await?;
    }
    Ok(())
}

/// One signed POST of `d` to a subscription's `url`.
async fn post(client: &ProviderClient, name: &str, url: &str, key: &[u8], d: &Delivery) -> Attempt {
    let timestamp = Clock::System.now_millis() / 1000;
    let body = d.body.as_bytes().to_vec();
    let request = wit::HttpRequest {
        method: "POST".into(),
        url: url.to_owned(),
        headers: signature::headers(key, &d.event, timestamp, &body),
        body,
    };
    let allowed = AllowList::new(name, &[], [url]);
    match client.perform(&allowed, request).await {
        Ok(resp) => {
            let retry_after = resp
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| v.trim().parse::<u64>().ok());
            delivery::classify_status(resp.status, retry_after)
        }
        Err(TransportError::Unreachable(e)) => Attempt::Retry {
            reason: format!("the subscriber could not be reached: {e}"),
            after: None,
        },
        Err(TransportError::Refused(e)) => Attempt::Final(e),
    }
}
