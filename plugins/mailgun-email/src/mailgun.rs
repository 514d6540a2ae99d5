//! Mailgun's wire format (providers.md section 7): the manifest, route-forward authentication
//! and parsing, reply threading, the Messages API request and the error mapping.
//!
//! The functions are pure (the host's HMAC and clock are passed in), so everything runs in
//! native tests.

use plugboard_sdk::serde_json::Value;
use plugboard_sdk::types::{
    Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
    SendError, SettingSpec, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{Settings, ct_eq, form, header, http};

use crate::multipart;

/// The Mailgun API base URL used when the `api_base` setting is absent (EU accounts use
/// `https://api.eu.mailgun.net`).
pub const DEFAULT_API_BASE: &str = "https://api.mailgun.net";

/// How far (seconds) a forward's `timestamp` may be from the host's clock.
pub const MAX_SKEW_SECS: u64 = 300;

/// The `thread` fact holding the signature's single-use `token` (the host's replay guard; it is
/// not kept with the conversation).
pub const THREAD_NONCE: &str = "nonce:token";
/// The `thread` fact holding the customer's subject.
pub const THREAD_SUBJECT: &str = "subject";
/// The `thread` fact holding the customer's `Message-Id` (the reply's `In-Reply-To`).
pub const THREAD_MESSAGE_ID: &str = "message_id";
/// The `thread` fact holding the reply's `References` chain.
pub const THREAD_REFERENCES: &str = "references";

/// What the plugin is and which settings it takes.
pub fn manifest() -> Manifest {
    let setting = SettingSpec::new;
    Manifest {
        name: "mailgun-email".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "email".to_string(),
        settings: vec![
            setting(
                "domain",
                true,
                false,
                "The Mailgun sending domain, e.g. mg.example.com",
            ),
            setting(
                "api_key",
                true,
                true,
                "Mailgun API key (Basic auth user `api`) for sending",
            ),
            setting(
                "signing_key",
                true,
                true,
                "HTTP webhook signing key that signs route forwards (older accounts: the API key)",
            ),
            setting(
                "from",
                true,
                false,
                "The From of replies, e.g. Support <support@mg.example.com>",
            ),
            setting(
                "api_base",
                false,
                false,
                "Mailgun API base URL (default https://api.mailgun.net; EU: https://api.eu.mailgun.net)",
            ),
        ],
        api_hosts: vec![
            "api.mailgun.net".to_string(),
            "api.eu.mailgun.net".to_string(),
        ],
        capabilities: Capabilities::empty(),
        rules: plugboard_sdk::rules::opaque(5000),
    }
}

/// The signature Mailgun sends: lowercase hex HMAC-SHA256(signing key, timestamp + token).
pub fn signature(
    signing_key: &str,
    timestamp: &str,
    token: &str,
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> String {
    plugboard_sdk::hex(&hmac_sha256(
        signing_key.as_bytes(),
        format!("{timestamp}{token}").as_bytes(),
    ))
}

/// Reads the form fields of a forward: `multipart/form-data` (text fields) or
/// `application/x-www-form-urlencoded` (also assumed without a `Content-Type`).
///
/// # Errors
///
/// `bad-request` for a body that does not decode.
pub fn fields(req: &HttpRequest) -> Result<Vec<(String, String)>, WebhookError> {
    let content_type = header(&req.headers, "content-type").unwrap_or_default();
    if content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        multipart::parse(content_type, &req.body)
            .map_err(|e| WebhookError::BadRequest(format!("Mailgun forward: {e}")))
    } else {
        form::parse(&req.body)
            .map_err(|e| WebhookError::BadRequest(format!("Mailgun forward: {e}")))
    }
}

/// Authenticates and parses one route forward. `hmac_sha256(key, data)` computes the MAC and
/// `now_millis` is the host's clock.
///
/// # Errors
///
/// `misconfigured` without `signing_key`; `unauthorized` for missing signature fields, a wrong
/// signature or a timestamp more than [`MAX_SKEW_SECS`] from now (`stale`); `bad-request` for
/// another method, a body that does not decode, or a message without a sender.
pub fn handle_webhook(
    req: &HttpRequest,
    settings: &[(String, String)],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
    now_millis: u64,
) -> Result<WebhookOutcome, WebhookError> {
    let s = Settings::new(settings);
    let key = s
        .require("signing_key")
        .map_err(WebhookError::Misconfigured)?;
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(WebhookError::BadRequest(format!(
            "Mailgun forwards use POST, not {}",
            req.method
        )));
    }
    let fields = fields(req)?;
    let get = |name: &str| {
        form::get(&fields, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let (Some(timestamp), Some(token), Some(sent)) =
        (get("timestamp"), get("token"), get("signature"))
    else {
        return Err(WebhookError::Unauthorized(
            "missing timestamp, token or signature field".to_string(),
        ));
    };
    let expected = signature(key, timestamp, token, hmac_sha256);
    if !ct_eq(sent.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
        return Err(WebhookError::Unauthorized(
            "signature does not match timestamp + token (check signing_key)".to_string(),
        ));
    }
    let Ok(ts) = timestamp.parse::<u64>() else {
        return Err(WebhookError::Unauthorized(
            "timestamp is not Unix seconds".to_string(),
        ));
    };
    let now = now_millis / 1000;
    if now.abs_diff(ts) > MAX_SKEW_SECS {
        return Err(WebhookError::Unauthorized(format!(
            "stale timestamp: {ts} is {}s from now (at most {MAX_SKEW_SECS}s allowed)",
            now.abs_diff(ts)
        )));
    }
    let message = inbound_message(&fields, token)?;
    Ok(WebhookOutcome {
        events: vec![Event::Message(message)],
        response: http::ok(),
    })
}

/// Splits an address header value into the lower-case email address and the display name:
/// `"Doe, Jane" <Jane@Example.com>` gives (`jane@example.com`, `Doe, Jane`). `None` without an
/// address.
pub fn parse_address(value: &str) -> Option<(String, Option<String>)> {
    let value = value.trim();
    let (name, address) = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            (value[..open].trim(), value[open + 1..close].trim())
        }
        _ => ("", value),
    };
    if !address.contains('@') || address.contains(char::is_whitespace) {
        return None;
    }
    let name = name.trim_matches('"').trim();
    Some((
        address.to_ascii_lowercase(),
        (!name.is_empty()).then(|| name.to_string()),
    ))
}

