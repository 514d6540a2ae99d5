//! Plugboard channel plugin for Twilio Programmable Messaging (SMS/MMS).
//!
//! * Webhooks: Twilio's form-encoded POST (or GET with the parameters in the query string),
//!   authenticated with `X-Twilio-Signature` (see [`signature`]), or a JSON POST whose URL
//!   carries `bodySHA256` (the signature covers the URL, the hash the body); inbound messages become
//!   `message` events and status callbacks `status` events, answered with an empty TwiML
//!   document.
//! * Sending: `POST {api_base}/2010-04-01/Accounts/{account_sid}/Messages.json` with HTTP Basic
//!   authentication, `From` or `MessagingServiceSid`, and `StatusCallback` set to the channel's
//!   webhook URL (the host's `webhook_url` setting); Twilio's error codes are mapped to the
//!   contract's send errors.
//!
//! [`twilio`] and [`signature`] (from the `twilio-common` crate) hold what every Twilio channel
//! shares; [`sms`] holds what is specific to SMS/MMS.

pub mod sms;

pub use twilio_common::{signature, twilio};

use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, WebhookError,
    WebhookOutcome,
};

/// The Twilio SMS channel.
pub struct TwilioSms;

impl plugboard_sdk::Channel for TwilioSms {
    fn describe() -> Manifest {
        sms::manifest()
    }

    fn check_settings(settings: Settings) -> Result<(), String> {
        twilio::sender(&settings).map(|_| ()).map_err(|e| match e {
            SendError::Misconfigured(m) => m,
            other => format!("{other:?}"),
        })
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        twilio::handle_webhook(
            "twilio-sms",
            &req,
            &settings,
            plugboard_sdk::host::hmac_sha1,
            plugboard_sdk::host::sha256,
        )
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        sms::prepare_send(&msg, &settings)
    }

    fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
        twilio::read_send_response(&resp)
    }

    fn prepare_check(settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        twilio::prepare_check(&settings).map(Some)
    }

    fn read_check_response(resp: HttpResponse, _settings: Settings) -> Result<(), SendError> {
        twilio::read_check_response(&resp)
    }
}

plugboard_sdk::export_channel!(TwilioSms);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_replay_natively() {
        plugboard_sdk::testing::run_fixtures::<super::TwilioSms>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures"
        ));
    }
}
