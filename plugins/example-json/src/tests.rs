//! Native unit tests of the example channel, with `plugboard_sdk::testing` standing in for the
//! host: its HMAC signs the webhooks, and the `fixtures/` folder replays through the channel.

use plugboard_sdk::testing::{hmac_sha256, pairs, run_fixtures};
use plugboard_sdk::types::{Event, HttpResponse, OutboundMessage, SendError, WebhookError};
use plugboard_sdk::{Channel, header, hex, http};

use super::ExampleJson;

const SECRET: &str = "3b1f6c0e9a2d4f8b7c5e1a9d0f2b4c6e";

fn settings() -> Vec<(String, String)> {
    pairs(&[
        ("secret", SECRET),
        ("api_key", "ak_test"),
        ("api_base", "http://127.0.0.1:9999/"),
    ])
}

fn webhook(body: &str, signature: Option<String>) -> plugboard_sdk::types::HttpRequest {
    let headers = signature
        .map(|s| pairs(&[("X-Signature", s.as_str())]))
        .unwrap_or_default();
    http::request("POST", "https://hooks.example.com/w", headers, body)
}

fn signed(body: &str) -> plugboard_sdk::types::HttpRequest {
    webhook(
        body,
        Some(hex(&hmac_sha256(SECRET.as_bytes(), body.as_bytes()))),
    )
}

fn outbound(text: Option<&str>) -> OutboundMessage {
    OutboundMessage {
        id: "out-1".into(),
        to: "+14155550123".into(),
        text: text.map(str::to_string),
        attachments: Vec::new(),
        thread: Vec::new(),
        since_last_inbound: Some(30),
        token: None,
    }
}

#[test]
fn a_signed_message_becomes_a_message_event() {
    let body = r#"{"id":"m1","from":"+14155550123","to":"+14155550100","text":"hi"}"#;
    let outcome = ExampleJson::handle_webhook(signed(body), settings()).unwrap();
    assert_eq!(outcome.response.status, 200);
    let [Event::Message(m)] = outcome.events.as_slice() else {
        panic!("one message expected: {:?}", outcome.events);
    };
    assert_eq!(
        (m.provider_id.as_str(), m.from.as_str()),
        ("m1", "+14155550123")
    );
    assert_eq!(
        (m.to.as_str(), m.text.as_deref()),
        ("+14155550100", Some("hi"))
    );
}

#[test]
fn wrong_or_missing_signatures_are_refused() {
    let body = r#"{"id":"m1","from":"+1","to":"+2"}"#;
    let unauthorized = |req| {
        matches!(
            ExampleJson::handle_webhook(req, settings()),
            Err(WebhookError::Unauthorized(_))
        )
    };
    assert!(unauthorized(webhook(body, None)));
    assert!(unauthorized(webhook(body, Some("00".repeat(32)))));
    let mut tampered = signed(body);
    tampered.body.push(b' ');
    assert!(unauthorized(tampered));
    assert!(matches!(
        ExampleJson::handle_webhook(signed("[]"), settings()),
        Err(WebhookError::BadRequest(_))
    ));
}

#[test]
fn sends_post_json_with_the_bearer_key() {
    let req = ExampleJson::prepare_send(outbound(Some("Hello")), settings()).unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, "http://127.0.0.1:9999/messages");
    assert_eq!(
        header(&req.headers, "authorization"),
        Some("Bearer ak_test")
    );
    assert_eq!(
        header(&req.headers, "content-type"),
        Some("application/json")
    );
    let body: plugboard_sdk::serde_json::Value =
        plugboard_sdk::serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        plugboard_sdk::serde_json::json!({"to": "+14155550123", "text": "Hello"})
    );
    assert!(matches!(
        ExampleJson::prepare_send(outbound(None), settings()),
        Err(SendError::Invalid(_))
    ));
}

#[test]
fn send_answers_map_to_ids_and_errors() {
    let answer = |status, body: &str| HttpResponse {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    };
    let read = |resp| ExampleJson::read_send_response(resp, settings());
    assert_eq!(
        read(answer(201, r#"{"id":"p-42"}"#)),
        Ok("p-42".to_string())
    );
    assert!(matches!(
        read(answer(200, "{}")),
        Err(SendError::Invalid(_))
    ));
    assert!(matches!(
        read(answer(401, "")),
        Err(SendError::Unauthorized(_))
    ));
    assert_eq!(read(answer(429, "")), Err(SendError::RateLimited(None)));
    assert!(matches!(
        read(answer(503, "")),
        Err(SendError::Unavailable(_))
    ));
}

#[test]
fn the_rest_is_the_sdk_defaults() {
    assert_eq!(ExampleJson::check_settings(settings()), Ok(()));
    assert_eq!(ExampleJson::prepare_token(settings()), Ok(None));
    assert_eq!(ExampleJson::prepare_check(settings()), Ok(None));
    let manifest = ExampleJson::describe();
    assert_eq!(manifest.name, "example-json");
    assert_eq!(manifest.api_hosts, ["api.example.com"]);
}

#[test]
fn fixtures_replay_natively() {
    run_fixtures::<ExampleJson>(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"));
}
