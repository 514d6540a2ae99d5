//! Messenger's wire format (providers.md section 4): the manifest, the verification handshake,
//! delivery authentication and parsing, the messaging-window rules, the Send API request and the
//! Graph API error mapping.
//!
//! The functions are pure (the host's HMAC is passed in), so everything runs in native tests;
//! only [`handle_webhook`] logs, and only about items it ignores.

use plugboard_sdk::serde_json::{Value, json};
use plugboard_sdk::types::{
    Attachment, Capabilities, DeliveryState, DeliveryStatus, Event, HttpRequest, HttpResponse,
    InboundMessage, Manifest, OutboundMessage, SendError, SettingSpec, WebhookError,
    WebhookOutcome,
};
use plugboard_sdk::{Settings, ct_eq, header, http, query};

/// The Graph API base URL used when the `api_base` setting is absent.
pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com";

/// The Graph API version the plugin speaks.
pub const GRAPH_VERSION: &str = "v19.0";

/// The standard messaging window: 24 hours after the customer's last message.
pub const STANDARD_WINDOW_SECS: u64 = 24 * 3600;

/// The `HUMAN_AGENT` tag window: 7 days after the customer's last message.
pub const HUMAN_AGENT_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// Messenger's text limit, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// What the plugin is and which settings it takes.
pub fn manifest() -> Manifest {
    let setting = SettingSpec::new;
    Manifest {
        name: "messenger".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "messenger".to_string(),
        settings: vec![
            setting(
                "app_secret",
                true,
                true,
                "Meta App Secret: verifies X-Hub-Signature-256 on webhook deliveries",
            ),
            setting(
                "verify_token",
                true,
                true,
                "The Verify Token entered in the app's webhook settings (GET handshake)",
            ),
            setting(
                "page_access_token",
                true,
                true,
                "Page access token: authenticates Send API calls",
            ),
            setting(
                "human_agent_tag",
                false,
                false,
                "\"true\" to reply up to 7 days after the customer's last message with the \
                 HUMAN_AGENT tag (needs Meta's Human Agent permission); default false",
            ),
            setting(
                "api_base",
                false,
                false,
                "Graph API base URL (default https://graph.facebook.com)",
            ),
        ],
        api_hosts: vec!["graph.facebook.com".to_string()],
        capabilities: Capabilities::ATTACHMENTS | Capabilities::DELIVERY_RECEIPTS,
        rules: plugboard_sdk::rules::opaque(MAX_TEXT_CHARS as u32),
    }
}

