//! LINE WORKS' wire format (providers.md section 5): the manifest, callback authentication and
//! parsing, the content-hash provider id, the token exchange and the message send.
//!
//! The functions are pure: the host's HMAC, SHA-256, clock and randomness are passed in, so
//! everything runs in native tests. Only [`handle_webhook`] logs, about callbacks it ignores.

use plugboard_sdk::serde_json::{Value, json};
use plugboard_sdk::types::{
    Attachment, Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest,
    OutboundMessage, SendError, SettingSpec, TokenGrant, WebhookError, WebhookOutcome,
};
use plugboard_sdk::{Settings, base64, ct_eq, form, header, http};

use crate::jwt;

/// The API base URL used when the `api_base` setting is absent.
pub const DEFAULT_API_BASE: &str = "https://www.worksapis.com";

/// The authorization server base URL used when the `auth_base` setting is absent.
pub const DEFAULT_AUTH_BASE: &str = "https://auth.worksmobile.com";

/// The OAuth scope requested when the `scope` setting is absent.
pub const DEFAULT_SCOPE: &str = "bot";

/// Token lifetime assumed when the token endpoint gives no `expires_in` (LINE WORKS' shortest).
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3600;

/// The `thread` fact holding the channel (group room) a message came from.
pub const THREAD_CHANNEL_ID: &str = "channel_id";

/// What the plugin is and which settings it takes.
pub fn manifest() -> Manifest {
    let setting = SettingSpec::new;
    Manifest {
        name: "lineworks".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "lineworks".to_string(),
        settings: vec![
            setting("bot_id", true, false, "The bot's Bot ID"),
            setting(
                "bot_secret",
                true,
                true,
                "The bot's Bot Secret: verifies X-WORKS-Signature on callbacks",
            ),
            setting("client_id", true, false, "The app's Client ID (JWT `iss`)"),
            setting(
                "client_secret",
                true,
                true,
                "The app's Client Secret (token request)",
            ),
            setting(
                "service_account",
                true,
                false,
                "The app's Service Account ID (JWT `sub`), e.g. abcde.serviceaccount@example.com",
            ),
            setting(
                "private_key",
                true,
                true,
                "The app's RSA private key, PKCS#8 PEM (signs the service-account JWT)",
            ),
            setting(
                "scope",
                false,
                false,
                "OAuth scope of the access token (default bot)",
            ),
            setting(
                "api_base",
                false,
                false,
                "API base URL (default https://www.worksapis.com)",
            ),
            setting(
                "auth_base",
                false,
                false,
                "Authorization server base URL (default https://auth.worksmobile.com)",
            ),
        ],
        api_hosts: vec![
            "www.worksapis.com".to_string(),
            "auth.worksmobile.com".to_string(),
        ],
        capabilities: Capabilities::ATTACHMENTS,
        rules: plugboard_sdk::rules::opaque(5000),
    }
}

