//! Test guest that answers a webhook with a huge response (20 MiB body, 5,000 events): the host
//! must refuse to carry it rather than buffer and send it.

use plugboard_sdk::types::{
    Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
    SendError, Settings, WebhookError, WebhookOutcome,
};

/// A channel whose webhook answer is far over every limit.
pub struct HugeOutput;

fn unsupported() -> SendError {
    SendError::Misconfigured("huge-output only answers webhooks".into())
}

impl plugboard_sdk::Channel for HugeOutput {
    fn describe() -> Manifest {
        Manifest {
            name: "huge-output".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "sms".to_string(),
            settings: Vec::new(),
            api_hosts: Vec::new(),
            capabilities: Capabilities::empty(),
            rules: plugboard_sdk::rules::sms(),
        }
    }

    fn handle_webhook(req: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        // `?events` asks for many small events instead of one huge body.
        if req.url.ends_with("?events") {
            let events = (0..5000)
                .map(|i| {
                    Event::Message(InboundMessage {
                        provider_id: format!("huge-{i}"),
                        from: "+14155550000".into(),
                        to: "+14155550001".into(),
                        text: Some("x".into()),
                        attachments: Vec::new(),
                        contact_name: None,
                        thread: Vec::new(),
                    })
                })
                .collect();
            return Ok(WebhookOutcome {
                events,
                response: plugboard_sdk::http::ok(),
            });
        }
        Ok(WebhookOutcome {
            events: Vec::new(),
            response: plugboard_sdk::http::response(200, "text/plain", vec![b'x'; 20 << 20]),
        })
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(unsupported())
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(unsupported())
    }
}

plugboard_sdk::export_channel!(HugeOutput);
