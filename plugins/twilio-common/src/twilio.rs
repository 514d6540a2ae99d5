//! Twilio's Messages API wire format, shared by every Twilio channel: webhook authentication
//! and parsing, the settings and request pieces common to all sends, and error mapping. Pure
//! functions apart from `host::log` on ignored webhook calls; the HMAC is passed in.

use plugboard_sdk::types::{
    Attachment, DeliveryState, DeliveryStatus, Event, HttpRequest, HttpResponse, InboundMessage,
    OptChange, SendError, SettingSpec, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{Settings, ct_eq, form, header, hex, http, query};

use crate::signature;

/// The Twilio REST API base URL used when the `api_base` setting is absent.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";

/// The answer Twilio expects to every webhook call: an empty TwiML document (no reply).
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

/// Twilio's longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 1600;

/// Twilio's largest number of media items on one message; larger `NumMedia` values are capped.
const MAX_MEDIA: usize = 10;

/// The provider API host every Twilio channel sends to.
pub const API_HOST: &str = "api.twilio.com";

/// The setting the host adds to every channel's settings: the channel's public webhook URL,
/// sent as `StatusCallback` so Twilio reports delivery states there.
pub const WEBHOOK_URL: &str = "webhook_url";

/// The settings every Twilio channel takes: `account_sid`, `auth_token`, `from` (described by
/// `from_description`) or `messaging_service_sid`, and `api_base`.
pub fn common_settings(from_description: &str) -> Vec<SettingSpec> {
    let setting = SettingSpec::new;
    vec![
        setting(
            "account_sid",
            true,
            false,
            "Twilio Account SID (AC...), used in API paths and as the Basic auth user",
        ),
        setting(
            "auth_token",
            true,
            true,
            "Twilio Auth Token: signs webhooks (X-Twilio-Signature) and authenticates API calls",
        ),
        setting(
            "from",
            false,
            false,
            &format!("{from_description}; set this or messaging_service_sid"),
        ),
        setting(
            "messaging_service_sid",
            false,
            false,
            "Twilio Messaging Service SID (MG...) to send from instead of `from`",
        ),
        setting(
            "api_base",
            false,
            false,
            "Twilio REST API base URL (default https://api.twilio.com)",
        ),
    ]
}

fn twiml_response() -> HttpResponse {
    http::response(200, "text/xml", EMPTY_TWIML)
}

/// Authenticates and parses one webhook call for the channel plugin named `plugin` (used in log
/// lines). `hmac_sha1(key, data)` computes the MAC and `sha256(data)` the digest (the host's
/// `hmac-sha1` and `sha256` inside a component).
///
/// A form POST (or a GET) is signed over the URL and its parameters. A POST whose URL carries
/// `bodySHA256` (Twilio's JSON webhooks) is signed over the URL alone, with no parameters, and
/// its body must hash to `bodySHA256`, as the official helper libraries' `validate` checks; the
/// top-level fields of its JSON object are read like form parameters.
///
/// # Errors
///
/// `misconfigured` without an `auth_token`, `bad-request` for an unsupported method, a
/// malformed form or a JSON body that is not an object, `unauthorized` for a missing or wrong
/// `X-Twilio-Signature` or a body that does not match `bodySHA256`.
pub fn handle_webhook(
    plugin: &str,
    req: &HttpRequest,
    settings: &[(String, String)],
    hmac_sha1: impl Fn(&[u8], &[u8]) -> Vec<u8>,
    sha256: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<WebhookOutcome, WebhookError> {
    let auth_token = Settings::new(settings)
        .require("auth_token")
        .map_err(WebhookError::Misconfigured)?;
    let bad = |e: plugboard_sdk::FormError| WebhookError::BadRequest(e.to_string());
    let method = req.method.as_str();
    let post = method.eq_ignore_ascii_case("POST");
    if !post && !method.eq_ignore_ascii_case("GET") {
        return Err(WebhookError::BadRequest(format!(
            "Twilio webhooks use GET or POST, not {}",
            method.to_ascii_uppercase()
        )));
    }
    let Some(sig) = header(&req.headers, "x-twilio-signature") else {
        return Err(WebhookError::Unauthorized(
            "missing X-Twilio-Signature header".to_string(),
        ));
    };
    let body_sha256 = if post {
        query::param(&req.url, BODY_SHA256)
    } else {
        None
    };
    let params = if let Some(expected) = body_sha256 {
        // A JSON body: the signature covers the URL (with `bodySHA256`) and no parameters, and
        // the body must hash to `bodySHA256`.
        if !signature::is_valid(&req.url, &[], auth_token, sig, hmac_sha1) {
            return Err(WebhookError::Unauthorized(
                "X-Twilio-Signature does not match the URL (check auth_token and that public_url \
                 is the URL configured in Twilio)"
                    .to_string(),
            ));
        }
        let actual = hex(&sha256(&req.body));
        if !ct_eq(
            actual.as_bytes(),
            expected.trim().to_ascii_lowercase().as_bytes(),
        ) {
            return Err(WebhookError::Unauthorized(
                "the body's SHA-256 does not match the URL's bodySHA256".to_string(),
            ));
        }
        json_params(&req.body)?
    } else {
        // POST parameters are signed; a GET's query is already part of the signed URL.
        let (params, signed) = if post {
            let params = form::parse(&req.body).map_err(bad)?;
            (params.clone(), params)
        } else {
            (query::params(&req.url).map_err(bad)?, Vec::new())
        };
        if !signature::is_valid(&req.url, &signed, auth_token, sig, hmac_sha1) {
            return Err(WebhookError::Unauthorized(
                "X-Twilio-Signature does not match the URL and parameters (check auth_token and \
                 that public_url is the URL configured in Twilio)"
                    .to_string(),
            ));
        }
        params
    };
    let events = match classify(&params) {
        Ok(events) => events,
        Err(reason) => {
            let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
            plugboard_sdk::host::log(
                plugboard_sdk::host::Level::Info,
                &format!("{plugin}: ignored an authentic webhook call: {reason}"),
                &[("parameters".to_string(), names.join(","))],
            );
            Vec::new()
        }
    };
    Ok(WebhookOutcome {
        events,
        response: twiml_response(),
    })
}

/// The query parameter in which Twilio puts the hex SHA-256 of a JSON body it signs.
pub const BODY_SHA256: &str = "bodySHA256";

/// The top-level scalar fields of a JSON object body as parameters (strings as they are,
/// numbers and booleans written out; nulls, arrays and objects left out).
///
/// # Errors
///
/// `bad-request` when the body is not a JSON object.
fn json_params(body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    use plugboard_sdk::serde_json::Value;
    let value: Value = plugboard_sdk::json::parse(body)
        .map_err(|e| WebhookError::BadRequest(format!("JSON webhook body: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(WebhookError::BadRequest(
            "JSON webhook body is not an object".to_string(),
        ));
    };
    Ok(fields
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::String(s) => Some((name, s)),
            Value::Number(n) => Some((name, n.to_string())),
            Value::Bool(b) => Some((name, b.to_string())),
            _ => None,
        })
        .collect())
}

