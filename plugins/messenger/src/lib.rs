//! Plugboard channel plugin for the Meta Messenger Platform (providers.md section 4).
//!
//! * Webhooks: Meta's `GET` verification handshake (`hub.mode=subscribe`, `hub.verify_token`)
//!   is answered with the bare `hub.challenge`; deliveries are `POST`s signed with
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`. Batched
//!   `entry[].messaging[]` items become `message` events (messages and postbacks, echoes
//!   dropped) and `status` events (`delivery.mids`).
//! * Sending: `POST {api_base}/v19.0/me/messages` with the page access token as a Bearer header,
//!   `messaging_type` chosen by the 24-hour window (or the `HUMAN_AGENT` tag up to 7 days when
//!   enabled); see [`messenger::messaging_type`].
//! * Credential check: `GET {api_base}/v19.0/me`.

pub mod messenger;

use plugboard_sdk::host;
use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, WebhookError,
    WebhookOutcome,
};

/// The Messenger channel.
pub struct Messenger;

impl plugboard_sdk::Channel for Messenger {
    fn describe() -> Manifest {
        messenger::manifest()
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        messenger::handle_webhook(&req, &settings, host::hmac_sha256)
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        messenger::prepare_send(&msg, &settings)
    }

    fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        messenger::read_send_response(&resp)
    }

    fn prepare_check(settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        messenger::prepare_check(&settings).map(Some)
    }

    fn read_check_response(resp: HttpResponse, _settings: Settings) -> Result<(), SendError> {
        plugboard_sdk::http::expect_success(&resp, messenger::map_error)
    }
}

plugboard_sdk::export_channel!(Messenger);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_replay_natively() {
        plugboard_sdk::testing::run_fixtures::<super::Messenger>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures"
        ));
    }
}
