//! Test guest: a broken release of the example JSON channel. It describes itself exactly as
//! `example-json` does (same name, settings and rules, so it drops in for it), and its webhook
//! handler panics: the webhooks it gets are kept and redriven once the good plugin is back.

use plugboard_sdk::types::{
    Capabilities, HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, SettingSpec,
    Settings, WebhookError, WebhookOutcome,
};

/// The broken channel.
pub struct BrokenJson;

impl plugboard_sdk::Channel for BrokenJson {
    fn describe() -> Manifest {
        Manifest {
            name: "example-json".into(),
            version: "9.9.9-broken".into(),
            kind: "sms".into(),
            settings: vec![
                SettingSpec::new("secret", true, true, "Key of the X-Signature HMAC"),
                SettingSpec::new("api_key", true, true, "Bearer token of the send API"),
                SettingSpec::new("api_base", false, false, "Default https://api.example.com"),
            ],
            api_hosts: vec!["api.example.com".into()],
            capabilities: Capabilities::empty(),
            rules: plugboard_sdk::rules::sms(),
        }
    }

    fn handle_webhook(_: HttpRequest, _: Settings) -> Result<WebhookOutcome, WebhookError> {
        panic!("broken-json: this release cannot read webhooks")
    }

    fn prepare_send(_: OutboundMessage, _: Settings) -> Result<HttpRequest, SendError> {
        Err(SendError::Misconfigured("broken-json sends nothing".into()))
    }

    fn read_send_response(_: HttpResponse, _: Settings) -> Result<String, SendError> {
        Err(SendError::Misconfigured("broken-json sends nothing".into()))
    }
}

plugboard_sdk::export_channel!(BrokenJson);
