//! Plugboard channel plugin for email through Mailgun (providers.md section 7).
//!
//! * Webhooks: a Mailgun route's `forward("https://…")` POSTs the parsed message as
//!   `application/x-www-form-urlencoded` or, with attachments, `multipart/form-data` (text
//!   fields read, file parts skipped; see [`multipart`]). It is authenticated by `signature` =
//!   lowercase hex HMAC-SHA256(signing key, `timestamp` + `token`), and stale timestamps are
//!   refused. The message becomes a `message` event whose `thread` keeps the subject, the
//!   `Message-Id` and the `References` chain for the reply.
//! * Sending: `POST {api_base}/v3/{domain}/messages` (form, Basic auth `api:{api_key}`) with
//!   `In-Reply-To` / `References` headers so replies thread in the customer's mail client.
//! * Credential check: `GET {api_base}/v3/domains/{domain}`.

pub mod mailgun;
pub mod multipart;

use plugboard_sdk::host;
use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, WebhookError,
    WebhookOutcome,
};

/// The Mailgun email channel.
pub struct MailgunEmail;

impl plugboard_sdk::Channel for MailgunEmail {
    fn describe() -> Manifest {
        mailgun::manifest()
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        mailgun::handle_webhook(&req, &settings, host::hmac_sha256, host::now_millis())
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        mailgun::prepare_send(&msg, &settings)
    }

    fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        mailgun::read_send_response(&resp)
    }

    fn prepare_check(settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        mailgun::prepare_check(&settings).map(Some)
    }

    fn read_check_response(resp: HttpResponse, _settings: Settings) -> Result<(), SendError> {
        plugboard_sdk::http::expect_success(&resp, mailgun::map_error)
    }
}

plugboard_sdk::export_channel!(MailgunEmail);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_replay_natively() {
        plugboard_sdk::testing::run_fixtures::<super::MailgunEmail>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures"
        ));
    }
}