/// The signature LINE WORKS sends for `body`: Base64(HMAC-SHA256(bot secret, raw body)).
pub fn signature(
    bot_secret: &str,
    body: &[u8],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> String {
    base64::encode(&hmac_sha256(bot_secret.as_bytes(), body))
}

/// Authenticates and parses one callback. `hmac_sha256(key, data)` computes the MAC and
/// `sha256(data)` the digest behind the provider id.
///
/// # Errors
///
/// `misconfigured` without `bot_id` or `bot_secret`; `unauthorized` for a missing or wrong
/// `X-WORKS-Signature` or an `X-WORKS-BotId` naming another bot; `bad-request` for a method
/// other than POST or a body that is not a callback object.
pub fn handle_webhook(
    req: &HttpRequest,
    settings: &[(String, String)],
    hmac_sha256: impl Fn(&[u8], &[u8]) -> Vec<u8>,
    sha256: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<WebhookOutcome, WebhookError> {
    let s = Settings::new(settings);
    let bot_id = s.require("bot_id").map_err(WebhookError::Misconfigured)?;
    let secret = s
        .require("bot_secret")
        .map_err(WebhookError::Misconfigured)?;
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(WebhookError::BadRequest(format!(
            "LINE WORKS callbacks use POST, not {}",
            req.method
        )));
    }
    let Some(sent) = header(&req.headers, "x-works-signature") else {
        return Err(WebhookError::Unauthorized(
            "missing X-WORKS-Signature header".to_string(),
        ));
    };
    let expected = signature(secret, &req.body, hmac_sha256);
    if !ct_eq(sent.trim().as_bytes(), expected.as_bytes()) {
        return Err(WebhookError::Unauthorized(
            "X-WORKS-Signature does not match the body (check bot_secret)".to_string(),
        ));
    }
    let sent_bot = header(&req.headers, "x-works-botid").unwrap_or_default();
    if sent_bot.trim() != bot_id.trim() {
        return Err(WebhookError::Unauthorized(format!(
            "X-WORKS-BotId `{}` is not this channel's bot (check bot_id)",
            sent_bot.trim()
        )));
    }
    let body: Value = plugboard_sdk::json::parse(&req.body)
        .map_err(|e| WebhookError::BadRequest(format!("LINE WORKS callback: {e}")))?;
    let api_base = s.get_or("api_base", DEFAULT_API_BASE).trim_end_matches('/');
    let events = match parse_callback(&body, bot_id.trim(), api_base, sha256)? {
        Ok(message) => vec![Event::Message(message)],
        Err(reason) => {
            plugboard_sdk::host::log(
                plugboard_sdk::host::Level::Info,
                &format!("lineworks: ignored an authentic callback: {reason}"),
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

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped as `serde_json` escapes them. The same value always gives the same text,
/// whatever key order or spacing the sender used.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*key).clone()).to_string());
                    out.push(':');
                    write(&map[key.as_str()], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The provider id of a callback, which carries no id of its own: lowercase hex
/// SHA-256 of the canonical JSON of `["lineworks-callback-v1", bot_id, source.userId,
/// source.channelId, issuedTime, content]`. Redeliveries of the same callback hash the same;
/// two messages differ at least in `issuedTime` (milliseconds).
pub fn provider_id(bot_id: &str, body: &Value, sha256: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let source = body.get("source").unwrap_or(&Value::Null);
    let field = |v: &Value, key: &str| v.get(key).cloned().unwrap_or(Value::Null);
    let preimage = json!([
        "lineworks-callback-v1",
        bot_id,
        field(source, "userId"),
        field(source, "channelId"),
        field(body, "issuedTime"),
        field(body, "content"),
    ]);
    plugboard_sdk::hex(&sha256(canonical_json(&preimage).as_bytes()))
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

fn scalar_at(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Percent-encodes one URL path segment (unreserved characters kept; `@` of a login email
/// becomes `%40`).
pub fn path_segment(s: &str) -> String {
    form::encode_component(s).replace('+', "%20")
}

/// Turns an authentic callback into a message, or the reason it is ignored (joins, leaves,
/// unknown content). `api_base` builds attachment URLs.
///
/// # Errors
///
/// `bad-request` when the body is not a JSON object.
pub fn parse_callback(
    body: &Value,
    bot_id: &str,
    api_base: &str,
    sha256: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<Result<InboundMessage, String>, WebhookError> {
    if !body.is_object() {
        return Err(WebhookError::BadRequest(
            "LINE WORKS callback: the body is not a JSON object".to_string(),
        ));
    }
    let kind = str_at(body, &["type"]).unwrap_or("(none)");
    let Some(user) = str_at(body, &["source", "userId"]) else {
        return Ok(Err(format!("`{kind}` callback without source.userId")));
    };
    let content = body.get("content").unwrap_or(&Value::Null);
    let mut text = None;
    let mut attachments = Vec::new();
    match (kind, str_at(content, &["type"])) {
        ("message", Some("text")) => text = str_at(content, &["text"]).map(str::to_string),
        ("message", Some(media @ ("image" | "file" | "audio" | "video"))) => {
            let Some(file_id) = str_at(content, &["fileId"]) else {
                return Ok(Err(format!("{media} content without fileId")));
            };
            attachments.push(Attachment {
                url: format!(
                    "{api_base}/v1.0/bots/{}/attachments/{}",
                    path_segment(bot_id),
                    path_segment(file_id)
                ),
                content_type: None,
            });
        }
        ("message", Some("sticker")) => {
            let package = scalar_at(content, "packageId").unwrap_or_default();
            let sticker = scalar_at(content, "stickerId").unwrap_or_default();
            text = Some(format!("[sticker {package}/{sticker}]"));
        }
        ("message", Some("location")) => {
            let mut t = "[location]".to_string();
            if let Some(address) = str_at(content, &["address"]) {
                t.push(' ');
                t.push_str(address);
            }
            if let (Some(lat), Some(long)) = (
                scalar_at(content, "latitude"),
                scalar_at(content, "longitude"),
            ) {
                t.push_str(&format!(" ({lat}, {long})"));
            }
            text = Some(t);
        }
        ("message", Some("postback")) | ("postback", _) => {
            text = str_at(content, &["postback"])
                .or_else(|| str_at(body, &["data"]))
                .map(str::to_string);
        }
        ("message", other) => {
            return Ok(Err(format!(
                "message content type `{}` is not handled",
                other.unwrap_or("(none)")
            )));
        }
        (other, _) => return Ok(Err(format!("callback type `{other}` is not handled"))),
    }
    let thread = str_at(body, &["source", "channelId"])
        .map(|c| vec![(THREAD_CHANNEL_ID.to_string(), c.to_string())])
        .unwrap_or_default();
    Ok(Ok(InboundMessage {
        provider_id: provider_id(bot_id, body, sha256),
        from: user.to_string(),
        to: bot_id.to_string(),
        text,
        attachments,
        contact_name: None,
        thread,
    }))
}

/// The token request: the service-account JWT (built at `now_secs`) exchanged at
/// `POST {auth_base}/oauth2/v2.0/token` (form: `assertion`, `grant_type`, `client_id`,
/// `client_secret`, `scope`).
///
/// # Errors
///
/// `misconfigured` when a required setting is missing or the private key does not parse.
pub fn prepare_token(
    settings: &[(String, String)],
    now_secs: u64,
) -> Result<HttpRequest, SendError> {
    let s = Settings::new(settings);
    let require = |name: &str| s.require(name).map_err(SendError::Misconfigured);
    let client_id = require("client_id")?;
    let client_secret = require("client_secret")?;
    let service_account = require("service_account")?;
    let key = jwt::parse_private_key(require("private_key")?).map_err(SendError::Misconfigured)?;
    let assertion = jwt::build(&key, client_id, service_account, now_secs);
    let auth_base = s
        .get_or("auth_base", DEFAULT_AUTH_BASE)
        .trim_end_matches('/');
    let body = form::encode([
        ("assertion", assertion.as_str()),
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("scope", s.get_or("scope", DEFAULT_SCOPE)),
    ]);
    Ok(http::request(
        "POST",
        format!("{auth_base}/oauth2/v2.0/token"),
        vec![(
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )],
        body,
    ))
}

/// Reads the token endpoint's answer: `access_token` and `expires_in` (a number or a string
/// of digits; [`DEFAULT_TOKEN_LIFETIME_SECS`] when absent).
///
/// # Errors
///
/// `unauthorized` for 400/401/403 (client id, secret, service account or key refused),
/// `rate-limited` for 429, `unavailable` for 5xx; `invalid` for a success without a token.
pub fn read_token_response(resp: &HttpResponse) -> Result<TokenGrant, SendError> {
    let body: Option<Value> = plugboard_sdk::json::parse(&resp.body).ok();
    if !http::is_success(resp.status) {
        let detail = body
            .as_ref()
            .map(|b| {
                [
                    str_at(b, &["error"]),
                    str_at(b, &["error_description"]),
                    str_at(b, &["code"]),
                    str_at(b, &["description"]),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
            })
            .unwrap_or_default();
        let description = format!("LINE WORKS token endpoint HTTP {}: {detail}", resp.status);
        return Err(match resp.status {
            400 | 401 | 403 => SendError::Unauthorized(description),
            429 => SendError::RateLimited(http::retry_after(&resp.headers)),
            _ => SendError::Unavailable(description),
        });
    }
    let body = body.ok_or_else(|| {
        SendError::Invalid("LINE WORKS token endpoint answered something other than JSON".into())
    })?;
    let token = str_at(&body, &["access_token"]).ok_or_else(|| {
        SendError::Invalid("LINE WORKS token endpoint answered without access_token".into())
    })?;
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_TOKEN_LIFETIME_SECS,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            SendError::Invalid(format!(
                "LINE WORKS token expires_in {n} is not whole seconds"
            ))
        })?,
        Some(Value::String(s)) => s.trim().parse().map_err(|_| {
            SendError::Invalid(format!("LINE WORKS token expires_in {s:?} is not a number"))
        })?,
        Some(other) => {
            return Err(SendError::Invalid(format!(
                "LINE WORKS token expires_in {other} is not a number"
            )));
        }
    };
    Ok(TokenGrant {
        token: token.to_string(),
        expires_in,
    })
}

/// The content object for an outbound message: text, or one image by URL.
fn content(msg: &OutboundMessage) -> Result<Value, SendError> {
    let text = msg.text.as_deref().filter(|t| !t.trim().is_empty());
    match (text, msg.attachments.as_slice()) {
        (Some(text), []) => Ok(json!({"type": "text", "text": text})),
        (None, [a])
            if a.content_type
                .as_deref()
                .is_none_or(|ct| ct.trim().to_ascii_lowercase().starts_with("image/")) =>
        {
            Ok(json!({"type": "image", "previewImageUrl": a.url, "originalContentUrl": a.url}))
        }
        (None, []) => Err(SendError::Invalid(
            "nothing to send: the message has no text and no attachments".to_string(),
        )),
        _ => Err(SendError::Invalid(
            "LINE WORKS sends text, or one image by URL, per message".to_string(),
        )),
    }
}

/// Builds the send request: `POST {api_base}/v1.0/bots/{bot_id}/users/{to}/messages`, or
/// `.../channels/{channel_id}/messages` when the thread names a channel, with the host's
/// cached access token.
///
/// # Errors
///
/// `misconfigured` without `bot_id` or without a token (the host must obtain one through
/// `prepare-token`); `invalid` for content LINE WORKS cannot take or no recipient.
pub fn prepare_send(
    msg: &OutboundMessage,
    settings: &[(String, String)],
) -> Result<HttpRequest, SendError> {
    let s = Settings::new(settings);
    let bot_id = s.require("bot_id").map_err(SendError::Misconfigured)?;
    let token = msg
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            SendError::Misconfigured(
                "no access token: the host must obtain one through prepare-token".to_string(),
            )
        })?;
    let content = content(msg)?;
    let channel = msg
        .thread
        .iter()
        .rev()
        .find(|(n, _)| n == THREAD_CHANNEL_ID)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty());
    let target = match channel {
        Some(channel) => format!("channels/{}", path_segment(channel)),
        None => {
            let to = msg.to.trim();
            if to.is_empty() {
                return Err(SendError::Invalid("no LINE WORKS user to send to".into()));
            }
            format!("users/{}", path_segment(to))
        }
    };
    let api_base = s.get_or("api_base", DEFAULT_API_BASE).trim_end_matches('/');
    Ok(http::request(
        "POST",
        format!(
            "{api_base}/v1.0/bots/{}/{target}/messages",
            path_segment(bot_id.trim())
        ),
        vec![
            http::bearer(token),
            ("Content-Type".to_string(), "application/json".to_string()),
        ],
        json!({"content": content}).to_string(),
    ))
}

/// Reads the send answer. LINE WORKS answers `201` with no message id, and the contract does
/// not pass the outbound id here, so a success gets a synthetic unique id
/// `lineworks-<32 random hex digits>` (LINE WORKS sends no delivery receipts to match it with).
///
/// # Errors
///
/// `unauthorized` for 401 (the host drops its cached token), `rate-limited` for 429,
/// `unavailable` for 5xx, `invalid` for other failures.
pub fn read_send_response(
    resp: &HttpResponse,
    random_bytes: impl Fn() -> Vec<u8>,
) -> Result<String, SendError> {
    if http::is_success(resp.status) {
        let hex = plugboard_sdk::hex(&random_bytes());
        return Ok(format!("lineworks-{hex}"));
    }
    let body: Option<Value> = plugboard_sdk::json::parse(&resp.body).ok();
    let detail = body
        .as_ref()
        .map(|b| {
            [str_at(b, &["code"]), str_at(b, &["description"])]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&resp.body)
                .chars()
                .take(200)
                .collect()
        });
    let description = format!("LINE WORKS HTTP {}: {}", resp.status, detail.trim());
    // A 403 is a missing scope or permission, which a new token does not fix.
    Err(match resp.status {
        403 => SendError::Invalid(description),
        _ => http::send_error(resp, description),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::{hmac_sha256, pairs, sha256};

    const TEST_KEY: &str = include_str!("../testdata/test-key.pem");
    const SECRET: &str = "q7LmRwX2c9VbN4kT8sYh";

    fn settings() -> Vec<(String, String)> {
        pairs(&[
            ("bot_id", "2000001"),
            ("bot_secret", SECRET),
            ("client_id", "aBcDeFgHiJkLmN"),
            ("client_secret", "cS3cr3t"),
            ("service_account", "x1y2z.serviceaccount@example.com"),
            ("private_key", TEST_KEY),
            ("api_base", "http://127.0.0.1:9999"),
            ("auth_base", "http://127.0.0.1:9998/"),
        ])
    }

    const TEXT: &str = r#"{"type":"message","source":{"userId":"c72af563-0f21-4736-11e4-045237113344","channelId":"12345","domainId":40029600},"issuedTime":"2022-01-04T05:16:05.716Z","content":{"type":"text","text":"hello"}}"#;

    fn callback(body: &str, sig: Option<String>, bot: &str) -> HttpRequest {
        let mut headers = vec![("X-WORKS-BotId".to_string(), bot.to_string())];
        if let Some(sig) = sig {
            headers.push(("X-WORKS-Signature".to_string(), sig));
        }
        http::request(
            "POST",
            "https://hooks.example.com/webhooks/lineworks",
            headers,
            body.as_bytes().to_vec(),
        )
    }

    fn signed(body: &str) -> HttpRequest {
        callback(
            body,
            Some(signature(SECRET, body.as_bytes(), hmac_sha256)),
            "2000001",
        )
    }

    #[test]
    fn text_callback() {
        let out = handle_webhook(&signed(TEXT), &settings(), hmac_sha256, sha256).unwrap();
        let [Event::Message(m)] = out.events.as_slice() else {
            panic!("{:?}", out.events)
        };
        assert_eq!(m.from, "c72af563-0f21-4736-11e4-045237113344");
        assert_eq!(m.to, "2000001");
        assert_eq!(m.text.as_deref(), Some("hello"));
        assert_eq!(m.thread, pairs(&[("channel_id", "12345")]));
        assert_eq!(m.provider_id.len(), 64);
    }

    #[test]
    fn authentication() {
        let sig = signature(SECRET, TEXT.as_bytes(), hmac_sha256);
        let refused = |req: HttpRequest| {
            matches!(
                handle_webhook(&req, &settings(), hmac_sha256, sha256),
                Err(WebhookError::Unauthorized(_))
            )
        };
        assert!(refused(callback(TEXT, None, "2000001")));
        assert!(refused(callback(TEXT, Some(sig.clone()), "2000002")));
        assert!(refused(callback(
            &TEXT.replace("hello", "hellO"),
            Some(sig),
            "2000001"
        )));
        assert!(matches!(
            handle_webhook(&signed("{"), &settings(), hmac_sha256, sha256),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn content_hash_is_stable() {
        let a: Value = plugboard_sdk::serde_json::from_str(TEXT).unwrap();
        // The same callback with other key order and spacing: the same id.
        let b: Value = plugboard_sdk::serde_json::from_str(
            r#"{ "content": {"text":"hello", "type":"text"}, "issuedTime":"2022-01-04T05:16:05.716Z",
                 "source": {"domainId":40029600, "channelId":"12345", "userId":"c72af563-0f21-4736-11e4-045237113344"},
                 "type":"message" }"#,
        )
        .unwrap();
        assert_eq!(
            provider_id("2000001", &a, sha256),
            provider_id("2000001", &b, sha256)
        );
        // A pinned value: changing the preimage would break deduplication across upgrades.
        assert_eq!(
            canonical_json(&json!({"b": [1, {"y": "\u{e9}", "x": null}], "a": "q\"t"})),
            r#"{"a":"q\"t","b":[1,{"x":null,"y":"é"}]}"#
        );
        let mut later = a.clone();
        later["issuedTime"] = json!("2022-01-04T05:16:05.717Z");
        assert_ne!(
            provider_id("2000001", &a, sha256),
            provider_id("2000001", &later, sha256)
        );
        let mut other_text = a.clone();
        other_text["content"]["text"] = json!("hello!");
        assert_ne!(
            provider_id("2000001", &a, sha256),
            provider_id("2000001", &other_text, sha256)
        );
        assert_ne!(
            provider_id("2000001", &a, sha256),
            provider_id("2000002", &a, sha256)
        );
    }

    #[test]
    fn content_kinds() {
        let parse = |body: Value| {
            parse_callback(&body, "2000001", "https://www.worksapis.com", sha256).unwrap()
        };
        let image = parse(json!({"type": "message", "source": {"userId": "u1"},
            "issuedTime": "t", "content": {"type": "image", "fileId": "kr1.1.abc"}}))
        .unwrap();
        assert_eq!(
            image.attachments[0].url,
            "https://www.worksapis.com/v1.0/bots/2000001/attachments/kr1.1.abc"
        );
        assert!(image.thread.is_empty());
        let sticker = parse(json!({"type": "message", "source": {"userId": "u1"},
            "content": {"type": "sticker", "packageId": "789", "stickerId": "10855"}}))
        .unwrap();
        assert_eq!(sticker.text.as_deref(), Some("[sticker 789/10855]"));
        let location = parse(json!({"type": "message", "source": {"userId": "u1"},
            "content": {"type": "location", "address": "Shibuya", "latitude": 35.6, "longitude": 139.7}}))
        .unwrap();
        assert_eq!(
            location.text.as_deref(),
            Some("[location] Shibuya (35.6, 139.7)")
        );
        assert!(parse(json!({"type": "join", "source": {"channelId": "1"}})).is_err());
        assert!(parse(json!({"type": "leave", "source": {"userId": "u1"}})).is_err());
    }

    #[test]
    fn token_request_and_response() {
        let req = prepare_token(&settings(), 1_735_689_600).unwrap();
        assert_eq!(req.url, "http://127.0.0.1:9998/oauth2/v2.0/token");
        let fields = form::parse(&req.body).unwrap();
        let get = |n| form::get(&fields, n).unwrap();
        assert_eq!(
            get("grant_type"),
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        assert_eq!(get("client_id"), "aBcDeFgHiJkLmN");
        assert_eq!(get("client_secret"), "cS3cr3t");
        assert_eq!(get("scope"), "bot");
        assert_eq!(get("assertion").split('.').count(), 3);
        let mut bad = settings();
        bad.retain(|(n, _)| n != "private_key");
        bad.push(("private_key".into(), "garbage".into()));
        assert!(matches!(
            prepare_token(&bad, 1),
            Err(SendError::Misconfigured(_))
        ));

        let resp = |status, body: &str| HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let grant = read_token_response(&resp(
            200,
            r#"{"access_token":"kr1AAA","refresh_token":"kr1RRR","scope":"bot","token_type":"Bearer","expires_in":"86400"}"#,
        ))
        .unwrap();
        assert_eq!(
            grant,
            TokenGrant {
                token: "kr1AAA".into(),
                expires_in: 86_400
            }
        );
        let grant = read_token_response(&resp(200, r#"{"access_token":"kr1B","expires_in":3600}"#))
            .unwrap();
        assert_eq!(grant.expires_in, 3600);
        assert!(matches!(
            read_token_response(&resp(400, r#"{"error":"invalid_client","error_description":"client authentication failed"}"#)),
            Err(SendError::Unauthorized(m)) if m.contains("invalid_client")
        ));
        assert!(matches!(
            read_token_response(&resp(200, "{}")),
            Err(SendError::Invalid(_))
        ));
        assert!(matches!(
            read_token_response(&resp(503, "")),
            Err(SendError::Unavailable(_))
        ));
    }

    fn outbound(token: Option<&str>, thread: &[(&str, &str)]) -> OutboundMessage {
        OutboundMessage {
            id: "c3-1".into(),
            to: "user@example.com".into(),
            text: Some("Hello from support".into()),
            attachments: Vec::new(),
            thread: pairs(thread),
            since_last_inbound: Some(5),
            token: token.map(str::to_string),
        }
    }

    #[test]
    fn send_request() {
        let req = prepare_send(&outbound(Some("kr1AAA"), &[]), &settings()).unwrap();
        assert_eq!(
            req.url,
            "http://127.0.0.1:9999/v1.0/bots/2000001/users/user%40example.com/messages"
        );
        assert_eq!(header(&req.headers, "authorization"), Some("Bearer kr1AAA"));
        let body: Value = plugboard_sdk::serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            json!({"content": {"type": "text", "text": "Hello from support"}})
        );
        let req = prepare_send(
            &outbound(Some("kr1AAA"), &[("channel_id", "12345")]),
            &settings(),
        )
        .unwrap();
        assert_eq!(
            req.url,
            "http://127.0.0.1:9999/v1.0/bots/2000001/channels/12345/messages"
        );
        assert!(matches!(
            prepare_send(&outbound(None, &[]), &settings()),
            Err(SendError::Misconfigured(m)) if m.contains("prepare-token")
        ));

        let resp = |status, body: &str| HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            read_send_response(&resp(201, ""), || vec![1, 2]).unwrap(),
            "lineworks-0102"
        );
        assert!(matches!(
            read_send_response(&resp(401, r#"{"code":"UNAUTHORIZED","description":"Authentication failed"}"#), Vec::new),
            Err(SendError::Unauthorized(m)) if m.contains("UNAUTHORIZED")
        ));
        assert_eq!(
            read_send_response(
                &resp(
                    429,
                    r#"{"code":"TOO_MANY_REQUESTS","description":"API rate limit exceeded"}"#
                ),
                Vec::new
            ),
            Err(SendError::RateLimited(None))
        );
        assert!(matches!(
            read_send_response(&resp(500, ""), Vec::new),
            Err(SendError::Unavailable(_))
        ));
    }
}
