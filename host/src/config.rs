//! The operator's configuration file: parsing, `${VAR}` expansion and validation.
//!
//! Every error names the key it is about (`channels[1].settings.auth_token`) and says why, so an
//! operator can fix a file without reading source code. Checks that need the loaded plugins
//! (does the named plugin exist, are its required settings present) happen when the services build the catalog.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod crm;

pub use crm::{
    DEFAULT_DELIVERY_ATTEMPTS, IntegrationConfig, IntegrationKeyConfig, SubscriptionConfig,
    signing_key,
};

/// The most skills a channel's work may require: routers see an agent's skills as a 64-bit
/// set over the work's required skills (`agent-state.skills` in the contract).
pub const MAX_WORK_SKILLS: usize = 64;
/// The configuration used when `plugboard serve` runs without `--config`: one demo Twilio SMS
/// channel feeding a `support` queue with one agent, so the host can be tried at once.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// A configuration problem, with the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has a wrongly typed or unknown key.
    #[error("config {origin}: {message}")]
    Syntax {
        /// The file name, or `embedded default`.
        origin: String,
        /// toml's description, which names the key and line.
        message: String,
    },
    /// A value is present but wrong.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `channels[0].queue`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Several problems, every one a check found (never empty, never one).
    #[error("{} problems:\n{}", .0.len(), list(.0))]
    Many(Vec<ConfigError>),
}

fn list(problems: &[ConfigError]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects every problem the checks of a configuration find, so one `plugboard check` (or one
/// refused reload) names them all instead of stopping at the first.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigError>);

impl Problems {
    /// Notes that the value at `key` is wrong and why.
    pub fn invalid(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::invalid(key, reason));
    }

    /// Notes `error` (each of them, for [`ConfigError::Many`]).
    pub fn push(&mut self, error: ConfigError) {
        match error {
            ConfigError::Many(all) => self.0.extend(all),
            one => self.0.push(one),
        }
    }

    /// How many problems were found so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing was found, else the one problem or all of them.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(ConfigError::Many(self.0)),
        }
    }
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, public URL and directories.
    pub server: ServerConfig,
    /// Plugin sandbox limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Channel instances.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// Agent queues.
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    /// Agents and their bearer tokens.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// The contact directory's initial entries (more can be added through the API).
    #[serde(default)]
    pub contacts: Vec<ContactConfig>,
    /// The embedded database.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Work classification: ordered rules, the first that matches a new or reopened
    /// conversation's message decides its queue, skills and priority.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Bots that answer a channel's or a queue's customers before the agents do.
    #[serde(default)]
    pub bots: Vec<BotConfig>,
    /// Signed event webhooks: URLs told of every chosen event.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Integration plugins: CRMs told of events in their own dialect.
    #[serde(default)]
    pub integrations: Vec<IntegrationConfig>,
    /// Keys a CRM or backend acts with through the integration API.
    #[serde(default)]
    pub integration_keys: Vec<IntegrationKeyConfig>,
}

/// `[[bots]]`: a bot plugin with its settings, named for channels and queues (`bot = NAME`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    /// The name channels and queues use.
    pub name: String,
    /// The bot plugin (its file name without `.wasm`), e.g. `faq`.
    pub plugin: String,
    /// Words (whole, any case) with which a customer reaches a person at once, whatever the
    /// bot would say.
    #[serde(default = "default_handoff_keywords")]
    pub handoff_keywords: Vec<String>,
    /// Settings passed to the plugin; `${VAR}` is replaced from the environment.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

fn default_handoff_keywords() -> Vec<String> {
    vec!["agent".into(), "human".into()]
}

/// `[[rules]]`: conditions (all must hold; none: every message) and what they decide.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Only messages on this channel instance.
    #[serde(default)]
    pub channel: Option<String>,
    /// Only messages on channels of this kind (`sms`, `whatsapp`, `webchat`, ...).
    #[serde(default)]
    pub kind: Option<String>,
    /// Any of these words in the text (whole words, any case).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// A regular expression the text matches (the `regex` crate's syntax; linear time).
    #[serde(default)]
    pub pattern: Option<String>,
    /// `known` or `unknown`: whether the sender is in the contact directory.
    #[serde(default)]
    pub contact: Option<String>,
    /// `open` or `closed`: whether the channel's own queue is within its business hours.
    #[serde(default)]
    pub hours: Option<String>,
    /// The queue the work goes to (with `classifier`: the one used when the plugin names
    /// none; absent: the channel's).
    #[serde(default)]
    pub queue: Option<String>,
    /// A classifier plugin that decides instead, when the conditions hold; when it decides
    /// nothing (or fails), the next rule is tried.
    #[serde(default)]
    pub classifier: Option<String>,
    /// Settings passed to the classifier plugin.
    #[serde(default)]
    pub classifier_settings: BTreeMap<String, String>,
    /// Skills an agent needs to be offered it (instead of the channel's).
    #[serde(default)]
    pub skills: Vec<String>,
    /// Higher is offered first; equal priorities go longest-waiting first (default 0).
    #[serde(default)]
    pub priority: i32,
}

/// The most a rule's pattern may compile to, bytes (a bound on memory and time per message).
pub const RULE_PATTERN_LIMIT: usize = 1 << 20;

/// `[storage]`: where the host keeps its state: the embedded sled database (the default) or
/// a PostgreSQL database that several hosts share.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sled` (embedded, in `data_dir`) or `postgres` (`url`).
    #[serde(default)]
    pub backend: StorageBackend,
    /// sled's page cache, MiB: what the database keeps in memory beyond the working set
    /// (sled's own default, 1 GiB, grows with the data touched).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// The PostgreSQL connection URL (`postgres://user:password@host:port/database`);
    /// `${VAR}` is replaced from the environment.
    #[serde(default)]
    pub url: Option<String>,
    /// The most PostgreSQL connections this host opens.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long a request waits to connect to PostgreSQL (or for a free connection), ms.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// PEM certificates of the authorities that may sign the PostgreSQL server's certificate
    /// (a managed database's own CA), besides the public ones; used with `sslmode=require`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// How the host writes its log (to standard error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people; colour only on a terminal.
    #[default]
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Which backend keeps the host's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The embedded database in `data_dir`: one host.
    #[default]
    Sled,
    /// A PostgreSQL database: any number of hosts.
    Postgres,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Sled,
            cache_mib: default_cache_mib(),
            url: None,
            pool_size: default_pool_size(),
            connect_timeout_ms: default_connect_timeout_ms(),
            ca_file: None,
        }
    }
}

