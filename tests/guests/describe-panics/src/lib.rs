//! Test guest whose `describe` panics: the host must refuse it with the reason and serve every
//! other plugin and channel.

use plugboard_sdk::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, WebhookError,
    WebhookOutcome,
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

    fn handle_webhook(_: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        Err(WebhookError::Misconfigured("unreachable".into()))
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(unsupported())
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(unsupported())
    }
}

plugboard_sdk::export_channel!(DescribePanics);
