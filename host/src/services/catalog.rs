//! The loaded plugins and what a configuration builds from them: channel instances (a plugin,
//! its settings, its queue, where it may send), queues and their routers, and the channels
//! that cannot serve. A configuration naming a missing or refused plugin, an unknown router, or
//! leaving out a required setting is an error naming the key.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, Problems};
use crate::model::ConversationTarget;
use crate::runtime::plugin::{
    BotPlugin, ChannelPlugin, IntegrationPlugin, PluginSet, RouterPlugin,
};
use crate::runtime::sandbox::Sandbox;
use crate::services::channel_rules::{Template, parse_templates};

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
    /// test double); see [`crate::runtime::provider_http::AllowList`].
    pub allowed_hosts: crate::runtime::provider_http::AllowList,
    /// Approved templates (WhatsApp), from the `templates` setting.
    pub templates: Vec<Template>,
    /// Whether customers' attachments are kept.
    pub customer_attachments: bool,
    /// Whether agents may send attachments.
    pub agent_attachments: bool,
    /// The channel its sends move to when its provider cannot take them.
    pub fallback: Option<String>,
}

impl ChannelInstance {
    /// Whether `other` is this same channel: the same plugin, settings, destination and rules
    /// (a reload keeps this instance then).
    pub fn same_as(&self, other: &ChannelInstance) -> bool {
        Arc::ptr_eq(&self.plugin, &other.plugin)
            && self.settings == other.settings
            && self.target == other.target
            && self.templates == other.templates
            && self.customer_attachments == other.customer_attachments
            && self.agent_attachments == other.agent_attachments
            && self.fallback == other.fallback
    }

    /// The channel kind from the plugin's manifest (`sms`, `whatsapp`, ...): its icon.
    pub fn kind(&self) -> &str {
        &self.plugin.manifest.kind
    }

    /// What the host enforces for it, as its plugin's manifest declares.
    pub fn rules(&self) -> &crate::runtime::plugin::ChannelRules {
        &self.plugin.manifest.rules
    }
}

/// A queue and its router.
pub struct QueueInstance {
    /// The queue name.
    pub name: String,
    /// The router plugin.
    pub router: Arc<RouterPlugin>,
    /// When it is open (absent: always).
    pub hours: Option<Arc<crate::hours::Hours>>,
}

impl QueueInstance {
    /// Whether the queue is open at `now` (Unix milliseconds).
    pub fn is_open(&self, now: u64) -> bool {
        self.hours.as_ref().is_none_or(|h| h.is_open(now))
    }
}

/// A configured bot: a bot plugin plus its settings.
pub struct BotInstance {
    /// The name channels and queues use.
    pub name: String,
    /// The plugin.
    pub plugin: Arc<BotPlugin>,
    /// The settings passed to every call, in name order.
    pub settings: Arc<Vec<(String, String)>>,
    /// Where the bot may send requests: its manifest's hosts over https, plus the origins of
    /// URL settings the operator configured.
    pub allowed_hosts: crate::runtime::provider_http::AllowList,
    /// Words with which a customer reaches a person at once (lower case).
    pub handoff_keywords: Vec<String>,
}

/// A configured integration: an integration plugin plus its settings and configuration.
pub struct IntegrationInstance {
    /// Its `[[integrations]]` entry.
    pub config: crate::config::IntegrationConfig,
    /// The plugin.
    pub plugin: Arc<IntegrationPlugin>,
    /// The settings passed to every call, in name order.
    pub settings: Arc<Vec<(String, String)>>,
    /// Where it may send requests: its manifest's hosts over https, plus the origins of URL
    /// settings the operator configured (the CRM's webhook URL).
    pub allowed_hosts: crate::runtime::provider_http::AllowList,
}

impl IntegrationInstance {
    /// Whether it is given events of type `kind`: its plugin wants them and its
    /// configuration lets them through.
    pub fn wants(&self, kind: &str) -> bool {
        self.plugin.manifest.wants(kind) && self.config.wants(kind)
    }
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
    /// The state stored under `s` (anything unknown: enabled).
    pub fn parse(s: &str) -> ChannelState {
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
    /// Configured bots by name.
    pub bots: BTreeMap<String, Arc<BotInstance>>,
    /// Configured integrations by name.
    pub integrations: BTreeMap<String, Arc<IntegrationInstance>>,
    /// The configuration these were resolved from: swapped with them, in one step.
    pub config: Arc<Config>,
    /// Its work-classification rules, compiled.
    pub rules: Arc<Vec<crate::services::classify::Rule>>,
}

/// What a reload did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadReport {
    /// Plugins loaded from new or changed files.
    pub loaded: Vec<String>,
    /// Plugins whose bytes did not change (kept as they were, warm instances included).
    pub unchanged: Vec<String>,
    /// Plugin files refused, with the reason.
    pub refused: Vec<crate::runtime::plugin::RefusedPlugin>,
    /// Plugins whose new file was refused: the previous version keeps serving.
    pub kept_previous: Vec<String>,
    /// What a reload of the configuration file changed (absent for a reload of plugins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigChanges>,
}

