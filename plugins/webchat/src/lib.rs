//! Plugboard channel plugin for the website live chat.
//!
//! The host serves the widget and the visitor endpoints (`/webchat/{channel}/...`), checks the
//! visitor's session token, and passes each visitor message here with the visitor's id in the
//! `x-plugboard-visitor` header (a header only the host sets: the generic webhook route refuses
//! webchat channels). This plugin turns it into a `message` event from `webchat:{visitor}`.
//! The offline form (name, email, message) becomes a message that names its sender.
//!
//! Replies need no provider: the host stores them and the visitor's widget fetches them, so
//! `prepare-send` is never called for this channel.

use plugboard_sdk::serde::Deserialize;
use plugboard_sdk::types::{
    Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
    SendError, SettingSpec, Settings, WebhookError, WebhookOutcome,
};

/// The longest visitor message, in characters.
const MAX_TEXT_CHARS: usize = 5000;

/// The website live chat channel.
pub struct Webchat;

/// What the host forwards for one visitor message.
#[derive(Debug, Deserialize)]
#[serde(crate = "plugboard_sdk::serde", deny_unknown_fields)]
struct VisitorMessage {
    message_id: String,
    text: Option<String>,
    name: Option<String>,
    email: Option<String>,
    #[serde(default)]
    offline: bool,
}

/// An optional, non-secret setting.
fn setting(name: &str, description: &str) -> SettingSpec {
    SettingSpec::new(name, false, false, description)
}

/// Parses one visitor message forwarded by the host.
pub fn parse(req: &HttpRequest) -> Result<WebhookOutcome, WebhookError> {
    let visitor = plugboard_sdk::header(&req.headers, "x-plugboard-visitor")
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| {
            WebhookError::Unauthorized(
                "webchat messages come only through the host's visitor endpoints".into(),
            )
        })?
        .to_string();
    let m: VisitorMessage = plugboard_sdk::json::parse(&req.body)
        .map_err(|e| WebhookError::BadRequest(format!("visitor message: {e}")))?;
    let text = m.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let Some(text) = text else {
        return Err(WebhookError::BadRequest(
            "a message needs a non-empty `text`".into(),
        ));
    };
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(WebhookError::BadRequest(format!(
            "messages take at most {MAX_TEXT_CHARS} characters"
        )));
    }
    if m.message_id.is_empty() || m.message_id.len() > 64 {
        return Err(WebhookError::BadRequest(
            "`message_id` must be 1 to 64 characters".into(),
        ));
    }
    let name = m
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let email = m
        .email
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty());
    let text = if m.offline {
        let Some(email) = &email else {
            return Err(WebhookError::BadRequest(
                "the offline form needs an `email`".into(),
            ));
        };
        if !email.contains('@') {
            return Err(WebhookError::BadRequest(format!(
                "{email:?} is not an email address"
            )));
        }
        format!(
            "[offline form] {} <{email}>: {text}",
            name.as_deref().unwrap_or("visitor")
        )
    } else {
        text.to_string()
    };
    let mut thread = Vec::new();
    if let Some(email) = &email {
        thread.push(("email".to_string(), email.clone()));
    }
    Ok(WebhookOutcome {
        events: vec![Event::Message(InboundMessage {
            provider_id: format!("webchat-{visitor}-{}", m.message_id),
            from: format!("webchat:{visitor}"),
            to: "webchat".to_string(),
            text: Some(text),
            attachments: Vec::new(),
            contact_name: name,
            thread,
        })],
        response: plugboard_sdk::http::json(&plugboard_sdk::serde_json::json!({"ok": true})),
    })
}

impl plugboard_sdk::Channel for Webchat {
    fn describe() -> Manifest {
        Manifest {
            name: "webchat".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "webchat".to_string(),
            settings: vec![
                setting("title", "The widget's title (default: Chat with us)"),
                setting(
                    "color",
                    "The widget's accent colour, CSS (default: #2563eb)",
                ),
                setting("intro", "The first line visitors see"),
            ],
            api_hosts: Vec::new(),
            capabilities: Capabilities::HOSTED_CHAT,
            rules: plugboard_sdk::rules::opaque(5000),
        }
    }

    fn handle_webhook(
        req: HttpRequest,
        _settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        parse(&req)
    }

    fn prepare_send(_msg: OutboundMessage, _settings: Settings) -> Result<HttpRequest, SendError> {
        Err(SendError::Misconfigured(
            "webchat replies are delivered by the host, not sent to a provider".into(),
        ))
    }

    fn read_send_response(_resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        Err(SendError::Misconfigured("webchat has no provider".into()))
    }
}

plugboard_sdk::export_channel!(Webchat);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_replay_natively() {
        plugboard_sdk::testing::run_fixtures::<super::Webchat>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures"
        ));
    }
}
