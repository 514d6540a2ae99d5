//! A complete Plugboard channel for a simple JSON provider: the SDK's example.
//!
//! * Webhooks: the provider POSTs `{"id", "from", "to", "text"}` signed with
//!   `X-Signature: hex(HMAC-SHA256(secret, raw body))`; each call is one `message` event.
//! * Sending: `POST {api_base}/messages` with `{"to", "text"}` and `Authorization: Bearer
//!   {api_key}`; the provider answers `{"id": "..."}`.
//! * The settings check, the token exchange and the credential check are the SDK's defaults.

use plugboard_sdk::serde::Deserialize;
use plugboard_sdk::serde_json::json;
use plugboard_sdk::types::{
    Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
    SendError, SettingSpec, Settings, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{Channel, ct_eq, header, hex, host, http, json};

/// The example JSON channel.
pub struct ExampleJson;

/// A message as the provider posts it (`text` may be absent).
#[derive(Deserialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct Inbound {
    id: String,
    from: String,
    to: String,
    text: Option<String>,
}

/// The provider's answer to a send.
#[derive(Deserialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct Sent {
    id: String,
}

impl Channel for ExampleJson {
    fn describe() -> Manifest {
        Manifest {
            name: "example-json".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "sms".into(),
            settings: vec![
                SettingSpec::new("secret", true, true, "Key of the X-Signature HMAC"),
                SettingSpec::new("api_key", true, true, "Bearer token of the send API"),
                SettingSpec::new("api_base", false, false, "Default https://api.example.com"),
            ],
            api_hosts: vec!["api.example.com".into()],
            capabilities: Capabilities::empty(),
            rules: plugboard_sdk::rules::sms(),
        }
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        let s = plugboard_sdk::Settings::new(&settings);
        let secret = s.require("secret").map_err(WebhookError::Misconfigured)?;
        let want = hex(&host::hmac_sha256(secret.as_bytes(), &req.body));
        let got = header(&req.headers, "x-signature").unwrap_or("");
        if !ct_eq(got.as_bytes(), want.as_bytes()) {
            return Err(WebhookError::Unauthorized("bad X-Signature".into()));
        }
        let m: Inbound =
            json::parse(&req.body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
        let message = InboundMessage::new(m.id, m.from, m.to, m.text);
        Ok(WebhookOutcome {
            events: vec![Event::Message(message)],
            response: http::ok(),
        })
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        let s = plugboard_sdk::Settings::new(&settings);
        let api_key = s.require("api_key").map_err(SendError::Misconfigured)?;
        let base = s.get_or("api_base", "https://api.example.com");
        let Some(text) = msg.text else {
            return Err(SendError::Invalid("only text can be sent".into()));
        };
        let url = format!("{}/messages", base.trim_end_matches('/'));
        let body = json!({"to": msg.to, "text": text});
        Ok(http::post_json(url, vec![http::bearer(api_key)], &body))
    }

    fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        if !http::is_success(resp.status) {
            return Err(http::send_error(&resp, format!("HTTP {}", resp.status)));
        }
        let sent: Sent = json::parse(&resp.body).map_err(|e| SendError::Invalid(e.to_string()))?;
        Ok(sent.id)
    }
}

plugboard_sdk::export_channel!(ExampleJson);

#[cfg(test)]
mod tests;