fn default_cache_mib() -> u64 {
    256
}

fn default_pool_size() -> usize {
    16
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}

/// `[[contacts]]`: a known customer address and the name agents see.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactConfig {
    /// The name shown to agents.
    pub name: String,
    /// The address as the channel delivers it (`+14155550100`, `whatsapp:+14155550100`).
    pub address: String,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// The base URL providers call (scheme, host, port). Webhook URLs are this plus
    /// `/webhooks/{channel}`; URL-covering signatures are checked against it, never against
    /// the `Host` header.
    pub public_url: String,
    /// Where sled keeps its data and the compiled-plugin cache lives.
    pub data_dir: PathBuf,
    /// Directory of extra `*.wasm` plugins; the bundled plugins are always available.
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
    /// Largest accepted webhook or API request body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Bearer token for `/api/v1/admin/...`; admin endpoints are off when absent.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Bearer token for `GET /metrics` on the main listener; metrics are off when neither it
    /// nor `metrics_listen` is set.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// A second listener serving only `GET /metrics`, without a token (meant for a private
    /// interface).
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// How the log is written: `plain` (the default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// The deployment's IANA time zone (`Europe/Berlin`): the days statistics count in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The web origins (`https://crm.example.com`) whose pages may call the agent API from a
    /// browser with a bearer token (CORS); none by default. The console itself is same-origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

impl ServerConfig {
    /// The deployment's time zone (`timezone`, checked at load; UTC if it cannot be found).
    pub fn zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::db()
            .get(&self.timezone)
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// Whether metrics are recorded and served.
    pub fn metrics_on(&self) -> bool {
        self.metrics_token.is_some() || self.metrics_listen.is_some()
    }

    /// Whether a browser page from `origin` (an `Origin` header) may call the agent API.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| normalize_origin(o).is_some_and(|o| o == origin))
    }
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

/// `[limits]`: what one plugin call may use.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory cap per plugin call, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Deadline per plugin call, in milliseconds.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Deadline for one provider API request made on a plugin's behalf, in milliseconds.
    #[serde(default = "default_provider_timeout_ms")]
    pub provider_timeout_ms: u64,
}

fn default_memory_mib() -> u64 {
    64
}
fn default_call_timeout_ms() -> u64 {
    1000
}
fn default_provider_timeout_ms() -> u64 {
    15_000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_mib: default_memory_mib(),
            call_timeout_ms: default_call_timeout_ms(),
            provider_timeout_ms: default_provider_timeout_ms(),
        }
    }
}

impl LimitsConfig {
    /// The per-call memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }

    /// The per-call deadline.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// The deadline for one provider API request.
    pub fn provider_timeout(&self) -> Duration {
        Duration::from_millis(self.provider_timeout_ms)
    }
}

/// `[[channels]]`: one channel instance (a plugin plus an operator's settings).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The instance name; its webhook is `/webhooks/{name}`.
    pub name: String,
    /// The channel plugin's name (its file name without `.wasm`).
    pub plugin: String,
    /// The queue new conversations go to (or set `agent`).
    #[serde(default)]
    pub queue: Option<String>,
    /// The single agent new conversations go to directly, instead of a queue.
    #[serde(default)]
    pub agent: Option<String>,
    /// Skills an agent needs to be offered this channel's work (for the `skills` router).
    #[serde(default)]
    pub skills: Vec<String>,
    /// How many of its latest authentic webhook requests the host keeps for `plugboard replay
    /// --corpus` (0, the default: none; at most 10,000).
    #[serde(default)]
    pub record: u32,
    /// Whether a webhook its plugin fails on (or that comes while the channel is quarantined)
    /// is kept for a redrive and answered `200` (off: answered `5xx`, for the provider to
    /// retry).
    #[serde(default = "yes")]
    pub keep_failed: bool,
    /// Whether customers' attachments are kept (off: dropped, with a note to the agent).
    #[serde(default = "yes")]
    pub customer_attachments: bool,
    /// Whether agents may send attachments (off: refused with a clear error).
    #[serde(default = "yes")]
    pub agent_attachments: bool,
    /// Web chat only: the website origins (`https://shop.example.com`) whose pages may call
    /// the visitor endpoints from a browser (CORS); none by default.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Web chat only: `[channels.webchat]`, the visitor limits.
    #[serde(default)]
    pub webchat: WebchatConfig,
    /// The greeting for this channel's new conversations (instead of the queue's).
    #[serde(default)]
    pub greeting: Option<String>,
    /// The take message for this channel (instead of the queue's); `{agent}` is the name.
    #[serde(default)]
    pub take_message: Option<String>,
    /// The closing message for this channel (instead of the queue's).
    #[serde(default)]
    pub closing_message: Option<String>,
    /// The bot (`[[bots]]` name) that answers this channel's new and reopened conversations
    /// first (instead of the queue's).
    #[serde(default)]
    pub bot: Option<String>,
    /// The channel a send moves to, once, when this channel's provider cannot take it
    /// (unavailable after its retries, misconfigured, refusing the credentials); never when
    /// the message is invalid or the customer opted out. Its customers must be addressed the
    /// same way (the same phone form, or the same plugin).
    #[serde(default)]
    pub fallback: Option<String>,
    /// Settings passed to the plugin; `${VAR}` is replaced from the environment.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// `[channels.webchat]`: what one web chat visitor may do. Counts are per minute, all of
/// which may come at once; `0` turns a limit off.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebchatConfig {
    /// New visitor sessions per client address.
    #[serde(default = "default_sessions_per_minute")]
    pub sessions_per_minute: u32,
    /// Messages (and offline forms) per visitor session.
    #[serde(default = "default_messages_per_minute")]
    pub messages_per_minute: u32,
    /// Messages per client address, all its sessions together.
    #[serde(default = "default_address_messages_per_minute")]
    pub address_messages_per_minute: u32,
    /// Message polls per visitor session.
    #[serde(default = "default_polls_per_minute")]
    pub polls_per_minute: u32,
    /// Seconds a session may go unused before it expires (`401`; the widget starts a new one).
    #[serde(default = "default_session_idle_secs")]
    pub session_idle_secs: u64,
}

