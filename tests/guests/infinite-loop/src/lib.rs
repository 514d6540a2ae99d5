//! Test guest whose `handle-webhook` never returns (the host must stop it at its deadline).

use plugboard_sdk::types::{
    Capabilities, HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings,
    WebhookError, WebhookOutcome,
};

/// The test channel; only `describe` and `handle_webhook` matter.
pub struct InfiniteLoop;

impl plugboard_sdk::Channel for InfiniteLoop {
    fn describe() -> Manifest {
        Manifest {
            name: "infinite-loop".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "sms".to_string(),
            settings: Vec::new(),
            api_hosts: Vec::new(),
            capabilities: Capabilities::empty(),
            rules: plugboard_sdk::rules::sms(),
        }
    }

    fn handle_webhook(_: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        let mut n: u64 = 0;
        loop {
            // `black_box` keeps the optimizer from proving the loop useless and removing it.
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(SendError::Invalid(
            "infinite-loop test guest cannot send".to_string(),
        ))
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(SendError::Invalid(
            "infinite-loop test guest cannot send".to_string(),
        ))
    }
}

plugboard_sdk::export_channel!(InfiniteLoop);