/// Turns authentic webhook parameters into events, or says why they carry none.
///
/// # Errors
///
/// A reason, for logging, when the call is neither an inbound message nor a known status.
pub fn classify(params: &[(String, String)]) -> Result<Vec<Event>, String> {
    let get = |name: &str| form::get(params, name);
    let message_sid = get("MessageSid").filter(|s| !s.is_empty());
    let message_status = get("MessageStatus");
    let received = get("SmsStatus") == Some("received");
    let looks_like_message = received || get("Body").is_some() || get("NumMedia").is_some();
    let is_message = message_sid.is_some()
        && looks_like_message
        && message_status.is_none_or(|s| s == "received");
    if is_message {
        return message_events(params).map_err(str::to_string);
    }
    let Some(status) = message_status else {
        return Err("neither an inbound message nor a status callback".to_string());
    };
    let Some(sid) = message_sid else {
        return Err("status callback without MessageSid".to_string());
    };
    let Some(state) = delivery_state(status) else {
        return Err(format!("status `{status}` is not tracked"));
    };
    let error_code = get("ErrorCode")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let error_message = get("ErrorMessage")
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .or_else(|| {
            error_code
                .as_ref()
                .map(|code| format!("Twilio error {code} (message {status})"))
        });
    Ok(vec![Event::Status(DeliveryStatus {
        provider_id: sid.to_string(),
        state,
        error_code,
        error_message,
    })])
}