fn default_sessions_per_minute() -> u32 {
    10
}
fn default_messages_per_minute() -> u32 {
    20
}
fn default_address_messages_per_minute() -> u32 {
    60
}
fn default_polls_per_minute() -> u32 {
    60
}
fn default_session_idle_secs() -> u64 {
    3600
}

impl Default for WebchatConfig {
    fn default() -> Self {
        WebchatConfig {
            sessions_per_minute: default_sessions_per_minute(),
            messages_per_minute: default_messages_per_minute(),
            address_messages_per_minute: default_address_messages_per_minute(),
            polls_per_minute: default_polls_per_minute(),
            session_idle_secs: default_session_idle_secs(),
        }
    }
}

/// The ASCII serialization of an origin (`https://shop.example.com`, default port dropped),
/// as browsers send it in `Origin`; `None` unless it is an http(s) origin with nothing after.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin).ok()?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    bare.then(|| url.origin().ascii_serialization())
}

impl ChannelConfig {
    /// Whether a browser page from `origin` (an `Origin` header) may call this web chat
    /// channel's visitor endpoints.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| normalize_origin(o).is_some_and(|o| o == origin))
    }

    /// Whether this channel's conversations land with `agent`: it feeds one of their queues,
    /// or them directly. Only such a channel is theirs to start conversations on.
    pub fn feeds(&self, agent: &AgentConfig) -> bool {
        match (&self.queue, &self.agent) {
            (Some(q), _) => agent.queues.iter().any(|mine| mine == q),
            (None, Some(a)) => a == &agent.id,
            (None, None) => false,
        }
    }

    /// Where its conversations go, for messages: "queue `sales`" or "agent `carol`".
    pub fn destination(&self) -> String {
        match (&self.queue, &self.agent) {
            (Some(q), _) => format!("queue `{q}`"),
            (None, Some(a)) => format!("agent `{a}`"),
            (None, None) => "nowhere".to_owned(),
        }
    }
}

/// `[[queues]]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue name.
    pub name: String,
    /// The router plugin that decides who is offered its work.
    pub router: String,
    /// Seconds an offer stays open before it is withdrawn and the router is asked again.
    #[serde(default = "default_offer_timeout")]
    pub offer_timeout: u64,
    /// Seconds work may wait before it moves to `overflow`.
    #[serde(default)]
    pub max_wait: Option<u64>,
    /// The queue work moves to after `max_wait`.
    #[serde(default)]
    pub overflow: Option<String>,
    /// Sent to the customer once per wait when the queue is open but no agent of it is online.
    #[serde(default)]
    pub offline_message: Option<String>,
    /// When the queue is open (`[queues.hours]`); absent: always.
    #[serde(default)]
    pub hours: Option<crate::hours::HoursConfig>,
    /// Sent to the customer once per wait when work arrives while the queue is closed (outside
    /// `hours`); the work waits and is offered when the queue opens.
    #[serde(default)]
    pub closed_message: Option<String>,
    /// Sent once when a customer's conversation is created in this queue.
    #[serde(default)]
    pub greeting: Option<String>,
    /// Sent once when an agent takes the conversation; `{agent}` is the agent's name.
    #[serde(default)]
    pub take_message: Option<String>,
    /// Sent once when the conversation is closed.
    #[serde(default)]
    pub closing_message: Option<String>,
    /// Sent after the closing message (once per conversation): the question whose answer, 1
    /// to 5, is the conversation's rating ("How did we do? Reply 1 to 5").
    #[serde(default)]
    pub survey_question: Option<String>,
    /// How long after the survey an answer counts as the rating, seconds.
    #[serde(default = "default_survey_window")]
    pub survey_window_secs: u64,
    /// The bot (`[[bots]]` name) that answers the queue's new and reopened conversations
    /// before they are offered to its agents.
    #[serde(default)]
    pub bot: Option<String>,
    /// Agents who may monitor, transfer and close any of the queue's conversations.
    #[serde(default)]
    pub managers: Vec<String>,
    /// Offers an agent may let lapse in a row before the host sets them away.
    #[serde(default = "default_missed_offers")]
    pub missed_offers_before_away: u32,
    /// Canned replies the queue's agents insert with `/shortcut` in the console.
    #[serde(default)]
    pub canned: Vec<CannedReply>,
    /// How many of its latest routing decisions the host keeps (what its router was given and
    /// what it answered) for `plugboard simulate` (0, the default: none; at most 10,000).
    #[serde(default)]
    pub record_decisions: u32,
}

/// One canned reply: the console replaces `/shortcut` with `text`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CannedReply {
    /// What follows the `/` (`thanks`).
    pub shortcut: String,
    /// The reply's text.
    pub text: String,
}

fn yes() -> bool {
    true
}

fn default_survey_window() -> u64 {
    24 * 60 * 60
}

fn default_offer_timeout() -> u64 {
    30
}
fn default_missed_offers() -> u32 {
    3
}

/// `[[agents]]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// A stable id used in the API and events.
    pub id: String,
    /// The display name.
    pub name: String,
    /// The agent's API bearer token; `${VAR}` is replaced from the environment.
    pub token: String,
    /// The queues whose work the agent sees.
    #[serde(default)]
    pub queues: Vec<String>,
    /// The agent's skills (`japanese`, `billing`).
    #[serde(default)]
    pub skills: Vec<String>,
    /// The most conversations the agent owns at once before routing skips them.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Whether the agent may open conversations to customers.
    #[serde(default)]
    pub may_start: bool,
    /// The channel the agent's outbound conversations use.
    #[serde(default)]
    pub send_from: Option<String>,
}

fn default_capacity() -> u32 {
    5
}