/// What a reload of the configuration changed, by name.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConfigChanges {
    /// The file read, or `embedded default` (nothing to re-read).
    pub source: String,
    /// Agents added.
    pub agents_added: Vec<String>,
    /// Agents removed: they can no longer sign in; what they own stays theirs.
    pub agents_removed: Vec<String>,
    /// Agents whose token, name, queues, skills, capacity or permissions changed.
    pub agents_changed: Vec<String>,
    /// Channels added.
    pub channels_added: Vec<String>,
    /// Channels removed: their webhooks answer 404; their conversations stay readable.
    pub channels_removed: Vec<String>,
    /// Channels whose plugin, settings, destination or rules changed.
    pub channels_changed: Vec<String>,
    /// Queues added.
    pub queues_added: Vec<String>,
    /// Queues removed.
    pub queues_removed: Vec<String>,
    /// Queues whose settings changed.
    pub queues_changed: Vec<String>,
    /// Keys that differ in the file but take effect only at a restart (kept as they run).
    pub restart_required: Vec<String>,
}

impl ConfigChanges {
    /// A reload of a host started on the embedded default: nothing to re-read.
    pub fn embedded() -> ConfigChanges {
        ConfigChanges {
            source: "embedded default".into(),
            ..ConfigChanges::default()
        }
    }

