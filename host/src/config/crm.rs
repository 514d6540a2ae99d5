//! What the CRM side of the configuration says: `[[subscriptions]]` (signed event webhooks),
//! `[[integrations]]` (integration plugins) and `[[integration_keys]]` (what a CRM or backend
//! may do through the integration API), and how each is checked.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{Problems, check_name};
use crate::model::EVENT_TYPES;

/// Attempts per event delivery before it is dead-lettered, unless configured.
pub const DEFAULT_DELIVERY_ATTEMPTS: u32 = 12;

/// `[[subscriptions]]`: a URL that gets every chosen event, signed the Standard Webhooks way.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Its name in the admin API and the logs (unique among subscriptions and integrations).
    pub name: String,
    /// Where events are posted (`http` or `https`).
    pub url: String,
    /// The signing secret, `whsec_` and base64 of the key bytes; `${VAR}` is replaced from the
    /// environment.
    pub secret: String,
    /// The event types delivered; none (or `"*"`) is every type.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only events of conversations in these queues (none: every queue).
    #[serde(default)]
    pub queues: Vec<String>,
    /// Only events of these channels (none: every channel).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Attempts per event before it is dead-lettered.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// How long one attempt may take, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// `[[integrations]]`: an integration plugin with its settings and what it hears.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// Its name: in the admin API, and its webhook path `/integrations/{name}`.
    pub name: String,
    /// The integration plugin (its file name without `.wasm`), e.g. `bitrix24`.
    pub plugin: String,
    /// The event types it is given, among those its plugin wants; none: all it wants.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only events of conversations in these queues (none: every queue).
    #[serde(default)]
    pub queues: Vec<String>,
    /// Only events of these channels (none: every channel).
    #[serde(default)]
    pub channels: Vec<String>,
    /// The channels on which the CRM may start conversations (none: it may not).
    #[serde(default)]
    pub start_channels: Vec<String>,
    /// Attempts per event before it is dead-lettered.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Settings passed to the plugin; `${VAR}` is replaced from the environment.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// `[[integration_keys]]`: a secret a CRM or backend presents, and what it may do with it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationKeyConfig {
    /// Its name in the audit log.
    pub name: String,
    /// The bearer secret (at least 16 characters); `${VAR}` is replaced from the environment.
    pub secret: String,
    /// The channels it may start conversations on.
    #[serde(default)]
    pub start_channels: Vec<String>,
    /// Whether it may post messages to conversations of those channels.
    #[serde(default)]
    pub post: bool,
    /// Whether it may add contacts to the directory.
    #[serde(default)]
    pub contacts: bool,
    /// Requests it may make per minute.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
}

fn default_attempts() -> u32 {
    DEFAULT_DELIVERY_ATTEMPTS
}

fn default_timeout_secs() -> u64 {
    10
}

fn default_per_minute() -> u32 {
    60
}

impl SubscriptionConfig {
    /// Whether it wants events of type `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        wants(&self.events, kind)
    }
}

impl IntegrationConfig {
    /// Whether its configuration lets events of type `kind` through (its plugin may want
    /// fewer).
    pub fn wants(&self, kind: &str) -> bool {
        wants(&self.events, kind)
    }
}

