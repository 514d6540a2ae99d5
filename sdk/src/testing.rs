//! Helpers for a plugin's own native tests (`cargo test -p my-plugin`), without a host.
//!
//! In a native build, [`host`](crate::host) is implemented by the SDK: HMAC and SHA-256 are the
//! real algorithms, the clock is the system's unless [`set_now_millis`] fixes it, random bytes
//! are a deterministic sequence ([`seed_random`]) and log lines are kept ([`take_logs`]). So a
//! plugin's [`Channel`] functions run natively exactly as written, and [`run_fixtures`] replays
//! a `fixtures/` folder through them.
//!
//! The state is per thread: the test harness runs every test on its own thread, so tests do not
//! see each other's clock, random sequence or logs.
//!
//! This module exists only in native builds (`cfg(not(target_arch = "wasm32"))`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::Channel;
use crate::host::Level;
use crate::types::{DeliveryState, Event, HttpRequest, HttpResponse, WebhookError};

pub use crate::host::{hmac_sha1, hmac_sha256, sha256};

/// The seed every thread's random sequence starts from.
const DEFAULT_SEED: u64 = 0x5eed_5eed_5eed_5eed;

thread_local! {
    static NOW_MILLIS: Cell<Option<u64>> = const { Cell::new(None) };
    static RANDOM_STATE: Cell<u64> = const { Cell::new(DEFAULT_SEED) };
    static LOGS: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

/// Name/value pairs (settings, headers, form fields) from string literals:
/// `pairs(&[("auth_token", "secret")])`.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Fixes what [`host::now_millis`](crate::host::now_millis) returns on this thread, or with
/// `None` returns it to the system clock.
pub fn set_now_millis(millis: Option<u64>) {
    NOW_MILLIS.with(|now| now.set(millis));
}

/// The time fixed on this thread, if any.
pub(crate) fn fixed_now_millis() -> Option<u64> {
    NOW_MILLIS.with(Cell::get)
}

/// Restarts this thread's sequence of [`host::random_bytes`](crate::host::random_bytes) from
/// `seed`, so a test can repeat it.
pub fn seed_random(seed: u64) {
    RANDOM_STATE.with(|state| state.set(seed));
}

/// The next `len` bytes of this thread's sequence (SplitMix64).
pub(crate) fn next_random_bytes(len: usize) -> Vec<u8> {
    RANDOM_STATE.with(|state| {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(next);
            let mut z = next;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(len);
        out
    })
}

/// One line a plugin wrote with [`host::log`](crate::host::log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity.
    pub level: Level,
    /// The message.
    pub message: String,
    /// The structured fields.
    pub fields: Vec<(String, String)>,
}

/// Keeps one log line for [`take_logs`].
pub(crate) fn record_log(level: Level, message: &str, fields: &[(String, String)]) {
    LOGS.with(|logs| {
        logs.borrow_mut().push(LogLine {
            level,
            message: message.to_string(),
            fields: fields.to_vec(),
        });
    });
}

/// The lines logged on this thread since the last call, oldest first.
pub fn take_logs() -> Vec<LogLine> {
    LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()))
}