    /// What changed from `old` to `new` (compared by their TOML form, key by key).
    pub fn between(old: &Config, new: &Config, restart_required: Vec<String>) -> ConfigChanges {
        fn diff<T: serde::Serialize>(
            old: &[T],
            new: &[T],
            name: impl Fn(&T) -> &str,
        ) -> (Vec<String>, Vec<String>, Vec<String>) {
            let by_name = |items: &[T]| -> BTreeMap<String, serde_json::Value> {
                items
                    .iter()
                    .map(|i| {
                        (
                            name(i).to_owned(),
                            serde_json::to_value(i).unwrap_or_default(),
                        )
                    })
                    .collect()
            };
            let (old, new) = (by_name(old), by_name(new));
            let added = new
                .keys()
                .filter(|k| !old.contains_key(*k))
                .cloned()
                .collect();
            let removed = old
                .keys()
                .filter(|k| !new.contains_key(*k))
                .cloned()
                .collect();
            let changed = new
                .iter()
                .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
                .map(|(k, _)| k.clone())
                .collect();
            (added, removed, changed)
        }
        let (agents_added, agents_removed, agents_changed) =
            diff(&old.agents, &new.agents, |a| &a.id);
        let (channels_added, channels_removed, channels_changed) =
            diff(&old.channels, &new.channels, |c| &c.name);
        let (queues_added, queues_removed, queues_changed) =
            diff(&old.queues, &new.queues, |q| &q.name);
        ConfigChanges {
            source: String::new(),
            agents_added,
            agents_removed,
            agents_changed,
            channels_added,
            channels_removed,
            channels_changed,
            queues_added,
            queues_removed,
            queues_changed,
            restart_required,
        }
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
pub(super) fn unavailable_channels(
    config: &Config,
    plugins: &PluginSet,
) -> BTreeMap<String, String> {
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
pub(super) fn resolve_channels(
    config: &Config,
    plugins: &PluginSet,
    sandbox: &Sandbox,
    prior: &BTreeMap<String, Arc<ChannelInstance>>,
    failed: &mut BTreeMap<String, String>,
    p: &mut Problems,
) -> BTreeMap<String, Arc<ChannelInstance>> {
    let mut out = BTreeMap::new();
    for (i, c) in config.channels.iter().enumerate() {
        if plugins.is_refused_channel(&c.plugin) {
            // Serves as unavailable (see `unavailable_channels`); the others still start.
            continue;
        }
        let plugin = match plugins.channels.get(&c.plugin) {
            Some(p) => p.clone(),
            None if plugins.routers.contains_key(&c.plugin) => {
                p.invalid(
                    format!("channels[{i}].plugin"),
                    format!("`{}` is a router plugin, not a channel plugin", c.plugin),
                );
                continue;
            }
            None => {
                p.invalid(
                    format!("channels[{i}].plugin"),
                    refused_reason(plugins, &c.plugin),
                );
                continue;
            }
        };
        let before = p.len();
        check_settings_names(
            &format!("channels[{i}].settings"),
            &c.plugin,
            &plugin.manifest.settings,
            &c.settings,
            p,
        );
        check_setting_values(i, c, &plugin.manifest.rules.address, p);
        if p.len() > before {
            continue;
        }
        let settings = plugin_settings(config, c);
        // At start every channel's settings are checked; at a reload only those whose plugin
        // or settings changed.
        let unchanged = prior
            .get(&c.name)
            .is_some_and(|p| Arc::ptr_eq(&p.plugin, &plugin) && *p.settings == settings);
        let problem = match unchanged {
            true => None,
            false => match plugin.check_settings(sandbox, &c.name, &settings) {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(Err(reason)),
                Err(e) => Some(Ok(e)),
            },
        };
        if let Some(problem) = problem {
            // A new version of the same plugin that cannot serve this channel's unchanged
            // settings is refused for it: the previous version keeps serving, as for a file
            // refused at load. Settings or a plugin the operator changed are the operator's
            // to fix: the reload is refused.
            if let Some(previous) = prior.get(&c.name)
                && previous.plugin.info.name == plugin.info.name
                && *previous.settings == settings
            {
                tracing::error!(channel = %c.name, plugin = %c.plugin, "the new version of the plugin cannot serve this channel (check-settings: {}); the previous version keeps serving it", match &problem { Err(reason) => reason.clone(), Ok(e) => e.to_string() });
                out.insert(c.name.clone(), previous.clone());
                continue;
            }
            match problem {
                Err(reason) => {
                    p.invalid(
                        format!("channels[{i}].settings"),
                        format!("plugin `{}` refuses these settings: {reason}", c.plugin),
                    );
                    continue;
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
        let allowed_hosts = crate::runtime::provider_http::AllowList::new(
            &c.name,
            &plugin.manifest.api_hosts,
            c.settings.values().map(String::as_str),
        );
        let templates = match parse_templates(c.settings.get("templates").map(String::as_str)) {
            Ok(templates) => templates,
            Err(reason) => {
                p.invalid(format!("channels[{i}].settings.templates"), reason);
                continue;
            }
        };
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
                        priority: 0,
                        // Set per conversation by intake (`Config::bot_for`).
                        bot: None,
                    },
                },
                settings: Arc::new(settings),
                allowed_hosts,
                templates,
                customer_attachments: c.customer_attachments,
                agent_attachments: c.agent_attachments,
                fallback: c.fallback.clone(),
            }),
        );
    }
    check_fallbacks(config, &out, p);
    out
}

/// Flags a `fallback` whose customers are addressed differently from its channel's: a send
/// moves there with the same address, so both must take it (the same phone form, or, for
/// opaque addresses, the same plugin); a hosted chat has no provider to move to or from.
fn check_fallbacks(
    config: &Config,
    channels: &BTreeMap<String, Arc<ChannelInstance>>,
    p: &mut Problems,
) {
    use crate::runtime::plugin::AddressForm;
    for (i, c) in config.channels.iter().enumerate() {
        let (Some(from), Some(to)) = (
            channels.get(&c.name),
            c.fallback.as_ref().and_then(|f| channels.get(f)),
        ) else {
            continue;
        };
        let problem = if from.plugin.manifest.hosted_chat || to.plugin.manifest.hosted_chat {
            Some("a web chat channel has no provider to move a send to or from".to_owned())
        } else {
            match (&from.rules().address, &to.rules().address) {
                (AddressForm::E164 { prefix: a }, AddressForm::E164 { prefix: b }) if a == b => {
                    None
                }
                (AddressForm::Opaque, AddressForm::Opaque)
                    if from.plugin.info.name == to.plugin.info.name =>
                {
                    None
                }
                (a, b) => Some(format!(
                    "`{}` addresses customers as {} and `{}` as {}: a send cannot move between them",
                    from.name,
                    describe_address(a, &from.plugin.info.name),
                    to.name,
                    describe_address(b, &to.plugin.info.name),
                )),
            }
        };
        if let Some(problem) = problem {
            p.invalid(format!("channels[{i}].fallback"), problem);
        }
    }
}

/// `E.164 numbers after "whatsapp:"`, `its own ids (plugin line)`.
fn describe_address(form: &crate::runtime::plugin::AddressForm, plugin: &str) -> String {
    match form {
        crate::runtime::plugin::AddressForm::E164 { prefix } if prefix.is_empty() => {
            "E.164 numbers".to_owned()
        }
        crate::runtime::plugin::AddressForm::E164 { prefix } => {
            format!("E.164 numbers after {prefix:?}")
        }
        crate::runtime::plugin::AddressForm::Opaque => format!("ids of plugin `{plugin}`"),
    }
}

/// Flags settings that cannot work whatever the plugin does with them: a URL setting
/// (`api_base`, `*_url`) that is not an http(s) URL, and a `from` number on a phone channel
/// that is not E.164.
fn check_setting_values(
    i: usize,
    c: &crate::config::ChannelConfig,
    address: &crate::runtime::plugin::AddressForm,
    p: &mut Problems,
) {
    // An empty value is an absent one (the plugin's default): nothing to flag.
    for (name, value) in c.settings.iter().filter(|(_, v)| !v.trim().is_empty()) {
        let is_url = name == "api_base" || name.ends_with("_url");
        if is_url {
            let ok = url::Url::parse(value.trim())
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                p.invalid(
                    format!("channels[{i}].settings.{name}"),
                    format!("{value:?} is not an http:// or https:// URL"),
                );
            }
        }
    }
    if address.is_phone()
        && let Some(from) = c.settings.get("from").filter(|f| !f.trim().is_empty())
        && let Err(e) = plugboard_sdk::E164::parse(address.phone_of(from.trim()))
    {
        p.invalid(
            format!("channels[{i}].settings.from"),
            format!(
                "{from:?} is not an E.164 number ({e}); this channel sends from a number like {}",
                address.address_for("+14155550100")
            ),
        );
    }
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

pub(super) fn resolve_queues(
    config: &Config,
    plugins: &PluginSet,
    p: &mut Problems,
) -> BTreeMap<String, QueueInstance> {
    let mut out = BTreeMap::new();
    for (i, q) in config.queues.iter().enumerate() {
        let router = match plugins.routers.get(&q.router) {
            Some(r) => r.clone(),
            None if plugins.channels.contains_key(&q.router) => {
                p.invalid(
                    format!("queues[{i}].router"),
                    format!("`{}` is a channel plugin, not a router plugin", q.router),
                );
                continue;
            }
            None => {
                p.invalid(
                    format!("queues[{i}].router"),
                    refused_reason(plugins, &q.router),
                );
                continue;
            }
        };
        out.insert(
            q.name.clone(),
            QueueInstance {
                name: q.name.clone(),
                router,
                // Checked with the configuration (`Config::validate`).
                hours: q
                    .hours
                    .as_ref()
                    .and_then(|h| crate::hours::Hours::parse(h).ok())
                    .map(Arc::new),
            },
        );
    }
    out
}

/// Binds each `[[bots]]` entry to its bot plugin and checks its settings (required names, no
/// unknown ones, the plugin's `check-settings`).
pub(super) fn resolve_bots(
    config: &Config,
    plugins: &PluginSet,
    sandbox: &Sandbox,
    p: &mut Problems,
) -> BTreeMap<String, Arc<BotInstance>> {
    let mut out = BTreeMap::new();
    for (i, b) in config.bots.iter().enumerate() {
        let Some(plugin) = plugins.bots.get(&b.plugin).cloned() else {
            let reason = if plugins.is_loaded(&b.plugin) {
                format!("`{}` is not a bot plugin", b.plugin)
            } else {
                refused_reason(plugins, &b.plugin)
            };
            p.invalid(format!("bots[{i}].plugin"), reason);
            continue;
        };
        let before = p.len();
        check_settings_names(
            &format!("bots[{i}].settings"),
            &b.plugin,
            &plugin.manifest.settings,
            &b.settings,
            p,
        );
        if p.len() > before {
            continue;
        }
        let settings: Vec<(String, String)> = b.settings.clone().into_iter().collect();
        match plugin.check_settings(sandbox, &b.name, &settings) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                p.invalid(
                    format!("bots[{i}].settings"),
                    format!("plugin `{}` refuses these settings: {reason}", b.plugin),
                );
                continue;
            }
            Err(e) => {
                p.invalid(
                    format!("bots[{i}].plugin"),
                    format!("plugin `{}` failed checking its settings: {e}", b.plugin),
                );
                continue;
            }
        }
        let allowed_hosts = crate::runtime::provider_http::AllowList::new(
            &b.name,
            &plugin.manifest.api_hosts,
            b.settings.values().map(String::as_str),
        );
        out.insert(
            b.name.clone(),
            Arc::new(BotInstance {
                name: b.name.clone(),
                plugin,
                settings: Arc::new(settings),
                allowed_hosts,
                handoff_keywords: b
                    .handoff_keywords
                    .iter()
                    .map(|k| k.trim().to_lowercase())
                    .collect(),
            }),
        );
    }
    out
}