/// The text of a reply without the quoted history: drops lines starting with `>`, and
/// everything from an attribution line (`On <date>, <someone> wrote:`, possibly wrapped over
/// two lines) or an Outlook `-----Original Message-----` separator.
pub fn trim_quoted(body: &str) -> String {
    let lines: Vec<&str> = body.lines().collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
        let attribution = t.starts_with("On ")
            && (t.ends_with("wrote:") || (!next.is_empty() && next.ends_with("wrote:")));
        if attribution || t.eq_ignore_ascii_case("-----Original Message-----") {
            break;
        }
        if t.starts_with('>') {
            continue;
        }
        out.push(line.trim_end());
    }
    out.join("\n").trim().to_string()
}

/// The value of header `name` in Mailgun's `message-headers` JSON (`[[name, value], ...]`).
fn message_header(headers: &Value, name: &str) -> Option<String> {
    headers.as_array()?.iter().find_map(|pair| {
        let pair = pair.as_array()?;
        let n = pair.first()?.as_str()?;
        let v = pair.get(1)?.as_str()?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Builds the inbound message from authentic forward fields; `token` is the provider-id
/// fallback when the message has no `Message-Id`.
///
/// # Errors
///
/// `bad-request` when neither `from` nor `sender` holds an address.
pub fn inbound_message(
    fields: &[(String, String)],
    token: &str,
) -> Result<InboundMessage, WebhookError> {
    let get = |name: &str| {
        form::get(fields, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let (from, contact_name) = get("from")
        .and_then(parse_address)
        .or_else(|| get("sender").and_then(parse_address))
        .ok_or_else(|| {
            WebhookError::BadRequest("Mailgun forward without a from or sender address".into())
        })?;
    let headers: Value = get("message-headers")
        .and_then(|h| plugboard_sdk::serde_json::from_str(h).ok())
        .unwrap_or(Value::Null);
    let message_id = message_header(&headers, "Message-Id")
        .or_else(|| get("Message-Id").map(str::to_string))
        .filter(|m| !m.is_empty());
    let references = message_header(&headers, "References").filter(|r| !r.is_empty());
    let text = match get("stripped-text") {
        Some(stripped) => stripped.replace("\r\n", "\n"),
        None => trim_quoted(form::get(fields, "body-plain").unwrap_or_default()),
    };
    // The signature covers only timestamp + token: the host refuses a second message under the
    // same token (a replayed signature), and a `nonce:` fact is how a plugin says so.
    let mut thread = vec![(THREAD_NONCE.to_string(), token.to_string())];
    if let Some(subject) = get("subject") {
        thread.push((THREAD_SUBJECT.to_string(), subject.to_string()));
    }
    if let Some(id) = &message_id {
        thread.push((THREAD_MESSAGE_ID.to_string(), id.clone()));
    }
    let chain = match (references, &message_id) {
        (Some(r), Some(id)) => Some(format!("{r} {id}")),
        (Some(r), None) => Some(r),
        (None, Some(id)) => Some(id.clone()),
        (None, None) => None,
    };
    if let Some(chain) = chain {
        thread.push((THREAD_REFERENCES.to_string(), chain));
    }
    let to = get("recipient")
        .map(|r| r.split(',').next().unwrap_or(r).trim().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(InboundMessage {
        provider_id: message_id.unwrap_or_else(|| token.to_string()),
        from,
        to,
        text: (!text.is_empty()).then_some(text),
        attachments: Vec::new(),
        contact_name,
        thread,
    })
}

/// The reply's subject: `Re: ` + the customer's subject, unless it already starts with `Re:`.
pub fn reply_subject(subject: Option<&str>) -> String {
    match subject.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.len() >= 3 && s[..3].eq_ignore_ascii_case("re:") => s.to_string(),
        Some(s) => format!("Re: {s}"),
        None => "Re: (no subject)".to_string(),
    }
}

fn api_base<'a>(s: &Settings<'a>) -> &'a str {
    s.get_or("api_base", DEFAULT_API_BASE).trim_end_matches('/')
}

/// Builds the Messages API request for `msg`, threaded onto the customer's last email.
///
/// # Errors
///
/// `misconfigured` without `domain`, `api_key` or `from`; `invalid` without text, with
/// attachments (not supported by this channel), or with a recipient that is not an address.
pub fn prepare_send(
    msg: &OutboundMessage,
    settings: &[(String, String)],
) -> Result<HttpRequest, SendError> {
    let s = Settings::new(settings);
    let require = |name: &str| s.require(name).map_err(SendError::Misconfigured);
    let domain = require("domain")?;
    let api_key = require("api_key")?;
    let from = require("from")?;
    if !msg.attachments.is_empty() {
        return Err(SendError::Invalid(
            "the Mailgun email channel sends text only; attachments are not supported".into(),
        ));
    }
    let text = msg
        .text
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| SendError::Invalid("nothing to send: the message has no text".into()))?;
    let to = msg.to.trim();
    if !to.contains('@') {
        return Err(SendError::Invalid(format!(
            "{to:?} is not an email address"
        )));
    }
    let fact = |name: &str| {
        msg.thread
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let subject = reply_subject(fact(THREAD_SUBJECT));
    let mut fields = vec![
        ("from", from),
        ("to", to),
        ("subject", subject.as_str()),
        ("text", text),
    ];
    if let Some(id) = fact(THREAD_MESSAGE_ID) {
        fields.push(("h:In-Reply-To", id));
    }
    if let Some(references) = fact(THREAD_REFERENCES).or(fact(THREAD_MESSAGE_ID)) {
        fields.push(("h:References", references));
    }
    Ok(http::request(
        "POST",
        format!("{}/v3/{}/messages", api_base(&s), domain.trim()),
        vec![
            (
                "Authorization".to_string(),
                plugboard_sdk::basic_auth("api", api_key),
            ),
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ],
        form::encode(fields),
    ))
}

/// Reads the Messages API answer: its `id` (the sent email's `Message-Id`).
///
/// # Errors
///
/// See [`map_error`]; `invalid` for a success without an `id`.
pub fn read_send_response(resp: &HttpResponse) -> Result<String, SendError> {
    if !http::is_success(resp.status) {
        return Err(map_error(resp));
    }
    let body: Value = plugboard_sdk::json::parse(&resp.body).map_err(|e| {
        SendError::Invalid(format!(
            "Mailgun accepted the message but its answer is unreadable: {e}"
        ))
    })?;
    body.get("id")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| SendError::Invalid("Mailgun accepted the message but gave no id".into()))
}

/// Maps a failed Mailgun answer (`{"message": "..."}` or plain text) to a send error: 401/403
/// => `unauthorized`, 429 => `rate-limited`, 5xx => `unavailable`, other 4xx => `invalid`.
pub fn map_error(resp: &HttpResponse) -> SendError {
    let status = resp.status;
    let body: Option<Value> = plugboard_sdk::json::parse(&resp.body).ok();
    let text = body
        .as_ref()
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&resp.body)
                .chars()
                .take(200)
                .collect()
        });
    let description = format!("Mailgun HTTP {status}: {}", text.trim());
    http::send_error(resp, description)
}

