//! `plugboard new channel NAME` and `plugboard new router NAME`: a plugin crate that builds to
//! a component as it is, with a passing test, and (channels) a `fixtures/` folder holding one
//! recorded request that `plugboard replay` checks. The README's "Writing a plugin" starts here.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// What to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// A channel plugin for a simple JSON provider.
    Channel,
    /// A routing strategy.
    Router,
}

/// The SDK this binary was built with, when its sources are still where they were.
pub fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// Writes the crate `name` of `template` into `dir/name`, depending on the SDK at `sdk`;
/// returns the crate's directory. Refuses a name that is not a plugin name and a directory
/// that exists.
pub fn create(template: Template, name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "{name:?} is not a plugin name: use lower-case letters, digits and `-`, starting with a letter (it becomes the file name NAME.wasm)"
        );
    }
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "no plugboard-sdk at {} (pass --sdk PATH to the sdk/ directory of a Plugboard checkout)",
            sdk.display()
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} exists already; pick another name or directory",
            root.display()
        );
    }
    let sdk = sdk.canonicalize().unwrap_or_else(|_| sdk.to_owned());
    let files = match template {
        Template::Channel => channel(name),
        Template::Router => router(name),
    };
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
description = "A Plugboard {kind} plugin."
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
plugboard-sdk = {{ path = {sdk:?} }}

# A crate of its own, not part of an enclosing workspace.
[workspace]
"#,
        kind = match template {
            Template::Channel => "channel",
            Template::Router => "router",
        },
        sdk = sdk.display().to_string(),
    );
    write(&root.join("Cargo.toml"), &manifest)?;
    for (path, text) in files {
        write(&root.join(path), &text)?;
    }
    Ok(root)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The README every template carries: how to build, test and install the plugin.
fn readme(name: &str, fixtures: bool) -> String {
    let artifact = name.replace('-', "_");
    let mut out = format!(
        "# {name}\n\nA Plugboard plugin.\n\n```sh\ncargo test                                        # the unit tests, natively\ncargo build --release --target wasm32-wasip2      # the component\nplugboard plugins inspect target/wasm32-wasip2/release/{artifact}.wasm\ncp target/wasm32-wasip2/release/{artifact}.wasm PLUGINS_DIR/{name}.wasm\n```\n"
    );
    if fixtures {
        out.push_str(&format!(
            "\n`fixtures/` holds recorded provider requests with what the plugin must answer; replay one with\n\n```sh\nplugboard replay --plugin target/wasm32-wasip2/release/{artifact}.wasm --setting token=s3cret-token-0001 \\\n  --url https://hooks.example.com/webhooks/{name} --header 'X-Token: s3cret-token-0001' \\\n  --header 'Content-Type: application/json' --body-file fixtures/inbound.body\n```\n"
        ));
    }
    out
}

fn channel(name: &str) -> Vec<(&'static str, String)> {
    let lib = r##"//! A Plugboard channel for a JSON provider: webhooks are `POST {"id", "from", "to", "text"}`
//! carrying the shared secret in `X-Token`; replies are `POST {api_base}/messages` with a
//! bearer token, answered `{"id": "..."}`. The settings check, the token exchange and the
//! credential check are the SDK's defaults (none); override them where the provider has them.

use plugboard_sdk::types::{
    Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
    SendError, SettingSpec, Settings, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{Channel, ct_eq, header, http, json, serde};

/// The channel.
pub struct Plugin;

/// A webhook's body.
#[derive(serde::Deserialize)]
#[serde(crate = "plugboard_sdk::serde")]
pub struct Inbound {
    id: String,
    from: String,
    #[serde(default)]
    to: String,
    text: Option<String>,
}

/// The provider's answer to a send.
#[derive(serde::Deserialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct Sent {
    id: String,
}

/// The message a webhook body carries (pure: tested natively).
pub fn parse(body: &[u8]) -> Result<InboundMessage, String> {
    let m: Inbound = json::parse(body).map_err(|e| e.to_string())?;
    Ok(InboundMessage::new(m.id, m.from, m.to, m.text))
}

impl Channel for Plugin {
    fn describe() -> Manifest {
        Manifest {
            name: "NAME".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "sms".into(),
            settings: vec![
                SettingSpec::new("token", true, true, "The secret webhooks carry in X-Token"),
                SettingSpec::new("api_key", false, true, "The bearer token for sends"),
                SettingSpec::new("api_base", false, false, "The provider's API base URL"),
            ],
            api_hosts: vec!["api.example.com".into()],
            capabilities: Capabilities::empty(),
            rules: plugboard_sdk::rules::sms(),
        }
    }

    fn handle_webhook(req: HttpRequest, settings: Settings) -> Result<WebhookOutcome, WebhookError> {
        let settings = plugboard_sdk::Settings::new(&settings);
        let secret = settings.require("token").map_err(WebhookError::Misconfigured)?;
        let sent = header(&req.headers, "x-token").unwrap_or_default();
        if !ct_eq(sent.as_bytes(), secret.as_bytes()) {
            return Err(WebhookError::Unauthorized("X-Token missing or wrong".into()));
        }
        let message = parse(&req.body).map_err(WebhookError::BadRequest)?;
        Ok(WebhookOutcome {
            events: vec![Event::Message(message)],
            response: http::response(200, "application/json", "{}"),
        })
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        let settings = plugboard_sdk::Settings::new(&settings);
        let key = settings.require("api_key").map_err(SendError::Misconfigured)?;
        let base = settings.get("api_base").unwrap_or("https://api.example.com");
        let url = format!("{}/messages", base.trim_end_matches('/'));
        let body = plugboard_sdk::serde_json::json!({"to": msg.to, "text": msg.text});
        Ok(http::post_json(url, vec![http::bearer(key)], &body))
    }

    fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        if !http::is_success(resp.status) {
            return Err(http::send_error(&resp, format!("HTTP {}", resp.status)));
        }
        json::parse::<Sent>(&resp.body)
            .map(|sent| sent.id)
            .map_err(|e| SendError::Invalid(e.to_string()))
    }
}