/// Replays every fixture (`*.json`) of `dir` through `C::handle_webhook` and panics with every
/// failure, like the host's fixture test does through the real component and `plugboard
/// replay`. Call it from a unit test:
///
/// ```no_run
/// # struct MyChannel;
/// # impl plugboard_sdk::Channel for MyChannel {
/// #     fn describe() -> plugboard_sdk::types::Manifest { unimplemented!() }
/// #     fn handle_webhook(_: plugboard_sdk::types::HttpRequest, _: plugboard_sdk::types::Settings)
/// #         -> Result<plugboard_sdk::types::WebhookOutcome, plugboard_sdk::types::WebhookError> { unimplemented!() }
/// #     fn prepare_send(_: plugboard_sdk::types::OutboundMessage, _: plugboard_sdk::types::Settings)
/// #         -> Result<plugboard_sdk::types::HttpRequest, plugboard_sdk::types::SendError> { unimplemented!() }
/// #     fn read_send_response(_: plugboard_sdk::types::HttpResponse, _: plugboard_sdk::types::Settings)
/// #         -> Result<String, plugboard_sdk::types::SendError> { unimplemented!() }
/// # }
/// plugboard_sdk::testing::run_fixtures::<MyChannel>(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"));
/// ```
///
/// # Fixture format
///
/// ```json
/// {
///   "description": "Inbound SMS, signed",
///   "now": 1735689600,
///   "settings": {"auth_token": "..."},
///   "request": {"method": "POST", "url": "https://hooks.example.com/webhooks/sms",
///               "headers": [["X-Signature", "..."]], "body": "inline UTF-8 body"},
///   "expect": {"exit": 0, "output": {"ok": true, "events": [], "response": {"status": 200}}}
/// }
/// ```
///
/// * `request.body_file` (a file next to the fixture) replaces `body`; `method` defaults to
///   `POST`; `now` (Unix seconds) fixes the clock, else the system clock is used.
/// * `expect.output` is matched against `plugboard replay`'s JSON: `{"ok": true, "events",
///   "response": {"status", "headers", "body"}}` (events tagged by `type`, the contract's field
///   names in snake case, the body as text or Base64), or `{"ok": false, "error": {"kind",
///   "message"}}`. Objects match by the keys the expectation lists, arrays exactly, the rest by
///   equality. `expect.exit` is 0 for success, 1 for a refusal, 4 for a panic.
/// * `expect.error_message_contains` optionally requires a substring of `error.message`.
///
/// Every other file in `dir` must be a body a fixture uses. Natively nothing enforces the host's
/// limits (memory, deadline, answer size), so the host's own replay of the same fixtures stays
/// the reference.
///
/// # Panics
///
/// When `dir` holds no fixture, or any fixture fails or is malformed.
pub fn run_fixtures<C: Channel>(dir: impl AsRef<Path>) {
    let dir = dir.as_ref();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    files.sort();
    let fixtures: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(
        !fixtures.is_empty(),
        "{} holds no fixtures (*.json)",
        dir.display()
    );
    let mut used_bodies = BTreeSet::new();
    let mut failures = Vec::new();
    for fixture in &fixtures {
        if let Err(e) = run_fixture::<C>(fixture, &mut used_bodies) {
            failures.push(format!("{}: {e}", fixture.display()));
        }
    }
    set_now_millis(None);
    for file in &files {
        if file.extension().is_none_or(|e| e != "json") && !used_bodies.contains(file) {
            failures.push(format!(
                "{}: neither a fixture (*.json) nor a body_file a fixture uses",
                file.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
}

fn str_field<'a>(value: &'a Value, key: &str) -> Result<&'a str, String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{key}` must be a string"))
}

/// Replays one fixture and checks its expectation.
fn run_fixture<C: Channel>(path: &Path, used_bodies: &mut BTreeSet<PathBuf>) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let fixture: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    str_field(&fixture, "description")?;
    let request = fixture.get("request").ok_or("no `request`")?;
    let expect = fixture.get("expect").ok_or("no `expect`")?;
    let req = fixture_request(path, request, used_bodies)?;
    let mut settings = Vec::new();
    for (key, value) in fixture
        .get("settings")
        .and_then(Value::as_object)
        .ok_or("`settings` must be an object")?
    {
        let value = value
            .as_str()
            .ok_or_else(|| format!("setting {key} must be a string"))?;
        settings.push((key.clone(), value.to_string()));
    }
    let now = match fixture.get("now") {
        Some(now) => Some(now.as_u64().ok_or("`now` must be Unix seconds")?),
        None => None,
    };
    set_now_millis(now.map(|seconds| seconds.saturating_mul(1000)));

    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        C::handle_webhook(req, settings)
    }));
    let (output, exit) = match answer {
        Ok(Ok(outcome)) => (
            json!({
                "ok": true,
                "events": outcome.events.iter().map(event_json).collect::<Vec<_>>(),
                "response": response_json(&outcome.response),
            }),
            0,
        ),
        Ok(Err(refusal)) => {
            let (kind, message) = match refusal {
                WebhookError::Unauthorized(m) => ("unauthorized", m),
                WebhookError::BadRequest(m) => ("bad-request", m),
                WebhookError::Misconfigured(m) => ("misconfigured", m),
            };
            (failure(kind, &message), 1)
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|m| m.to_string()))
                .unwrap_or_default();
            (failure("plugin-failure", &message), 4)
        }
    };

    let want_exit = expect
        .get("exit")
        .and_then(Value::as_i64)
        .ok_or("`expect.exit` must be a number")?;
    if exit != want_exit {
        return Err(format!(
            "exit status {exit}, want {want_exit}; output {output}"
        ));
    }
    let want = expect.get("output").ok_or("no `expect.output`")?;
    matches(want, &output, "$").map_err(|e| format!("{e}\n  output: {output}"))?;
    if let Some(needle) = expect.get("error_message_contains") {
        let needle = needle
            .as_str()
            .ok_or("`error_message_contains` must be a string")?;
        let message = output["error"]["message"].as_str().unwrap_or_default();
        if !message.contains(needle) {
            return Err(format!("error message {message:?} lacks {needle:?}"));
        }
    }
    Ok(())
}

