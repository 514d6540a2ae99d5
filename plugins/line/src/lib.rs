//! Plugboard channel plugin for the LINE Messaging API (providers.md section 3).
//!
//! * Webhooks: LINE POSTs JSON signed with `x-line-signature` = Base64(HMAC-SHA256(channel
//!   secret, raw body)). Text, image/video/audio/file, sticker and location messages become
//!   `message` events (provider id = `webhookEventId`, so redeliveries are stored once);
//!   `unfollow` becomes an `opt-out` and `follow` an `opt-in`. The console's "Verify" call (no
//!   events) is answered `200` like any other delivery.
//! * Sending: a reply (`/v2/bot/message/reply`) while the conversation's reply token is fresh,
//!   else a push (`/v2/bot/message/push`) with an `X-Line-Retry-Key` derived from the outbound
//!   id; see [`line::choose_route`].
//! * Credential check: `GET {api_base}/v2/bot/info`.

pub mod line;

use plugboard_sdk::host;
use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, WebhookError,
    WebhookOutcome,
};

/// The LINE Messaging API channel.
pub struct Line;

impl plugboard_sdk::Channel for Line {
    fn describe() -> Manifest {
        line::manifest()
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        line::handle_webhook(&req, &settings, host::hmac_sha256, host::now_millis())
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        line::prepare_send(&msg, &settings, host::now_millis(), host::sha256)
    }

    fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        line::read_send_response(&resp, || host::random_bytes(16))
    }

    fn prepare_check(settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        line::prepare_check(&settings).map(Some)
    }

    fn read_check_response(resp: HttpResponse, _settings: Settings) -> Result<(), SendError> {
        plugboard_sdk::http::expect_success(&resp, line::map_error)
    }
}

plugboard_sdk::export_channel!(Line);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_replay_natively() {
        plugboard_sdk::testing::run_fixtures::<super::Line>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures"
        ));
    }
}
