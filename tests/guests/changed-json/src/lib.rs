//! Test guest: a candidate release of the example JSON channel that changes one field. It
//! verifies and reads webhooks as `example-json` does, but upper-cases the text: golden replay
//! must catch the difference.

use plugboard_sdk::serde::Deserialize;
use plugboard_sdk::types::{
    Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
    SendError, SettingSpec, Settings, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{ct_eq, header, hex, host, http, json};

/// The candidate channel.
pub struct ChangedJson;

/// A message as the provider posts it.
#[derive(Deserialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct Inbound {
    id: String,
    from: String,
    to: String,
    text: Option<String>,
}

impl plugboard_sdk::Channel for ChangedJson {
    fn describe() -> Manifest {
        Manifest {
            name: "example-json".into(),
            version: "9.9.9-candidate".into(),
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
        let text = m.text.map(|t| t.to_uppercase());
        Ok(WebhookOutcome {
            events: vec![Event::Message(InboundMessage::new(
                m.id, m.from, m.to, text,
            ))],
            response: http::ok(),
        })
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(SendError::Misconfigured(
            "changed-json sends nothing".into(),
        ))
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(SendError::Misconfigured(
            "changed-json sends nothing".into(),
        ))
    }
}

plugboard_sdk::export_channel!(ChangedJson);