fn message_events(params: &[(String, String)]) -> Result<Vec<Event>, &'static str> {
    let get = |name: &str| form::get(params, name);
    let from = get("From")
        .filter(|f| !f.is_empty())
        .ok_or("inbound message without From")?;
    let num_media = get("NumMedia")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_MEDIA);
    let attachments = (0..num_media)
        .filter_map(|i| {
            let url = get(&format!("MediaUrl{i}")).filter(|u| !u.is_empty())?;
            Some(Attachment {
                url: url.to_string(),
                content_type: get(&format!("MediaContentType{i}"))
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            })
        })
        .collect();
    let message = InboundMessage {
        provider_id: get("MessageSid").unwrap_or_default().to_string(),
        from: from.to_string(),
        to: get("To").unwrap_or_default().to_string(),
        text: get("Body").filter(|b| !b.is_empty()).map(str::to_string),
        attachments,
        contact_name: get("ProfileName")
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        thread: Vec::new(),
    };
    // With Advanced Opt-Out, Twilio says which keyword the customer used; the change is the
    // message's, so a retried message cannot apply it twice.
    let change = OptChange {
        address: from.to_string(),
        provider_id: Some(message.provider_id.clone()).filter(|id| !id.is_empty()),
    };
    let mut events = vec![Event::Message(message)];
    match get("OptOutType").map(str::to_ascii_uppercase).as_deref() {
        Some("STOP") => events.push(Event::OptOut(change)),
        Some("START") => events.push(Event::OptIn(change)),
        _ => {}
    }
    Ok(events)
}

/// Maps a Twilio `MessageStatus` to a delivery state; `None` for states the host does not track
/// (`receiving`, `received`, `partially_delivered`, unknown values).
pub fn delivery_state(status: &str) -> Option<DeliveryState> {
    Some(match status {
        "queued" | "accepted" | "scheduled" => DeliveryState::Queued,
        "sending" | "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "failed" | "undelivered" | "canceled" => DeliveryState::Failed,
        _ => return None,
    })
}

/// The settings every API call needs.
pub struct Api<'a> {
    /// `api_base` without a trailing `/` (default [`DEFAULT_API_BASE`]).
    pub base: &'a str,
    /// `account_sid`.
    pub account_sid: &'a str,
    /// `auth_token`.
    pub auth_token: &'a str,
    /// The channel's webhook URL (the host's `webhook_url` setting), sent as `StatusCallback`.
    pub status_callback: Option<&'a str>,
}

/// Who a message is sent from: exactly one of the `from` and `messaging_service_sid` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// A phone number (`From`), as configured.
    From(&'a str),
    /// A Messaging Service (`MessagingServiceSid`), which picks the number.
    Service(&'a str),
}

/// Reads the sender settings.
///
/// # Errors
///
/// `misconfigured` unless exactly one of `from` and `messaging_service_sid` is set, or when the
/// service SID does not start with `MG`.
pub fn sender(settings: &[(String, String)]) -> Result<Sender<'_>, SendError> {
    let s = Settings::new(settings);
    let nonempty = |name| s.get(name).map(str::trim).filter(|v| !v.is_empty());
    match (nonempty("from"), nonempty("messaging_service_sid")) {
        (Some(from), None) => Ok(Sender::From(from)),
        (None, Some(sid)) if sid.starts_with("MG") => Ok(Sender::Service(sid)),
        (None, Some(sid)) => Err(SendError::Misconfigured(format!(
            "setting `messaging_service_sid`: {sid} is not a Messaging Service SID (MG...)"
        ))),
        (Some(_), Some(_)) => Err(SendError::Misconfigured(
            "set either `from` or `messaging_service_sid`, not both".to_string(),
        )),
        (None, None) => Err(SendError::Misconfigured(
            "set `from` (a sender number) or `messaging_service_sid` (a Messaging Service)"
                .to_string(),
        )),
    }
}

