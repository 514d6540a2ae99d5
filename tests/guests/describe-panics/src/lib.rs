//! Test guest whose `describe` panics: the host must refuse it with the reason and serve every
//! other plugin and channel.

use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, TokenGrant,
    WebhookError, WebhookOutcome,
};

fn unsupported() -> SendError {
    SendError::Misconfigured("describe-panics only answers webhooks".into())
}

/// A channel that panics when asked what it is.
pub struct DescribePanics;

impl plugboard_sdk::Channel for DescribePanics {
    fn describe() -> Manifest {
        panic!("describe-panics refuses to describe itself");
    }

    fn check_settings(_settings: Settings) -> Result<(), String> {
        Ok(())
    }

    fn handle_webhook(_: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        Err(WebhookError::Misconfigured("unreachable".into()))
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(unsupported())
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(unsupported())
    }

    fn prepare_token(_: Settings) -> Result<Option<HttpRequest>, SendError> {
        Ok(None)
    }

    fn read_token_response(_: HttpResponse, _: Settings) -> Result<TokenGrant, SendError> {
        Err(unsupported())
    }

    fn prepare_check(_: Settings) -> Result<Option<HttpRequest>, SendError> {
        Ok(None)
    }

    fn read_check_response(_: HttpResponse, _: Settings) -> Result<(), SendError> {
        Ok(())
    }
}

plugboard_sdk::export_channel!(DescribePanics);