impl Config {
    /// Reads, expands and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string(), &|name| {
            std::env::var(name).ok()
        })
    }

    /// The embedded default, expanded and validated.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, "embedded default", &|name| {
            std::env::var(name).ok()
        })
    }

    /// Parses TOML text; `env` resolves `${VAR}` references. Every problem found is reported
    /// (as [`ConfigError::Many`] when there are several), not only the first.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut problems = Problems::default();
        config.expand(env, &mut problems);
        config.validate(&mut problems);
        problems.finish()?;
        Ok(config)
    }

    fn expand(&mut self, env: &dyn Fn(&str) -> Option<String>, p: &mut Problems) {
        let mut expand = |key: String, value: &mut String| match expand_env(value, env) {
            Ok(expanded) => *value = expanded,
            Err(reason) => p.invalid(key, reason),
        };
        for (i, channel) in self.channels.iter_mut().enumerate() {
            for (name, value) in channel.settings.iter_mut() {
                expand(format!("channels[{i}].settings.{name}"), value);
            }
        }
        for (i, bot) in self.bots.iter_mut().enumerate() {
            for (name, value) in bot.settings.iter_mut() {
                expand(format!("bots[{i}].settings.{name}"), value);
            }
        }
        for (i, agent) in self.agents.iter_mut().enumerate() {
            expand(format!("agents[{i}].token"), &mut agent.token);
        }
        crm::expand(
            &mut self.subscriptions,
            &mut self.integrations,
            &mut self.integration_keys,
            &mut expand,
        );
        if let Some(token) = &mut self.server.admin_token {
            expand("server.admin_token".into(), token);
        }
        if let Some(token) = &mut self.server.metrics_token {
            expand("server.metrics_token".into(), token);
        }
        if let Some(url) = &mut self.storage.url {
            expand("storage.url".into(), url);
        }
    }

    fn validate(&self, p: &mut Problems) {
        self.validate_server(p);
        if self.limits.memory_mib == 0 || self.limits.memory_mib > 4096 {
            p.invalid("limits.memory_mib", "must be between 1 and 4096");
        }
        if self.limits.call_timeout_ms == 0 {
            p.invalid("limits.call_timeout_ms", "must be above 0");
        }
        if !(8..=65_536).contains(&self.storage.cache_mib) {
            p.invalid("storage.cache_mib", "must be between 8 and 65536");
        }
        self.validate_postgres(p);
        let queues = self.validate_queues(p);
        self.validate_channels(&queues, p);
        self.validate_agents(&queues, p);
        self.validate_rules(&queues, p);
        self.validate_bots(p);
        crm::validate(self, p);
    }

    /// Whether anyone outside hears events (a subscription or an integration): only then does
    /// the host log the events no agent is told of.
    pub fn has_event_targets(&self) -> bool {
        !self.subscriptions.is_empty() || !self.integrations.is_empty()
    }

    fn validate_bots(&self, p: &mut Problems) {
        let mut names = HashSet::new();
        for (i, b) in self.bots.iter().enumerate() {
            check_name(&format!("bots[{i}].name"), &b.name, p);
            if !names.insert(b.name.as_str()) {
                p.invalid(
                    format!("bots[{i}].name"),
                    format!("bot `{}` is defined twice", b.name),
                );
            }
            if b.handoff_keywords.iter().any(|k| k.trim().is_empty()) {
                p.invalid(
                    format!("bots[{i}].handoff_keywords"),
                    "a keyword must not be empty",
                );
            }
        }
        let named = |key: String, bot: &Option<String>, p: &mut Problems| {
            if let Some(bot) = bot
                && !names.contains(bot.as_str())
            {
                p.invalid(
                    key,
                    format!("no bot named `{bot}` is defined under [[bots]]"),
                );
            }
        };
        for (i, c) in self.channels.iter().enumerate() {
            named(format!("channels[{i}].bot"), &c.bot, p);
            if c.bot.is_some() && c.agent.is_some() {
                p.invalid(
                    format!("channels[{i}].bot"),
                    "a channel that feeds one agent has no bot in front of it",
                );
            }
        }
        for (i, q) in self.queues.iter().enumerate() {
            named(format!("queues[{i}].bot"), &q.bot, p);
        }
    }

    /// The bot that answers a conversation of `channel` going to `queue` first: the
    /// channel's, else the queue's.
    pub fn bot_for(&self, channel: &str, queue: &str) -> Option<&str> {
        self.channel(channel)
            .and_then(|c| c.bot.as_deref())
            .or_else(|| self.queue(queue).and_then(|q| q.bot.as_deref()))
    }

    fn validate_server(&self, p: &mut Problems) {
        let server = &self.server;
        let listen = match server.listen.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(e) => {
                p.invalid(
                    "server.listen",
                    format!("not a socket address ({e}); write e.g. \"127.0.0.1:8080\""),
                );
                None
            }
        };
        match url::Url::parse(&server.public_url) {
            Err(e) => p.invalid("server.public_url", format!("not an absolute URL ({e})")),
            Ok(public) if !matches!(public.scheme(), "http" | "https") => {
                p.invalid("server.public_url", "must start with http:// or https://")
            }
            Ok(public) if public.query().is_some() || public.fragment().is_some() => {
                p.invalid("server.public_url", "must not carry a query or fragment")
            }
            Ok(_) => {}
        }
        for (j, origin) in server.allowed_origins.iter().enumerate() {
            if normalize_origin(origin).is_none() {
                p.invalid(
                    format!("server.allowed_origins[{j}]"),
                    format!("{origin:?} is not an origin; {ORIGIN_FORM}"),
                );
            }
        }
        if server.max_body_bytes == 0 {
            p.invalid("server.max_body_bytes", "must be above 0");
        }
        if jiff::tz::db().get(&server.timezone).is_err() {
            p.invalid(
                "server.timezone",
                format!(
                    "{:?} is not an IANA time zone name (write e.g. \"UTC\", \"Asia/Tokyo\" or \"Europe/London\")",
                    server.timezone
                ),
            );
        }
        if let Some(token) = &server.admin_token {
            check_token("server.admin_token", token, p);
        }
        if let Some(token) = &server.metrics_token {
            check_token("server.metrics_token", token, p);
            let reused = server.admin_token.as_ref() == Some(token)
                || self.agents.iter().any(|a| &a.token == token);
            if reused {
                p.invalid(
                    "server.metrics_token",
                    "must differ from the admin token and every agent's token",
                );
            }
        }
        if let Some(addr) = &server.metrics_listen {
            match addr.parse::<std::net::SocketAddr>() {
                Err(e) => p.invalid(
                    "server.metrics_listen",
                    format!("not a socket address ({e}); write e.g. \"127.0.0.1:9090\""),
                ),
                Ok(parsed) if listen == Some(parsed) => p.invalid(
                    "server.metrics_listen",
                    "must differ from server.listen (the main listener serves /metrics with metrics_token)",
                ),
                Ok(_) => {}
            }
        }
    }

    /// Checks the queues; returns the names defined.
    fn validate_queues(&self, p: &mut Problems) -> HashSet<&str> {
        let mut queues = HashSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            check_name(&format!("queues[{i}].name"), &q.name, p);
            if !queues.insert(q.name.as_str()) {
                p.invalid(
                    format!("queues[{i}].name"),
                    format!("queue `{}` is defined twice", q.name),
                );
            }
        }
        for (i, q) in self.queues.iter().enumerate() {
            if q.record_decisions > 10_000 {
                p.invalid(
                    format!("queues[{i}].record_decisions"),
                    "at most 10000 decisions are recorded per queue",
                );
            }
            if let Some(o) = &q.overflow {
                if !queues.contains(o.as_str()) || o == &q.name {
                    p.invalid(
                        format!("queues[{i}].overflow"),
                        format!("`{o}` must name another queue defined under [[queues]]"),
                    );
                }
                if q.max_wait.is_none() {
                    p.invalid(
                        format!("queues[{i}].max_wait"),
                        "an overflow queue needs `max_wait` (seconds)",
                    );
                }
            }
            match &q.hours {
                Some(hours) => {
                    if let Err((key, reason)) = crate::hours::Hours::parse(hours) {
                        p.invalid(format!("queues[{i}].hours.{key}"), reason);
                    }
                }
                None if q.closed_message.is_some() => p.invalid(
                    format!("queues[{i}].closed_message"),
                    "is sent outside business hours: set `[queues.hours]` too",
                ),
                None => {}
            }
            if q.offer_timeout == 0 {
                p.invalid(
                    format!("queues[{i}].offer_timeout"),
                    "must be at least 1 second",
                );
            }
            for m in &q.managers {
                if self.agent(m).is_none() {
                    p.invalid(
                        format!("queues[{i}].managers"),
                        format!("no agent with id `{m}` is defined under [[agents]]"),
                    );
                }
            }
            let mut shortcuts = HashSet::new();
            for (j, c) in q.canned.iter().enumerate() {
                check_name(&format!("queues[{i}].canned[{j}].shortcut"), &c.shortcut, p);
                if !shortcuts.insert(c.shortcut.as_str()) {
                    p.invalid(
                        format!("queues[{i}].canned[{j}].shortcut"),
                        format!("`{}` is used twice in this queue", c.shortcut),
                    );
                }
                if c.text.trim().is_empty() {
                    p.invalid(format!("queues[{i}].canned[{j}].text"), "must not be empty");
                }
            }
        }
        queues
    }

    fn validate_channels(&self, queues: &HashSet<&str>, p: &mut Problems) {
        let mut channels = HashSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            check_name(&format!("channels[{i}].name"), &c.name, p);
            if !channels.insert(c.name.as_str()) {
                p.invalid(
                    format!("channels[{i}].name"),
                    format!("channel `{}` is defined twice", c.name),
                );
            }
            if c.record > 10_000 {
                p.invalid(
                    format!("channels[{i}].record"),
                    "at most 10000 requests are recorded per channel",
                );
            }
            if c.skills.len() > MAX_WORK_SKILLS {
                p.invalid(
                    format!("channels[{i}].skills"),
                    format!(
                        "{} skills listed; a channel's work may require at most {MAX_WORK_SKILLS}",
                        c.skills.len()
                    ),
                );
            }
            check_webchat(i, c, p);
            match (&c.queue, &c.agent) {
                (Some(q), None) if !queues.contains(q.as_str()) => p.invalid(
                    format!("channels[{i}].queue"),
                    format!("no queue named `{q}` is defined under [[queues]]"),
                ),
                (None, Some(a)) if self.agent(a).is_none() => p.invalid(
                    format!("channels[{i}].agent"),
                    format!("no agent with id `{a}` is defined under [[agents]]"),
                ),
                (Some(_), None) | (None, Some(_)) => {}
                _ => p.invalid(
                    format!("channels[{i}]"),
                    "set exactly one of `queue` or `agent`",
                ),
            }
        }
        for (i, c) in self.channels.iter().enumerate() {
            match c.fallback.as_deref() {
                Some(f) if f == c.name => p.invalid(
                    format!("channels[{i}].fallback"),
                    "a channel cannot be its own fallback",
                ),
                Some(f) if !channels.contains(f) => p.invalid(
                    format!("channels[{i}].fallback"),
                    format!("no channel named `{f}` is defined under [[channels]]"),
                ),
                _ => {}
            }
        }
    }

    fn validate_agents(&self, queues: &HashSet<&str>, p: &mut Problems) {
        let mut agents = HashSet::new();
        let mut tokens = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            check_name(&format!("agents[{i}].id"), &a.id, p);
            if !agents.insert(a.id.as_str()) {
                p.invalid(
                    format!("agents[{i}].id"),
                    format!("agent `{}` is defined twice", a.id),
                );
            }
            check_token(&format!("agents[{i}].token"), &a.token, p);
            if !tokens.insert(a.token.as_str()) {
                p.invalid(
                    format!("agents[{i}].token"),
                    "two agents share this token; every agent needs their own",
                );
            }
            for q in &a.queues {
                if !queues.contains(q.as_str()) {
                    p.invalid(
                        format!("agents[{i}].queues"),
                        format!("no queue named `{q}` is defined under [[queues]]"),
                    );
                }
            }
            if let Some(ch) = &a.send_from {
                match self.channel(ch) {
                    None => p.invalid(
                        format!("agents[{i}].send_from"),
                        format!("no channel named `{ch}` is defined under [[channels]]"),
                    ),
                    Some(channel) if !channel.feeds(a) => p.invalid(
                        format!("agents[{i}].send_from"),
                        format!(
                            "agent `{}` may not send from channel `{ch}`: it feeds {}, and an agent sends only from a channel that feeds one of their queues ({}) or them directly",
                            a.id,
                            channel.destination(),
                            if a.queues.is_empty() {
                                "they work none".to_owned()
                            } else {
                                a.queues.join(", ")
                            }
                        ),
                    ),
                    Some(_) => {}
                }
            }
            if a.capacity == 0 {
                p.invalid(format!("agents[{i}].capacity"), "must be at least 1");
            }
        }
    }

    fn validate_rules(&self, queues: &HashSet<&str>, p: &mut Problems) {
        for (i, r) in self.rules.iter().enumerate() {
            match &r.queue {
                Some(q) if !queues.contains(q.as_str()) => p.invalid(
                    format!("rules[{i}].queue"),
                    format!("no queue named `{q}` is defined under [[queues]]"),
                ),
                None if r.classifier.is_none() => p.invalid(
                    format!("rules[{i}].queue"),
                    "a rule decides a queue: set `queue` (or a `classifier` that decides it)",
                ),
                _ => {}
            }
            if r.classifier.is_none() && !r.classifier_settings.is_empty() {
                p.invalid(
                    format!("rules[{i}].classifier_settings"),
                    "settings for a classifier, but the rule names no `classifier`",
                );
            }
            if let Some(c) = &r.channel
                && self.channel(c).is_none()
            {
                p.invalid(
                    format!("rules[{i}].channel"),
                    format!("no channel named `{c}` is defined under [[channels]]"),
                );
            }
            if let Some(pattern) = &r.pattern
                && let Err(e) = regex::RegexBuilder::new(pattern)
                    .size_limit(RULE_PATTERN_LIMIT)
                    .build()
            {
                p.invalid(
                    format!("rules[{i}].pattern"),
                    format!("not a usable pattern: {e}"),
                );
            }
            if r.keywords.iter().any(|k| k.trim().is_empty()) {
                p.invalid(
                    format!("rules[{i}].keywords"),
                    "a keyword must not be empty",
                );
            }
            if r.contact
                .as_deref()
                .is_some_and(|c| !matches!(c, "known" | "unknown"))
            {
                p.invalid(
                    format!("rules[{i}].contact"),
                    "must be \"known\" or \"unknown\"",
                );
            }
            if r.hours
                .as_deref()
                .is_some_and(|h| !matches!(h, "open" | "closed"))
            {
                p.invalid(
                    format!("rules[{i}].hours"),
                    "must be \"open\" or \"closed\"",
                );
            }
            if r.skills.len() > MAX_WORK_SKILLS {
                p.invalid(
                    format!("rules[{i}].skills"),
                    format!("a rule may require at most {MAX_WORK_SKILLS} skills"),
                );
            }
        }
    }

    fn validate_postgres(&self, p: &mut Problems) {
        let storage = &self.storage;
        match (storage.backend, &storage.url) {
            (StorageBackend::Postgres, None) => p.invalid(
                "storage.url",
                "backend = \"postgres\" needs the database's URL, e.g. url = \"${DATABASE_URL}\"",
            ),
            (StorageBackend::Postgres, Some(url))
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
            {
                p.invalid("storage.url", "must be a postgres:// URL")
            }
            (StorageBackend::Sled, Some(_)) => {
                p.invalid("storage.url", "is only used with backend = \"postgres\"")
            }
            _ => {}
        }
        if storage.ca_file.is_some() && storage.backend != StorageBackend::Postgres {
            p.invalid(
                "storage.ca_file",
                "is only used with backend = \"postgres\"",
            );
        }
        if !(1..=1024).contains(&storage.pool_size) {
            p.invalid("storage.pool_size", "must be between 1 and 1024");
        }
        if storage.connect_timeout_ms == 0 {
            p.invalid("storage.connect_timeout_ms", "must be above 0");
        }
    }

    /// The channel instance with this name.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The queue with this name.
    pub fn queue(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The agent with this id.
    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The agents who work `queue`, in configuration order.
    pub fn queue_members(&self, queue: &str) -> impl Iterator<Item = &AgentConfig> {
        self.agents
            .iter()
            .filter(move |a| a.queues.iter().any(|q| q == queue))
    }

    /// Whether `agent` manages `queue`.
    pub fn manages(&self, agent: &str, queue: &str) -> bool {
        self.queue(queue)
            .is_some_and(|q| q.managers.iter().any(|m| m == agent))
    }
}