impl<'a> Api<'a> {
    /// Reads the API settings.
    ///
    /// # Errors
    ///
    /// `misconfigured` when `account_sid` or `auth_token` is missing.
    pub fn new(settings: &'a [(String, String)]) -> Result<Self, SendError> {
        let s = Settings::new(settings);
        Ok(Api {
            base: s.get_or("api_base", DEFAULT_API_BASE).trim_end_matches('/'),
            account_sid: s.require("account_sid").map_err(SendError::Misconfigured)?,
            auth_token: s.require("auth_token").map_err(SendError::Misconfigured)?,
            status_callback: s.get(WEBHOOK_URL).map(str::trim).filter(|u| !u.is_empty()),
        })
    }

    /// The `Authorization` header: HTTP Basic with the account SID and auth token.
    pub fn authorization(&self) -> (String, String) {
        (
            "Authorization".to_string(),
            plugboard_sdk::basic_auth(self.account_sid, self.auth_token),
        )
    }

    /// The Messages API request (`POST .../Messages.json`) carrying the form `fields`, plus
    /// `StatusCallback` when the channel's webhook URL is known.
    pub fn messages_request(&self, fields: &[(&str, &str)]) -> HttpRequest {
        let mut fields = fields.to_vec();
        if let Some(url) = self.status_callback {
            fields.push(("StatusCallback", url));
        }
        http::request(
            "POST",
            format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                self.base, self.account_sid
            ),
            vec![
                self.authorization(),
                (
                    "Content-Type".to_string(),
                    "application/x-www-form-urlencoded".to_string(),
                ),
            ],
            form::encode(fields.iter().copied()),
        )
    }
}

/// The message text to send as `Body`: `None` when absent or empty.
///
/// # Errors
///
/// `invalid` for a text over [`MAX_BODY_CHARS`] characters.
pub fn body_text(text: Option<&str>) -> Result<Option<&str>, SendError> {
    let text = text.filter(|t| !t.is_empty());
    if let Some(text) = text {
        let chars = text.chars().count();
        if chars > MAX_BODY_CHARS {
            return Err(SendError::Invalid(format!(
                "text is {chars} characters; Twilio accepts at most {MAX_BODY_CHARS}"
            )));
        }
    }
    Ok(text)
}

/// Reads the Messages API answer: the message SID on success.
///
/// # Errors
///
/// The mapped Twilio error (see [`map_error`]), or `invalid` for a success without a `sid`.
pub fn read_send_response(resp: &HttpResponse) -> Result<String, SendError> {
    if !http::is_success(resp.status) {
        return Err(map_error(resp));
    }
    let body: plugboard_sdk::serde_json::Value =
        plugboard_sdk::json::parse(&resp.body).map_err(|e| {
            SendError::Invalid(format!(
                "Twilio accepted the message but its answer is unreadable: {e}"
            ))
        })?;
    body.get("sid")
        .and_then(|sid| sid.as_str())
        .filter(|sid| !sid.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            SendError::Invalid("Twilio accepted the message but its answer has no sid".to_string())
        })
}

/// Builds the credentials check: fetching the account resource.
///
/// # Errors
///
/// `misconfigured` when `account_sid` or `auth_token` is missing, or the sender settings are
/// wrong (see [`sender`]).
pub fn prepare_check(settings: &[(String, String)]) -> Result<HttpRequest, SendError> {
    let api = Api::new(settings)?;
    sender(settings)?;
    Ok(http::request(
        "GET",
        format!("{}/2010-04-01/Accounts/{}.json", api.base, api.account_sid),
        vec![api.authorization()],
        Vec::new(),
    ))
}

/// Reads the answer to the credentials check.
///
/// # Errors
///
/// The mapped Twilio error (see [`map_error`]) for a non-2xx answer.
pub fn read_check_response(resp: &HttpResponse) -> Result<(), SendError> {
    http::expect_success(resp, map_error)
}