/// The credential check: `GET {api_base}/v3/domains/{domain}` with Basic auth.
///
/// # Errors
///
/// `misconfigured` without `domain` or `api_key`.
pub fn prepare_check(settings: &[(String, String)]) -> Result<HttpRequest, SendError> {
    let s = Settings::new(settings);
    let domain = s.require("domain").map_err(SendError::Misconfigured)?;
    let api_key = s.require("api_key").map_err(SendError::Misconfigured)?;
    Ok(http::request(
        "GET",
        format!("{}/v3/domains/{}", api_base(&s), domain.trim()),
        vec![(
            "Authorization".to_string(),
            plugboard_sdk::basic_auth("api", api_key),
        )],
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::{hmac_sha256, pairs};

    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    const NOW: u64 = 1_735_689_600_000;

    fn settings() -> Vec<(String, String)> {
        pairs(&[
            ("domain", "mg.example.com"),
            ("api_key", "key-api"),
            ("signing_key", KEY),
            ("from", "Support <support@mg.example.com>"),
            ("api_base", "http://127.0.0.1:9999/"),
        ])
    }

    fn forward(extra: &[(&str, &str)], timestamp: &str) -> HttpRequest {
        let token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
        let sig = signature(KEY, timestamp, token, hmac_sha256);
        let mut fields = vec![
            ("timestamp", timestamp.to_string()),
            ("token", token.to_string()),
            ("signature", sig),
        ];
        fields.extend(extra.iter().map(|(a, b)| (*a, b.to_string())));
        http::request(
            "POST",
            "https://hooks.example.com/webhooks/mailgun",
            vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            form::encode(fields),
        )
    }

    const HEADERS: &str = r#"[["Received","by mx"],["Message-Id","<CAF=abc@mail.gmail.com>"],["References","<r1@x> <r2@x>"],["Subject","Order 1234"]]"#;

    #[test]
    fn forward_becomes_a_threaded_message() {
        let req = forward(
            &[
                ("recipient", "support@mg.example.com"),
                ("sender", "bounce@example.org"),
                ("from", "\"Doe, Jane\" <Jane.Doe@Example.org>"),
                ("subject", "Order 1234"),
                (
                    "body-plain",
                    "Where is it?\r\n\r\nOn Tue, Jan 1, 2025 at 9:00 AM Support <support@mg.example.com> wrote:\r\n> Thanks",
                ),
                ("message-headers", HEADERS),
            ],
            "1735689590",
        );
        let out = handle_webhook(&req, &settings(), hmac_sha256, NOW).unwrap();
        let [Event::Message(m)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(m.provider_id, "<CAF=abc@mail.gmail.com>");
        assert_eq!(m.from, "jane.doe@example.org");
        assert_eq!(m.contact_name.as_deref(), Some("Doe, Jane"));
        assert_eq!(m.to, "support@mg.example.com");
        assert_eq!(m.text.as_deref(), Some("Where is it?"));
        assert_eq!(
            m.thread,
            pairs(&[
                (
                    THREAD_NONCE,
                    "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
                ),
                ("subject", "Order 1234"),
                ("message_id", "<CAF=abc@mail.gmail.com>"),
                ("references", "<r1@x> <r2@x> <CAF=abc@mail.gmail.com>"),
            ])
        );
    }

    #[test]
    fn signature_and_staleness() {
        let fields = [("from", "a@b.c"), ("body-plain", "hi")];
        assert!(
            handle_webhook(
                &forward(&fields, "1735689600"),
                &settings(),
                hmac_sha256,
                NOW
            )
            .is_ok()
        );
        let stale = handle_webhook(
            &forward(&fields, "1735689299"),
            &settings(),
            hmac_sha256,
            NOW,
        );
        assert!(matches!(stale, Err(WebhookError::Unauthorized(m)) if m.contains("stale")));
        let future = handle_webhook(
            &forward(&fields, "1735689901"),
            &settings(),
            hmac_sha256,
            NOW,
        );
        assert!(matches!(future, Err(WebhookError::Unauthorized(_))));
        let mut tampered = forward(&fields, "1735689600");
        tampered.body = String::from_utf8(tampered.body)
            .unwrap()
            .replace("timestamp=1735689600", "timestamp=1735689601")
            .into_bytes();
        assert!(matches!(
            handle_webhook(&tampered, &settings(), hmac_sha256, NOW),
            Err(WebhookError::Unauthorized(_))
        ));
        let unsigned = http::request("POST", "https://x/", vec![], "from=a%40b.c");
        assert!(matches!(
            handle_webhook(&unsigned, &settings(), hmac_sha256, NOW),
            Err(WebhookError::Unauthorized(_))
        ));
        // Token fallback and the sender when `from` is unusable.
        let out = handle_webhook(
            &forward(
                &[
                    ("from", "undisclosed"),
                    ("sender", "X@Y.z"),
                    ("stripped-text", "ok"),
                ],
                "1735689600",
            ),
            &settings(),
            hmac_sha256,
            NOW,
        )
        .unwrap();
        let Event::Message(m) = &out.events[0] else {
            panic!()
        };
        assert_eq!(
            m.provider_id,
            "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
        );
        assert_eq!(m.from, "x@y.z");
        assert_eq!(
            m.thread,
            pairs(&[(
                THREAD_NONCE,
                "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
            )])
        );
    }

    #[test]
    fn quote_trimming() {
        assert_eq!(
            trim_quoted("Yes please.\n\n> earlier\n> text\n"),
            "Yes please."
        );
        assert_eq!(
            trim_quoted(
                "Top reply\r\nsecond line\r\n\r\nOn Mon, 6 Jan 2025 10:00, Support\r\n<support@x.com> wrote:\r\n> hi"
            ),
            "Top reply\nsecond line"
        );
        assert_eq!(
            trim_quoted("See below\n-----Original Message-----\nFrom: x"),
            "See below"
        );
        assert_eq!(
            trim_quoted("On time delivery please"),
            "On time delivery please"
        );
        assert_eq!(trim_quoted("> only quote"), "");
    }

    #[test]
    fn addresses_and_subjects() {
        assert_eq!(
            parse_address("Bob <BOB@Example.COM>"),
            Some(("bob@example.com".into(), Some("Bob".into())))
        );
        assert_eq!(
            parse_address("bob@example.com"),
            Some(("bob@example.com".into(), None))
        );
        assert_eq!(parse_address("Bob"), None);
        assert_eq!(reply_subject(Some("Order 1234")), "Re: Order 1234");
        assert_eq!(reply_subject(Some("RE: Order")), "RE: Order");
        assert_eq!(reply_subject(None), "Re: (no subject)");
    }

    #[test]
    fn send_request() {
        let msg = OutboundMessage {
            id: "c1-5".into(),
            to: "jane.doe@example.org".into(),
            text: Some("It ships today.".into()),
            attachments: Vec::new(),
            thread: pairs(&[
                ("subject", "Order 1234"),
                ("message_id", "<CAF=abc@mail.gmail.com>"),
                ("references", "<r1@x> <CAF=abc@mail.gmail.com>"),
            ]),
            since_last_inbound: Some(60),
            token: None,
        };
        let req = prepare_send(&msg, &settings()).unwrap();
        assert_eq!(req.url, "http://127.0.0.1:9999/v3/mg.example.com/messages");
        assert_eq!(
            header(&req.headers, "authorization"),
            Some(plugboard_sdk::basic_auth("api", "key-api").as_str())
        );
        assert_eq!(
            form::parse(&req.body).unwrap(),
            pairs(&[
                ("from", "Support <support@mg.example.com>"),
                ("to", "jane.doe@example.org"),
                ("subject", "Re: Order 1234"),
                ("text", "It ships today."),
                ("h:In-Reply-To", "<CAF=abc@mail.gmail.com>"),
                ("h:References", "<r1@x> <CAF=abc@mail.gmail.com>"),
            ])
        );
        let resp = |status, body: &str| HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            read_send_response(&resp(200, r#"{"id":"<20111114174239.25659.5817@samples.mailgun.org>","message":"Queued. Thank you."}"#)).unwrap(),
            "<20111114174239.25659.5817@samples.mailgun.org>"
        );
        assert!(matches!(
            read_send_response(&resp(401, "Forbidden")),
            Err(SendError::Unauthorized(_))
        ));
        assert!(matches!(
            read_send_response(&resp(400, r#"{"message":"'to' parameter is not a valid address. please check documentation"}"#)),
            Err(SendError::Invalid(m)) if m.contains("'to'")
        ));
        assert_eq!(
            read_send_response(&resp(429, "")),
            Err(SendError::RateLimited(None))
        );
        assert_eq!(
            prepare_check(&settings()).unwrap().url,
            "http://127.0.0.1:9999/v3/domains/mg.example.com"
        );
    }
}