/// A positive whole number of milliseconds from environment variable `name` (the host's
/// tuning knobs for operators and tests), if it is set to one.
pub fn env_millis(name: &str) -> Option<std::time::Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(std::time::Duration::from_millis)
}

/// Names appear in URLs and storage keys: keep them to a safe alphabet.
fn check_name(key: &str, name: &str, p: &mut Problems) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        p.invalid(
            key,
            format!("`{name}` must be 1 to 64 characters of a-z, A-Z, 0-9, `-` or `_`"),
        );
    }
}

/// How an allowed origin is written, for the error that refuses one.
const ORIGIN_FORM: &str = "write scheme, host and optional port, like \"https://shop.example.com\" (no path, no wildcard)";

fn check_webchat(i: usize, c: &ChannelConfig, p: &mut Problems) {
    for (j, origin) in c.allowed_origins.iter().enumerate() {
        if normalize_origin(origin).is_none() {
            p.invalid(
                format!("channels[{i}].allowed_origins[{j}]"),
                format!("{origin:?} is not an origin; {ORIGIN_FORM}"),
            );
        }
    }
    if c.webchat.session_idle_secs == 0 {
        p.invalid(
            format!("channels[{i}].webchat.session_idle_secs"),
            "must be at least 1 second",
        );
    }
}