/// Maps a failed Twilio API answer to a send error. Messages carry Twilio's error code
/// (`Twilio error 21211: ...`) so the host can record it.
///
/// * code 21610 => `opted-out`
/// * code 20429 or HTTP 429 => `rate-limited` (with `Retry-After` seconds when present)
/// * HTTP 5xx => `unavailable`
/// * HTTP 401/403 => `unauthorized`
/// * other 4xx => `invalid`; anything else => `unavailable`
pub fn map_error(resp: &HttpResponse) -> SendError {
    let body: Option<plugboard_sdk::serde_json::Value> =
        plugboard_sdk::json::parse(&resp.body).ok();
    let code = body.as_ref().and_then(|b| b.get("code")).and_then(|c| {
        c.as_i64()
            .map(|n| n.to_string())
            .or_else(|| c.as_str().map(str::to_string))
    });
    let message = body
        .as_ref()
        .and_then(|b| b.get("message"))
        .and_then(|m| m.as_str())
        .map(str::to_string);
    let status = resp.status;
    let description = match (&code, &message) {
        (Some(code), Some(message)) => format!("Twilio error {code}: {message}"),
        (Some(code), None) => format!("Twilio error {code} (HTTP {status})"),
        (None, Some(message)) => format!("Twilio HTTP {status}: {message}"),
        (None, None) => {
            let text = String::from_utf8_lossy(&resp.body);
            let snippet: String = text.chars().take(200).collect();
            format!("Twilio HTTP {status}: {}", snippet.trim())
        }
    };
    match code.as_deref() {
        Some("21610") => SendError::OptedOut(description),
        Some("20429") => SendError::RateLimited(http::retry_after(&resp.headers)),
        _ => http::send_error(resp, description),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::{hmac_sha1, pairs, sha256};
    use plugboard_sdk::types::Attachment;

    fn settings() -> Vec<(String, String)> {
        pairs(&[
            ("account_sid", "AC123"),
            ("auth_token", "secret"),
            ("from", "+14155550100"),
            ("api_base", "http://127.0.0.1:9999/"),
        ])
    }

    fn signed_post(url: &str, body: &str, token: &str) -> HttpRequest {
        let params = form::parse(body.as_bytes()).unwrap();
        let sig = plugboard_sdk::base64::encode(&hmac_sha1(
            token.as_bytes(),
            signature::string_to_sign(url, &params).as_bytes(),
        ));
        http::request(
            "POST",
            url,
            vec![("X-Twilio-Signature".to_string(), sig)],
            body.as_bytes().to_vec(),
        )
    }

    const SMS: &str = "ToCountry=US&ToState=District+Of+Columbia&SmsMessageSid=SMe287d7109a5a925f182f0e07fe5b223b&NumMedia=0&ToCity=&FromZip=01022&SmsSid=SMe287d7109a5a925f182f0e07fe5b223b&FromState=MA&SmsStatus=received&FromCity=CHICOPEE&Body=Msg&FromCountry=US&To=%2B12028831111&ToZip=&NumSegments=1&MessageSid=SMe287d7109a5a925f182f0e07fe5b223b&AccountSid=acctid&From=%2B14133881111&ApiVersion=2010-04-01";

    #[test]
    fn inbound_sms_becomes_a_message() {
        let req = signed_post("https://hooks.example.com/c/twilio", SMS, "secret");
        let out = handle_webhook("twilio-sms", &req, &settings(), hmac_sha1, sha256).unwrap();
        assert_eq!(out.response.status, 200);
        assert_eq!(out.response.body, EMPTY_TWIML.as_bytes());
        assert_eq!(
            header(&out.response.headers, "content-type"),
            Some("text/xml")
        );
        let [Event::Message(m)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(m.provider_id, "SMe287d7109a5a925f182f0e07fe5b223b");
        assert_eq!(m.from, "+14133881111");
        assert_eq!(m.to, "+12028831111");
        assert_eq!(m.text.as_deref(), Some("Msg"));
        assert!(m.attachments.is_empty());
        assert_eq!(m.contact_name, None);
    }

    #[test]
    fn signature_failures_are_unauthorized() {
        let mut req = signed_post("https://hooks.example.com/c/twilio", SMS, "other");
        assert!(matches!(
            handle_webhook("twilio-sms", &req, &settings(), hmac_sha1, sha256),
            Err(WebhookError::Unauthorized(_))
        ));
        req.headers.clear();
        let Err(WebhookError::Unauthorized(msg)) =
            handle_webhook("twilio-sms", &req, &settings(), hmac_sha1, sha256)
        else {
            panic!()
        };
        assert!(msg.contains("X-Twilio-Signature"));
        let bad = signed_post("https://hooks.example.com/c/twilio", "a=1", "secret");
        let bad = HttpRequest {
            body: b"a=%zz".to_vec(),
            ..bad
        };
        assert!(matches!(
            handle_webhook("twilio-sms", &bad, &settings(), hmac_sha1, sha256),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn default_port_variants_are_accepted() {
        let mut req = signed_post("https://hooks.example.com:443/c/twilio", SMS, "secret");
        req.url = "https://hooks.example.com/c/twilio".to_string();
        assert_eq!(
            handle_webhook("twilio-sms", &req, &settings(), hmac_sha1, sha256)
                .unwrap()
                .events
                .len(),
            1
        );
    }

    /// A JSON webhook as the helper libraries' `validate` accepts it: the signature over the
    /// full URL (with `bodySHA256`) and no parameters, the hash over the raw body.
    fn signed_json(url_base: &str, body: &str, token: &str) -> HttpRequest {
        let url = format!("{url_base}?bodySHA256={}", hex(&sha256(body.as_bytes())));
        let sig = plugboard_sdk::base64::encode(&hmac_sha1(token.as_bytes(), url.as_bytes()));
        http::request(
            "POST",
            url,
            vec![
                ("X-Twilio-Signature".to_string(), sig),
                ("Content-Type".to_string(), "application/json".to_string()),
            ],
            body.as_bytes().to_vec(),
        )
    }

    #[test]
    fn json_webhooks_signed_with_body_sha256() {
        let body = r#"{"MessageSid":"SM77","MessageStatus":"delivered","NumSegments":1,"x":null}"#;
        let req = signed_json("https://hooks.example.com/webhooks/sms", body, "secret");
        let out = handle_webhook("twilio-sms", &req, &settings(), hmac_sha1, sha256).unwrap();
        let [Event::Status(s)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(s.provider_id, "SM77");
        assert_eq!(s.state, DeliveryState::Delivered);
        // The helper libraries' own vector (twilio-python tests/unit/test_request_validator.py).
        let sdk_body = br#"{"property": "value", "boolean": true}"#;
        let sdk_hash = hex(&sha256(sdk_body));
        assert_eq!(
            sdk_hash,
            "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        assert!(signature::is_valid(
            &format!("https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={sdk_hash}"),
            &[],
            "12345",
            "a9nBmqA0ju/hNViExpshrM61xv4=",
            hmac_sha1
        ));
        let tampered = HttpRequest {
            body: body.replace("SM77", "SM78").into_bytes(),
            ..req.clone()
        };
        let Err(WebhookError::Unauthorized(m)) =
            handle_webhook("twilio-sms", &tampered, &settings(), hmac_sha1, sha256)
        else {
            panic!()
        };
        assert!(m.contains("bodySHA256"), "{m}");
        let wrong_key = signed_json("https://hooks.example.com/webhooks/sms", body, "other");
        assert!(matches!(
            handle_webhook("twilio-sms", &wrong_key, &settings(), hmac_sha1, sha256),
            Err(WebhookError::Unauthorized(_))
        ));
        let not_object = signed_json("https://hooks.example.com/webhooks/sms", "[1]", "secret");
        assert!(matches!(
            handle_webhook("twilio-sms", &not_object, &settings(), hmac_sha1, sha256),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn get_signs_the_url_alone() {
        let url = "https://hooks.example.com/c/twilio?MessageSid=SM1&MessageStatus=delivered";
        let sig = plugboard_sdk::base64::encode(&hmac_sha1(b"secret", url.as_bytes()));
        let req = http::request(
            "GET",
            url,
            vec![("x-twilio-signature".to_string(), sig)],
            Vec::new(),
        );
        let out = handle_webhook("twilio-sms", &req, &settings(), hmac_sha1, sha256).unwrap();
        let [Event::Status(s)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(s.provider_id, "SM1");
        assert_eq!(s.state, DeliveryState::Delivered);
    }

    #[test]
    fn media_profile_name_and_status_callbacks() {
        let params = pairs(&[
            ("MessageSid", "MM1"),
            ("SmsStatus", "received"),
            ("From", "whatsapp:+14155550100"),
            ("To", "whatsapp:+14155238886"),
            ("Body", ""),
            ("ProfileName", "Alice"),
            ("NumMedia", "2"),
            ("MediaUrl0", "https://api.twilio.com/m0"),
            ("MediaContentType0", "image/jpeg"),
            ("MediaUrl1", "https://api.twilio.com/m1"),
        ]);
        let events = classify(&params).unwrap();
        let [Event::Message(m)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(m.text, None);
        assert_eq!(m.contact_name.as_deref(), Some("Alice"));
        assert_eq!(
            m.attachments,
            vec![
                Attachment {
                    url: "https://api.twilio.com/m0".into(),
                    content_type: Some("image/jpeg".into())
                },
                Attachment {
                    url: "https://api.twilio.com/m1".into(),
                    content_type: None
                },
            ]
        );
        let failed = pairs(&[
            ("ErrorCode", "21610"),
            ("MessageSid", "SM2"),
            ("MessageStatus", "failed"),
            ("SmsStatus", "failed"),
        ]);
        let events = classify(&failed).unwrap();
        let [Event::Status(s)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(s.state, DeliveryState::Failed);
        assert_eq!(s.error_code.as_deref(), Some("21610"));
        assert!(classify(&pairs(&[("Foo", "bar")])).is_err());
        assert!(
            classify(&pairs(&[
                ("MessageSid", "SM3"),
                ("MessageStatus", "receiving")
            ]))
            .is_err()
        );
    }

    #[test]
    fn status_mapping() {
        use DeliveryState::*;
        for (s, want) in [
            ("queued", Queued),
            ("accepted", Queued),
            ("scheduled", Queued),
            ("sending", Sent),
            ("sent", Sent),
            ("delivered", Delivered),
            ("read", Read),
            ("failed", Failed),
            ("undelivered", Failed),
            ("canceled", Failed),
        ] {
            assert_eq!(delivery_state(s), Some(want), "{s}");
        }
        assert_eq!(delivery_state("partially_delivered"), None);
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
            read_send_response(&resp(201, r#"{"sid":"SM9","status":"queued"}"#, &[])).unwrap(),
            "SM9"
        );
        let err = |status, body: &str, headers: &[(&str, &str)]| {
            read_send_response(&resp(status, body, headers)).unwrap_err()
        };
        assert!(matches!(
            err(400, r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient"}"#, &[]),
            SendError::OptedOut(m) if m.contains("21610")
        ));
        assert!(matches!(
            err(400, r#"{"code":21211,"message":"Invalid 'To' Phone Number"}"#, &[]),
            SendError::Invalid(m) if m == "Twilio error 21211: Invalid 'To' Phone Number"
        ));
        assert_eq!(
            err(
                429,
                r#"{"code":20429,"message":"Too Many Requests"}"#,
                &[("Retry-After", "7")]
            ),
            SendError::RateLimited(Some(7))
        );
        assert_eq!(err(429, "", &[]), SendError::RateLimited(None));
        assert!(matches!(
            err(401, r#"{"code":20003,"message":"Authenticate"}"#, &[]),
            SendError::Unauthorized(m) if m.contains("20003")
        ));
        assert!(matches!(err(503, "oops", &[]), SendError::Unavailable(m) if m.contains("503")));
        assert!(read_check_response(&resp(200, "{}", &[])).is_ok());
        assert!(matches!(
            read_check_response(&resp(403, r#"{"code":20003,"message":"no"}"#, &[])),
            Err(SendError::Unauthorized(_))
        ));
    }
}
