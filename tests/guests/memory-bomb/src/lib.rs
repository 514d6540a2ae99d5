//! Test guest whose `handle-webhook` allocates and touches memory in 1 MiB chunks until allocation fails (the host must cap its memory).

/// The size of each allocation: 1 MiB.
const CHUNK: usize = 1 << 20;

use plugboard_sdk::types::{
    Capabilities, HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings,
    WebhookError, WebhookOutcome,
};

/// The test channel; only `describe` and `handle_webhook` matter.
pub struct MemoryBomb;

impl plugboard_sdk::Channel for MemoryBomb {
    fn describe() -> Manifest {
        Manifest {
            name: "memory-bomb".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "sms".to_string(),
            settings: Vec::new(),
            api_hosts: Vec::new(),
            capabilities: Capabilities::empty(),
            rules: plugboard_sdk::rules::sms(),
        }
    }

    fn handle_webhook(_: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk: Vec<u8> = Vec::new();
            if chunk.try_reserve_exact(CHUNK).is_err() || chunks.try_reserve(1).is_err() {
                // Out of memory: trap, as a real runaway allocation would.
                panic!(
                    "memory-bomb guest: allocation failed after {} MiB",
                    chunks.len()
                );
            }
            // Touch every page so the memory is really used.
            chunk.resize(CHUNK, 1);
            chunks.push(std::hint::black_box(chunk));
        }
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(SendError::Invalid(
            "memory-bomb test guest cannot send".to_string(),
        ))
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(SendError::Invalid(
            "memory-bomb test guest cannot send".to_string(),
        ))
    }
}

plugboard_sdk::export_channel!(MemoryBomb);
