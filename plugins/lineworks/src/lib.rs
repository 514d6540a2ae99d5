//! Plugboard channel plugin for LINE WORKS Bot API 2.0 (providers.md section 5).
//!
//! * Webhooks: LINE WORKS POSTs JSON callbacks signed with `X-WORKS-Signature` =
//!   Base64(HMAC-SHA256(bot secret, raw body)) and naming the bot in `X-WORKS-BotId`. Callbacks
//!   carry no message or event id, so the provider id is a SHA-256 content hash (see
//!   [`lineworks::provider_id`]), stable across redeliveries.
//! * Tokens: `prepare-token` builds the service-account JWT (RS256, see [`jwt`]) and exchanges
//!   it at `{auth_base}/oauth2/v2.0/token`; the host caches the access token until it expires
//!   and passes it to `prepare-send`.
//! * Sending: `POST {api_base}/v1.0/bots/{bot_id}/users/{userId}/messages` (or
//!   `channels/{channelId}` for a group conversation) with the cached Bearer token.
//! * Credential check: the token exchange itself (the only call that proves the client id,
//!   client secret, service account and private key together without a cached token).

pub mod jwt;
pub mod lineworks;

use plugboard_sdk::host;
use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, TokenGrant,
    WebhookError, WebhookOutcome,
};

/// The LINE WORKS bot channel.
pub struct LineWorks;

impl plugboard_sdk::Channel for LineWorks {
    fn describe() -> Manifest {
        lineworks::manifest()
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        lineworks::handle_webhook(&req, &settings, host::hmac_sha256, host::sha256)
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        lineworks::prepare_send(&msg, &settings)
    }

    fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        lineworks::read_send_response(&resp, || host::random_bytes(16))
    }

    fn prepare_token(settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        lineworks::prepare_token(&settings, host::now_millis() / 1000).map(Some)
    }

    fn read_token_response(
        resp: HttpResponse,
        _settings: Settings,
    ) -> Result<TokenGrant, SendError> {
        lineworks::read_token_response(&resp)
    }

    fn prepare_check(settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        lineworks::prepare_token(&settings, host::now_millis() / 1000).map(Some)
    }

    fn read_check_response(resp: HttpResponse, _settings: Settings) -> Result<(), SendError> {
        lineworks::read_token_response(&resp).map(|_| ())
    }
}

plugboard_sdk::export_channel!(LineWorks);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_replay_natively() {
        plugboard_sdk::testing::run_fixtures::<super::LineWorks>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures"
        ));
    }
}