fn check_token(key: &str, token: &str, p: &mut Problems) {
    if token.len() < 8 {
        p.invalid(key, "tokens must be at least 8 characters");
    }
}
/// Replaces every `${NAME}` in `value` from `env`. A missing variable is an error, never an
/// empty credential.
fn expand_env(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`${{` without a closing `}}` in {value:?}"))?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "`${{{name}}}` is not a valid environment variable name"
            ));
        }
        let resolved =
            env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret-value".to_owned())
    }

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://hooks.example.com"
data_dir = "/tmp/x"
[[queues]]
name = "support"
router = "ring-all"
[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "support"
[channels.settings]
auth_token = "${TOKEN}"
[[agents]]
id = "alice"
name = "Alice"
token = "alice-token"
queues = ["support"]
"#;

    #[test]
    fn at_most_64_skills_per_channel() {
        let skills: Vec<String> = (0..65).map(|i| format!("\"s{i}\"")).collect();
        let text = BASE.replace(
            "queue = \"support\"\n[channels.settings]",
            &format!(
                "queue = \"support\"\nskills = [{}]\n[channels.settings]",
                skills.join(",")
            ),
        );
        let err = Config::parse(&text, "t", &env).unwrap_err().to_string();
        assert!(
            err.contains("channels[0].skills") && err.contains("at most 64"),
            "{err}"
        );
        let ok = BASE.replace(
            "queue = \"support\"\n[channels.settings]",
            &format!(
                "queue = \"support\"\nskills = [{}]\n[channels.settings]",
                skills[..64].join(",")
            ),
        );
        Config::parse(&ok, "t", &env).unwrap();
    }

    #[test]
    fn embedded_default_is_valid() {
        Config::embedded_default().unwrap();
    }

    #[test]
    fn expands_environment_variables() {
        let c = Config::parse(BASE, "t", &env).unwrap();
        assert_eq!(c.channels[0].settings["auth_token"], "s3cret-value");
    }

    #[test]
    fn missing_variable_names_the_key() {
        let text = BASE.replace("${TOKEN}", "${NOPE}");
        let err = Config::parse(&text, "t", &env).unwrap_err().to_string();
        assert!(err.contains("channels[0].settings.auth_token"), "{err}");
        assert!(err.contains("NOPE is not set"), "{err}");
    }

    #[test]
    fn unknown_queue_names_the_key() {
        let text = BASE.replace("queue = \"support\"", "queue = \"sales\"");
        let err = Config::parse(&text, "t", &env).unwrap_err().to_string();
        assert!(err.contains("channels[0].queue"), "{err}");
        assert!(err.contains("sales"), "{err}");
    }

    #[test]
    fn metrics_keys_are_checked_and_name_themselves() {
        let with = |lines: &str| {
            BASE.replace(
                "data_dir = \"/tmp/x\"",
                &format!("data_dir = \"/tmp/x\"\n{lines}"),
            )
        };
        let err = |lines: &str| {
            Config::parse(&with(lines), "t", &env)
                .unwrap_err()
                .to_string()
        };
        assert!(err("metrics_token = \"alice-token\"").contains("server.metrics_token"));
        assert!(err("metrics_token = \"short\"").contains("server.metrics_token"));
        let e = err("metrics_listen = \"127.0.0.1:0\"");
        assert!(
            e.contains("server.metrics_listen") && e.contains("differ"),
            "{e}"
        );
        assert!(err("metrics_listen = \"nowhere\"").contains("server.metrics_listen"));
        let ok = Config::parse(&with("metrics_token = \"metrics-token-123\""), "t", &env).unwrap();
        assert!(ok.server.metrics_on());
        assert!(!Config::parse(BASE, "t", &env).unwrap().server.metrics_on());
    }

    #[test]
    fn postgres_storage_needs_its_url_and_expands_it() {
        let pg = |storage: &str| format!("{BASE}\n[storage]\n{storage}\n");
        let err = Config::parse(&pg("backend = \"postgres\""), "t", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("storage.url") && err.contains("postgres"),
            "{err}"
        );
        let err = Config::parse(&pg("url = \"postgres://db/x\""), "t", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("storage.url") && err.contains("only used with backend"),
            "{err}"
        );
        let err = Config::parse(
            &pg("backend = \"postgres\"\nurl = \"mysql://db/x\""),
            "t",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("must be a postgres:// URL"), "{err}");
        let err = Config::parse(
            &pg("backend = \"postgres\"\nurl = \"postgres://db/x\"\npool_size = 0"),
            "t",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("storage.pool_size"), "{err}");
        let err = Config::parse(&pg("backend = \"mongo\""), "t", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mongo"), "{err}");
        let c = Config::parse(
            &pg("backend = \"postgres\"\nurl = \"postgres://u:${TOKEN}@db/x\""),
            "t",
            &env,
        )
        .unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Postgres);
        assert_eq!(
            c.storage.url.as_deref(),
            Some("postgres://u:s3cret-value@db/x")
        );
        assert_eq!(c.storage.pool_size, 16);
        assert_eq!(
            Config::parse(BASE, "t", &env).unwrap().storage.backend,
            StorageBackend::Sled,
            "sled stays the default"
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let text = BASE.replace("[server]", "[server]\nlisten_on = \"x\"");
        let err = Config::parse(&text, "t", &env).unwrap_err().to_string();
        assert!(err.contains("listen_on"), "{err}");
    }

    #[test]
    fn send_from_must_feed_one_of_the_agents_queues() {
        let text = format!(
            "{BASE}[[queues]]\nname = \"sales\"\nrouter = \"ring-all\"\n[[agents]]\nid = \"bob\"\nname = \"Bob\"\ntoken = \"bob-token-1\"\nqueues = [\"sales\"]\nsend_from = \"sms\"\n"
        );
        let err = Config::parse(&text, "t", &env).unwrap_err().to_string();
        assert!(err.contains("agents[1].send_from"), "{err}");
        assert!(
            err.contains("`bob`") && err.contains("`sms`") && err.contains("queue `support`"),
            "{err}"
        );
        let alice = BASE.replace(
            "queues = [\"support\"]",
            "queues = [\"support\"]\nsend_from = \"sms\"",
        );
        Config::parse(&alice, "t", &env).unwrap();
    }

    #[test]
    fn webchat_origins_are_checked_and_normalized() {
        let text = BASE.replace(
            "queue = \"support\"\n[channels.settings]",
            "queue = \"support\"\nallowed_origins = [\"https://shop.example.com\", \"https://shop.example.com/cart\"]\n[channels.settings]",
        );
        let err = Config::parse(&text, "t", &env).unwrap_err().to_string();
        assert!(err.contains("channels[0].allowed_origins[1]"), "{err}");
        let text = BASE.replace(
            "queue = \"support\"\n[channels.settings]",
            "queue = \"support\"\nallowed_origins = [\"HTTPS://Shop.Example.com:443/\"]\n[channels.webchat]\nsession_idle_secs = 5\n[channels.settings]",
        );
        let c = Config::parse(&text, "t", &env).unwrap();
        assert!(c.channels[0].allows_origin("https://shop.example.com"));
        assert!(!c.channels[0].allows_origin("https://evil.example.com"));
        assert!(!c.channels[0].allows_origin("http://shop.example.com"));
        assert_eq!(c.channels[0].webchat.session_idle_secs, 5);
        assert_eq!(c.channels[0].webchat.messages_per_minute, 20);
        assert_eq!(normalize_origin("*"), None);
        assert_eq!(normalize_origin("https://a.example?x"), None);
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let text = BASE
            .replace("listen = \"127.0.0.1:0\"", "listen = \"nowhere\"")
            .replace("${TOKEN}", "${NOPE}")
            .replace("token = \"alice-token\"", "token = \"short\"");
        let err = Config::parse(&text, "t", &env).unwrap_err();
        let ConfigError::Many(all) = &err else {
            panic!("expected several problems, got {err}");
        };
        assert_eq!(all.len(), 3, "{err}");
        let text = err.to_string();
        for key in [
            "3 problems",
            "server.listen",
            "channels[0].settings.auth_token",
            "agents[0].token",
        ] {
            assert!(text.contains(key), "{key}: {text}");
        }
        let one = Config::parse(&BASE.replace("${TOKEN}", "${NOPE}"), "t", &env).unwrap_err();
        assert!(matches!(one, ConfigError::Invalid { .. }), "{one}");
    }

    #[test]
    fn business_hours_are_checked_with_the_key() {
        let queue = |lines: &str| {
            BASE.replace(
                "router = \"ring-all\"",
                &format!("router = \"ring-all\"\n{lines}"),
            )
        };
        let err = |lines: &str| {
            Config::parse(&queue(lines), "t", &env)
                .unwrap_err()
                .to_string()
        };
        let e = err("hours = { timezone = \"Asia/Tokyo\", mon = \"18:00-09:00\" }");
        assert!(e.contains("queues[0].hours.mon"), "{e}");
        let e = err("hours = { timezone = \"Tokyo\" }");
        assert!(e.contains("queues[0].hours.timezone"), "{e}");
        let e = err("closed_message = \"closed\"");
        assert!(e.contains("queues[0].closed_message"), "{e}");
        let c = Config::parse(
            &queue("closed_message = \"closed\"\nhours = { timezone = \"Asia/Tokyo\", mon = \"09:00-18:00\" }"),
            "t",
            &env,
        )
        .unwrap();
        assert_eq!(
            c.queues[0].hours.as_ref().unwrap().mon.as_deref(),
            Some("09:00-18:00")
        );
    }

    #[test]
    fn rules_name_their_keys() {
        let with = |rule: &str| format!("{BASE}\n[[rules]]\n{rule}\n");
        let err = |rule: &str| {
            Config::parse(&with(rule), "t", &env)
                .unwrap_err()
                .to_string()
        };
        assert!(err("queue = \"billing\"").contains("rules[0].queue"));
        let e = err("queue = \"support\"\npattern = \"(unclosed\"");
        assert!(e.contains("rules[0].pattern"), "{e}");
        let e = err("queue = \"support\"\ncontact = \"vip\"\nhours = \"later\"\nchannel = \"fax\"");
        for key in [
            "rules[0].contact",
            "rules[0].hours",
            "rules[0].channel",
            "3 problems",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }
        let c = Config::parse(
            &with("queue = \"support\"\nkeywords = [\"invoice\"]\npriority = 5"),
            "t",
            &env,
        )
        .unwrap();
        assert_eq!(c.rules[0].priority, 5);
    }

    #[test]
    fn crm_sections_name_their_keys() {
        let text = format!(
            "{BASE}\n[[subscriptions]]\nname = \"hook\"\nurl = \"ftp://x\"\nsecret = \"plain\"\nevents = [\"conversation.nope\"]\nqueues = [\"ghost\"]\n\
             [[integrations]]\nname = \"hook\"\nplugin = \"bitrix24\"\nstart_channels = [\"fax\"]\n\
             [[integration_keys]]\nname = \"k\"\nsecret = \"short\"\n"
        );
        let e = Config::parse(&text, "t", &|_| None)
            .unwrap_err()
            .to_string();
        for key in [
            "subscriptions[0].url",
            "subscriptions[0].secret",
            "subscriptions[0].events[0]",
            "subscriptions[0].queues[0]",
            "integrations[0].name",
            "integrations[0].start_channels[0]",
            "integration_keys[0].secret",
        ] {
            assert!(e.contains(key), "{key} in {e}");
        }
        let good = format!(
            "{BASE}\n[[subscriptions]]\nname = \"hook\"\nurl = \"https://crm.example.com/in\"\nsecret = \"${{S}}\"\n"
        );
        let c = Config::parse(&good, "t", &|_| {
            Some("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into())
        })
        .unwrap();
        assert!(c.has_event_targets());
        assert!(c.subscriptions[0].wants("message.status"));
        assert_eq!(c.subscriptions[0].max_attempts, DEFAULT_DELIVERY_ATTEMPTS);
    }

    #[test]
    fn bots_and_classifier_rules_name_their_keys() {
        let err = |text: &str| Config::parse(text, "t", &env).unwrap_err().to_string();
        let unknown = BASE.replace(
            "router = \"ring-all\"",
            "router = \"ring-all\"\nbot = \"helper\"",
        );
        let e = err(&unknown);
        assert!(e.contains("queues[0].bot") && e.contains("helper"), "{e}");
        let twice = format!(
            "{BASE}\n[[bots]]\nname = \"b\"\nplugin = \"faq\"\nhandoff_keywords = [\" \"]\n[[bots]]\nname = \"b\"\nplugin = \"faq\"\n"
        );
        let e = err(&twice);
        assert!(
            e.contains("bots[1].name") && e.contains("bots[0].handoff_keywords"),
            "{e}"
        );
        let e = err(&format!("{BASE}\n[[rules]]\nkeywords = [\"x\"]\n"));
        assert!(e.contains("rules[0].queue"), "a rule decides a queue: {e}");
        let e = err(&format!(
            "{BASE}\n[[rules]]\nqueue = \"support\"\nclassifier_settings = {{ a = \"b\" }}\n"
        ));
        assert!(e.contains("rules[0].classifier_settings"), "{e}");
        let ok = format!(
            "{BASE}\n[[rules]]\nclassifier = \"vip\"\n[[bots]]\nname = \"b\"\nplugin = \"faq\"\n"
        );
        let c = Config::parse(&ok, "t", &env).unwrap();
        assert_eq!(c.bots[0].handoff_keywords, ["agent", "human"]);
        assert_eq!(c.bot_for("sms", "support"), None);
    }

    #[test]
    fn bad_channel_name_is_refused() {
        let text = BASE.replace("name = \"sms\"", "name = \"../etc\"");
        let err = Config::parse(&text, "t", &env).unwrap_err().to_string();
        assert!(err.contains("channels[0].name"), "{err}");
    }
}
