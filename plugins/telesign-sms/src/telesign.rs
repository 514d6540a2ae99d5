//! TeleSign's wire format (providers.md section 2): the manifest, callback authentication and
//! parsing, the Messaging API send request and error mapping. Pure functions apart from
//! `host::log` on ignored callbacks; the HMAC is passed in so everything runs in native tests.

use plugboard_sdk::serde_json::Value;
use plugboard_sdk::types::{
    Capabilities, DeliveryState, DeliveryStatus, Event, HttpRequest, HttpResponse, InboundMessage,
    Manifest, OutboundMessage, SendError, SettingSpec, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{E164, Settings, base64, ct_eq, form, header, http};

/// The TeleSign REST API base URL used when the `api_base` setting is absent.
pub const DEFAULT_API_BASE: &str = "https://rest-ww.telesign.com";

/// The delivery-report status codes that mean the message will not be delivered.
pub const FAILURE_CODES: &[i64] = &[207, 210, 211, 220, 221, 222, 229, 230, 231, 237, 238];

/// What the plugin is and which settings it takes.
pub fn manifest() -> Manifest {
    let setting = SettingSpec::new;
    Manifest {
        name: "telesign-sms".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "sms".to_string(),
        settings: vec![
            setting(
                "customer_id",
                true,
                false,
                "TeleSign Customer ID: the Basic auth user, and the id in callbacks' TSA header",
            ),
            setting(
                "api_key",
                true,
                true,
                "TeleSign API key (Base64): authenticates API calls and signs callbacks",
            ),
            setting(
                "from",
                true,
                false,
                "The business phone number in E.164, e.g. +14155550100 (the `to` of inbound SMS)",
            ),
            setting(
                "sender_id",
                false,
                false,
                "Sender ID to send from, where TeleSign has provisioned one",
            ),
            setting(
                "api_base",
                false,
                false,
                "TeleSign REST API base URL (default https://rest-ww.telesign.com)",
            ),
        ],
        api_hosts: vec![
            "rest-ww.telesign.com".to_string(),
            "rest-api.telesign.com".to_string(),
        ],
        capabilities: Capabilities::DELIVERY_RECEIPTS,
        rules: plugboard_sdk::rules::sms(),
    }
}

/// Splits an `Authorization: TSA {customer_id}:{signature}` header value into the customer id
/// and the signature; `None` when it has another shape.
pub fn parse_authorization(value: &str) -> Option<(&str, &str)> {
    let value = value.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("TSA") {
        return None;
    }
    credentials.trim().split_once(':')
}

/// The signature TeleSign sends for `body`: Base64(HMAC-SHA256(key = the API key decoded
/// leniently from Base64, msg = the raw body)). `hmac_sha256(key, data)` computes the MAC.
///
/// # Errors
///
/// A message when the API key does not decode.
pub fn signature(
    api_key: &str,
    body: &[u8],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> Result<String, String> {
    let key = base64::decode_lenient(api_key)
        .map_err(|e| format!("setting `api_key` is not Base64: {e}"))?;
    // Lenient decoding skips every non-Base64 character, so a key of none decodes to nothing,
    // and an HMAC under an empty (or tiny) key is one anybody can compute.
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "setting `api_key` decodes to {} bytes of Base64; a TeleSign API key is at least {MIN_KEY_BYTES} (it is the Base64 key from the portal)",
            key.len()
        ));
    }
    Ok(base64::encode(&hmac_sha256(&key, body)))
}

/// The shortest decoded API key accepted: TeleSign's are 64 bytes; 16 still refuses the empty
/// and near-empty keys a typo or a placeholder leaves.
const MIN_KEY_BYTES: usize = 16;

