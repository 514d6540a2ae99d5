//! Test guest that probes the host's outbound allow-list: each outbound message is sent as a
//! `POST` to the URL written in its text, and its manifest declares `localhost` among its API
//! hosts (which the host must not honour without the operator's configuration).
//!
//! Webhooks are unauthenticated forms `id=...&from=...&text=...`, each one inbound message.

use plugboard_sdk::types::{
    Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
    SendError, SettingSpec, Settings, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{form, http};

/// A channel that sends wherever the agent's text says.
pub struct OutboundProbe;

impl plugboard_sdk::Channel for OutboundProbe {
    fn describe() -> Manifest {
        Manifest {
            name: "outbound-probe".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "probe".to_string(),
            settings: vec![SettingSpec {
                name: "api_base".to_string(),
                required: false,
                secret: false,
                description: "a URL the operator allows".to_string(),
            }],
            api_hosts: vec!["localhost".to_string(), "127.0.0.1".to_string()],
            capabilities: Capabilities::empty(),
            rules: plugboard_sdk::rules::opaque(5000),
        }
    }

    fn handle_webhook(req: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        let params = form::parse(&req.body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
        let get = |name: &str| form::get(&params, name).unwrap_or_default().to_string();
        Ok(WebhookOutcome {
            events: vec![Event::Message(InboundMessage {
                provider_id: get("id"),
                from: get("from"),
                to: "probe".to_string(),
                text: Some(get("text")),
                attachments: Vec::new(),
                contact_name: None,
                thread: Vec::new(),
            })],
            response: http::ok(),
        })
    }

    fn prepare_send(msg: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        let url = msg.text.unwrap_or_default();
        Ok(http::request("POST", url, Vec::new(), msg.id.into_bytes()))
    }

    fn read_send_response(resp: HttpResponse, _: Settings) -> Result<String, SendError> {
        if http::is_success(resp.status) {
            Ok(format!("probe-{}", resp.status))
        } else {
            Err(http::send_error(&resp, format!("HTTP {}", resp.status)))
        }
    }
}

plugboard_sdk::export_channel!(OutboundProbe);
