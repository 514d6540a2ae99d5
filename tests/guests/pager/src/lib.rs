//! Test guest of a new kind of channel, `pager`, that declares its own rules: addresses are
//! `pager:` E.164 numbers, texts at most 160 characters, the STOP/START keywords apply, and
//! free text may go out only within 1 hour of the customer's last message.
//!
//! Webhooks are unauthenticated forms `id=...&from=...&text=...`, each one inbound message;
//! sends are `POST {api_base}/send` with the form `to=...&text=...`, answered with any 2xx.

use plugboard_sdk::types::{
    AddressForm, Capabilities, ChannelRules, Event, HttpRequest, HttpResponse, InboundMessage,
    Manifest, OutboundMessage, SendError, SettingSpec, Settings, TokenGrant, WebhookError,
    WebhookOutcome,
};
use plugboard_sdk::{form, http};

/// The pager channel.
pub struct Pager;

impl plugboard_sdk::Channel for Pager {
    fn describe() -> Manifest {
        let setting = |name: &str| SettingSpec {
            name: name.to_string(),
            required: false,
            secret: false,
            description: format!("the pager network's {name}"),
        };
        Manifest {
            name: "pager".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "pager".to_string(),
            settings: vec![setting("api_base"), setting("from")],
            api_hosts: Vec::new(),
            capabilities: Capabilities::empty(),
            rules: ChannelRules {
                address: AddressForm::E164("pager:".to_string()),
                max_text: 160,
                segments: false,
                opt_out_keywords: true,
                reply_window_hours: Some(1),
            },
        }
    }

    fn check_settings(_settings: Settings) -> Result<(), String> {
        Ok(())
    }

    fn handle_webhook(req: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        let params = form::parse(&req.body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
        let get = |name: &str| form::get(&params, name).unwrap_or_default().to_string();
        Ok(WebhookOutcome {
            events: vec![Event::Message(InboundMessage {
                provider_id: get("id"),
                from: get("from"),
                to: "pager".to_string(),
                text: Some(get("text")),
                attachments: Vec::new(),
                contact_name: None,
                thread: Vec::new(),
            })],
            response: http::ok(),
        })
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        let settings = plugboard_sdk::Settings::new(&settings);
        let base = settings
            .require("api_base")
            .map_err(SendError::Misconfigured)?;
        let text = msg.text.unwrap_or_default();
        let body = form::encode([("to", msg.to.as_str()), ("text", text.as_str())]);
        Ok(http::request(
            "POST",
            format!("{}/send", base.trim_end_matches('/')),
            vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body,
        ))
    }

    fn read_send_response(resp: HttpResponse, _: Settings) -> Result<String, SendError> {
        if http::is_success(resp.status) {
            Ok(format!("page-{}", resp.body.len()))
        } else {
            Err(http::send_error(&resp, format!("HTTP {}", resp.status)))
        }
    }

    fn prepare_token(_: Settings) -> Result<Option<HttpRequest>, SendError> {
        Ok(None)
    }

    fn read_token_response(_: HttpResponse, _: Settings) -> Result<TokenGrant, SendError> {
        Err(SendError::Misconfigured("no token".into()))
    }

    fn prepare_check(_: Settings) -> Result<Option<HttpRequest>, SendError> {
        Ok(None)
    }

    fn read_check_response(_: HttpResponse, _: Settings) -> Result<(), SendError> {
        Ok(())
    }
}

plugboard_sdk::export_channel!(Pager);