/// The `X-Hub-Signature-256` value Meta sends for `body`:
/// `sha256=<lowercase hex HMAC-SHA256(app secret, raw body)>`.
pub fn signature(
    app_secret: &str,
    body: &[u8],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> String {
    format!(
        "sha256={}",
        plugboard_sdk::hex(&hmac_sha256(app_secret.as_bytes(), body))
    )
}

/// Authenticates and parses one webhook call: the `GET` handshake or a `POST` delivery.
/// `hmac_sha256(key, data)` computes the MAC.
///
/// # Errors
///
/// `misconfigured` without `verify_token` (GET) or `app_secret` (POST); `unauthorized` for a
/// handshake that is not a subscribe with the right token, or a missing or wrong signature;
/// `bad-request` for another method, a handshake without `hub.challenge`, or a body that is not
/// a Messenger webhook object.
pub fn handle_webhook(
    req: &HttpRequest,
    settings: &[(String, String)],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> Result<WebhookOutcome, WebhookError> {
    let s = Settings::new(settings);
    if req.method.eq_ignore_ascii_case("GET") {
        return handshake(&req.url, &s);
    }
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(WebhookError::BadRequest(format!(
            "Messenger webhooks use GET (verification) or POST, not {}",
            req.method
        )));
    }
    let secret = s
        .require("app_secret")
        .map_err(WebhookError::Misconfigured)?;
    let Some(sent) = header(&req.headers, "x-hub-signature-256") else {
        return Err(WebhookError::Unauthorized(
            "missing X-Hub-Signature-256 header".to_string(),
        ));
    };
    let expected = signature(secret, &req.body, hmac_sha256);
    let sent = sent.trim().to_ascii_lowercase();
    if !ct_eq(sent.as_bytes(), expected.as_bytes()) {
        return Err(WebhookError::Unauthorized(
            "X-Hub-Signature-256 does not match the body (check app_secret)".to_string(),
        ));
    }
    let body: Value = plugboard_sdk::json::parse(&req.body)
        .map_err(|e| WebhookError::BadRequest(format!("Messenger webhook: {e}")))?;
    let (events, ignored) = parse_events(&body)?;
    for reason in ignored {
        plugboard_sdk::host::log(
            plugboard_sdk::host::Level::Info,
            &format!("messenger: ignored an authentic item: {reason}"),
            &[],
        );
    }
    Ok(WebhookOutcome {
        events,
        response: http::ok(),
    })
}

/// The `GET` verification handshake: `200 text/plain` with the bare `hub.challenge` when
/// `hub.mode` is `subscribe` and `hub.verify_token` matches (in constant time).
fn handshake(url: &str, s: &Settings<'_>) -> Result<WebhookOutcome, WebhookError> {
    let verify_token = s
        .require("verify_token")
        .map_err(WebhookError::Misconfigured)?;
    let params = query::params(url)
        .map_err(|e| WebhookError::BadRequest(format!("Messenger handshake: {e}")))?;
    let get = |name: &str| form_get(&params, name);
    let mode = get("hub.mode").unwrap_or_default();
    let token = get("hub.verify_token").unwrap_or_default();
    let token_ok = ct_eq(token.as_bytes(), verify_token.as_bytes());
    if mode != "subscribe" || !token_ok {
        return Err(WebhookError::Unauthorized(
            "verification handshake is not hub.mode=subscribe with the configured verify_token"
                .to_string(),
        ));
    }
    let challenge = get("hub.challenge")
        .ok_or_else(|| WebhookError::BadRequest("handshake without hub.challenge".to_string()))?;
    Ok(WebhookOutcome {
        events: Vec::new(),
        response: http::response(200, "text/plain", challenge.as_bytes().to_vec()),
    })
}

fn form_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    plugboard_sdk::form::get(pairs, name)
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// A string or number field as text (PSIDs and timestamps arrive either way in the wild).
fn scalar_at(value: &Value, path: &[&str]) -> Option<String> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Turns an authentic delivery body into events, plus the reasons for every item it skipped.
///
/// Webhooks for an `object` other than `page` (an app also subscribed to Instagram, say) are
/// authentic and not ours: they give no events, and the call is still answered `200`, since
/// Meta disables endpoints that keep failing.
///
/// # Errors
///
/// `bad-request` when the body is not an object with a string `object`, or a `page` delivery
/// has no `entry` array.
pub fn parse_events(body: &Value) -> Result<(Vec<Event>, Vec<String>), WebhookError> {
    let bad = |m: &str| WebhookError::BadRequest(format!("Messenger webhook: {m}"));
    let object = body
        .get("object")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no `object` field (not a Graph webhook)"))?;
    if object != "page" {
        return Ok((
            Vec::new(),
            vec![format!("object `{object}` is not a Messenger page webhook")],
        ));
    }
    let entries = body
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `entry` array"))?;
    let mut events = Vec::new();
    let mut ignored = Vec::new();
    for entry in entries {
        let Some(items) = entry.get("messaging").and_then(Value::as_array) else {
            ignored.push("entry without `messaging` (standby or changes)".to_string());
            continue;
        };
        for item in items {
            parse_item(item, &mut events, &mut ignored);
        }
    }
    Ok((events, ignored))
}

/// One `messaging[]` item.
fn parse_item(item: &Value, events: &mut Vec<Event>, ignored: &mut Vec<String>) {
    let sender = scalar_at(item, &["sender", "id"]);
    let recipient = scalar_at(item, &["recipient", "id"]).unwrap_or_default();
    if let Some(message) = item.get("message").filter(|m| m.is_object()) {
        if message.get("is_echo").and_then(Value::as_bool) == Some(true) {
            ignored.push("echo of a message the page sent".to_string());
            return;
        }
        let (Some(mid), Some(from)) = (str_at(message, &["mid"]), sender) else {
            ignored.push("message without mid or sender.id".to_string());
            return;
        };
        let attachments = message
            .get("attachments")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|a| {
                        str_at(a, &["payload", "url"]).map(|url| Attachment {
                            url: url.to_string(),
                            content_type: None,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        events.push(Event::Message(InboundMessage {
            provider_id: mid.to_string(),
            from,
            to: recipient,
            text: str_at(message, &["text"]).map(str::to_string),
            attachments,
            contact_name: None,
            thread: Vec::new(),
        }));
    } else if let Some(delivery) = item.get("delivery") {
        let mids = delivery.get("mids").and_then(Value::as_array);
        let mut any = false;
        for mid in mids.into_iter().flatten().filter_map(Value::as_str) {
            any = true;
            events.push(Event::Status(DeliveryStatus {
                provider_id: mid.to_string(),
                state: DeliveryState::Delivered,
                error_code: None,
                error_message: None,
            }));
        }
        if !any {
            ignored.push("delivery with only a watermark".to_string());
        }
    } else if let Some(postback) = item.get("postback") {
        let Some(from) = sender else {
            ignored.push("postback without sender.id".to_string());
            return;
        };
        let provider_id = str_at(postback, &["mid"])
            .map(str::to_string)
            .unwrap_or_else(|| {
                let at = scalar_at(item, &["timestamp"]).unwrap_or_default();
                format!("postback-{from}-{at}")
            });
        let text = str_at(postback, &["title"])
            .or_else(|| str_at(postback, &["payload"]))
            .map(str::to_string);
        events.push(Event::Message(InboundMessage {
            provider_id,
            from,
            to: recipient,
            text,
            attachments: Vec::new(),
            contact_name: None,
            thread: Vec::new(),
        }));
    } else if item.get("read").is_some() {
        ignored.push("read receipt (a watermark, no message ids)".to_string());
    } else {
        ignored.push("messaging item of an unhandled kind".to_string());
    }
}

/// The `messaging_type` (and tag) for a reply `since_last_inbound` seconds after the
/// customer's last message: `RESPONSE` within 24 hours; `MESSAGE_TAG` + `HUMAN_AGENT` within 7
/// days when `human_agent_tag` is enabled.
///
/// # Errors
///
/// `invalid` outside the allowed window, or when the customer never wrote (Messenger does not
/// let a page start a conversation).
pub fn messaging_type(
    since_last_inbound: Option<u64>,
    human_agent_tag: bool,
) -> Result<(&'static str, Option<&'static str>), SendError> {
    let Some(since) = since_last_inbound else {
        return Err(SendError::Invalid(
            "outside the Messenger 24-hour window: the customer has not written to the page"
                .to_string(),
        ));
    };
    if since <= STANDARD_WINDOW_SECS {
        Ok(("RESPONSE", None))
    } else if human_agent_tag && since <= HUMAN_AGENT_WINDOW_SECS {
        Ok(("MESSAGE_TAG", Some("HUMAN_AGENT")))
    } else if human_agent_tag {
        Err(SendError::Invalid(format!(
            "outside the Messenger 24-hour window and the 7-day HUMAN_AGENT window: the \
             customer last wrote {} hours ago",
            since / 3600
        )))
    } else {
        Err(SendError::Invalid(format!(
            "outside the Messenger 24-hour window: the customer last wrote {} hours ago \
             (set human_agent_tag=true to reply up to 7 days with the HUMAN_AGENT tag)",
            since / 3600
        )))
    }
}

/// The attachment type Messenger wants for a MIME type.
fn attachment_type(content_type: Option<&str>) -> &'static str {
    let ct = content_type.unwrap_or_default().trim().to_ascii_lowercase();
    if ct.starts_with("image/") {
        "image"
    } else if ct.starts_with("video/") {
        "video"
    } else if ct.starts_with("audio/") {
        "audio"
    } else {
        "file"
    }
}

fn api_base<'a>(s: &Settings<'a>) -> &'a str {
    s.get_or("api_base", DEFAULT_API_BASE).trim_end_matches('/')
}

/// Builds the Send API request for `msg`: text, or one attachment by URL.
///
/// # Errors
///
/// `misconfigured` without `page_access_token`; `invalid` outside the messaging window (see
/// [`messaging_type`]), with no content, with both text and attachments or several
/// attachments (Messenger takes one per message), or with text over [`MAX_TEXT_CHARS`].
pub fn prepare_send(
    msg: &OutboundMessage,
    settings: &[(String, String)],
) -> Result<HttpRequest, SendError> {
    let s = Settings::new(settings);
    let token = s
        .require("page_access_token")
        .map_err(SendError::Misconfigured)?;
    let human_agent = s
        .get("human_agent_tag")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let (kind, tag) = messaging_type(msg.since_last_inbound, human_agent)?;
    let to = msg.to.trim();
    if to.is_empty() {
        return Err(SendError::Invalid("no recipient PSID".to_string()));
    }
    let text = msg.text.as_deref().filter(|t| !t.trim().is_empty());
    let message = match (text, msg.attachments.as_slice()) {
        (Some(text), []) => {
            let chars = text.chars().count();
            if chars > MAX_TEXT_CHARS {
                return Err(SendError::Invalid(format!(
                    "Messenger text holds at most {MAX_TEXT_CHARS} characters; this one has {chars}"
                )));
            }
            json!({"text": text})
        }
        (None, [a]) => json!({"attachment": {
            "type": attachment_type(a.content_type.as_deref()),
            "payload": {"url": a.url, "is_reusable": false},
        }}),
        (None, []) => {
            return Err(SendError::Invalid(
                "nothing to send: the message has no text and no attachments".to_string(),
            ));
        }
        _ => {
            return Err(SendError::Invalid(
                "Messenger sends either text or one attachment per message; send them separately"
                    .to_string(),
            ));
        }
    };
    let mut body = json!({
        "recipient": {"id": to},
        "messaging_type": kind,
        "message": message,
    });
    if let Some(tag) = tag {
        body["tag"] = json!(tag);
    }
    Ok(http::request(
        "POST",
        format!("{}/{GRAPH_VERSION}/me/messages", api_base(&s)),
        vec![
            http::bearer(token),
            ("Content-Type".to_string(), "application/json".to_string()),
        ],
        body.to_string(),
    ))
}

/// Reads the Send API answer: `message_id` on success.
///
/// # Errors
///
/// See [`map_error`]; `invalid` for a success without `message_id`.
pub fn read_send_response(resp: &HttpResponse) -> Result<String, SendError> {
    if !http::is_success(resp.status) {
        return Err(map_error(resp));
    }
    let body: Value = plugboard_sdk::json::parse(&resp.body).map_err(|e| {
        SendError::Invalid(format!(
            "Messenger accepted the message but its answer is unreadable: {e}"
        ))
    })?;
    str_at(&body, &["message_id"])
        .map(str::to_string)
        .ok_or_else(|| {
            SendError::Invalid(
                "Messenger accepted the message but its answer has no message_id".to_string(),
            )
        })
}

/// Maps a failed Graph API answer (`{"error":{"message","code","error_subcode"}}`) to a send
/// error; messages carry the codes (`Messenger HTTP 400: (#10) ... [code 10, subcode 2018278]`).
///
/// * code 10 or subcode 2018278 (outside the window), 551 (person unavailable), 100 => `invalid`
/// * code 4, 32, 613 (throttling) or HTTP 429 => `rate-limited` (with `Retry-After` if any)
/// * code 190 (bad or expired token) or HTTP 401/403 => `unauthorized`
/// * code 1, 2 (temporary) or HTTP 5xx => `unavailable`; other 4xx => `invalid`
pub fn map_error(resp: &HttpResponse) -> SendError {
    let status = resp.status;
    let body: Option<Value> = plugboard_sdk::json::parse(&resp.body).ok();
    let error = body.as_ref().and_then(|b| b.get("error"));
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_i64);
    let subcode = error
        .and_then(|e| e.get("error_subcode"))
        .and_then(Value::as_i64);
    let mut text = error
        .and_then(|e| str_at(e, &["message"]))
        .map(str::to_string)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&resp.body)
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string()
        });
    match (code, subcode) {
        (Some(c), Some(s)) => text.push_str(&format!(" [code {c}, subcode {s}]")),
        (Some(c), None) => text.push_str(&format!(" [code {c}]")),
        _ => {}
    }
    let description = format!("Messenger HTTP {status}: {}", text.trim());
    if code == Some(10) || subcode == Some(2_018_278) {
        return SendError::Invalid(description);
    }
    match code {
        Some(4 | 32 | 613) => return SendError::RateLimited(http::retry_after(&resp.headers)),
        Some(190) => return SendError::Unauthorized(description),
        Some(1 | 2) => return SendError::Unavailable(description),
        _ => {}
    }
    http::send_error(resp, description)
}

