//! What is specific to Twilio SMS/MMS: the manifest and the send request (plain E.164 `To` and
//! `From` or a `MessagingServiceSid`, `Body` and `MediaUrl`). Everything else is Twilio's shared wire format in
//! [`twilio`].

use plugboard_sdk::E164;
use plugboard_sdk::types::{Capabilities, HttpRequest, Manifest, OutboundMessage, SendError};

use crate::twilio::{self, Api, Sender};

/// What the plugin is and which settings it takes.
pub fn manifest() -> Manifest {
    Manifest {
        name: "twilio-sms".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "sms".to_string(),
        settings: twilio::common_settings("Sender phone number in E.164, e.g. +14155550100"),
        api_hosts: vec![twilio::API_HOST.to_string()],
        capabilities: Capabilities::ATTACHMENTS | Capabilities::DELIVERY_RECEIPTS,
        rules: plugboard_sdk::rules::sms(),
    }
}

/// Builds the Messages API request that sends `msg`.
///
/// # Errors
///
/// `misconfigured` for missing settings, a `from` that is not E.164, or not exactly one of `from`
/// and `messaging_service_sid`; `invalid` for a `to` that is not E.164, an empty message or a
/// body over 1600 characters.
pub fn prepare_send(
    msg: &OutboundMessage,
    settings: &[(String, String)],
) -> Result<HttpRequest, SendError> {
    let api = Api::new(settings)?;
    let sender = match twilio::sender(settings)? {
        Sender::From(from) => {
            E164::parse(from)
                .map_err(|e| SendError::Misconfigured(format!("setting `from`: {e}")))?;
            ("From", from)
        }
        Sender::Service(sid) => ("MessagingServiceSid", sid),
    };
    let to = E164::parse(&msg.to).map_err(|e| SendError::Invalid(e.to_string()))?;
    let text = twilio::body_text(msg.text.as_deref())?;
    if text.is_none() && msg.attachments.is_empty() {
        return Err(SendError::Invalid(
            "message has neither text nor attachments".to_string(),
        ));
    }
    let mut fields = vec![("To", to.as_str()), sender];
    if let Some(text) = text {
        fields.push(("Body", text));
    }
    for attachment in &msg.attachments {
        fields.push(("MediaUrl", attachment.url.as_str()));
    }
    Ok(api.messages_request(&fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::pairs;
    use plugboard_sdk::types::Attachment;
    use plugboard_sdk::{form, header};

    fn settings() -> Vec<(String, String)> {
        pairs(&[
            ("account_sid", "AC123"),
            ("auth_token", "secret"),
            ("from", "+14155550100"),
            ("api_base", "http://127.0.0.1:9999/"),
        ])
    }

    #[test]
    fn manifest_declares_sms() {
        let m = manifest();
        assert_eq!(m.name, "twilio-sms");
        assert_eq!(m.kind, "sms");
        let names: Vec<&str> = m.settings.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "account_sid",
                "auth_token",
                "from",
                "messaging_service_sid",
                "api_base"
            ]
        );
        assert_eq!(
            m.capabilities,
            Capabilities::ATTACHMENTS | Capabilities::DELIVERY_RECEIPTS
        );
    }

    fn outbound(to: &str, text: Option<&str>, media: &[&str]) -> OutboundMessage {
        OutboundMessage {
            id: "m1".into(),
            to: to.into(),
            text: text.map(str::to_string),
            attachments: media
                .iter()
                .map(|u| Attachment {
                    url: u.to_string(),
                    content_type: None,
                })
                .collect(),
            thread: Vec::new(),
            since_last_inbound: None,
            token: None,
        }
    }

    #[test]
    fn send_request() {
        let req = prepare_send(
            &outbound(
                "+14155550199",
                Some("Hi there"),
                &["https://x.test/a.png", "https://x.test/b.png"],
            ),
            &settings(),
        )
        .unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            "http://127.0.0.1:9999/2010-04-01/Accounts/AC123/Messages.json"
        );
        assert_eq!(
            header(&req.headers, "authorization"),
            Some(plugboard_sdk::basic_auth("AC123", "secret").as_str())
        );
        assert_eq!(
            header(&req.headers, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            form::parse(&req.body).unwrap(),
            pairs(&[
                ("To", "+14155550199"),
                ("From", "+14155550100"),
                ("Body", "Hi there"),
                ("MediaUrl", "https://x.test/a.png"),
                ("MediaUrl", "https://x.test/b.png"),
            ])
        );
        let Err(SendError::Invalid(msg)) =
            prepare_send(&outbound("+1 415 555", Some("x"), &[]), &settings())
        else {
            panic!()
        };
        assert!(msg.contains("space"), "{msg}");
        let mut no_token = settings();
        no_token.retain(|(n, _)| n != "auth_token");
        assert!(matches!(
            prepare_send(&outbound("+14155550199", Some("x"), &[]), &no_token),
            Err(SendError::Misconfigured(m)) if m.contains("auth_token")
        ));
        let check = twilio::prepare_check(&pairs(&[
            ("account_sid", "AC9"),
            ("auth_token", "t"),
            ("from", "+14155550100"),
        ]))
        .unwrap();
        assert_eq!(check.method, "GET");
        assert_eq!(
            check.url,
            "https://api.twilio.com/2010-04-01/Accounts/AC9.json"
        );
    }
    #[test]
    fn status_callback_and_messaging_service() {
        let mut with_hook = settings();
        with_hook.push((
            "webhook_url".into(),
            "https://hooks.example.com/webhooks/sms".into(),
        ));
        let req = prepare_send(&outbound("+14155550199", Some("Hi"), &[]), &with_hook).unwrap();
        assert_eq!(
            form::parse(&req.body).unwrap(),
            pairs(&[
                ("To", "+14155550199"),
                ("From", "+14155550100"),
                ("Body", "Hi"),
                ("StatusCallback", "https://hooks.example.com/webhooks/sms"),
            ])
        );
        let mut service = with_hook.clone();
        service.retain(|(n, _)| n != "from");
        service.push(("messaging_service_sid".into(), "MG0123".into()));
        let req = prepare_send(&outbound("+14155550199", Some("Hi"), &[]), &service).unwrap();
        let fields = form::parse(&req.body).unwrap();
        assert_eq!(form::get(&fields, "MessagingServiceSid"), Some("MG0123"));
        assert_eq!(form::get(&fields, "From"), None);
        let mut both = with_hook.clone();
        both.push(("messaging_service_sid".into(), "MG0123".into()));
        let mut neither = service.clone();
        neither.retain(|(n, _)| n != "messaging_service_sid");
        let mut not_mg = neither.clone();
        not_mg.push(("messaging_service_sid".into(), "PN0123".into()));
        for (bad, want) in [(both, "not both"), (neither, "set `from`"), (not_mg, "MG")] {
            assert!(
                matches!(
                    prepare_send(&outbound("+14155550199", Some("x"), &[]), &bad),
                    Err(SendError::Misconfigured(m)) if m.contains(want)
                ),
                "{want}"
            );
            assert!(matches!(
                twilio::prepare_check(&bad),
                Err(SendError::Misconfigured(_))
            ));
        }
    }

    #[test]
    fn long_or_empty_messages_are_invalid() {
        let long = "x".repeat(1601);
        assert!(matches!(
            prepare_send(&outbound("+14155550199", Some(&long), &[]), &settings()),
            Err(SendError::Invalid(m)) if m.contains("1600")
        ));
        assert!(matches!(
            prepare_send(&outbound("+14155550199", Some(""), &[]), &settings()),
            Err(SendError::Invalid(m)) if m.contains("neither")
        ));
    }
}