fn wants(events: &[String], kind: &str) -> bool {
    events.is_empty() || events.iter().any(|e| e == "*" || e == kind)
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` and base64 of the key bytes), or why
/// it is not one.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return Err(
            "must start with `whsec_` (Standard Webhooks: `whsec_` and base64 of the key)".into(),
        );
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("the part after `whsec_` is not base64: {e}"))?;
    if key.len() < 16 {
        return Err(format!(
            "the key is {} bytes; take at least 16 (24 to 64 is usual)",
            key.len()
        ));
    }
    Ok(key)
}

/// Replaces `${VAR}` in the secrets and settings of the CRM sections.
pub(super) fn expand(
    subscriptions: &mut [SubscriptionConfig],
    integrations: &mut [IntegrationConfig],
    keys: &mut [IntegrationKeyConfig],
    expand: &mut dyn FnMut(String, &mut String),
) {
    for (i, s) in subscriptions.iter_mut().enumerate() {
        expand(format!("subscriptions[{i}].secret"), &mut s.secret);
        expand(format!("subscriptions[{i}].url"), &mut s.url);
    }
    for (i, integration) in integrations.iter_mut().enumerate() {
        for (name, value) in integration.settings.iter_mut() {
            expand(format!("integrations[{i}].settings.{name}"), value);
        }
    }
    for (i, k) in keys.iter_mut().enumerate() {
        expand(format!("integration_keys[{i}].secret"), &mut k.secret);
    }
}

/// Checks the CRM sections against the queues and channels configured.
pub(super) fn validate(config: &super::Config, p: &mut Problems) {
    let queues: HashSet<&str> = config.queues.iter().map(|q| q.name.as_str()).collect();
    let channels: HashSet<&str> = config.channels.iter().map(|c| c.name.as_str()).collect();
    let mut names = HashSet::new();
    let mut named = |key: String, name: &str, p: &mut Problems| {
        check_name(&key, name, p);
        if !names.insert(name.to_owned()) {
            p.invalid(
                key,
                format!("`{name}` names another subscription or integration too"),
            );
        }
    };
    let filters = |key: &str, events: &[String], qs: &[String], cs: &[String], p: &mut Problems| {
        for (j, e) in events.iter().enumerate() {
            if e != "*" && !EVENT_TYPES.contains(&e.as_str()) {
                p.invalid(
                    format!("{key}.events[{j}]"),
                    format!(
                        "unknown event type `{e}`; the types are {}",
                        EVENT_TYPES.join(", ")
                    ),
                );
            }
        }
        for (j, q) in qs.iter().enumerate() {
            if !queues.contains(q.as_str()) {
                p.invalid(
                    format!("{key}.queues[{j}]"),
                    format!("no queue named `{q}`"),
                );
            }
        }
        for (j, c) in cs.iter().enumerate() {
            if !channels.contains(c.as_str()) {
                p.invalid(
                    format!("{key}.channels[{j}]"),
                    format!("no channel named `{c}`"),
                );
            }
        }
    };
    let attempts = |key: String, n: u32, p: &mut Problems| {
        if !(1..=50).contains(&n) {
            p.invalid(key, "must be between 1 and 50");
        }
    };
    for (i, s) in config.subscriptions.iter().enumerate() {
        let key = format!("subscriptions[{i}]");
        named(format!("{key}.name"), &s.name, p);
        match url::Url::parse(&s.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => p.invalid(
                format!("{key}.url"),
                "must be an absolute http or https URL",
            ),
        }
        if let Err(reason) = signing_key(&s.secret) {
            p.invalid(format!("{key}.secret"), reason);
        }
        filters(&key, &s.events, &s.queues, &s.channels, p);
        attempts(format!("{key}.max_attempts"), s.max_attempts, p);
        if !(1..=120).contains(&s.timeout_secs) {
            p.invalid(format!("{key}.timeout_secs"), "must be between 1 and 120");
        }
    }
    for (i, integration) in config.integrations.iter().enumerate() {
        let key = format!("integrations[{i}]");
        named(format!("{key}.name"), &integration.name, p);
        filters(
            &key,
            &integration.events,
            &integration.queues,
            &integration.channels,
            p,
        );
        for (j, c) in integration.start_channels.iter().enumerate() {
            if !channels.contains(c.as_str()) {
                p.invalid(
                    format!("{key}.start_channels[{j}]"),
                    format!("no channel named `{c}`"),
                );
            }
        }
        attempts(format!("{key}.max_attempts"), integration.max_attempts, p);
    }
    let mut secrets = HashSet::new();
    for (i, k) in config.integration_keys.iter().enumerate() {
        let key = format!("integration_keys[{i}]");
        check_name(&format!("{key}.name"), &k.name, p);
        if k.secret.chars().count() < 16 {
            p.invalid(format!("{key}.secret"), "must be at least 16 characters");
        }
        let is_agent_token = config.agents.iter().any(|a| a.token == k.secret)
            || config.server.admin_token.as_deref() == Some(k.secret.as_str());
        if !secrets.insert(k.secret.as_str()) || is_agent_token {
            p.invalid(
                format!("{key}.secret"),
                "must differ from every other key's, agent's and the admin's",
            );
        }
        for (j, c) in k.start_channels.iter().enumerate() {
            if !channels.contains(c.as_str()) {
                p.invalid(
                    format!("{key}.start_channels[{j}]"),
                    format!("no channel named `{c}`"),
                );
            }
        }
        if k.per_minute == 0 {
            p.invalid(format!("{key}.per_minute"), "must be above 0");
        }
    }
}