/// Binds each `[[integrations]]` entry to its integration plugin and checks its settings
/// (required names, no unknown ones, the plugin's `check-settings`).
pub(super) fn resolve_integrations(
    config: &Config,
    plugins: &PluginSet,
    sandbox: &Sandbox,
    p: &mut Problems,
) -> BTreeMap<String, Arc<IntegrationInstance>> {
    let mut out = BTreeMap::new();
    for (i, c) in config.integrations.iter().enumerate() {
        let Some(plugin) = plugins.integrations.get(&c.plugin).cloned() else {
            let reason = if plugins.is_loaded(&c.plugin) {
                format!("`{}` is not an integration plugin", c.plugin)
            } else {
                refused_reason(plugins, &c.plugin)
            };
            p.invalid(format!("integrations[{i}].plugin"), reason);
            continue;
        };
        let before = p.len();
        check_settings_names(
            &format!("integrations[{i}].settings"),
            &c.plugin,
            &plugin.manifest.settings,
            &c.settings,
            p,
        );
        if p.len() > before {
            continue;
        }
        let settings: Vec<(String, String)> = c.settings.clone().into_iter().collect();
        match plugin.check_settings(sandbox, &c.name, &settings) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                p.invalid(
                    format!("integrations[{i}].settings"),
                    format!("plugin `{}` refuses these settings: {reason}", c.plugin),
                );
                continue;
            }
            Err(e) => {
                p.invalid(
                    format!("integrations[{i}].plugin"),
                    format!("plugin `{}` failed checking its settings: {e}", c.plugin),
                );
                continue;
            }
        }
        let allowed_hosts = crate::runtime::provider_http::AllowList::new(
            &c.name,
            &plugin.manifest.api_hosts,
            c.settings.values().map(String::as_str),
        );
        out.insert(
            c.name.clone(),
            Arc::new(IntegrationInstance {
                config: c.clone(),
                plugin,
                settings: Arc::new(settings),
                allowed_hosts,
            }),
        );
    }
    out
}

