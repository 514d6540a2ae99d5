//! The running host's shared state: configuration resolved against the loaded plugins.
//!
//! Building an [`App`] is where a configuration meets its plugins: a channel naming a missing or
//! refused plugin, a queue naming an unknown router, or a channel leaving out a required
//! setting is an error naming the key.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::channel_rules::{Template, parse_templates};
use crate::config::{AgentConfig, Config, ConfigError};
use crate::plugin::{ChannelPlugin, PluginSet, RouterPlugin};
use crate::sandbox::{Clock, Sandbox};
use crate::storage::{ConversationTarget, Storage, StorageError};

/// A channel instance: a plugin plus an operator's settings and the queue it feeds.
pub struct ChannelInstance {
    /// The instance name (its webhook path segment).
    pub name: String,
    /// The plugin.
    pub plugin: Arc<ChannelPlugin>,
    /// Where new conversations go.
    pub target: ConversationTarget,
    /// The settings passed to every call, in name order.
    pub settings: Arc<Vec<(String, String)>>,
    /// Where the plugin may send requests: its manifest's API hosts over https, plus exactly
    /// the origins of URL settings the operator configured (`api_base` pointing at a proxy or a
    /// test double); see [`crate::provider_http::AllowList`].
    pub allowed_hosts: crate::provider_http::AllowList,
    /// Approved templates (WhatsApp), from the `templates` setting.
    pub templates: Vec<Template>,
    /// Whether customers' attachments are kept.
    pub customer_attachments: bool,
    /// Whether agents may send attachments.
    pub agent_attachments: bool,
}

impl ChannelInstance {
    /// The channel kind from the plugin's manifest (`sms`, `whatsapp`, ...).
    pub fn kind(&self) -> &str {
        &self.plugin.manifest.kind
    }
}

/// A queue and its router.
pub struct QueueInstance {
    /// The queue name.
    pub name: String,
    /// The router plugin.
    pub router: Arc<RouterPlugin>,
}

/// Whether a channel instance takes traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Webhooks and sends work.
    Enabled,
    /// Unlinked: webhooks answer 404 and sends are refused; settings and data are kept.
    Disabled,
    /// Settings destroyed for good; its conversations stay readable.
    Deleted,
}

impl ChannelState {
    fn parse(s: &str) -> ChannelState {
        match s {
            "disabled" => ChannelState::Disabled,
            "deleted" => ChannelState::Deleted,
            _ => ChannelState::Enabled,
        }
    }

    /// The stored name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Enabled => "enabled",
            ChannelState::Disabled => "disabled",
            ChannelState::Deleted => "deleted",
        }
    }
}

/// The loaded plugins and the channel instances and queues resolved against them. A request
/// takes one snapshot and keeps it, so a reload never changes a plugin under a call in flight.
pub struct Catalog {
    /// Every loaded (and refused) plugin.
    pub plugins: PluginSet,
    /// Channel instances by name.
    pub channels: BTreeMap<String, Arc<ChannelInstance>>,
    /// Configured channels that cannot serve because their plugin was refused, with the reason.
    pub unavailable: BTreeMap<String, String>,
    /// Queues by name.
    pub queues: BTreeMap<String, QueueInstance>,
}

/// What a reload did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadReport {
    /// Plugins loaded from new or changed files.
    pub loaded: Vec<String>,
    /// Plugins whose bytes did not change (kept as they were, warm instances included).
    pub unchanged: Vec<String>,
    /// Plugin files refused, with the reason.
    pub refused: Vec<crate::plugin::RefusedPlugin>,
    /// Plugins whose new file was refused: the previous version keeps serving.
    pub kept_previous: Vec<String>,
}

/// Everything request handlers and workers share.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// Runs plugin calls.
    pub sandbox: Arc<Sandbox>,
    /// The plugins and what the configuration built from them; swapped whole by a reload.
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// Serializes reloads.
    reloading: std::sync::Mutex<()>,
    /// Durable state.
    pub storage: Arc<Storage>,
    /// Channels whose plugin keeps failing.
    pub health: crate::health::ChannelHealth,
    /// Access tokens of channels that need one.
    pub tokens: crate::tokens::TokenCache,
    /// Channels that are disabled or deleted (absent: enabled).
    channel_states: std::sync::RwLock<BTreeMap<String, ChannelState>>,
}