/// The credential check: `GET {api_base}/v19.0/me` with the page access token.
///
/// # Errors
///
/// `misconfigured` without `page_access_token`.
pub fn prepare_check(settings: &[(String, String)]) -> Result<HttpRequest, SendError> {
    let s = Settings::new(settings);
    let token = s
        .require("page_access_token")
        .map_err(SendError::Misconfigured)?;
    Ok(http::bearer_get(
        format!("{}/{GRAPH_VERSION}/me", api_base(&s)),
        token,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::{hmac_sha256, pairs};

    const SECRET: &str = "3f9d2c1b0a8e7f6d5c4b3a2918f7e6d5";

    fn settings() -> Vec<(String, String)> {
        pairs(&[
            ("app_secret", SECRET),
            ("verify_token", "plugboard-verify-7Qx"),
            ("page_access_token", "EAAGm0PX4ZCpsBA"),
            ("api_base", "http://127.0.0.1:9999"),
        ])
    }

    fn post(body: &str, sig: Option<String>) -> HttpRequest {
        http::request(
            "POST",
            "https://hooks.example.com/webhooks/messenger",
            sig.map(|s| vec![("X-Hub-Signature-256".to_string(), s)])
                .unwrap_or_default(),
            body.as_bytes().to_vec(),
        )
    }

    fn signed(body: &str) -> HttpRequest {
        post(body, Some(signature(SECRET, body.as_bytes(), hmac_sha256)))
    }

    #[test]
    fn handshake_answers_the_bare_challenge() {
        let get = |query: &str| {
            let req = http::request(
                "GET",
                format!("https://hooks.example.com/webhooks/messenger?{query}"),
                vec![],
                Vec::new(),
            );
            handle_webhook(&req, &settings(), hmac_sha256)
        };
        let out = get(
            "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=plugboard-verify-7Qx",
        )
        .unwrap();
        assert_eq!(out.response.status, 200);
        assert_eq!(out.response.body, b"1158201444");
        assert!(out.events.is_empty());
        assert!(matches!(
            get("hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong"),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(matches!(
            get("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=plugboard-verify-7Qx"),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(matches!(get(""), Err(WebhookError::Unauthorized(_))));
    }

    #[test]
    fn batched_entries() {
        let body = json!({"object": "page", "entry": [
            {"id": "P1", "time": 1, "messaging": [
                {"sender": {"id": "U1"}, "recipient": {"id": "P1"}, "timestamp": 5,
                 "message": {"mid": "m_1", "text": "Hello World"}},
                {"sender": {"id": "P1"}, "recipient": {"id": "U1"}, "timestamp": 6,
                 "message": {"mid": "m_echo", "is_echo": true, "text": "hi"}},
            ]},
            {"id": "P1", "time": 2, "messaging": [
                {"sender": {"id": "U1"}, "recipient": {"id": "P1"},
                 "message": {"mid": "m_2", "attachments": [
                     {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/a.jpg"}}]}},
                {"sender": {"id": "U1"}, "recipient": {"id": "P1"},
                 "delivery": {"mids": ["m_a", "m_b"], "watermark": 7}},
                {"sender": {"id": "U1"}, "recipient": {"id": "P1"}, "read": {"watermark": 8}},
                {"sender": {"id": "U1"}, "recipient": {"id": "P1"}, "timestamp": 9,
                 "postback": {"title": "Talk to an agent", "payload": "AGENT"}},
            ]},
        ]});
        let (events, ignored) = parse_events(&body).unwrap();
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        assert_eq!(events.len(), 5);
        let Event::Message(m) = &events[0] else {
            panic!()
        };
        assert_eq!(
            (m.provider_id.as_str(), m.from.as_str(), m.to.as_str()),
            ("m_1", "U1", "P1")
        );
        let Event::Message(m) = &events[1] else {
            panic!()
        };
        assert_eq!(m.attachments[0].url, "https://scontent.xx.fbcdn.net/a.jpg");
        assert_eq!(m.text, None);
        assert!(
            matches!(&events[2], Event::Status(s) if s.provider_id == "m_a" && s.state == DeliveryState::Delivered)
        );
        assert!(matches!(&events[3], Event::Status(s) if s.provider_id == "m_b"));
        let Event::Message(p) = &events[4] else {
            panic!()
        };
        assert_eq!(p.text.as_deref(), Some("Talk to an agent"));
        assert_eq!(p.provider_id, "postback-U1-9");
        let (events, _) = parse_events(&json!({"object": "instagram", "entry": []})).unwrap();
        assert!(events.is_empty());
        assert!(parse_events(&json!({"entry": []})).is_err());
    }

    #[test]
    fn signatures() {
        let body = r#"{"object":"page","entry":[]}"#;
        assert!(handle_webhook(&signed(body), &settings(), hmac_sha256).is_ok());
        let upper = signature(SECRET, body.as_bytes(), hmac_sha256).to_ascii_uppercase();
        assert!(handle_webhook(&post(body, Some(upper)), &settings(), hmac_sha256).is_ok());
        assert!(matches!(
            handle_webhook(&post(body, None), &settings(), hmac_sha256),
            Err(WebhookError::Unauthorized(_))
        ));
        let sha1_style = post(body, Some("sha1=abc".into()));
        assert!(matches!(
            handle_webhook(&sha1_style, &settings(), hmac_sha256),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(matches!(
            handle_webhook(&signed("[1"), &settings(), hmac_sha256),
            Err(WebhookError::BadRequest(_))
        ));
    }

    fn outbound(text: Option<&str>, since: Option<u64>) -> OutboundMessage {
        OutboundMessage {
            id: "c1-2".into(),
            to: "6543210987654321".into(),
            text: text.map(str::to_string),
            attachments: Vec::new(),
            thread: Vec::new(),
            since_last_inbound: since,
            token: None,
        }
    }

    #[test]
    fn windows() {
        assert_eq!(messaging_type(Some(60), false).unwrap(), ("RESPONSE", None));
        assert_eq!(
            messaging_type(Some(86_400), false).unwrap(),
            ("RESPONSE", None)
        );
        assert!(
            matches!(messaging_type(Some(86_401), false), Err(SendError::Invalid(m)) if m.contains("24-hour"))
        );
        assert_eq!(
            messaging_type(Some(86_401), true).unwrap(),
            ("MESSAGE_TAG", Some("HUMAN_AGENT"))
        );
        assert!(messaging_type(Some(7 * 86_400), true).is_ok());
        assert!(messaging_type(Some(7 * 86_400 + 1), true).is_err());
        assert!(messaging_type(None, true).is_err());

        let req = prepare_send(&outbound(Some("Hi"), Some(30)), &settings()).unwrap();
        assert_eq!(req.url, "http://127.0.0.1:9999/v19.0/me/messages");
        assert_eq!(
            header(&req.headers, "authorization"),
            Some("Bearer EAAGm0PX4ZCpsBA")
        );
        let body: Value = plugboard_sdk::serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            json!({"recipient": {"id": "6543210987654321"}, "messaging_type": "RESPONSE",
                   "message": {"text": "Hi"}})
        );
        let mut tagged = settings();
        tagged.push(("human_agent_tag".into(), "true".into()));
        let req = prepare_send(&outbound(Some("Hi"), Some(3 * 86_400)), &tagged).unwrap();
        let body: Value = plugboard_sdk::serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["messaging_type"], "MESSAGE_TAG");
        assert_eq!(body["tag"], "HUMAN_AGENT");
        assert!(prepare_send(&outbound(Some("Hi"), Some(3 * 86_400)), &settings()).is_err());

        let mut media = outbound(None, Some(5));
        media.attachments.push(Attachment {
            url: "https://cdn.example.com/x.png".into(),
            content_type: Some("image/png".into()),
        });
        let body: Value =
            plugboard_sdk::serde_json::from_slice(&prepare_send(&media, &settings()).unwrap().body)
                .unwrap();
        assert_eq!(body["message"]["attachment"]["type"], "image");
        media.text = Some("and text".into());
        assert!(matches!(
            prepare_send(&media, &settings()),
            Err(SendError::Invalid(_))
        ));
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn send_responses() {
        assert_eq!(
            read_send_response(&resp(
                200,
                r#"{"recipient_id":"1008372609250235","message_id":"m_AG5Hz2U"}"#
            ))
            .unwrap(),
            "m_AG5Hz2U"
        );
        let err = |status, body: &str| read_send_response(&resp(status, body)).unwrap_err();
        let window = r#"{"error":{"message":"(#10) This message is sent outside of allowed window.","type":"OAuthException","code":10,"error_subcode":2018278,"fbtrace_id":"A"}}"#;
        assert!(matches!(err(400, window), SendError::Invalid(m) if m.contains("2018278")));
        assert_eq!(
            err(
                400,
                r#"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","code":613}}"#
            ),
            SendError::RateLimited(None)
        );
        assert!(matches!(
            err(
                400,
                r#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":463}}"#
            ),
            SendError::Unauthorized(_)
        ));
        assert!(matches!(
            err(503, "Service Unavailable"),
            SendError::Unavailable(_)
        ));
        assert!(matches!(
            err(
                400,
                r#"{"error":{"message":"(#100) No matching user found","code":100,"error_subcode":2018001}}"#
            ),
            SendError::Invalid(_)
        ));
        assert!(matches!(err(200, "{}"), SendError::Invalid(_)));
        assert_eq!(
            prepare_check(&settings()).unwrap().url,
            "http://127.0.0.1:9999/v19.0/me"
        );
    }
}
