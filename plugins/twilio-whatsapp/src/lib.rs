//! Plugboard channel plugin for WhatsApp through Twilio's Messages API.
//!
//! * Webhooks: exactly Twilio SMS's (form-encoded, `X-Twilio-Signature`), with `whatsapp:`
//!   addresses kept as they come and `ProfileName` as the contact name; a status callback with
//!   error 63016 says a free-form message was sent outside the 24-hour window.
//! * Sending: the same Messages API as SMS with `whatsapp:+E.164` addresses, either free-form
//!   (`Body`, `MediaUrl`) or, when the host chose a template, `ContentSid` + `ContentVariables`.
//!
//! [`twilio`] and [`signature`] (from the `twilio-common` crate, shared with `twilio-sms`) hold
//! Twilio's wire format; [`whatsapp`] holds what is specific to WhatsApp.

pub mod whatsapp;

pub use twilio_common::{signature, twilio};

use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, WebhookError,
    WebhookOutcome,
};

/// The Twilio WhatsApp channel.
pub struct TwilioWhatsapp;

impl plugboard_sdk::Channel for TwilioWhatsapp {
    fn describe() -> Manifest {
        whatsapp::manifest()
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
        whatsapp::handle_webhook(
            &req,
            &settings,
            plugboard_sdk::host::hmac_sha1,
            plugboard_sdk::host::sha256,
        )
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        whatsapp::prepare_send(&msg, &settings)
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

plugboard_sdk::export_channel!(TwilioWhatsapp);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_replay_natively() {
        plugboard_sdk::testing::run_fixtures::<super::TwilioWhatsapp>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures"
        ));
    }
}
