//! Test guest whose webhook call sleeps in WASI (Rust `std::thread::sleep`, a `poll` on a
//! monotonic-clock timer) for a minute: the host must end the call at its deadline, as it ends a
//! spinning one, and other channels must keep their call slots.

use plugboard_sdk::types::{
    Capabilities, HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings,
    WebhookError, WebhookOutcome,
};

fn unsupported() -> SendError {
    SendError::Misconfigured("sleeps only answers webhooks".into())
}

fn manifest() -> Manifest {
    Manifest {
        name: "sleeps".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "sms".to_string(),
        settings: Vec::new(),
        api_hosts: Vec::new(),
        capabilities: Capabilities::empty(),
        rules: plugboard_sdk::rules::sms(),
    }
}

/// A channel whose webhook call sleeps for a minute.
pub struct Sleeps;

impl plugboard_sdk::Channel for Sleeps {
    fn describe() -> Manifest {
        manifest()
    }

    fn handle_webhook(_: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        std::thread::sleep(std::time::Duration::from_secs(60));
        Ok(WebhookOutcome {
            events: Vec::new(),
            response: plugboard_sdk::http::ok(),
        })
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(unsupported())
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(unsupported())
    }
}

plugboard_sdk::export_channel!(Sleeps);