impl App {
    /// Loads the plugins and resolves `config` against them, with the data in `data_dir`.
    /// Must run inside a tokio runtime.
    pub fn build(config: Config) -> anyhow::Result<App> {
        let db = config.server.data_dir.join("db");
        App::build_with_db(config, &db)
    }

    /// Like [`App::build`], but with empty throwaway data in `scratch`: for command-line tools
    /// (`check`, `channel test`) that must work while a server holds the real database.
    pub fn build_detached(config: Config, scratch: &Path) -> anyhow::Result<App> {
        App::build_with_db(config, scratch)
    }

    fn build_with_db(config: Config, db: &Path) -> anyhow::Result<App> {
        let sandbox = Arc::new(Sandbox::new(config.limits.clone(), Clock::System)?);
        std::fs::create_dir_all(&config.server.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create data_dir {}: {e}",
                config.server.data_dir.display()
            )
        })?;
        // First, so a second process on the same data (the database is locked) or a corrupt
        // database stops the start at once, before any plugin is compiled or cached.
        let storage = Storage::open(db).map_err(|e| match e {
            // Named by the directory the operator configured.
            StorageError::Locked(_) => StorageError::Locked(config.server.data_dir.clone()),
            e => e,
        })?;
        let cache_dir = config.server.data_dir.join("plugin-cache");
        let plugins = PluginSet::load(
            &sandbox,
            plugboard_artifacts::BUNDLED,
            config.server.plugins_dir.as_deref(),
            &cache_dir,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read plugins_dir {}: {e}",
                config
                    .server
                    .plugins_dir
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display()
            )
        })?;
        let mut unavailable = unavailable_channels(&config, &plugins);
        let mut channels = resolve_channels(
            &config,
            &plugins,
            &sandbox,
            &BTreeMap::new(),
            &mut unavailable,
        )?;
        let queues = resolve_queues(&config, &plugins)?;
        let catalog = Catalog {
            plugins,
            channels: BTreeMap::new(),
            unavailable,
            queues,
        };
        for contact in &config.contacts {
            storage.put_contact(&crate::storage::Contact {
                address: contact.address.clone(),
                name: contact.name.clone(),
            })?;
        }
        let mut channel_states = BTreeMap::new();
        for (name, state) in storage.channel_states()? {
            let state = ChannelState::parse(&state);
            if state == ChannelState::Deleted && channels.remove(&name).is_some() {
                tracing::error!(
                    channel = %name,
                    "channel was deleted through the admin API; it stays deleted: remove it and its settings from the configuration"
                );
            }
            channel_states.insert(name, state);
        }
        Ok(App {
            config,
            sandbox,
            catalog: std::sync::RwLock::new(Arc::new(Catalog {
                channels,
                ..catalog
            })),
            reloading: std::sync::Mutex::new(()),
            storage,
            tokens: crate::tokens::TokenCache::default(),
            health: crate::health::ChannelHealth::default(),
            channel_states: std::sync::RwLock::new(channel_states),
        })
    }

    /// A channel's administrative state.
    pub fn channel_state(&self, name: &str) -> ChannelState {
        self.channel_states
            .read()
            .expect("channel states lock")
            .get(name)
            .copied()
            .unwrap_or(ChannelState::Enabled)
    }

    /// The current plugins, channels and queues.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// The channel instance if it takes traffic (configured, not disabled, not deleted).
    pub fn live_channel(&self, name: &str) -> Option<Arc<ChannelInstance>> {
        (self.channel_state(name) == ChannelState::Enabled)
            .then(|| self.catalog().channels.get(name).cloned())
            .flatten()
    }

    /// Reloads the plugins directory and swaps the catalog: changed files are loaded aside
    /// and checked, unchanged ones are kept (warm instances included), and a plugin whose new
    /// file is refused keeps its previous version. Calls in flight finish on what they started
    /// with. A configuration that no longer resolves (a channel's plugin missing) refuses the
    /// whole reload and nothing changes. Blocking: compiles changed components.
    pub fn reload(&self) -> anyhow::Result<ReloadReport> {
        let _one_at_a_time = self.reloading.lock().expect("reload lock");
        let old = self.catalog();
        let cache_dir = self.config.server.data_dir.join("plugin-cache");
        let fresh = PluginSet::load(
            &self.sandbox,
            plugboard_artifacts::BUNDLED,
            self.config.server.plugins_dir.as_deref(),
            &cache_dir,
        )?;
        let mut report = ReloadReport::default();
        let mut merged = PluginSet {
            refused: fresh.refused.clone(),
            ..PluginSet::default()
        };
        for (name, plugin) in &fresh.channels {
            match old.plugins.channels.get(name) {
                Some(prev) if prev.info.sha256 == plugin.info.sha256 => {
                    report.unchanged.push(name.clone());
                    merged.channels.insert(name.clone(), prev.clone());
                }
                _ => {
                    report.loaded.push(name.clone());
                    merged.channels.insert(name.clone(), plugin.clone());
                }
            }
        }
        for (name, plugin) in &fresh.routers {
            match old.plugins.routers.get(name) {
                Some(prev) if prev.info.sha256 == plugin.info.sha256 => {
                    report.unchanged.push(name.clone());
                    merged.routers.insert(name.clone(), prev.clone());
                }
                _ => {
                    report.loaded.push(name.clone());
                    merged.routers.insert(name.clone(), plugin.clone());
                }
            }
        }
        for refused in &fresh.refused {
            let name = &refused.name;
            if merged.channels.contains_key(name) || merged.routers.contains_key(name) {
                continue;
            }
            if let Some(prev) = old.plugins.channels.get(name) {
                merged.channels.insert(name.clone(), prev.clone());
                report.kept_previous.push(name.clone());
            } else if let Some(prev) = old.plugins.routers.get(name) {
                merged.routers.insert(name.clone(), prev.clone());
                report.kept_previous.push(name.clone());
            }
        }
        report.refused = fresh.refused;
        let mut unavailable = unavailable_channels(&self.config, &merged);
        let mut channels = resolve_channels(
            &self.config,
            &merged,
            &self.sandbox,
            &old.channels,
            &mut unavailable,
        )?;
        let queues = resolve_queues(&self.config, &merged)?;
        for (name, state) in self
            .channel_states
            .read()
            .expect("channel states lock")
            .iter()
        {
            if *state == ChannelState::Deleted {
                channels.remove(name);
            }
        }
        // Channels whose plugin did not change keep their instance (and its warm plugin pool).
        for (name, instance) in channels.iter_mut() {
            if let Some(prev) = old.channels.get(name)
                && Arc::ptr_eq(&prev.plugin, &instance.plugin)
            {
                *instance = prev.clone();
            }
        }
        *self.catalog.write().expect("catalog lock") = Arc::new(Catalog {
            plugins: merged,
            channels,
            unavailable,
            queues,
        });
        tracing::info!(
            loaded = ?report.loaded,
            kept_previous = ?report.kept_previous,
            refused = report.refused.len(),
            "plugins reloaded"
        );
        Ok(report)
    }

    /// Disables, enables or deletes a channel durably. A deleted channel cannot come back.
    pub fn set_channel_state(&self, name: &str, state: ChannelState) -> Result<(), String> {
        let mut states = self.channel_states.write().expect("channel states lock");
        let current = states.get(name).copied().unwrap_or(ChannelState::Enabled);
        if current == ChannelState::Deleted {
            return Err(format!("channel {name} was deleted; that cannot be undone"));
        }
        self.storage
            .set_channel_state(name, state.as_str())
            .map_err(|e| e.to_string())?;
        if state == ChannelState::Enabled {
            states.remove(name);
        } else {
            states.insert(name.to_owned(), state);
        }
        Ok(())
    }

    /// The agent whose token this is, compared in constant time against every agent's.
    pub fn agent_by_token(&self, token: &str) -> Option<&AgentConfig> {
        let mut found = None;
        for agent in &self.config.agents {
            if bool::from(agent.token.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(agent);
            }
        }
        found
    }
}

