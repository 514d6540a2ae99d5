//! Test guest built against the frozen contract `plugboard:plugin@0.2.0`
//! (`wit/frozen/0.2.0`), with `wit-bindgen` directly, as a plugin released before 0.3.0 was.
//! The host must keep loading and serving it: a form webhook (`id`, `from`, `text`) is one
//! message, plus an opt-out when the text is `STOP`; a send goes to the `api_base` setting and
//! the answer's body is the provider id.

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "channel",
        path: "../../../wit/frozen/0.2.0",
    });
}

use bindings::exports::plugboard::plugin::messaging::Guest;
use bindings::plugboard::plugin::types::{
    Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
    SendError, SettingSpec, Settings, TokenGrant, WebhookError, WebhookOutcome,
};

/// The channel built against contract 0.2.0.
pub struct Contract02;

fn field(body: &[u8], name: &str) -> Option<String> {
    std::str::from_utf8(body).ok()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.replace('+', " ").replace("%2B", "+"))
    })
}

fn setting<'a>(settings: &'a Settings, name: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Guest for Contract02 {
    fn describe() -> Manifest {
        Manifest {
            name: "contract-0-2".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "sms".to_string(),
            settings: vec![SettingSpec {
                name: "api_base".to_string(),
                required: true,
                secret: false,
                description: "Where sends go".to_string(),
            }],
            api_hosts: Vec::new(),
            capabilities: Capabilities::empty(),
        }
    }

    fn handle_webhook(req: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        let (Some(id), Some(from)) = (field(&req.body, "id"), field(&req.body, "from")) else {
            return Err(WebhookError::BadRequest("id and from are required".into()));
        };
        let text = field(&req.body, "text");
        let mut events = Vec::new();
        let stop = text.as_deref() == Some("STOP");
        events.push(Event::Message(InboundMessage {
            provider_id: id,
            from: from.clone(),
            to: "+15005550006".to_string(),
            text,
            attachments: Vec::new(),
            contact_name: None,
            thread: Vec::new(),
        }));
        if stop {
            events.push(Event::OptOut(from));
        }
        Ok(WebhookOutcome {
            events,
            response: HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: b"ok".to_vec(),
            },
        })
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        let base = setting(&settings, "api_base")
            .ok_or_else(|| SendError::Misconfigured("api_base is required".into()))?;
        Ok(HttpRequest {
            method: "POST".into(),
            url: format!("{}/send", base.trim_end_matches('/')),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: format!("{}:{}", msg.to, msg.text.unwrap_or_default()).into_bytes(),
        })
    }

    fn read_send_response(resp: HttpResponse, _: Settings) -> Result<String, SendError> {
        match resp.status {
            200..=299 => Ok(String::from_utf8_lossy(&resp.body).trim().to_string()),
            status => Err(SendError::Unavailable(format!("HTTP {status}"))),
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

#[allow(unsafe_code)]
const _: () = {
    bindings::export!(Contract02 with_types_in bindings);
};