/// Authenticates and parses one callback. `hmac_sha256(key, data)` computes the MAC (the host's
/// `hmac-sha256` inside a component).
///
/// # Errors
///
/// `misconfigured` without `customer_id` or a usable `api_key` (or `from`, when an inbound SMS
/// needs it), `unauthorized` for a missing or wrong `Authorization` header, `bad-request` for a
/// method other than POST or a body that is not the JSON of a callback.
pub fn handle_webhook(
    req: &HttpRequest,
    settings: &[(String, String)],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> Result<WebhookOutcome, WebhookError> {
    let s = Settings::new(settings);
    let customer_id = s
        .require("customer_id")
        .map_err(WebhookError::Misconfigured)?;
    let api_key = s.require("api_key").map_err(WebhookError::Misconfigured)?;
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(WebhookError::BadRequest(format!(
            "TeleSign callbacks use POST, not {}",
            req.method
        )));
    }
    let expected =
        signature(api_key, &req.body, hmac_sha256).map_err(WebhookError::Misconfigured)?;
    let Some(authorization) = header(&req.headers, "authorization") else {
        return Err(WebhookError::Unauthorized(
            "missing Authorization header (TeleSign sends TSA {customer_id}:{signature})"
                .to_string(),
        ));
    };
    let Some((sent_customer, sent_signature)) = parse_authorization(authorization) else {
        return Err(WebhookError::Unauthorized(
            "Authorization header is not TSA {customer_id}:{signature}".to_string(),
        ));
    };
    let customer_ok = ct_eq(
        sent_customer.trim().to_ascii_lowercase().as_bytes(),
        customer_id.trim().to_ascii_lowercase().as_bytes(),
    );
    let signature_ok = ct_eq(sent_signature.trim().as_bytes(), expected.as_bytes());
    if !customer_ok {
        return Err(WebhookError::Unauthorized(
            "Authorization names another TeleSign customer id (check customer_id)".to_string(),
        ));
    }
    if !signature_ok {
        return Err(WebhookError::Unauthorized(
            "TeleSign signature does not match the body (check api_key)".to_string(),
        ));
    }
    let body: Value = plugboard_sdk::json::parse(&req.body)
        .map_err(|e| WebhookError::BadRequest(format!("TeleSign callback: {e}")))?;
    let events = match classify(&body, s.get("from"))? {
        Classified::Events(events) => events,
        Classified::Ignored(reason) => {
            plugboard_sdk::host::log(
                plugboard_sdk::host::Level::Info,
                &format!("telesign-sms: ignored an authentic callback: {reason}"),
                &[],
            );
            Vec::new()
        }
    };
    Ok(WebhookOutcome {
        events,
        response: http::ok(),
    })
}

/// What an authentic callback carries.
#[derive(Debug, PartialEq)]
pub enum Classified {
    /// Events for the host.
    Events(Vec<Event>),
    /// Nothing the host tracks; the reason, for logging.
    Ignored(String),
}

/// A string field, or a number written as digits.
fn text_field<'a>(value: &'a Value, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    match value.get(name)? {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Turns an authentic callback body into events. `from` is the `from` setting, the business
/// number an inbound SMS without a `sender_id` was sent to.
///
/// # Errors
///
/// `bad-request` for a body that is not an object or an inbound SMS / delivery report without
/// its `reference_id` or sender; `misconfigured` when an inbound SMS needs `from` and it is
/// missing or not E.164.
pub fn classify(body: &Value, from: Option<&str>) -> Result<Classified, WebhookError> {
    let bad = |m: &str| WebhookError::BadRequest(format!("TeleSign callback: {m}"));
    if !body.is_object() {
        return Err(bad("the body is not a JSON object"));
    }
    let sub_resource = body.get("sub_resource").and_then(Value::as_str);
    let reference_id = || {
        text_field(body, "reference_id")
            .filter(|r| !r.trim().is_empty())
            .map(|r| r.trim().to_string())
    };
    match sub_resource {
        Some("mo_sms") => {
            let provider_id = reference_id().ok_or_else(|| bad("mo_sms without reference_id"))?;
            let user = body
                .get("user_response")
                .filter(|u| u.is_object())
                .ok_or_else(|| bad("mo_sms without user_response"))?;
            let phone = text_field(user, "phone_number").unwrap_or_default();
            let digits = phone.trim().trim_start_matches('+');
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("mo_sms without a user_response.phone_number of digits"));
            }
            let sender_id = text_field(user, "sender_id")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            let to = match sender_id {
                Some(id) if id.bytes().all(|b| b.is_ascii_digit()) => format!("+{id}"),
                Some(id) => id,
                None => {
                    let from = from.ok_or_else(|| {
                        WebhookError::Misconfigured(
                            "required setting `from` is missing or empty".to_string(),
                        )
                    })?;
                    let number = E164::parse(from)
                        .map_err(|e| WebhookError::Misconfigured(format!("setting `from`: {e}")))?;
                    format!("+{}", number.digits())
                }
            };
            let text = text_field(user, "mo_message")
                .filter(|t| !t.is_empty())
                .map(|t| t.into_owned());
            Ok(Classified::Events(vec![Event::Message(InboundMessage {
                provider_id,
                from: format!("+{digits}"),
                to,
                text,
                attachments: Vec::new(),
                contact_name: None,
                thread: Vec::new(),
            })]))
        }
        Some("sms") => {
            let provider_id =
                reference_id().ok_or_else(|| bad("sms report without reference_id"))?;
            let status = body.get("status").unwrap_or(&Value::Null);
            let Some(code) = text_field(status, "code").and_then(|c| c.trim().parse::<i64>().ok())
            else {
                return Ok(Classified::Ignored(
                    "delivery report without status.code".to_string(),
                ));
            };
            let Some(state) = delivery_state(code) else {
                return Ok(Classified::Ignored(format!(
                    "delivery report status {code} is not tracked"
                )));
            };
            let failed = state == DeliveryState::Failed;
            let description = text_field(status, "description")
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty());
            Ok(Classified::Events(vec![Event::Status(DeliveryStatus {
                provider_id,
                state,
                error_code: failed.then(|| code.to_string()),
                error_message: if failed {
                    Some(description.unwrap_or_else(|| format!("TeleSign status {code}")))
                } else {
                    None
                },
            })]))
        }
        Some(other) => Ok(Classified::Ignored(format!(
            "sub_resource `{other}` is not handled"
        ))),
        None => Ok(Classified::Ignored("no sub_resource".to_string())),
    }
}