fn refused_reason(plugins: &PluginSet, name: &str) -> String {
    match plugins.refused.iter().find(|r| r.name == name) {
        Some(r) => format!("plugin `{name}` was refused at load: {}", r.error),
        None => format!(
            "no plugin named `{name}` is loaded (available: {})",
            plugins
                .channels
                .keys()
                .chain(plugins.routers.keys())
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The configured channels whose plugin file was refused at load (and that no earlier version
/// of the plugin serves), with the reason to give their callers: they answer `503` naming the
/// refusal while every other channel serves, so one bad file never stops the host starting.
fn unavailable_channels(config: &Config, plugins: &PluginSet) -> BTreeMap<String, String> {
    config
        .channels
        .iter()
        .filter(|c| plugins.is_refused_channel(&c.plugin))
        .map(|c| {
            tracing::error!(channel = %c.name, plugin = %c.plugin, "channel unavailable: its plugin was refused at load");
            (
                c.name.clone(),
                format!(
                    "channel {} is unavailable: its plugin `{}` was refused at load (the host log says why)",
                    c.name, c.plugin
                ),
            )
        })
        .collect()
}

/// Binds each configured channel to its plugin, checks its settings (required names, the
/// plugin's `check-settings`) and builds its instance. `prior` is the catalog being replaced
/// (empty at start); channels that cannot serve for the plugin's fault go to `failed`.
fn resolve_channels(
    config: &Config,
    plugins: &PluginSet,
    sandbox: &Sandbox,
    prior: &BTreeMap<String, Arc<ChannelInstance>>,
    failed: &mut BTreeMap<String, String>,
) -> Result<BTreeMap<String, Arc<ChannelInstance>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (i, c) in config.channels.iter().enumerate() {
        if plugins.is_refused_channel(&c.plugin) {
            // Serves as unavailable (see `unavailable_channels`); the others still start.
            continue;
        }
        let plugin = match plugins.channels.get(&c.plugin) {
            Some(p) => p.clone(),
            None if plugins.routers.contains_key(&c.plugin) => {
                return Err(invalid(
                    format!("channels[{i}].plugin"),
                    format!("`{}` is a router plugin, not a channel plugin", c.plugin),
                ));
            }
            None => {
                return Err(invalid(
                    format!("channels[{i}].plugin"),
                    refused_reason(plugins, &c.plugin),
                ));
            }
        };
        let known: HashSet<&str> = plugin
            .manifest
            .settings
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        for spec in &plugin.manifest.settings {
            let value = c.settings.get(&spec.name).map(|v| v.trim());
            if spec.required && value.is_none_or(str::is_empty) {
                return Err(invalid(
                    format!("channels[{i}].settings.{}", spec.name),
                    format!(
                        "plugin `{}` requires this setting ({})",
                        c.plugin, spec.description
                    ),
                ));
            }
        }
        for name in c.settings.keys() {
            if !known.contains(name.as_str()) {
                return Err(invalid(
                    format!("channels[{i}].settings.{name}"),
                    format!(
                        "plugin `{}` takes no such setting (it takes: {})",
                        c.plugin,
                        plugin
                            .manifest
                            .settings
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let settings = plugin_settings(config, c);
        // At start every channel's settings are checked; at a reload only those whose plugin
        // changed (the configuration is read once, so the settings did not).
        let unchanged = prior
            .get(&c.name)
            .is_some_and(|p| Arc::ptr_eq(&p.plugin, &plugin));
        let problem = match unchanged {
            true => None,
            false => match plugin.check_settings(sandbox, &c.name, &settings) {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(Err(reason)),
                Err(e) => Some(Ok(e)),
            },
        };
        if let Some(problem) = problem {
            // A new version that cannot serve this channel is refused for it: the previous
            // version keeps serving, as for a file refused at load.
            if let Some(previous) = prior.get(&c.name) {
                tracing::error!(channel = %c.name, plugin = %c.plugin, "the new version of the plugin cannot serve this channel (check-settings: {}); the previous version keeps serving it", match &problem { Err(reason) => reason.clone(), Ok(e) => e.to_string() });
                out.insert(c.name.clone(), previous.clone());
                continue;
            }
            match problem {
                Err(reason) => {
                    return Err(invalid(
                        format!("channels[{i}].settings"),
                        format!("plugin `{}` refuses these settings: {reason}", c.plugin),
                    ));
                }
                Ok(e) => {
                    // The plugin's fault, not the operator's: the channel is unavailable and the
                    // others start (a bad plugin never stops a start).
                    tracing::error!(channel = %c.name, plugin = %c.plugin, "channel unavailable: check-settings failed: {e}");
                    failed.insert(
                        c.name.clone(),
                        format!(
                            "channel {} is unavailable: its plugin `{}` failed checking its settings (the host log says why)",
                            c.name, c.plugin
                        ),
                    );
                    continue;
                }
            }
        }
        let allowed_hosts = crate::provider_http::AllowList::new(
            &c.name,
            &plugin.manifest.api_hosts,
            c.settings.values().map(String::as_str),
        );
        let templates = parse_templates(c.settings.get("templates").map(String::as_str))
            .map_err(|reason| invalid(format!("channels[{i}].settings.templates"), reason))?;
        out.insert(
            c.name.clone(),
            Arc::new(ChannelInstance {
                name: c.name.clone(),
                plugin,
                target: match (&c.queue, &c.agent) {
                    (_, Some(agent)) => ConversationTarget::Agent(agent.clone()),
                    (queue, None) => ConversationTarget::Queue {
                        queue: queue.clone().unwrap_or_default(),
                        skills: c.skills.clone(),
                    },
                },
                settings: Arc::new(settings),
                allowed_hosts,
                templates,
                customer_attachments: c.customer_attachments,
                agent_attachments: c.agent_attachments,
            }),
        );
    }
    Ok(out)
}

/// The setting the host adds to every channel's settings: the channel's public webhook URL,
/// `{public_url}/webhooks/{channel}` (what Twilio's `StatusCallback` names). An operator value
/// (for a plugin that declares the setting) wins.
pub const WEBHOOK_URL_SETTING: &str = "webhook_url";

/// The settings passed to a channel's plugin calls, in name order: the operator's, plus
/// [`WEBHOOK_URL_SETTING`].
fn plugin_settings(config: &Config, c: &crate::config::ChannelConfig) -> Vec<(String, String)> {
    let mut settings = c.settings.clone();
    settings
        .entry(WEBHOOK_URL_SETTING.to_owned())
        .or_insert_with(|| {
            format!(
                "{}/webhooks/{}",
                config.server.public_url.trim_end_matches('/'),
                c.name
            )
        });
    settings.into_iter().collect()
}

fn resolve_queues(
    config: &Config,
    plugins: &PluginSet,
) -> Result<BTreeMap<String, QueueInstance>, ConfigError> {
    let mut out = BTreeMap::new();
    for (i, q) in config.queues.iter().enumerate() {
        let router = match plugins.routers.get(&q.router) {
            Some(r) => r.clone(),
            None if plugins.channels.contains_key(&q.router) => {
                return Err(invalid(
                    format!("queues[{i}].router"),
                    format!("`{}` is a channel plugin, not a router plugin", q.router),
                ));
            }
            None => {
                return Err(invalid(
                    format!("queues[{i}].router"),
                    refused_reason(plugins, &q.router),
                ));
            }
        };
        out.insert(
            q.name.clone(),
            QueueInstance {
                name: q.name.clone(),
                router,
            },
        );
    }
    Ok(out)
}

fn invalid(key: String, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}
