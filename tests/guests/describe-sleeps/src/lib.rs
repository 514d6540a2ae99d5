//! Test guest whose `describe` sleeps in WASI for a minute: the host must refuse it at the call
//! deadline and serve every other plugin and channel.

use plugboard_sdk::types::{
    Capabilities, HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings,
    WebhookError, WebhookOutcome,
};

fn unsupported() -> SendError {
    SendError::Misconfigured("describe-sleeps only answers webhooks".into())
}

fn manifest() -> Manifest {
    Manifest {
        name: "describe-sleeps".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "sms".to_string(),
        settings: Vec::new(),
        api_hosts: Vec::new(),
        capabilities: Capabilities::empty(),
        rules: plugboard_sdk::rules::sms(),
    }
}

/// A channel that sleeps when asked what it is.
pub struct DescribeSleeps;

impl plugboard_sdk::Channel for DescribeSleeps {
    fn describe() -> Manifest {
        std::thread::sleep(std::time::Duration::from_secs(60));
        manifest()
    }

    fn handle_webhook(_: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        Err(WebhookError::Misconfigured("unreachable".into()))
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(unsupported())
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(unsupported())
    }
}

plugboard_sdk::export_channel!(DescribeSleeps);