/// Maps a delivery-report `status.code` to a delivery state; `None` for codes the host does not
/// track.
pub fn delivery_state(code: i64) -> Option<DeliveryState> {
    match code {
        200 => Some(DeliveryState::Delivered),
        203 => Some(DeliveryState::Sent),
        290 => Some(DeliveryState::Queued),
        c if FAILURE_CODES.contains(&c) => Some(DeliveryState::Failed),
        _ => None,
    }
}

/// The settings every API call needs.
struct Api<'a> {
    base: &'a str,
    customer_id: &'a str,
    api_key: &'a str,
}

impl<'a> Api<'a> {
    fn new(settings: &'a [(String, String)]) -> Result<Self, SendError> {
        let s = Settings::new(settings);
        Ok(Api {
            base: s.get_or("api_base", DEFAULT_API_BASE).trim_end_matches('/'),
            customer_id: s.require("customer_id").map_err(SendError::Misconfigured)?,
            api_key: s.require("api_key").map_err(SendError::Misconfigured)?,
        })
    }
}

/// Builds the Messaging API request that sends `msg` as an `ARN` (alerts and notifications)
/// message, with the host's message id as `external_id`.
///
/// # Errors
///
/// `misconfigured` for missing settings; `invalid` for a `to` that is not E.164, a message
/// without text or one with attachments (TeleSign SMS carries text only).
pub fn prepare_send(
    msg: &OutboundMessage,
    settings: &[(String, String)],
) -> Result<HttpRequest, SendError> {
    let api = Api::new(settings)?;
    let to = E164::parse(&msg.to).map_err(|e| SendError::Invalid(e.to_string()))?;
    if !msg.attachments.is_empty() {
        return Err(SendError::Invalid(
            "TeleSign SMS cannot carry attachments; send text only".to_string(),
        ));
    }
    let Some(text) = msg.text.as_deref().filter(|t| !t.is_empty()) else {
        return Err(SendError::Invalid("message has no text".to_string()));
    };
    let mut fields = vec![
        ("phone_number", to.digits()),
        ("message", text),
        ("message_type", "ARN"),
    ];
    if let Some(sender_id) = Settings::new(settings).get("sender_id") {
        fields.push(("sender_id", sender_id));
    }
    fields.push(("external_id", msg.id.as_str()));
    Ok(http::request(
        "POST",
        format!("{}/v1/messaging", api.base),
        vec![
            (
                "Authorization".to_string(),
                plugboard_sdk::basic_auth(api.customer_id, api.api_key),
            ),
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ],
        form::encode(fields),
    ))
}

