//! The loaded plugins and what a configuration builds from them: channel instances (a plugin,
//! its settings, its queue, where it may send), queues and their routers, and the channels
//! that cannot serve. A configuration naming a missing or refused plugin, an unknown router, or
//! leaving out a required setting is an error naming the key.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::config::{Config, Problems};
use crate::model::ConversationTarget;
use crate::runtime::plugin::{ChannelPlugin, PluginSet, RouterPlugin};
use crate::runtime::sandbox::Sandbox;
use crate::services::channel_rules::{Template, is_phone_kind, parse_templates, phone_of};

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
        let known: HashSet<&str> = plugin
            .manifest
            .settings
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let before = p.len();
        for spec in &plugin.manifest.settings {
            let value = c.settings.get(&spec.name).map(|v| v.trim());
            if spec.required && value.is_none_or(str::is_empty) {
                p.invalid(
                    format!("channels[{i}].settings.{}", spec.name),
                    format!(
                        "plugin `{}` requires this setting ({})",
                        c.plugin, spec.description
                    ),
                );
            }
        }
        for name in c.settings.keys() {
            if !known.contains(name.as_str()) {
                p.invalid(
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
                );
            }
        }
        check_setting_values(i, c, plugin.manifest.kind.as_str(), p);
        if p.len() > before {
            continue;
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
    out
}

/// Flags settings that cannot work whatever the plugin does with them: a URL setting
/// (`api_base`, `*_url`) that is not an http(s) URL, and a `from` number on a phone channel
/// that is not E.164.
fn check_setting_values(i: usize, c: &crate::config::ChannelConfig, kind: &str, p: &mut Problems) {
    for (name, value) in &c.settings {
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
    if is_phone_kind(kind)
        && let Some(from) = c.settings.get("from")
        && let Err(e) = plugboard_sdk::E164::parse(phone_of(kind, from.trim()))
    {
        p.invalid(
            format!("channels[{i}].settings.from"),
            format!(
                "{from:?} is not an E.164 number ({e}); a {kind} channel sends from a number like +14155550100"
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
            },
        );
    }
    out
}
