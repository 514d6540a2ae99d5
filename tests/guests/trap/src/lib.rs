//! Test guest that traps: `describe` and `check-settings` are normal, every other function
//! panics.

use plugboard_sdk::types::{
    Capabilities, HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings,
    TokenGrant, WebhookError, WebhookOutcome,
};

/// The panic message every trapping function uses.
pub const MESSAGE: &str = "trap guest: deliberate panic";

/// A channel whose functions (except `describe`) panic.
pub struct Trap;

impl plugboard_sdk::Channel for Trap {
    fn describe() -> Manifest {
        Manifest {
            name: "trap".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "sms".to_string(),
            settings: Vec::new(),
            api_hosts: Vec::new(),
            capabilities: Capabilities::empty(),
            rules: plugboard_sdk::rules::sms(),
        }
    }

    fn handle_webhook(_: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        panic!("{MESSAGE}")
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        panic!("{MESSAGE}")
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        panic!("{MESSAGE}")
    }

    fn prepare_token(_: Settings) -> Result<Option<HttpRequest>, SendError> {
        panic!("{MESSAGE}")
    }

    fn read_token_response(_: HttpResponse, _: Settings) -> Result<TokenGrant, SendError> {
        panic!("{MESSAGE}")
    }

    fn prepare_check(_: Settings) -> Result<Option<HttpRequest>, SendError> {
        panic!("{MESSAGE}")
    }

    fn read_check_response(_: HttpResponse, _: Settings) -> Result<(), SendError> {
        panic!("{MESSAGE}")
    }
}

plugboard_sdk::export_channel!(Trap);