/// Reads the Messaging API answer: the `reference_id` on success.
///
/// # Errors
///
/// The mapped TeleSign error (see [`map_error`]), or `invalid` for a success without a
/// `reference_id`.
pub fn read_send_response(resp: &HttpResponse) -> Result<String, SendError> {
    if !http::is_success(resp.status) {
        return Err(map_error(resp));
    }
    let body: Value = plugboard_sdk::json::parse(&resp.body).map_err(|e| {
        SendError::Invalid(format!(
            "TeleSign accepted the message but its answer is unreadable: {e}"
        ))
    })?;
    text_field(&body, "reference_id")
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            SendError::Invalid(
                "TeleSign accepted the message but its answer has no reference_id".to_string(),
            )
        })
}

/// The `code description` pairs of a TeleSign error body: every `errors[]` entry, or the
/// `status` when there are none.
fn error_details(body: &Value) -> Vec<(Option<i64>, String)> {
    let detail = |v: &Value| {
        let code = text_field(v, "code").and_then(|c| c.trim().parse::<i64>().ok());
        let description = text_field(v, "description")
            .map(|d| d.trim().to_string())
            .unwrap_or_default();
        (code, description)
    };
    let errors: Vec<_> = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(detail).collect())
        .unwrap_or_default();
    if !errors.is_empty() {
        return errors;
    }
    body.get("status")
        .filter(|s| s.is_object())
        .map(|s| vec![detail(s)])
        .unwrap_or_default()
}