plugboard_sdk::export_channel!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_body_is_one_message() {
        let m = parse(br#"{"id": "m-1", "from": "+14155550100", "text": "hi"}"#).unwrap();
        assert_eq!((m.provider_id.as_str(), m.text.as_deref()), ("m-1", Some("hi")));
        assert!(parse(b"not json").is_err());
    }

    /// Every recorded request in `fixtures/`, through the channel as `plugboard replay` runs
    /// it (natively: the host's limits are not enforced here).
    #[test]
    fn fixtures() {
        plugboard_sdk::testing::run_fixtures::<Plugin>(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"));
    }
}
"##
    .replace("\"NAME\"", &format!("{name:?}"));
    let body =
        r#"{"id": "m-0001", "from": "+14155550100", "to": "+14155550199", "text": "Hello!"}"#;
    let fixture = format!(
        r#"{{
  "description": "An authentic inbound message",
  "settings": {{"token": "s3cret-token-0001"}},
  "request": {{
    "method": "POST",
    "url": "https://hooks.example.com/webhooks/{name}",
    "headers": [["Content-Type", "application/json"], ["X-Token", "s3cret-token-0001"]],
    "body_file": "inbound.body"
  }},
  "expect": {{
    "exit": 0,
    "output": {{
      "ok": true,
      "events": [
        {{
          "type": "message",
          "provider_id": "m-0001",
          "from": "+14155550100",
          "to": "+14155550199",
          "text": "Hello!"
        }}
      ],
      "response": {{"status": 200, "body": "{{}}"}}
    }}
  }}
}}
"#
    );
    vec![
        ("src/lib.rs", lib),
        ("fixtures/inbound.json", fixture),
        ("fixtures/inbound.body", body.to_owned()),
        ("README.md", readme(name, true)),
        (".gitignore", "/target\n".to_owned()),
    ]
}

fn router(name: &str) -> Vec<(&'static str, String)> {
    let lib = r#"//! A Plugboard routing strategy: offers waiting work to the eligible agent with the fewest
//! active conversations (online, under capacity, not already tried), or keeps it waiting.

use plugboard_sdk::routing::eligible;
use plugboard_sdk::types::{AgentState, Decision, WaitingWork};

/// The strategy.
pub struct Plugin;

/// The decision for `agents` (pure: tested natively).
pub fn decide(agents: &[AgentState]) -> Decision {
    match eligible(agents).into_iter().min_by_key(|a| (a.active, a.index)) {
        Some(agent) => Decision::Offer(vec![agent.index]),
        None => Decision::Wait,
    }
}

impl plugboard_sdk::Router for Plugin {
    fn decide(_work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        decide(&agents)
    }
}

plugboard_sdk::export_router!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::types::Presence;

    fn agent(index: u32, active: u32) -> AgentState {
        AgentState {
            index,
            presence: Presence::Online,
            active,
            capacity: 5,
            idle_since: None,
            last_offered: None,
            last_assigned: None,
            skills: 0,
            tried: false,
        }
    }

    #[test]
    fn the_least_busy_agent_is_offered_the_work() {
        assert_eq!(decide(&[agent(0, 3), agent(1, 1)]), Decision::Offer(vec![1]));
        assert_eq!(decide(&[]), Decision::Wait);
    }
}
"#
    .to_owned();
    vec![
        ("src/lib.rs", lib),
        ("README.md", readme(name, false)),
        (".gitignore", "/target\n".to_owned()),
    ]
}