/// Refuses a setting a plugin requires but `given` leaves out (or empty), and one it does not
/// take; keys are `{key}.{name}`.
fn check_settings_names(
    key: &str,
    plugin: &str,
    specs: &[crate::runtime::plugin::SettingSpec],
    given: &BTreeMap<String, String>,
    p: &mut Problems,
) {
    for spec in specs {
        let value = given.get(&spec.name).map(|v| v.trim());
        if spec.required && value.is_none_or(str::is_empty) {
            p.invalid(
                format!("{key}.{}", spec.name),
                format!(
                    "plugin `{plugin}` requires this setting ({})",
                    spec.description
                ),
            );
        }
    }
    for name in given.keys() {
        if !specs.iter().any(|s| &s.name == name) {
            p.invalid(
                format!("{key}.{name}"),
                format!(
                    "plugin `{plugin}` takes no such setting (it takes: {})",
                    specs
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
}

/// Refuses a rule whose `classifier` names no loaded classifier plugin.
pub(super) fn check_classifiers(config: &Config, plugins: &PluginSet, p: &mut Problems) {
    for (i, r) in config.rules.iter().enumerate() {
        let Some(name) = &r.classifier else { continue };
        if plugins.classifiers.contains_key(name) {
            continue;
        }
        let reason = if plugins.is_loaded(name) {
            format!("`{name}` is not a classifier plugin")
        } else {
            refused_reason(plugins, name)
        };
        p.invalid(format!("rules[{i}].classifier"), reason);
    }
}
