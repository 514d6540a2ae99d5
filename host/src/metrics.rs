//! Operational metrics: typed Prometheus families every layer records into, and their text
//! rendering for `GET /metrics`. Off (a `None` handle: nothing is recorded, one branch per
//! record) unless the configuration serves them (`server.metrics_token` or
//! `server.metrics_listen`). Label values are bounded by construction: configured names,
//! route templates, and enums of outcomes; a channel the configuration does not name is
//! [`UNKNOWN`], never the caller's text.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::model::MessageStatus;

/// The content type of [`Metrics::render`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The label value of a channel the configuration does not name.
pub const UNKNOWN: &str = "(unknown)";

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "(unmatched)";

/// An enum of label values, written in snake case.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $v:ident => $s:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $v),* }
        impl $name {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl EncodeLabelValue for $name {
            fn encode(&self, e: &mut LabelValueEncoder) -> std::fmt::Result {
                e.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// How a plugin call ended (`ok`: the plugin returned, even an error of the contract).
    CallOutcome {
        /// It returned.
        Ok => "ok",
        /// It trapped.
        Trap => "trap",
        /// It ran past its deadline.
        Timeout => "timeout",
        /// It tried to grow memory past the cap.
        OutOfMemory => "out_of_memory",
        /// No call slot was free.
        Busy => "busy",
        /// It returned more than the host takes.
        OutputTooLarge => "output_too_large",
    }
);

label_enum!(
    /// Which way a message went.
    Direction {
        /// From a customer.
        Inbound => "inbound",
        /// To a customer.
        Outbound => "outbound",
    }
);

label_enum!(
    /// A delivery state an outbound message reached.
    Delivery {
        /// Accepted by the provider.
        Queued => "queued",
        /// Sent on by the provider.
        Sent => "sent",
        /// Delivered to the device.
        Delivered => "delivered",
        /// Read by the customer.
        Read => "read",
        /// Will not be delivered.
        Failed => "failed",
    }
);

impl Delivery {
    /// The delivery state of `status` (none for an inbound or still pending message).
    pub fn of(status: MessageStatus) -> Option<Delivery> {
        match status {
            MessageStatus::Queued => Some(Delivery::Queued),
            MessageStatus::Sent => Some(Delivery::Sent),
            MessageStatus::Delivered => Some(Delivery::Delivered),
            MessageStatus::Read => Some(Delivery::Read),
            MessageStatus::Failed => Some(Delivery::Failed),
            MessageStatus::Received | MessageStatus::Pending => None,
        }
    }
}

label_enum!(
    /// How one attempt of the outbox ended.
    AttemptOutcome {
        /// The provider took it.
        Sent => "sent",
        /// It failed and will be tried again.
        Retry => "retry",
        /// It failed for good (the provider refused it).
        Failed => "failed",
        /// The customer opted out.
        OptedOut => "opted_out",
        /// Its last attempt failed.
        DeadLettered => "dead_lettered",
    }
);

label_enum!(
    /// How one attempt of an event delivery (to a subscription or an integration) ended.
    HookOutcome {
        /// Received.
        Delivered => "delivered",
        /// It failed and will be tried again.
        Retry => "retry",
        /// It failed for good: dead-lettered.
        DeadLettered => "dead_lettered",
    }
);

label_enum!(
    /// What became of an offer.
    OfferOutcome {
        /// The router offered the work.
        Made => "made",
        /// An agent offered it took it.
        Taken => "taken",
        /// Its time ran out.
        Expired => "expired",
        /// It ended otherwise (taken by someone not offered it, transferred, closed, moved).
        Withdrawn => "withdrawn",
    }
);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCall {
    plugin: String,
    function: &'static str,
    outcome: CallOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginFunction {
    plugin: String,
    function: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Webhook {
    channel: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Messages {
    channel: String,
    direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Deliveries {
    channel: String,
    state: Delivery,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Attempt {
    channel: String,
    outcome: AttemptOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailoverLabel {
    channel: String,
    fallback: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabel {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookAttempt {
    target: String,
    outcome: HookOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Offer {
    queue: String,
    outcome: OfferOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentsLabel {
    queue: String,
    presence: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

const CALL_SECONDS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
];
const HTTP_SECONDS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];
const BATCH_SIZE: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
const FLUSH_SECONDS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 20.0,
];

fn call_seconds() -> Histogram {
    Histogram::new(CALL_SECONDS)
}

fn http_seconds() -> Histogram {
    Histogram::new(HTTP_SECONDS)
}

/// Every family, registered once.
struct Families {
    registry: Registry,
    /// Held while a scrape sets the scrape-time gauges and renders.
    scrape: Mutex<()>,
    plugin_calls: Family<PluginCall, Counter>,
    plugin_call_seconds: Histograms<PluginFunction>,
    plugin_instantiations: Family<PluginLabel, Counter>,
    plugin_memory: Family<PluginLabel, Gauge>,
    quarantined: Family<ChannelLabel, Gauge>,
    webhooks: Family<Webhook, Counter>,
    messages: Family<Messages, Counter>,
    delivery: Family<Deliveries, Counter>,
    outbox_pending: Gauge,
    outbox_attempts: Family<Attempt, Counter>,
    dead_letters: Family<ChannelLabel, Counter>,
    hook_attempts: Family<HookAttempt, Counter>,
    shadow: Family<ShadowLabel, Counter>,
    failovers: Family<FailoverLabel, Counter>,
    ingest_batch_size: Histogram,
    ingest_flush_seconds: Histogram,
    waiting: Family<QueueLabel, Gauge>,
    offers: Family<Offer, Counter>,
    agents: Family<AgentsLabel, Gauge>,
    sse_clients: Gauge,
    http_requests: Family<Request, Counter>,
    http_seconds: Histograms<RouteLabel>,
}

/// The handle every layer records through; cloning it is an `Arc` clone. [`Metrics::off`]
/// records nothing.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Families>>);

/// What the scrape-time gauges show, gathered when scraped (by `services::gauges`). `None`:
/// the store could not say (the series is left out; the scrape still answers).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Sends waiting in the outbox.
    pub outbox_pending: Option<u64>,
    /// Conversations waiting per configured queue.
    pub waiting: Vec<(String, Option<u64>)>,
    /// Agents per queue and presence, zeros included.
    pub agents: Vec<(String, &'static str, u64)>,
    /// Open event streams on this host.
    pub sse_clients: u64,
    /// Every configured channel, and whether it is quarantined.
    pub quarantined: Vec<(String, bool)>,
}

impl Metrics {
    /// Metrics on: every family registered and empty.
    pub fn on() -> Metrics {
        let mut registry = Registry::default();
        let f = Families {
            scrape: Mutex::new(()),
            plugin_calls: Family::default(),
            plugin_call_seconds: Family::new_with_constructor(call_seconds),
            plugin_instantiations: Family::default(),
            plugin_memory: Family::default(),
            quarantined: Family::default(),
            webhooks: Family::default(),
            messages: Family::default(),
            delivery: Family::default(),
            outbox_pending: Gauge::default(),
            outbox_attempts: Family::default(),
            dead_letters: Family::default(),
            hook_attempts: Family::default(),
            shadow: Family::default(),
            failovers: Family::default(),
            ingest_batch_size: Histogram::new(BATCH_SIZE),
            ingest_flush_seconds: Histogram::new(FLUSH_SECONDS),
            waiting: Family::default(),
            offers: Family::default(),
            agents: Family::default(),
            sse_clients: Gauge::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(http_seconds),
            registry: Registry::default(),
        };
        // Counters are registered without `_total`: the encoder adds it.
        registry.register(
            "plugboard_plugin_calls",
            "Plugin calls by plugin, export and outcome",
            f.plugin_calls.clone(),
        );
        registry.register(
            "plugboard_plugin_call_seconds",
            "Time of plugin calls, from the call slot won to the answer",
            f.plugin_call_seconds.clone(),
        );
        registry.register(
            "plugboard_plugin_instantiations",
            "Plugin instances created",
            f.plugin_instantiations.clone(),
        );
        registry.register(
            "plugboard_plugin_memory_bytes",
            "Most linear memory one call of the plugin held",
            f.plugin_memory.clone(),
        );
        registry.register(
            "plugboard_channel_quarantined",
            "1 while the channel is quarantined after failing calls",
            f.quarantined.clone(),
        );
        registry.register(
            "plugboard_webhooks",
            "Webhook requests by channel and answer status",
            f.webhooks.clone(),
        );
        registry.register(
            "plugboard_messages",
            "Messages stored, by channel and direction (provider retries not counted)",
            f.messages.clone(),
        );
        registry.register(
            "plugboard_delivery",
            "Delivery states outbound messages reached",
            f.delivery.clone(),
        );
        registry.register(
            "plugboard_outbox_pending",
            "Sends waiting in the outbox",
            f.outbox_pending.clone(),
        );
        registry.register(
            "plugboard_outbox_attempts",
            "Send attempts by channel and outcome",
            f.outbox_attempts.clone(),
        );
        registry.register(
            "plugboard_dead_letters",
            "Sends that failed their last attempt",
            f.dead_letters.clone(),
        );
        registry.register(
            "plugboard_failovers",
            "Sends moved from a channel to its fallback because its provider could not take them",
            f.failovers.clone(),
        );
        registry.register(
            "plugboard_shadow_comparisons",
            "Webhooks given to a channel's shadow candidate, by how its outcome compared",
            f.shadow.clone(),
        );
        registry.register(
            "plugboard_event_deliveries",
            "Event delivery attempts to subscriptions and integrations, by target and outcome",
            f.hook_attempts.clone(),
        );
        registry.register(
            "plugboard_ingest_batch_size",
            "Writes committed together in one storage batch",
            f.ingest_batch_size.clone(),
        );
        registry.register(
            "plugboard_ingest_flush_seconds",
            "Time to commit and make one storage batch durable",
            f.ingest_flush_seconds.clone(),
        );
        registry.register(
            "plugboard_waiting_conversations",
            "Conversations waiting in each queue",
            f.waiting.clone(),
        );
        registry.register(
            "plugboard_offers",
            "Offers by queue and what became of them",
            f.offers.clone(),
        );
        registry.register(
            "plugboard_agents",
            "Agents of each queue by presence",
            f.agents.clone(),
        );
        registry.register(
            "plugboard_sse_clients",
            "Event streams open on this host",
            f.sse_clients.clone(),
        );
        registry.register(
            "plugboard_http_requests",
            "HTTP requests by route template and status",
            f.http_requests.clone(),
        );
        registry.register(
            "plugboard_http_request_seconds",
            "Time to the answer's head, by route template",
            f.http_seconds.clone(),
        );
        Metrics(Some(Arc::new(Families { registry, ..f })))
    }

    /// Metrics off: every record is a no-op.
    pub fn off() -> Metrics {
        Metrics(None)
    }

    /// Whether metrics are recorded.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// A plugin call ended with `outcome` after `took` (none when it never ran), its store
    /// holding `memory_bytes` of linear memory.
    pub fn plugin_call(
        &self,
        plugin: &str,
        function: &'static str,
        outcome: CallOutcome,
        took: Option<Duration>,
    ) {
        let Some(f) = &self.0 else { return };
        f.plugin_calls
            .get_or_create(&PluginCall {
                plugin: plugin.to_owned(),
                function,
                outcome,
            })
            .inc();
        if let Some(took) = took {
            f.plugin_call_seconds
                .get_or_create(&PluginFunction {
                    plugin: plugin.to_owned(),
                    function,
                })
                .observe(took.as_secs_f64());
        }
    }

    /// A call of `plugin` held `bytes` of linear memory (the high water is kept).
    pub fn plugin_memory(&self, plugin: &str, bytes: usize) {
        let Some(f) = &self.0 else { return };
        f.plugin_memory
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .inner()
            .fetch_max(bytes as i64, Ordering::Relaxed);
    }

    /// An instance of `plugin` was created.
    pub fn plugin_instantiated(&self, plugin: &str) {
        let Some(f) = &self.0 else { return };
        f.plugin_instantiations
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    /// A webhook of `channel` (a label from [`channel_label`]) was answered `status`.
    pub fn webhook(&self, channel: &str, status: u16) {
        let Some(f) = &self.0 else { return };
        f.webhooks
            .get_or_create(&Webhook {
                channel: channel.to_owned(),
                status,
            })
            .inc();
    }

    /// `n` messages of `channel` were stored going `direction`.
    pub fn messages(&self, channel: &str, direction: Direction, n: u64) {
        let Some(f) = &self.0 else { return };
        if n > 0 {
            f.messages
                .get_or_create(&Messages {
                    channel: channel.to_owned(),
                    direction,
                })
                .inc_by(n);
        }
    }

    /// An outbound message of `channel` reached `status` (nothing for non-delivery states).
    pub fn delivery(&self, channel: &str, status: MessageStatus) {
        let Some(f) = &self.0 else { return };
        if let Some(state) = Delivery::of(status) {
            f.delivery
                .get_or_create(&Deliveries {
                    channel: channel.to_owned(),
                    state,
                })
                .inc();
        }
    }

    /// A send attempt on `channel` ended with `outcome` (a dead letter is counted as one too).
    pub fn attempt(&self, channel: &str, outcome: AttemptOutcome) {
        let Some(f) = &self.0 else { return };
        f.outbox_attempts
            .get_or_create(&Attempt {
                channel: channel.to_owned(),
                outcome,
            })
            .inc();
        if outcome == AttemptOutcome::DeadLettered {
            f.dead_letters
                .get_or_create(&ChannelLabel {
                    channel: channel.to_owned(),
                })
                .inc();
        }
    }

    /// One attempt of an event delivery to `target` (a subscription or an integration).
    pub fn hook_attempt(&self, target: &str, outcome: HookOutcome) {
        let Some(f) = &self.0 else { return };
        f.hook_attempts
            .get_or_create(&HookAttempt {
                target: target.to_owned(),
                outcome,
            })
            .inc();
    }

    /// A send of `channel` moved to its `fallback` channel.
    pub fn failover(&self, channel: &str, fallback: &str) {
        let Some(f) = &self.0 else { return };
        f.failovers
            .get_or_create(&FailoverLabel {
                channel: channel.to_owned(),
                fallback: fallback.to_owned(),
            })
            .inc();
    }

    /// A webhook of `channel` compared with its shadow candidate: `agreed`, or the kind of
    /// divergence (`events`, `response`, `outcome`).
    pub fn shadow(&self, channel: &str, outcome: &str) {
        let Some(f) = &self.0 else { return };
        f.shadow
            .get_or_create(&ShadowLabel {
                channel: channel.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// An offer of `queue`'s work `outcome`, `n` times (one per agent offered, for `made`).
    pub fn offers(&self, queue: &str, outcome: OfferOutcome, n: u64) {
        let Some(f) = &self.0 else { return };
        if n > 0 {
            f.offers
                .get_or_create(&Offer {
                    queue: queue.to_owned(),
                    outcome,
                })
                .inc_by(n);
        }
    }

    /// An HTTP request of `route` (a template, or [`UNMATCHED`]) was answered `status` after
    /// `took`.
    pub fn http(&self, route: &str, status: u16, took: Duration) {
        let Some(f) = &self.0 else { return };
        f.http_requests
            .get_or_create(&Request {
                route: route.to_owned(),
                status,
            })
            .inc();
        f.http_seconds
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A storage batch of `writes` was committed and made durable in `took`.
    pub fn batch(&self, writes: usize, took: Duration) {
        let Some(f) = &self.0 else { return };
        f.ingest_batch_size.observe(writes as f64);
        f.ingest_flush_seconds.observe(took.as_secs_f64());
    }

    /// Sets the scrape-time gauges from `now` (each family cleared first, so a series of a
    /// removed queue or channel goes) and renders every family; `None` when metrics are off.
    pub fn render(&self, now: &Snapshot) -> Option<String> {
        let f = self.0.as_ref()?;
        let _scrape = f.scrape.lock().unwrap_or_else(|e| e.into_inner());
        f.outbox_pending
            .set(now.outbox_pending.map_or(0, |n| n as i64));
        f.waiting.clear();
        for (queue, n) in &now.waiting {
            if let Some(n) = n {
                f.waiting
                    .get_or_create(&QueueLabel {
                        queue: queue.clone(),
                    })
                    .set(*n as i64);
            }
        }
        f.agents.clear();
        for (queue, presence, n) in &now.agents {
            f.agents
                .get_or_create(&AgentsLabel {
                    queue: queue.clone(),
                    presence,
                })
                .set(*n as i64);
        }
        f.sse_clients.set(now.sse_clients as i64);
        f.quarantined.clear();
        for (channel, q) in &now.quarantined {
            f.quarantined
                .get_or_create(&ChannelLabel {
                    channel: channel.clone(),
                })
                .set(i64::from(*q));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &f.registry)
        {
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        Some(out)
    }
}

/// `channel` if the configuration names it, else [`UNKNOWN`]: label values stay bounded.
pub fn channel_label(config: &Config, channel: &str) -> String {
    if config.channel(channel).is_some() {
        channel.to_owned()
    } else {
        UNKNOWN.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders_with_its_type_and_bounded_labels() {
        let m = Metrics::on();
        m.plugin_call(
            "twilio-sms",
            "handle-webhook",
            CallOutcome::Ok,
            Some(Duration::from_micros(80)),
        );
        m.plugin_memory("twilio-sms", 1 << 20);
        m.plugin_memory("twilio-sms", 1 << 10);
        m.http("/api/v1/conversations/{id}", 200, Duration::from_millis(3));
        m.attempt("sms", AttemptOutcome::DeadLettered);
        let text = m.render(&Snapshot::default()).unwrap();
        for line in [
            "# TYPE plugboard_plugin_calls_total counter",
            "plugboard_plugin_calls_total{plugin=\"twilio-sms\",function=\"handle-webhook\",outcome=\"ok\"} 1",
            "plugboard_plugin_memory_bytes{plugin=\"twilio-sms\"} 1048576",
            "plugboard_http_requests_total{route=\"/api/v1/conversations/{id}\",status=\"200\"} 1",
            "plugboard_dead_letters_total{channel=\"sms\"} 1",
            "# TYPE plugboard_ingest_flush_seconds histogram",
            "# TYPE plugboard_sse_clients gauge",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(Metrics::off().render(&Snapshot::default()).is_none());
    }
}