/// The webhook call a fixture describes, read as `plugboard replay` reads its arguments.
fn fixture_request(
    path: &Path,
    request: &Value,
    used_bodies: &mut BTreeSet<PathBuf>,
) -> Result<HttpRequest, String> {
    let mut headers = Vec::new();
    for header in request
        .get("headers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (name, value) = header
            .as_array()
            .filter(|p| p.len() == 2)
            .and_then(|p| Some((p[0].as_str()?, p[1].as_str()?)))
            .filter(|(name, _)| !name.is_empty() && !name.contains(char::is_whitespace))
            .ok_or_else(|| format!("header {header} is not [name, value]"))?;
        // `--header "Name: value"` drops the value's leading spaces, as HTTP does.
        headers.push((name.to_string(), value.trim_start().to_string()));
    }
    let body = match (request.get("body"), request.get("body_file")) {
        (Some(Value::String(body)), None) => body.clone().into_bytes(),
        (None, Some(Value::String(file))) => {
            let file = path.parent().unwrap_or(Path::new(".")).join(file);
            let body =
                std::fs::read(&file).map_err(|e| format!("body_file {}: {e}", file.display()))?;
            used_bodies.insert(file);
            body
        }
        _ => return Err("`request` needs exactly one of `body` and `body_file`".into()),
    };
    Ok(HttpRequest {
        method: request
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("POST")
            .to_ascii_uppercase(),
        url: str_field(request, "url")?.to_string(),
        headers,
        body,
    })
}

fn failure(kind: &str, message: &str) -> Value {
    json!({"ok": false, "error": {"kind": kind, "message": message}})
}

/// `actual` matches `expected` as fixtures compare (`plugboard replay`'s output with a
/// fixture's `expect.output`): objects by the keys `expected` lists, arrays element by element,
/// the rest by equality. The error names the JSON path (from `path`) of the first difference.
pub fn matches(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, value) in want {
                let here = format!("{path}.{key}");
                match got.get(key) {
                    Some(found) => matches(value, found, &here)?,
                    None => return Err(format!("{here}: missing (want {value})")),
                }
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                return Err(format!(
                    "{path}: {} elements, want {}: {actual}",
                    got.len(),
                    want.len()
                ));
            }
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                matches(w, g, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{path}: got {actual}, want {expected}")),
    }
}

fn pairs_json(pairs: &[(String, String)]) -> Value {
    pairs.iter().map(|(k, v)| json!([k, v])).collect()
}

/// One event as `plugboard replay` prints it.
fn event_json(event: &Event) -> Value {
    let state = |state: DeliveryState| match state {
        DeliveryState::Queued => "queued",
        DeliveryState::Sent => "sent",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Read => "read",
        DeliveryState::Failed => "failed",
    };
    match event {
        Event::Message(m) => json!({
            "type": "message",
            "provider_id": m.provider_id,
            "from": m.from,
            "to": m.to,
            "text": m.text,
            "attachments": m.attachments.iter().map(|a| json!({
                "url": a.url,
                "content_type": a.content_type,
            })).collect::<Vec<_>>(),
            "contact_name": m.contact_name,
            "thread": pairs_json(&m.thread),
        }),
        Event::Status(s) => json!({
            "type": "status",
            "provider_id": s.provider_id,
            "state": state(s.state),
            "error_code": s.error_code,
            "error_message": s.error_message,
        }),
        Event::OptOut(c) => {
            json!({"type": "opt-out", "address": c.address, "provider_id": c.provider_id})
        }
        Event::OptIn(c) => {
            json!({"type": "opt-in", "address": c.address, "provider_id": c.provider_id})
        }
    }
}

/// The webhook answer as `plugboard replay` prints it: the body as text when it is UTF-8, else
/// Base64.
fn response_json(response: &HttpResponse) -> Value {
    let body = match std::str::from_utf8(&response.body) {
        Ok(text) => text.to_string(),
        Err(_) => crate::base64::encode(&response.body),
    };
    json!({
        "status": response.status,
        "headers": pairs_json(&response.headers),
        "body": body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host;

    #[test]
    fn host_functions_run_natively() {
        // RFC 4231 test case 2 and RFC 2202 test case 2.
        let hex = |b: Vec<u8>| crate::hex(&b);
        assert_eq!(
            hex(host::hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(host::hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(host::sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        set_now_millis(Some(1_735_689_600_000));
        assert_eq!(host::now_millis(), 1_735_689_600_000);
        set_now_millis(None);
        assert!(host::now_millis() > 1_735_689_600_000);
        seed_random(7);
        let first = host::random_bytes(20);
        seed_random(7);
        assert_eq!(host::random_bytes(20), first);
        assert_ne!(host::random_bytes(20), first);
        assert_eq!(host::random_bytes(5000).len(), 1024);
        host::log(host::Level::Info, "hello", &pairs(&[("k", "v")]));
        assert_eq!(
            take_logs(),
            [LogLine {
                level: host::Level::Info,
                message: "hello".into(),
                fields: pairs(&[("k", "v")]),
            }]
        );
        assert!(take_logs().is_empty());
    }

    #[test]
    fn expectations_match_by_listed_keys() {
        let actual = json!({"ok": false, "error": {"kind": "unauthorized", "message": "why"}});
        assert!(matches(&json!({"error": {"kind": "unauthorized"}}), &actual, "$").is_ok());
        let err = matches(&json!({"error": {"kind": "bad-request"}}), &actual, "$").unwrap_err();
        assert!(err.starts_with("$.error.kind"), "{err}");
        assert!(matches(&json!([1]), &json!([1, 2]), "$").is_err());
    }
}