/// Maps a failed TeleSign API answer to a send error. Messages carry TeleSign's codes
/// (`TeleSign HTTP 400: 11000 Invalid value for parameter phone_number`).
///
/// * HTTP 429 => `rate-limited` (with `Retry-After` seconds when present)
/// * HTTP 5xx => `unavailable`
/// * HTTP 401 => `unauthorized`
/// * other 4xx => `invalid`; anything else => `unavailable`
pub fn map_error(resp: &HttpResponse) -> SendError {
    let status = resp.status;
    let body: Option<Value> = plugboard_sdk::json::parse(&resp.body).ok();
    let details = body.as_ref().map(error_details).unwrap_or_default();
    let text = if details.is_empty() {
        let raw = String::from_utf8_lossy(&resp.body);
        raw.chars().take(200).collect::<String>().trim().to_string()
    } else {
        details
            .iter()
            .map(|(code, description)| match code {
                Some(code) if description.is_empty() => code.to_string(),
                Some(code) => format!("{code} {description}"),
                None => description.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let description = if text.is_empty() {
        format!("TeleSign HTTP {status}")
    } else {
        format!("TeleSign HTTP {status}: {text}")
    };
    // TeleSign signals bad credentials with 401; a 403 is a refusal the same credentials will
    // meet again, so it is not retried.
    match status {
        403 => SendError::Invalid(description),
        _ => http::send_error(resp, description),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::{hmac_sha256, pairs};
    use plugboard_sdk::types::Attachment;

    /// The example key of TeleSign's SDK tests: not strict Base64 (it holds `-`).
    const SDK_KEY: &str =
        "EXAMPLE----TE8sTgg45yusumoN6BYsBVkh+yRJ5czgsnCehZaOYldPJdmFh6NeX8kunZ2zU1YWaUw/0wV6xfw==";

    fn settings() -> Vec<(String, String)> {
        pairs(&[
            ("customer_id", "FFFFFFFF-EEEE-DDDD-1234-AB1234567890"),
            ("api_key", SDK_KEY),
            ("from", "+15555550199"),
            ("api_base", "http://127.0.0.1:9999/"),
        ])
    }

    fn callback(body: &str, authorization: Option<String>) -> HttpRequest {
        let headers = authorization
            .map(|a| vec![("Authorization".to_string(), a)])
            .unwrap_or_default();
        http::request(
            "POST",
            "https://hooks.example.com/webhooks/telesign",
            headers,
            body.as_bytes().to_vec(),
        )
    }

    fn signed(body: &str) -> HttpRequest {
        let sig = signature(SDK_KEY, body.as_bytes(), hmac_sha256).unwrap();
        callback(
            body,
            Some(format!("TSA FFFFFFFF-EEEE-DDDD-1234-AB1234567890:{sig}")),
        )
    }

    const MO: &str = r#"{"status":{"updated_on":"2017-01-27T19:46:55.787464Z","code":1500,"description":"Delivered to customer"},"submit_timestamp":"2017-01-27T19:46:55.778000Z","errors":[],"user_response":{"phone_number":"15555550100","sender_id":"","mo_message":"hello"},"sub_resource":"mo_sms","reference_id":"0143D53D86A2030BE20025B600000002"}"#;

    #[test]
    fn lenient_key_decoding() {
        let key = base64::decode_lenient(SDK_KEY).unwrap();
        assert_eq!(key.len(), 61);
        assert!(base64::decode(SDK_KEY).is_err());
    }

    #[test]
    fn authorization_header_shape() {
        assert_eq!(parse_authorization("TSA abc:sig="), Some(("abc", "sig=")));
        assert_eq!(parse_authorization(" tsa abc:sig "), Some(("abc", "sig")));
        assert_eq!(parse_authorization("Basic abc:sig"), None);
        assert_eq!(parse_authorization("TSA abcsig"), None);
    }

    #[test]
    fn inbound_sms_becomes_a_message() {
        let out = handle_webhook(&signed(MO), &settings(), hmac_sha256).unwrap();
        assert_eq!(out.response.status, 200);
        assert!(out.response.body.is_empty());
        let [Event::Message(m)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(m.provider_id, "0143D53D86A2030BE20025B600000002");
        assert_eq!(m.from, "+15555550100");
        assert_eq!(m.to, "+15555550199");
        assert_eq!(m.text.as_deref(), Some("hello"));
        let with_sender = MO.replace(r#""sender_id":"""#, r#""sender_id":"15555550142""#);
        let out = handle_webhook(&signed(&with_sender), &settings(), hmac_sha256).unwrap();
        let [Event::Message(m)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(m.to, "+15555550142");
    }

    #[test]
    fn authentication_failures() {
        let unauthorized = |req: HttpRequest| {
            matches!(
                handle_webhook(&req, &settings(), hmac_sha256),
                Err(WebhookError::Unauthorized(_))
            )
        };
        assert!(unauthorized(callback(MO, None)));
        let good = signed(MO);
        let sig = parse_authorization(&good.headers[0].1)
            .unwrap()
            .1
            .to_string();
        assert!(unauthorized(callback(
            MO,
            Some(format!("TSA someone-else:{sig}"))
        )));
        assert!(unauthorized(callback(MO, Some(format!("Basic x:{sig}")))));
        let tampered = MO.replace("hello", "hellO");
        assert!(unauthorized(callback(
            &tampered,
            Some(good.headers[0].1.clone())
        )));
        // The customer id is compared without regard to case.
        let lower = good.headers[0]
            .1
            .replace("FFFFFFFF-EEEE-DDDD", "ffffffff-eeee-dddd");
        assert!(handle_webhook(&callback(MO, Some(lower)), &settings(), hmac_sha256).is_ok());
        let mut no_key = settings();
        no_key.retain(|(n, _)| n != "api_key");
        assert!(matches!(
            handle_webhook(&good, &no_key, hmac_sha256),
            Err(WebhookError::Misconfigured(m)) if m.contains("api_key")
        ));
        let mut get = good.clone();
        get.method = "GET".into();
        assert!(matches!(
            handle_webhook(&get, &settings(), hmac_sha256),
            Err(WebhookError::BadRequest(_))
        ));
        assert!(matches!(
            handle_webhook(&signed("{not json"), &settings(), hmac_sha256),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn delivery_reports() {
        let report = |code: i64, description: &str| {
            let body = plugboard_sdk::serde_json::json!({
                "reference_id": "R1",
                "sub_resource": "sms",
                "status": {"code": code, "description": description, "updated_on": "2024-01-01T00:00:00Z"},
                "errors": [],
            });
            classify(&body, None).unwrap()
        };
        let Classified::Events(events) = report(200, "Delivered to handset") else {
            panic!()
        };
        assert_eq!(
            events,
            vec![Event::Status(DeliveryStatus {
                provider_id: "R1".into(),
                state: DeliveryState::Delivered,
                error_code: None,
                error_message: None,
            })]
        );
        let Classified::Events(events) = report(210, "Message expired") else {
            panic!()
        };
        assert_eq!(
            events,
            vec![Event::Status(DeliveryStatus {
                provider_id: "R1".into(),
                state: DeliveryState::Failed,
                error_code: Some("210".into()),
                error_message: Some("Message expired".into()),
            })]
        );
        assert_eq!(delivery_state(203), Some(DeliveryState::Sent));
        assert_eq!(delivery_state(290), Some(DeliveryState::Queued));
        assert_eq!(delivery_state(250), None);
        assert!(matches!(report(295, "x"), Classified::Ignored(_)));
        assert!(matches!(
            classify(
                &plugboard_sdk::serde_json::json!({"sub_resource": "voice"}),
                None
            ),
            Ok(Classified::Ignored(_))
        ));
        assert!(matches!(
            classify(&plugboard_sdk::serde_json::json!([1]), None),
            Err(WebhookError::BadRequest(_))
        ));
    }

    fn outbound(to: &str, text: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            id: "msg-42".into(),
            to: to.into(),
            text: text.map(str::to_string),
            attachments: Vec::new(),
            thread: Vec::new(),
            since_last_inbound: None,
            token: None,
        }
    }

    #[test]
    fn send_request() {
        let mut with_sender = settings();
        with_sender.push(("sender_id".into(), "ACME".into()));
        let req = prepare_send(&outbound("+15555550100", Some("Hi there")), &with_sender).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, "http://127.0.0.1:9999/v1/messaging");
        assert_eq!(
            header(&req.headers, "authorization"),
            Some(
                plugboard_sdk::basic_auth("FFFFFFFF-EEEE-DDDD-1234-AB1234567890", SDK_KEY).as_str()
            )
        );
        assert_eq!(
            form::parse(&req.body).unwrap(),
            pairs(&[
                ("phone_number", "15555550100"),
                ("message", "Hi there"),
                ("message_type", "ARN"),
                ("sender_id", "ACME"),
                ("external_id", "msg-42"),
            ])
        );
        let req = prepare_send(
            &outbound("+15555550100", Some("x")),
            &pairs(&[("customer_id", "c"), ("api_key", "k")]),
        )
        .unwrap();
        assert_eq!(req.url, "https://rest-ww.telesign.com/v1/messaging");
        assert!(matches!(
            prepare_send(&outbound("15555550100", Some("x")), &settings()),
            Err(SendError::Invalid(m)) if m.contains("'+'")
        ));
        assert!(matches!(
            prepare_send(&outbound("+15555550100", None), &settings()),
            Err(SendError::Invalid(_))
        ));
        let mut media = outbound("+15555550100", Some("x"));
        media.attachments.push(Attachment {
            url: "https://x.test/a.png".into(),
            content_type: None,
        });
        assert!(
            matches!(prepare_send(&media, &settings()), Err(SendError::Invalid(m)) if m.contains("attachments"))
        );
        assert!(matches!(
            prepare_send(&outbound("+15555550100", Some("x")), &pairs(&[("customer_id", "c")])),
            Err(SendError::Misconfigured(m)) if m.contains("api_key")
        ));
    }

    fn resp(status: u16, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: pairs(headers),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn send_responses() {
        assert_eq!(
            read_send_response(&resp(
                200,
                r#"{"reference_id":"0123456789ABCDEF0123456789ABCDEF","status":{"code":290,"description":"Message in progress"}}"#,
                &[]
            ))
            .unwrap(),
            "0123456789ABCDEF0123456789ABCDEF"
        );
        assert!(matches!(
            read_send_response(&resp(200, "{}", &[])),
            Err(SendError::Invalid(m)) if m.contains("reference_id")
        ));
        let err = |status, body: &str, headers: &[(&str, &str)]| {
            read_send_response(&resp(status, body, headers)).unwrap_err()
        };
        assert_eq!(
            err(
                400,
                r#"{"status":{"code":11000,"description":"Invalid value for parameter phone_number."},"errors":[{"code":11000,"description":"Invalid value for parameter phone_number."}]}"#,
                &[]
            ),
            SendError::Invalid(
                "TeleSign HTTP 400: 11000 Invalid value for parameter phone_number.".into()
            )
        );
        assert!(matches!(
            err(401, r#"{"status":{"code":-30000,"description":"Invalid Customer ID."},"errors":[]}"#, &[]),
            SendError::Unauthorized(m) if m.contains("-30000")
        ));
        assert_eq!(
            err(429, "", &[("Retry-After", "3")]),
            SendError::RateLimited(Some(3))
        );
        assert!(matches!(err(503, "down", &[]), SendError::Unavailable(m) if m.contains("503")));
    }

    #[test]
    fn a_key_without_base64_characters_is_refused_not_an_empty_hmac_key() {
        for key in ["", "!!!!", "-_-_ ~~", "QUJD"] {
            let err = signature(key, b"{}", |_, _| vec![0; 32]).unwrap_err();
            assert!(err.contains("api_key"), "{key}: {err}");
        }
    }
}
