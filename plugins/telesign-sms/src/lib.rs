//! Plugboard channel plugin for TeleSign SMS.
//!
//! * Webhooks: TeleSign's Transaction Callback Service POSTs JSON, authenticated with
//!   `Authorization: TSA {customer_id}:{signature}` over the raw body (see [`telesign`]);
//!   inbound SMS (`mo_sms`) become `message` events and delivery reports (`sms`) `status`
//!   events, answered with an empty `200`.
//! * Sending: `POST {api_base}/v1/messaging` (form-encoded, `message_type=ARN`) with HTTP Basic
//!   authentication; TeleSign's status and error codes are mapped to the contract's send errors.
//! * Credential check: none. TeleSign offers no call that proves the credentials without side
//!   effects or guessing at the answer to a made-up resource, so `prepare-check` returns none.

pub mod telesign;

use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, WebhookError,
    WebhookOutcome,
};

/// The TeleSign SMS channel.
pub struct TelesignSms;

impl plugboard_sdk::Channel for TelesignSms {
    fn describe() -> Manifest {
        telesign::manifest()
    }

    fn check_settings(settings: Settings) -> Result<(), String> {
        // A missing key is the host's to report (the setting is required).
        match plugboard_sdk::Settings::new(&settings).require("api_key") {
            Ok(key) => telesign::signature(key, b"", |_, _| Vec::new()).map(|_| ()),
            Err(_) => Ok(()),
        }
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        telesign::handle_webhook(&req, &settings, |key, data| {
            plugboard_sdk::host::hmac_sha256(key, data)
        })
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        telesign::prepare_send(&msg, &settings)
    }

    fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        telesign::read_send_response(&resp)
    }

    fn read_check_response(resp: HttpResponse, _settings: Settings) -> Result<(), SendError> {
        plugboard_sdk::http::expect_success(&resp, telesign::map_error)
    }
}

plugboard_sdk::export_channel!(TelesignSms);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_replay_natively() {
        plugboard_sdk::testing::run_fixtures::<super::TelesignSms>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures"
        ));
    }
}
