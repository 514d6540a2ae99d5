//! LINE's wire format (providers.md section 3): the manifest, webhook authentication and
//! parsing, the reply-or-push decision, the send request and the error mapping.
//!
//! The functions are pure: the host's HMAC, SHA-256, clock and randomness are passed in, so
//! everything runs in native tests. Only [`handle_webhook`] logs (through `host::log`, which
//! it calls only for ignored events).

use plugboard_sdk::serde_json::{Value, json};
use plugboard_sdk::types::{
    Attachment, Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest,
    OptChange, OutboundMessage, SendError, SettingSpec, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{Settings, base64, ct_eq, header, http};

/// The Messaging API base URL used when the `api_base` setting is absent.
pub const DEFAULT_API_BASE: &str = "https://api.line.me";

/// Where LINE-hosted media of an inbound message is fetched (note the `api-data` host).
pub const CONTENT_BASE: &str = "https://api-data.line.me";

/// A reply token is used only while the conversation's last inbound message is younger than
/// this many seconds. LINE documents "within one minute"; the margin covers the host's queueing
/// and the provider round trip.
pub const REPLY_WINDOW_SECS: u64 = 50;

/// LINE's limit of messages per reply or push request.
pub const MAX_MESSAGES: usize = 5;

/// LINE's limit of characters per text message.
pub const MAX_TEXT_CHARS: usize = 5000;

/// The `thread` fact holding the reply token of the latest inbound event. The `once:` prefix
/// makes it single-use: the host drops it after the first successful send, so a second reply
/// in the same minute goes out as a push instead of failing on a spent token.
pub const THREAD_REPLY_TOKEN: &str = "once:reply_token";

/// The `thread` fact holding when (Unix milliseconds) the plugin received that reply token
/// (single-use like the token).
pub const THREAD_REPLY_TOKEN_AT: &str = "once:reply_token_at";

/// What the plugin is and which settings it takes.
pub fn manifest() -> Manifest {
    let setting = SettingSpec::new;
    Manifest {
        name: "line".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "line".to_string(),
        settings: vec![
            setting(
                "channel_id",
                false,
                false,
                "LINE channel ID (Messaging API channel), for operators' reference",
            ),
            setting(
                "channel_secret",
                true,
                true,
                "LINE channel secret: verifies the x-line-signature of webhooks",
            ),
            setting(
                "channel_access_token",
                true,
                true,
                "LINE channel access token (long-lived): authenticates reply and push calls",
            ),
            setting(
                "api_base",
                false,
                false,
                "Messaging API base URL (default https://api.line.me)",
            ),
        ],
        api_hosts: vec!["api.line.me".to_string(), "api-data.line.me".to_string()],
        capabilities: Capabilities::ATTACHMENTS,
        rules: plugboard_sdk::rules::opaque(5000),
    }
}

/// The signature LINE sends for `body`: Base64(HMAC-SHA256(channel secret, raw body)).
pub fn signature(
    channel_secret: &str,
    body: &[u8],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> String {
    base64::encode(&hmac_sha256(channel_secret.as_bytes(), body))
}

/// Whether `token` is one of the dummy reply tokens older "Verify" calls carried (all `0` or
/// all `f`); such tokens cannot be replied to.
pub fn is_dummy_reply_token(token: &str) -> bool {
    let token = token.trim();
    token.is_empty()
        || token.bytes().all(|b| b == b'0')
        || token.bytes().all(|b| b.eq_ignore_ascii_case(&b'f'))
}

/// Authenticates and parses one webhook call. `hmac_sha256(key, data)` computes the MAC and
/// `now_millis` is the host's clock (recorded with reply tokens).
///
/// # Errors
///
/// `misconfigured` without `channel_secret`, `unauthorized` for a missing or wrong
/// `x-line-signature`, `bad-request` for a method other than POST or a body that is not a LINE
/// webhook object.
pub fn handle_webhook(
    req: &HttpRequest,
    settings: &[(String, String)],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
    now_millis: u64,
) -> Result<WebhookOutcome, WebhookError> {
    let s = Settings::new(settings);
    let secret = s
        .require("channel_secret")
        .map_err(WebhookError::Misconfigured)?;
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(WebhookError::BadRequest(format!(
            "LINE webhooks use POST, not {}",
            req.method
        )));
    }
    let Some(sent) = header(&req.headers, "x-line-signature") else {
        return Err(WebhookError::Unauthorized(
            "missing x-line-signature header".to_string(),
        ));
    };
    let expected = signature(secret, &req.body, hmac_sha256);
    if !ct_eq(sent.trim().as_bytes(), expected.as_bytes()) {
        return Err(WebhookError::Unauthorized(
            "x-line-signature does not match the body (check channel_secret)".to_string(),
        ));
    }
    let body: Value = plugboard_sdk::json::parse(&req.body)
        .map_err(|e| WebhookError::BadRequest(format!("LINE webhook: {e}")))?;
    let (events, ignored) = parse_events(&body, now_millis)?;
    for reason in ignored {
        plugboard_sdk::host::log(
            plugboard_sdk::host::Level::Info,
            &format!("line: ignored an authentic event: {reason}"),
            &[],
        );
    }
    Ok(WebhookOutcome {
        events,
        response: http::ok(),
    })
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// A number or string field as text (LINE sends ids as strings, coordinates as numbers).
fn scalar_at(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Turns an authentic webhook body into events, plus the reasons for every event it skipped
/// (for logging). `now_millis` is recorded next to each reply token.
///
/// # Errors
///
/// `bad-request` when the body is not an object with an `events` array.
pub fn parse_events(
    body: &Value,
    now_millis: u64,
) -> Result<(Vec<Event>, Vec<String>), WebhookError> {
    let bad = |m: &str| WebhookError::BadRequest(format!("LINE webhook: {m}"));
    if !body.is_object() {
        return Err(bad("the body is not a JSON object"));
    }
    let list = body
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `events` array"))?;
    let destination = str_at(body, &["destination"]).unwrap_or_default();
    let mut events = Vec::new();
    let mut ignored = Vec::new();
    for event in list {
        let kind = str_at(event, &["type"]).unwrap_or("(none)");
        let source = event.get("source").unwrap_or(&Value::Null);
        let user = str_at(source, &["userId"]);
        // The conversation's address: the group or room for group chats, else the user.
        let address = match str_at(source, &["type"]) {
            Some("group") => str_at(source, &["groupId"]).or(user),
            Some("room") => str_at(source, &["roomId"]).or(user),
            _ => user,
        };
        let dummy_token = str_at(event, &["replyToken"]).is_some_and(is_dummy_reply_token);
        if dummy_token {
            // Older "Verify" calls sent sample events with all-0 / all-f reply tokens from a
            // made-up user; real events never carry such tokens.
            ignored.push(format!(
                "`{kind}` event with a dummy reply token (a Verify call)"
            ));
            continue;
        }
        match kind {
            "message" => match message_event(event, address, destination, now_millis) {
                Ok(message) => events.push(Event::Message(message)),
                Err(reason) => ignored.push(reason),
            },
            // LINE redelivers with the same `webhookEventId`: the host applies each once.
            "follow" | "unfollow" => match user {
                Some(user) => {
                    let change = OptChange {
                        address: user.to_string(),
                        provider_id: str_at(event, &["webhookEventId"]).map(str::to_string),
                    };
                    events.push(if kind == "follow" {
                        Event::OptIn(change)
                    } else {
                        Event::OptOut(change)
                    });
                }
                None => ignored.push(format!("{kind} event without source.userId")),
            },
            other => ignored.push(format!("event type `{other}` is not handled")),
        }
    }
    Ok((events, ignored))
}

/// The `thread` facts of an event: its reply token and when it arrived, unless the token is a
/// dummy or the event is a redelivery (whose token has long expired).
pub fn thread_facts(event: &Value, now_millis: u64) -> Vec<(String, String)> {
    let redelivery = event
        .get("deliveryContext")
        .and_then(|d| d.get("isRedelivery"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match str_at(event, &["replyToken"]) {
        Some(token) if !redelivery && !is_dummy_reply_token(token) => vec![
            (THREAD_REPLY_TOKEN.to_string(), token.to_string()),
            (THREAD_REPLY_TOKEN_AT.to_string(), now_millis.to_string()),
        ],
        _ => Vec::new(),
    }
}

/// One `message` event as an inbound message, or why it is skipped.
fn message_event(
    event: &Value,
    address: Option<&str>,
    destination: &str,
    now_millis: u64,
) -> Result<InboundMessage, String> {
    let message = event
        .get("message")
        .filter(|m| m.is_object())
        .ok_or("message event without `message`")?;
    let message_id = scalar_at(message, "id");
    let provider_id = str_at(event, &["webhookEventId"])
        .map(str::to_string)
        .or_else(|| message_id.clone())
        .ok_or("message event without webhookEventId or message.id")?;
    let from = address.ok_or("message event without a source user, group or room")?;
    let kind = str_at(message, &["type"]).unwrap_or("(none)");
    let mut text = None;
    let mut attachments = Vec::new();
    match kind {
        "text" => text = str_at(message, &["text"]).map(str::to_string),
        "image" | "video" | "audio" | "file" => {
            let external = (str_at(message, &["contentProvider", "type"]) == Some("external"))
                .then(|| str_at(message, &["contentProvider", "originalContentUrl"]))
                .flatten();
            let url = match (external, &message_id) {
                (Some(url), _) => url.to_string(),
                (None, Some(id)) => format!("{CONTENT_BASE}/v2/bot/message/{id}/content"),
                (None, None) => return Err(format!("{kind} message without message.id")),
            };
            attachments.push(Attachment {
                url,
                content_type: None,
            });
        }
        "sticker" => {
            let package = scalar_at(message, "packageId").unwrap_or_default();
            let sticker = scalar_at(message, "stickerId").unwrap_or_default();
            text = Some(format!("[sticker {package}/{sticker}]"));
        }
        "location" => text = Some(location_text(message)),
        other => return Err(format!("message type `{other}` is not handled")),
    }
    Ok(InboundMessage {
        provider_id,
        from: from.to_string(),
        to: destination.to_string(),
        text,
        attachments,
        contact_name: None,
        thread: thread_facts(event, now_millis),
    })
}

/// The text standing for a location message: `[location] title, address (lat, long)`.
pub fn location_text(message: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["title", "address"] {
        if let Some(v) = str_at(message, &[key]) {
            parts.push(v.to_string());
        }
    }
    let mut text = format!("[location] {}", parts.join(", "));
    if let (Some(lat), Some(long)) = (
        scalar_at(message, "latitude"),
        scalar_at(message, "longitude"),
    ) {
        if !parts.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("({lat}, {long})"));
    }
    text.trim_end().to_string()
}

/// How a message goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /v2/bot/message/reply` with this reply token (free, single use, short-lived).
    Reply(String),
    /// `POST /v2/bot/message/push` to the conversation's address (costs quota, no window).
    Push,
}

/// Chooses reply or push: reply only when the thread holds a reply token that is not a dummy,
/// the conversation's last inbound message is younger than [`REPLY_WINDOW_SECS`], and (when the
/// thread records it) the token itself was received less than that long ago by `now_millis`.
pub fn choose_route(
    thread: &[(String, String)],
    since_last_inbound: Option<u64>,
    now_millis: u64,
) -> Route {
    let fact = |name: &str| {
        thread
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
    };
    let Some(token) = fact(THREAD_REPLY_TOKEN).filter(|t| !is_dummy_reply_token(t)) else {
        return Route::Push;
    };
    let fresh_inbound = since_last_inbound.is_some_and(|s| s < REPLY_WINDOW_SECS);
    let fresh_token = match fact(THREAD_REPLY_TOKEN_AT).map(str::parse::<u64>) {
        Some(Ok(at)) => now_millis.saturating_sub(at) < REPLY_WINDOW_SECS * 1000,
        Some(Err(_)) => false,
        None => true,
    };
    if fresh_inbound && fresh_token {
        Route::Reply(token.to_string())
    } else {
        Route::Push
    }
}

/// A UUID-shaped `X-Line-Retry-Key` derived from the outbound id and the push's body (both the
/// same on every one of the host's attempts, so LINE accepts a push at most once): the first
/// 16 bytes of SHA-256 over them with the RFC 9562 version 8 and variant bits set. The body
/// (recipient and messages) is in it so that an id used again for another message (a data
/// directory restored from a backup, or started afresh, within LINE's 24 hours) does not
/// collide and get that message dropped as already accepted.
pub fn retry_key(outbound_id: &str, body: &str, sha256: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let digest = sha256(format!("plugboard-line-retry-key:{outbound_id}\n{body}").as_bytes());
    let mut b = [0u8; 16];
    for (dst, src) in b.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = plugboard_sdk::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether an attachment is an image LINE can show, by its MIME type or, without one, by the
/// URL's extension.
fn is_image(a: &Attachment) -> bool {
    match a.content_type.as_deref() {
        Some(ct) => ct.trim().to_ascii_lowercase().starts_with("image/"),
        None => {
            let path = plugboard_sdk::query::split(&a.url).0.to_ascii_lowercase();
            [".jpg", ".jpeg", ".png"].iter().any(|e| path.ends_with(e))
        }
    }
}

/// The LINE message objects for an outbound message: its text, then one image message per
/// attachment.
///
/// # Errors
///
/// `invalid` for no content, text over [`MAX_TEXT_CHARS`], an attachment that is not an HTTPS
/// image, or more than [`MAX_MESSAGES`] messages.
pub fn messages(msg: &OutboundMessage) -> Result<Vec<Value>, SendError> {
    let mut out = Vec::new();
    if let Some(text) = msg.text.as_deref().filter(|t| !t.trim().is_empty()) {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(SendError::Invalid(format!(
                "LINE text messages hold at most {MAX_TEXT_CHARS} characters; this one has {chars}"
            )));
        }
        out.push(json!({"type": "text", "text": text}));
    }
    for a in &msg.attachments {
        if !a.url.starts_with("https://") {
            return Err(SendError::Invalid(format!(
                "LINE fetches media over HTTPS only; {} is not an https URL",
                a.url
            )));
        }
        if !is_image(a) {
            return Err(SendError::Invalid(format!(
                "LINE channel sends images (JPEG/PNG) only; {} is not one",
                a.url
            )));
        }
        out.push(json!({
            "type": "image",
            "originalContentUrl": a.url,
            "previewImageUrl": a.url,
        }));
    }
    if out.is_empty() {
        return Err(SendError::Invalid(
            "nothing to send: the message has no text and no attachments".to_string(),
        ));
    }
    if out.len() > MAX_MESSAGES {
        return Err(SendError::Invalid(format!(
            "LINE sends at most {MAX_MESSAGES} messages per request; this one needs {}",
            out.len()
        )));
    }
    Ok(out)
}

/// The API base URL without a trailing slash.
fn api_base<'a>(s: &Settings<'a>) -> &'a str {
    s.get_or("api_base", DEFAULT_API_BASE).trim_end_matches('/')
}

/// Builds the reply or push request for `msg` (see [`choose_route`]).
///
/// # Errors
///
/// `misconfigured` without `channel_access_token`; `invalid` for a message LINE cannot take
/// (see [`messages`]) or without a recipient.
pub fn prepare_send(
    msg: &OutboundMessage,
    settings: &[(String, String)],
    now_millis: u64,
    sha256: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<HttpRequest, SendError> {
    let s = Settings::new(settings);
    let token = s
        .require("channel_access_token")
        .map_err(SendError::Misconfigured)?;
    let messages = messages(msg)?;
    let mut headers = vec![
        http::bearer(token),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let (path, body) = match choose_route(&msg.thread, msg.since_last_inbound, now_millis) {
        Route::Reply(reply_token) => (
            "reply",
            json!({"replyToken": reply_token, "messages": messages}),
        ),
        Route::Push => {
            let to = msg.to.trim();
            if to.is_empty() {
                return Err(SendError::Invalid(
                    "no LINE user, group or room to push to".to_string(),
                ));
            }
            let body = json!({"to": to, "messages": messages});
            let key = retry_key(&msg.id, &body.to_string(), sha256);
            headers.push(("X-Line-Retry-Key".to_string(), key));
            ("push", body)
        }
    };
    Ok(http::request(
        "POST",
        format!("{}/v2/bot/message/{path}", api_base(&s)),
        headers,
        body.to_string(),
    ))
}

/// The first `sentMessages[].id` of a LINE answer.
fn sent_message_id(body: &Value) -> Option<String> {
    body.get("sentMessages")?
        .as_array()?
        .first()
        .and_then(|m| scalar_at(m, "id"))
}

/// Reads the answer to a reply or push: `sentMessages[0].id`. LINE's reply endpoint answered
/// `{}` before it returned `sentMessages`; such a success gets a synthetic id
/// `line-request-<X-Line-Request-Id>` (or `line-reply-<random hex>` without that header), since
/// the contract does not pass the outbound id to this function. A `409` (the retry key was
/// already accepted: an earlier attempt went through) is a success too.
///
/// # Errors
///
/// See [`map_error`].
pub fn read_send_response(
    resp: &HttpResponse,
    random_bytes: impl Fn() -> Vec<u8>,
) -> Result<String, SendError> {
    let accepted = http::is_success(resp.status) || resp.status == 409;
    if !accepted {
        return Err(map_error(resp));
    }
    let body: Option<Value> = plugboard_sdk::json::parse(&resp.body).ok();
    if let Some(id) = body.as_ref().and_then(sent_message_id) {
        return Ok(id);
    }
    let request_id = if resp.status == 409 {
        header(&resp.headers, "x-line-accepted-request-id")
    } else {
        header(&resp.headers, "x-line-request-id")
    };
    if let Some(id) = request_id.map(str::trim).filter(|id| !id.is_empty()) {
        return Ok(format!("line-request-{id}"));
    }
    let hex = plugboard_sdk::hex(&random_bytes());
    Ok(format!("line-reply-{hex}"))
}

/// Maps a failed LINE API answer to a send error; messages carry LINE's `message` and
/// `details` (`LINE HTTP 400: The request body has 1 error(s) (messages[0].text: ...)`).
///
/// * `400 Invalid reply token` => `rate-limited` with a retry after [`REPLY_WINDOW_SECS`]: the
///   token expired early (community tests saw about 30 s) or was spent, and the contract has
///   no "retry as push" error. After that delay the token is older than the reply window, so
///   the host's retry goes out as a push.
/// * 401, 403 => `unauthorized`; 429 => `rate-limited` (with `Retry-After` when present);
///   5xx => `unavailable`; other 4xx => `invalid`; anything else => `unavailable`.
pub fn map_error(resp: &HttpResponse) -> SendError {
    let status = resp.status;
    let body: Option<Value> = plugboard_sdk::json::parse(&resp.body).ok();
    let message = body
        .as_ref()
        .and_then(|b| str_at(b, &["message"]))
        .map(str::to_string);
    let details: Vec<String> = body
        .as_ref()
        .and_then(|b| b.get("details"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|d| {
                    let m = str_at(d, &["message"]).unwrap_or_default();
                    match str_at(d, &["property"]) {
                        Some(p) => format!("{p}: {m}"),
                        None => m.to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut text = message.clone().unwrap_or_else(|| {
        String::from_utf8_lossy(&resp.body)
            .chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string()
    });
    if !details.is_empty() {
        text = format!("{text} ({})", details.join("; "));
    }
    let description = if text.is_empty() {
        format!("LINE HTTP {status}")
    } else {
        format!("LINE HTTP {status}: {text}")
    };
    let invalid_reply_token = message
        .as_deref()
        .is_some_and(|m| m.to_ascii_lowercase().contains("invalid reply token"));
    if status == 400 && invalid_reply_token {
        return SendError::RateLimited(Some(REPLY_WINDOW_SECS as u32));
    }
    http::send_error(resp, description)
}

/// The credential check: `GET {api_base}/v2/bot/info` with the channel access token.
///
/// # Errors
///
/// `misconfigured` without `channel_access_token`.
pub fn prepare_check(settings: &[(String, String)]) -> Result<HttpRequest, SendError> {
    let s = Settings::new(settings);
    let token = s
        .require("channel_access_token")
        .map_err(SendError::Misconfigured)?;
    Ok(http::bearer_get(
        format!("{}/v2/bot/info", api_base(&s)),
        token,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::{hmac_sha256, pairs, sha256};

    const SECRET: &str = "8c570fa6dd201bb328f1c1eac23a96d8";
    const NOW: u64 = 1_735_689_600_000;

    fn settings() -> Vec<(String, String)> {
        pairs(&[
            ("channel_secret", SECRET),
            ("channel_access_token", "tok"),
            ("api_base", "http://127.0.0.1:9999/"),
        ])
    }

    fn webhook(body: &str, sig: Option<&str>) -> HttpRequest {
        let headers = sig
            .map(|s| vec![("X-Line-Signature".to_string(), s.to_string())])
            .unwrap_or_default();
        http::request(
            "POST",
            "https://hooks.example.com/webhooks/line",
            headers,
            body.as_bytes().to_vec(),
        )
    }

    fn signed(body: &str) -> HttpRequest {
        webhook(body, Some(&signature(SECRET, body.as_bytes(), hmac_sha256)))
    }

    const TEXT: &str = r#"{"destination":"U123","events":[{"replyToken":"nHuyWiB7yP5Zw52FIkcQobQuGDXCTA","type":"message","mode":"active","timestamp":1462629479859,"source":{"type":"user","userId":"U206d25c2ea6bd87c17655609a1c37cb8"},"webhookEventId":"testwebhookeventid","deliveryContext":{"isRedelivery":false},"message":{"id":"325708","type":"text","text":"Hello, world","quoteToken":"quoteToken"}}]}"#;

    #[test]
    fn text_message_with_reply_token() {
        let out = handle_webhook(&signed(TEXT), &settings(), hmac_sha256, NOW).unwrap();
        assert_eq!(out.response.status, 200);
        let [Event::Message(m)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(m.provider_id, "testwebhookeventid");
        assert_eq!(m.from, "U206d25c2ea6bd87c17655609a1c37cb8");
        assert_eq!(m.to, "U123");
        assert_eq!(m.text.as_deref(), Some("Hello, world"));
        assert_eq!(
            m.thread,
            pairs(&[
                ("once:reply_token", "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA"),
                ("once:reply_token_at", "1735689600000")
            ])
        );
        // Redeliveries keep no reply token.
        let redelivered = TEXT.replace(r#""isRedelivery":false"#, r#""isRedelivery":true"#);
        let out = handle_webhook(&signed(&redelivered), &settings(), hmac_sha256, NOW).unwrap();
        let [Event::Message(m)] = out.events.as_slice() else {
            panic!()
        };
        assert!(m.thread.is_empty());
    }

    #[test]
    fn signature_checks() {
        let unauthorized = |req: HttpRequest| {
            matches!(
                handle_webhook(&req, &settings(), hmac_sha256, NOW),
                Err(WebhookError::Unauthorized(_))
            )
        };
        assert!(unauthorized(webhook(TEXT, None)));
        assert!(unauthorized(webhook(TEXT, Some("AAAA"))));
        let good = signed(TEXT);
        assert!(unauthorized(webhook(
            &TEXT.replace("Hello", "Hallo"),
            Some(&good.headers[0].1)
        )));
        let mut lower = good.clone();
        lower.headers[0].0 = "x-line-signature".into();
        assert!(handle_webhook(&lower, &settings(), hmac_sha256, NOW).is_ok());
        assert!(matches!(
            handle_webhook(&good, &pairs(&[]), hmac_sha256, NOW),
            Err(WebhookError::Misconfigured(m)) if m.contains("channel_secret")
        ));
        assert!(matches!(
            handle_webhook(&signed("{\"events\":"), &settings(), hmac_sha256, NOW),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn verify_call_and_event_kinds() {
        let verify = r#"{"destination":"Uxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","events":[]}"#;
        let out = handle_webhook(&signed(verify), &settings(), hmac_sha256, NOW).unwrap();
        assert!(out.events.is_empty());
        assert_eq!(out.response.status, 200);
        let body = json!({"destination": "U1", "events": [
            {"type": "message", "webhookEventId": "E0", "replyToken": "00000000000000000000000000000000",
             "source": {"type": "user", "userId": "Udeadbeefdeadbeefdeadbeefdeadbeef"},
             "message": {"id": "100001", "type": "text", "text": "Hello, world"}},
            {"type": "message", "webhookEventId": "E1",
             "source": {"type": "user", "userId": "U2"}, "message": {"id": "1", "type": "image",
             "contentProvider": {"type": "line"}}},
            {"type": "message", "webhookEventId": "E2",
             "source": {"type": "group", "groupId": "C9", "userId": "U2"},
             "message": {"id": "2", "type": "sticker", "packageId": "446", "stickerId": "1988"}},
            {"type": "message", "webhookEventId": "E3", "source": {"type": "room", "roomId": "R7"},
             "message": {"id": "3", "type": "location", "title": "my location",
             "address": "Tokyo", "latitude": 35.65910807942215, "longitude": 139.70372892916203}},
            {"type": "follow", "webhookEventId": "E4", "source": {"type": "user", "userId": "U3"}},
            {"type": "unfollow", "source": {"type": "user", "userId": "U4"}},
            {"type": "join", "source": {"type": "group", "groupId": "C9"}},
        ]});
        let (events, ignored) = parse_events(&body, NOW).unwrap();
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        assert_eq!(events.len(), 5);
        let Event::Message(image) = &events[0] else {
            panic!()
        };
        assert_eq!(
            image.attachments[0].url,
            "https://api-data.line.me/v2/bot/message/1/content"
        );
        assert_eq!(image.text, None);
        assert!(image.thread.is_empty());
        let Event::Message(sticker) = &events[1] else {
            panic!()
        };
        assert_eq!(sticker.from, "C9");
        assert_eq!(sticker.text.as_deref(), Some("[sticker 446/1988]"));
        assert!(sticker.thread.is_empty());
        let Event::Message(location) = &events[2] else {
            panic!()
        };
        assert_eq!(location.from, "R7");
        assert_eq!(
            location.text.as_deref(),
            Some("[location] my location, Tokyo (35.65910807942215, 139.70372892916203)")
        );
        assert!(
            matches!(&events[3], Event::OptIn(c) if c.address == "U3" && c.provider_id.as_deref() == Some("E4"))
        );
        assert!(
            matches!(&events[4], Event::OptOut(c) if c.address == "U4" && c.provider_id.is_none())
        );
    }

    fn outbound(thread: &[(&str, &str)], since: Option<u64>) -> OutboundMessage {
        OutboundMessage {
            id: "conv7-3".into(),
            to: "U206d25c2ea6bd87c17655609a1c37cb8".into(),
            text: Some("Thanks!".into()),
            attachments: Vec::new(),
            thread: pairs(thread),
            since_last_inbound: since,
            token: None,
        }
    }

    #[test]
    fn reply_or_push() {
        let fresh = [
            ("once:reply_token", "abc"),
            ("once:reply_token_at", "1735689590000"),
        ];
        let t = pairs(&fresh);
        assert_eq!(choose_route(&t, Some(10), NOW), Route::Reply("abc".into()));
        assert_eq!(choose_route(&t, Some(49), NOW), Route::Reply("abc".into()));
        assert_eq!(choose_route(&t, Some(50), NOW), Route::Push);
        assert_eq!(choose_route(&t, None, NOW), Route::Push);
        // The token's own age counts too.
        assert_eq!(choose_route(&t, Some(1), NOW + 45_000), Route::Push);
        assert_eq!(
            choose_route(&pairs(&[("once:reply_token", "abc")]), Some(3), NOW),
            Route::Reply("abc".into())
        );
        assert_eq!(
            choose_route(
                &pairs(&[("once:reply_token", "00000000000000000000000000000000")]),
                Some(1),
                NOW
            ),
            Route::Push
        );
        assert_eq!(choose_route(&[], Some(1), NOW), Route::Push);

        let req = prepare_send(&outbound(&fresh, Some(10)), &settings(), NOW, sha256).unwrap();
        assert_eq!(req.url, "http://127.0.0.1:9999/v2/bot/message/reply");
        assert_eq!(header(&req.headers, "authorization"), Some("Bearer tok"));
        assert_eq!(header(&req.headers, "x-line-retry-key"), None);
        let body: Value = plugboard_sdk::serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            json!({"replyToken": "abc", "messages": [{"type": "text", "text": "Thanks!"}]})
        );

        let req = prepare_send(&outbound(&fresh, Some(120)), &settings(), NOW, sha256).unwrap();
        assert_eq!(req.url, "http://127.0.0.1:9999/v2/bot/message/push");
        let key = header(&req.headers, "x-line-retry-key").unwrap();
        assert_eq!(
            key,
            retry_key("conv7-3", &String::from_utf8_lossy(&req.body), sha256)
        );
        let again = prepare_send(&outbound(&fresh, Some(130)), &settings(), NOW, sha256).unwrap();
        assert_eq!(header(&again.headers, "x-line-retry-key"), Some(key));
        assert_eq!(key.len(), 36);
        assert_eq!(&key[14..15], "8");
        let body: Value = plugboard_sdk::serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["to"], "U206d25c2ea6bd87c17655609a1c37cb8");
        let body = String::from_utf8_lossy(&req.body).into_owned();
        assert_ne!(retry_key("conv7-4", &body, sha256), key);
        let mut other_text = outbound(&fresh, Some(120));
        other_text.text = Some("Another message, same id".into());
        let other = prepare_send(&other_text, &settings(), NOW, sha256).unwrap();
        assert_ne!(header(&other.headers, "x-line-retry-key"), Some(key));
    }

    #[test]
    fn message_objects() {
        let mut msg = outbound(&[], None);
        msg.attachments.push(Attachment {
            url: "https://cdn.example.com/a.png".into(),
            content_type: None,
        });
        assert_eq!(
            messages(&msg).unwrap()[1],
            json!({"type": "image", "originalContentUrl": "https://cdn.example.com/a.png",
                   "previewImageUrl": "https://cdn.example.com/a.png"})
        );
        msg.attachments[0].url = "http://cdn.example.com/a.png".into();
        assert!(matches!(messages(&msg), Err(SendError::Invalid(_))));
        msg.attachments[0] = Attachment {
            url: "https://cdn.example.com/a.pdf".into(),
            content_type: Some("application/pdf".into()),
        };
        assert!(matches!(messages(&msg), Err(SendError::Invalid(_))));
        msg.attachments.clear();
        msg.text = Some("x".repeat(5001));
        assert!(matches!(messages(&msg), Err(SendError::Invalid(_))));
        msg.text = None;
        assert!(matches!(messages(&msg), Err(SendError::Invalid(_))));
        assert!(matches!(
            prepare_send(&outbound(&[], None), &pairs(&[]), NOW, sha256),
            Err(SendError::Misconfigured(m)) if m.contains("channel_access_token")
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
        let random = || vec![0xab; 4];
        assert_eq!(
            read_send_response(
                &resp(
                    200,
                    r#"{"sentMessages":[{"id":"461230966842064897","quoteToken":"q"}]}"#,
                    &[]
                ),
                random
            )
            .unwrap(),
            "461230966842064897"
        );
        assert_eq!(
            read_send_response(&resp(200, "{}", &[("X-Line-Request-Id", "req-1")]), random)
                .unwrap(),
            "line-request-req-1"
        );
        assert_eq!(
            read_send_response(&resp(200, "{}", &[]), random).unwrap(),
            "line-reply-abababab"
        );
        assert_eq!(
            read_send_response(
                &resp(
                    409,
                    r#"{"message":"The retry key is already accepted"}"#,
                    &[("x-line-accepted-request-id", "acc-9")]
                ),
                random
            )
            .unwrap(),
            "line-request-acc-9"
        );
        let err = |status, body: &str, headers: &[(&str, &str)]| {
            read_send_response(&resp(status, body, headers), random).unwrap_err()
        };
        assert_eq!(
            err(400, r#"{"message":"Invalid reply token"}"#, &[]),
            SendError::RateLimited(Some(50))
        );
        assert_eq!(
            err(
                400,
                r#"{"message":"The request body has 1 error(s)","details":[{"message":"must be specified","property":"messages[0].text"}]}"#,
                &[]
            ),
            SendError::Invalid(
                "LINE HTTP 400: The request body has 1 error(s) (messages[0].text: must be specified)"
                    .into()
            )
        );
        assert!(matches!(
            err(
                401,
                r#"{"message":"Authentication failed due to the following reason: invalid token. Confirm that the access token in the authorization header is valid."}"#,
                &[]
            ),
            SendError::Unauthorized(_)
        ));
        assert_eq!(
            err(
                429,
                r#"{"message":"Too Many Requests"}"#,
                &[("Retry-After", "2")]
            ),
            SendError::RateLimited(Some(2))
        );
        assert!(matches!(err(502, "<html>", &[]), SendError::Unavailable(_)));
        let check = prepare_check(&settings()).unwrap();
        assert_eq!(check.method, "GET");
        assert_eq!(check.url, "http://127.0.0.1:9999/v2/bot/info");
    }
}
