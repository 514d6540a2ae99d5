//! What is specific to WhatsApp through Twilio: the manifest, `whatsapp:` addresses, template
//! sends (`ContentSid` + `ContentVariables`) and the 24-hour-window failure (error 63016).
//! Everything else is Twilio's shared wire format in [`twilio`].

use plugboard_sdk::types::{
    Capabilities, DeliveryState, Event, HttpRequest, Manifest, OutboundMessage, SendError,
    SettingSpec, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{E164, form};

use crate::twilio::{self, Api, Sender};

/// The prefix Twilio puts before WhatsApp phone numbers.
pub const ADDRESS_PREFIX: &str = "whatsapp:";

/// The `thread` entry in which the host puts the Content SID (`HX...`) of the approved template
/// to send instead of free-form text.
pub const TEMPLATE_CONTENT_SID: &str = "template_content_sid";

/// The `thread` entry in which the host puts the template's variables, a JSON object such as
/// `{"1":"Alice"}`.
pub const TEMPLATE_VARIABLES: &str = "template_variables";

/// Twilio's error for a free-form message sent outside the 24-hour customer-service window.
pub const OUTSIDE_WINDOW_CODE: &str = "63016";

/// The error message a status callback with [`OUTSIDE_WINDOW_CODE`] carries.
pub const OUTSIDE_WINDOW_MESSAGE: &str = "outside the 24-hour window: send an approved template";

/// What the plugin is and which settings it takes.
pub fn manifest() -> Manifest {
    let mut settings = twilio::common_settings(
        "WhatsApp sender number in E.164, e.g. +14155238886 (sent as whatsapp:+14155238886)",
    );
    settings.push(SettingSpec::new(
        "templates",
        false,
        false,
        "Approved templates, a JSON array of {\"name\", \"language\", \"content_sid\", \
         \"variables\": [...]}; the host sends one of them outside the 24-hour window",
    ));
    Manifest {
        name: "twilio-whatsapp".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "whatsapp".to_string(),
        settings,
        api_hosts: vec![twilio::API_HOST.to_string()],
        capabilities: Capabilities::ATTACHMENTS
            | Capabilities::TEMPLATES
            | Capabilities::DELIVERY_RECEIPTS,
        rules: plugboard_sdk::rules::whatsapp(),
    }
}

/// Authenticates and parses one webhook call as Twilio SMS does, then marks status callbacks
/// with error 63016 as failed with [`OUTSIDE_WINDOW_MESSAGE`].
///
/// # Errors
///
/// As [`twilio::handle_webhook`].
pub fn handle_webhook(
    req: &HttpRequest,
    settings: &[(String, String)],
    hmac_sha1: impl Fn(&[u8], &[u8]) -> Vec<u8>,
    sha256: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<WebhookOutcome, WebhookError> {
    let mut outcome = twilio::handle_webhook("twilio-whatsapp", req, settings, hmac_sha1, sha256)?;
    for event in &mut outcome.events {
        if let Event::Status(status) = event
            && status.error_code.as_deref() == Some(OUTSIDE_WINDOW_CODE)
        {
            status.state = DeliveryState::Failed;
            status.error_message = Some(OUTSIDE_WINDOW_MESSAGE.to_string());
        }
    }
    Ok(outcome)
}

/// The E.164 number of a `whatsapp:+E.164` customer address.
///
/// # Errors
///
/// `invalid` when the prefix is missing or the number is not E.164.
pub fn customer_number(address: &str) -> Result<E164, SendError> {
    let Some(number) = address.strip_prefix(ADDRESS_PREFIX) else {
        let hint = E164::parse(address)
            .map(|n| format!("; write whatsapp:{}", n.as_str()))
            .unwrap_or_default();
        return Err(SendError::Invalid(format!(
            "WhatsApp address \"{address}\" must be whatsapp: followed by an E.164 number, e.g. \
             whatsapp:+14155550100{hint}"
        )));
    };
    E164::parse(number).map_err(|e| SendError::Invalid(format!("WhatsApp address: {e}")))
}

/// Builds the Messages API request that sends `msg`: a template when the host put
/// [`TEMPLATE_CONTENT_SID`] in `thread`, else free-form text and media.
///
/// # Errors
///
/// `misconfigured` for missing settings, a `from` that is not E.164, or not exactly one of `from`
/// and `messaging_service_sid`; `invalid` for a `to` that is not `whatsapp:+E.164`, template variables that are not a JSON object, an empty message or
/// a body over 1600 characters.
pub fn prepare_send(
    msg: &OutboundMessage,
    settings: &[(String, String)],
) -> Result<HttpRequest, SendError> {
    let api = Api::new(settings)?;
    let sender = match twilio::sender(settings)? {
        Sender::From(from) => {
            let from = E164::parse(from.strip_prefix(ADDRESS_PREFIX).unwrap_or(from))
                .map_err(|e| SendError::Misconfigured(format!("setting `from`: {e}")))?;
            ("From", format!("{ADDRESS_PREFIX}{}", from.as_str()))
        }
        Sender::Service(sid) => ("MessagingServiceSid", sid.to_string()),
    };
    let to = format!("{ADDRESS_PREFIX}{}", customer_number(&msg.to)?.as_str());
    let mut fields = vec![("To", to.as_str()), (sender.0, sender.1.as_str())];
    let thread = |name: &str| {
        form::get(&msg.thread, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(content_sid) = thread(TEMPLATE_CONTENT_SID) {
        fields.push(("ContentSid", content_sid));
        if let Some(variables) = thread(TEMPLATE_VARIABLES) {
            let parsed: Result<plugboard_sdk::serde_json::Value, _> =
                plugboard_sdk::serde_json::from_str(variables);
            if !parsed.is_ok_and(|v| v.is_object()) {
                return Err(SendError::Invalid(format!(
                    "template variables must be a JSON object such as {{\"1\":\"Alice\"}}, got \
                     {variables}"
                )));
            }
            fields.push(("ContentVariables", variables));
        }
        return Ok(api.messages_request(&fields));
    }
    let text = twilio::body_text(msg.text.as_deref())?;
    if text.is_none() && msg.attachments.is_empty() {
        return Err(SendError::Invalid(
            "message has neither text, attachments nor a template".to_string(),
        ));
    }
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
    use plugboard_sdk::testing::{hmac_sha1, pairs, sha256};
    use plugboard_sdk::types::Attachment;
    use plugboard_sdk::{header, http};

    fn settings() -> Vec<(String, String)> {
        pairs(&[
            ("account_sid", "AC123"),
            ("auth_token", "secret"),
            ("from", "+14155238886"),
            ("api_base", "http://127.0.0.1:9999"),
        ])
    }

    fn signed_post(url: &str, body: &str) -> HttpRequest {
        let params = form::parse(body.as_bytes()).unwrap();
        let sig = plugboard_sdk::base64::encode(&hmac_sha1(
            b"secret",
            crate::signature::string_to_sign(url, &params).as_bytes(),
        ));
        http::request(
            "POST",
            url,
            vec![("X-Twilio-Signature".to_string(), sig)],
            body.as_bytes().to_vec(),
        )
    }

    fn outbound(to: &str, text: Option<&str>, thread: &[(&str, &str)]) -> OutboundMessage {
        OutboundMessage {
            id: "m1".into(),
            to: to.into(),
            text: text.map(str::to_string),
            attachments: Vec::new(),
            thread: pairs(thread),
            since_last_inbound: Some(10),
            token: None,
        }
    }

    #[test]
    fn manifest_declares_whatsapp_with_templates() {
        let m = manifest();
        assert_eq!(m.name, "twilio-whatsapp");
        assert_eq!(m.kind, "whatsapp");
        let templates = m.settings.iter().find(|s| s.name == "templates").unwrap();
        assert!(!templates.required && !templates.secret);
        assert_eq!(
            m.capabilities,
            Capabilities::ATTACHMENTS | Capabilities::TEMPLATES | Capabilities::DELIVERY_RECEIPTS
        );
    }

    #[test]
    fn inbound_keeps_prefixes_and_profile_name() {
        let body = "SmsMessageSid=SM1&NumMedia=0&ProfileName=Alice&WaId=14155550100&SmsStatus=received&Body=Hi&To=whatsapp%3A%2B14155238886&NumSegments=1&MessageSid=SM1&AccountSid=AC123&From=whatsapp%3A%2B14155550100&ApiVersion=2010-04-01";
        let out = handle_webhook(
            &signed_post("https://hooks.example.com/webhooks/wa", body),
            &settings(),
            hmac_sha1,
            sha256,
        )
        .unwrap();
        let [Event::Message(m)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(m.from, "whatsapp:+14155550100");
        assert_eq!(m.to, "whatsapp:+14155238886");
        assert_eq!(m.contact_name.as_deref(), Some("Alice"));
        assert_eq!(m.text.as_deref(), Some("Hi"));
    }

    #[test]
    fn error_63016_is_a_window_failure() {
        let body =
            "ErrorCode=63016&MessageSid=SM2&MessageStatus=undelivered&To=whatsapp%3A%2B14155550100";
        let out = handle_webhook(
            &signed_post("https://hooks.example.com/webhooks/wa", body),
            &settings(),
            hmac_sha1,
            sha256,
        )
        .unwrap();
        let [Event::Status(s)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(s.state, DeliveryState::Failed);
        assert_eq!(s.error_code.as_deref(), Some("63016"));
        assert_eq!(s.error_message.as_deref(), Some(OUTSIDE_WINDOW_MESSAGE));
    }

    #[test]
    fn free_form_send_uses_whatsapp_addresses() {
        let mut msg = outbound("whatsapp:+14155550100", Some("Hello"), &[]);
        msg.attachments.push(Attachment {
            url: "https://x.test/a.png".into(),
            content_type: None,
        });
        let req = prepare_send(&msg, &settings()).unwrap();
        assert_eq!(
            req.url,
            "http://127.0.0.1:9999/2010-04-01/Accounts/AC123/Messages.json"
        );
        assert_eq!(
            header(&req.headers, "authorization"),
            Some(plugboard_sdk::basic_auth("AC123", "secret").as_str())
        );
        assert_eq!(
            form::parse(&req.body).unwrap(),
            pairs(&[
                ("To", "whatsapp:+14155550100"),
                ("From", "whatsapp:+14155238886"),
                ("Body", "Hello"),
                ("MediaUrl", "https://x.test/a.png"),
            ])
        );
    }

    #[test]
    fn template_send_uses_content_sid() {
        let msg = outbound(
            "whatsapp:+14155550100",
            None,
            &[
                (TEMPLATE_CONTENT_SID, "HXb5b62575e6e4ff6129ad7c8efe1f983e"),
                (TEMPLATE_VARIABLES, r#"{"1":"Alice","2":"A-1234"}"#),
            ],
        );
        let req = prepare_send(&msg, &settings()).unwrap();
        assert_eq!(
            form::parse(&req.body).unwrap(),
            pairs(&[
                ("To", "whatsapp:+14155550100"),
                ("From", "whatsapp:+14155238886"),
                ("ContentSid", "HXb5b62575e6e4ff6129ad7c8efe1f983e"),
                ("ContentVariables", r#"{"1":"Alice","2":"A-1234"}"#),
            ])
        );
        let bad = outbound(
            "whatsapp:+14155550100",
            None,
            &[(TEMPLATE_CONTENT_SID, "HX1"), (TEMPLATE_VARIABLES, "[1]")],
        );
        assert!(matches!(
            prepare_send(&bad, &settings()),
            Err(SendError::Invalid(m)) if m.contains("JSON object")
        ));
    }

    #[test]
    fn addresses_must_be_whatsapp_e164() {
        for (to, needle) in [
            ("+14155550100", "whatsapp:+14155550100"),
            ("whatsapp:14155550100", "must start with '+'"),
            ("whatsapp:+1 415 555 0100", "space"),
            ("whatsapp:", "empty"),
        ] {
            let Err(SendError::Invalid(m)) =
                prepare_send(&outbound(to, Some("x"), &[]), &settings())
            else {
                panic!("{to}")
            };
            assert!(m.contains(needle), "{to}: {m}");
        }
        assert!(matches!(
            prepare_send(&outbound("whatsapp:+14155550100", None, &[]), &settings()),
            Err(SendError::Invalid(_))
        ));
        let mut prefixed_from = settings();
        prefixed_from.push(("from".into(), "whatsapp:+14155238886".into()));
        assert!(
            prepare_send(
                &outbound("whatsapp:+14155550100", Some("x"), &[]),
                &prefixed_from
            )
            .is_ok()
        );
        let check = twilio::prepare_check(&settings()).unwrap();
        assert_eq!(
            check.url,
            "http://127.0.0.1:9999/2010-04-01/Accounts/AC123.json"
        );
    }
}
