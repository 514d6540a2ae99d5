//! The core path end to end against the real binary: a signed Twilio SMS webhook becomes a
//! stored conversation for the queue's agent, the agent's reply reaches a fake Twilio, and the
//! host stays up through bad input, incompatible plugins and misbehaving ones.

mod support;

use serde_json::json;
use support::*;

fn sms(sid: &str, from: &str, body: &str) -> Vec<(&'static str, String)> {
    inbound_sms(sid, from, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_is_stored_and_offered_to_the_queue_agent() {
    let host = Host::start(Setup::default());
    host.presence(ALICE, "online").await;
    let params = sms(
        "SM00000000000000000000000000000001",
        "+14155550100",
        "Hello, is anyone there?",
    );
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/xml");
    let body = resp.text().await.unwrap();
    assert!(body.contains("<Response/>"), "{body}");

    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1, "{convs:?}");
    let conv = &convs[0];
    assert_eq!(conv["customer"], "+14155550100");
    assert_eq!(conv["channel"], "sms");
    assert_eq!(conv["kind"], "sms");
    assert_eq!(conv["queue"], "support");
    assert_eq!(conv["state"], "queued");
    let id = conv["id"].as_str().unwrap().to_owned();
    let messages = host.messages(&id, ALICE).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "Hello, is anyone there?");
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(
        messages[0]["provider_id"],
        "SM00000000000000000000000000000001"
    );

    // ring-all offers it to the queue's agent.
    eventually("offer to alice", || async {
        let c = host.conversations(ALICE).await;
        (c[0]["offered_to"] == json!(["alice"])).then_some(())
    })
    .await;

    // Bob works another queue: he sees nothing, by list or by id.
    assert!(host.conversations(BOB).await.is_empty());
    let (status, _) = host
        .get_json(&format!("/api/v1/conversations/{id}/messages"), BOB)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_message_carries_attachments() {
    let host = Host::start(Setup::default());
    let mut params = sms(
        "SM00000000000000000000000000000002",
        "+14155550101",
        "see photo",
    );
    params.retain(|(k, _)| *k != "NumMedia");
    params.push(("NumMedia", "2".into()));
    params.push(("MediaUrl0", "https://api.twilio.com/media/ME1".into()));
    params.push(("MediaContentType0", "image/jpeg".into()));
    params.push(("MediaUrl1", "https://api.twilio.com/media/ME2".into()));
    params.push(("MediaContentType1", "image/png".into()));
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = &host.messages(&id, ALICE).await[0];
    assert_eq!(
        m["attachments"],
        json!([
            {"url": "https://api.twilio.com/media/ME1", "content_type": "image/jpeg"},
            {"url": "https://api.twilio.com/media/ME2", "content_type": "image/png"}
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_signature_is_403_and_nothing_is_stored() {
    let host = Host::start(Setup::default());
    let params = sms(
        "SM00000000000000000000000000000003",
        "+14155550102",
        "forged",
    );
    let unsigned = host.post_twilio("sms", &pairs(&params), None).await;
    assert_eq!(unsigned.status(), 403);
    let body: serde_json::Value = unsigned.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{body}"
    );

    let wrong = host
        .post_twilio("sms", &pairs(&params), Some("not-the-auth-token"))
        .await;
    assert_eq!(wrong.status(), 403);

    // A signature over other parameters does not cover these.
    let url = host.url("/webhooks/sms");
    let other = sms(
        "SM00000000000000000000000000000003",
        "+14155550102",
        "original text",
    );
    let sig = twilio_signature(AUTH_TOKEN, &url, &pairs(&other));
    let tampered = host
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(form(&pairs(&params)))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 403);

    assert!(host.conversations(ALICE).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channel_is_404_and_oversized_body_is_413() {
    let host = Host::start(Setup::default());
    let params = sms("SM00000000000000000000000000000004", "+14155550103", "hi");
    let resp = host
        .post_twilio("nope", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");

    // Declared too large: refused before the body is read.
    let head = format!(
        "POST /webhooks/sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        1024 * 1024 + 1
    );
    let answer = host.raw(head.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("1048576-byte limit"), "{answer}");

    // Chunked with no length: refused once the limit is crossed.
    let chunk = vec![b'x'; 64 * 1024];
    let mut req = b"POST /webhooks/sms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..17 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = host.raw(&req);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(host.conversations(ALICE).await.is_empty());
    assert_eq!(
        reqwest::get(host.url("/healthz")).await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_message_sid_twice_is_stored_once() {
    let host = Host::start(Setup::default());
    let params = sms(
        "SM00000000000000000000000000000005",
        "+14155550104",
        "only once",
    );
    for _ in 0..3 {
        let resp = host
            .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let second = sms(
        "SM00000000000000000000000000000006",
        "+14155550104",
        "second",
    );
    assert_eq!(
        host.post_twilio("sms", &pairs(&second), Some(AUTH_TOKEN))
            .await
            .status(),
        200
    );
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1);
    let id = convs[0]["id"].as_str().unwrap();
    let texts: Vec<_> = host
        .messages(id, ALICE)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["only once", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_reaches_fake_twilio_and_records_sid_or_error() {
    let twilio = FakeProvider::start(vec![(
        201,
        json!({"sid": "SMreply0000000000000000000000001", "status": "queued", "error_code": null}),
    )])
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    let params = sms(
        "SM00000000000000000000000000000007",
        "+14155550105",
        "need help",
    );
    host.post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, msg) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            ALICE,
            json!({"text": "Hi! How can we help?"}),
        )
        .await;
    assert_eq!(status, 201, "{msg}");
    assert_eq!(msg["status"], "queued", "{msg}");
    assert_eq!(msg["provider_id"], "SMreply0000000000000000000000001");
    assert_eq!(msg["author"], "alice");

    let rec = twilio.recorded();
    assert_eq!(rec.len(), 1);
    let r = &rec[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    let expected_auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{ACCOUNT_SID}:{AUTH_TOKEN}")
        )
    );
    assert_eq!(r.headers["authorization"], expected_auth);
    let form = r.form();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(field("To").as_deref(), Some("+14155550105"));
    assert_eq!(field("From").as_deref(), Some("+15005550006"));
    assert_eq!(field("Body").as_deref(), Some("Hi! How can we help?"));

    // The first reply took the conversation.
    let conv = &host.conversations(ALICE).await[0];
    assert_eq!(conv["state"], "assigned");
    assert_eq!(conv["owner"], "alice");

    // A Twilio error is recorded as such.
    twilio.answer(vec![(
        400,
        json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}),
    )]);
    let (status, msg) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            ALICE,
            json!({"text": "second try"}),
        )
        .await;
    assert_eq!(status, 201, "{msg}");
    assert_eq!(msg["status"], "failed", "{msg}");
    let error = msg["error"].as_str().unwrap();
    assert!(error.contains("21211"), "{error}");
    assert!(error.contains("not a valid phone number"), "{error}");

    let stored = host.messages(&id, ALICE).await;
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[1]["provider_id"], "SMreply0000000000000000000000001");
    assert_eq!(stored[2]["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_api_requires_a_valid_token_and_a_well_formed_reply() {
    let host = Host::start(Setup::default());
    let resp = host
        .http
        .get(host.url("/api/v1/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let (status, _) = host
        .get_json("/api/v1/conversations", "wrong-token-xyz")
        .await;
    assert_eq!(status, 401);

    let params = sms("SM00000000000000000000000000000008", "+14155550106", "hi");
    host.post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/conversations/{id}/messages");
    let (status, body) = host.post_json(&path, ALICE, json!({"txt": "typo"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = host.post_json(&path, ALICE, json!({"text": "   "})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = host
        .post_json(&path, ALICE, json!({"text": "x".repeat(1601)}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("1601"), "{body}");
    let (status, _) = host
        .post_json(&path, BOB, json!({"text": "not mine"}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        host.messages(&id, ALICE).await.len(),
        1,
        "nothing was added"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_plugin_is_refused_and_the_others_load() {
    let host = Host::start(Setup {
        plugins: vec!["old-contract", "trap"],
        ..Setup::default()
    });
    let (status, plugins) = host.get_json("/api/v1/admin/plugins", ADMIN).await;
    assert_eq!(status, 200, "{plugins}");
    let refused = plugins["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{plugins}");
    assert_eq!(refused[0]["name"], "old-contract");
    let error = refused[0]["error"].as_str().unwrap();
    assert!(error.contains("plugboard:plugin@0.0.1"), "{error}");
    assert!(error.contains("plugboard:plugin@0.3.0"), "{error}");
    assert!(
        host.log().contains("plugboard:plugin@0.0.1"),
        "refusal is logged"
    );
    let channels: Vec<_> = plugins["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["info"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(channels.contains(&"twilio-sms".to_owned()), "{channels:?}");
    assert!(channels.contains(&"trap".to_owned()), "{channels:?}");

    let params = sms(
        "SM00000000000000000000000000000009",
        "+14155550107",
        "still works",
    );
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_fail_their_call_and_the_host_keeps_serving() {
    let extra = r#"
[[channels]]
name = "trap"
plugin = "trap"
queue = "support"
keep_failed = false

[[channels]]
name = "spin"
plugin = "infinite-loop"
queue = "support"
keep_failed = false

[[channels]]
name = "bomb"
plugin = "memory-bomb"
queue = "support"
keep_failed = false
"#;
    let host = Host::start(Setup {
        plugins: vec!["trap", "infinite-loop", "memory-bomb"],
        extra: extra.to_owned(),
        ..Setup::default()
    });
    // The caller gets the kind of failure and a request id; the log has the detail under it.
    let cases = [
        ("trap", 500, "failed", "trapped"),
        ("spin", 503, "timed out", "deadline"),
        ("bomb", 500, "out of memory", "memory"),
    ];
    for round in 0..2 {
        for (channel, status, reason, needle) in cases {
            let resp = host
                .http
                .post(host.url(&format!("/webhooks/{channel}")))
                .body("x=1")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), status, "{channel}");
            let body: serde_json::Value = resp.json().await.unwrap();
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(reason), "{channel}: {error}");
            let request_id = body["request_id"].as_str().unwrap();
            let log = host.log();
            let line = log.lines().find(|l| l.contains(request_id)).unwrap();
            assert!(line.contains(needle), "{channel}: {line}");
            assert!(line.contains(channel_plugin(channel)), "{channel}: {line}");

            // A healthy channel right after succeeds.
            let sid = format!("SM{round}{channel:0>31}");
            let params = sms(&sid, "+14155550108", channel);
            let ok = host
                .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
                .await;
            assert_eq!(ok.status(), 200, "healthy channel after {channel}");
        }
    }
    let log = host.log();
    assert!(
        log.contains("plugin=infinite-loop") || log.contains("infinite-loop"),
        "failure logged with plugin name"
    );
    assert!(
        log.contains("deliberate panic"),
        "the guest's panic message reaches the log"
    );
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(host.messages(&id, ALICE).await.len(), 6);
}

fn channel_plugin(channel: &str) -> &'static str {
    match channel {
        "trap" => "trap",
        "spin" => "infinite-loop",
        _ => "memory-bomb",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_data_survives_a_kill_and_restart() {
    let mut host = Host::start(Setup::default());
    for i in 0..20 {
        let sid = format!("SM{i:032}");
        let params = sms(&sid, &format!("+1415555{i:04}"), &format!("message {i}"));
        let resp = host
            .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
            .await;
        assert_eq!(resp.status(), 200);
    }
    host.restart(); // SIGKILL: no shutdown flush, only what was acknowledged durably.
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 20);
    for c in &convs {
        let id = c["id"].as_str().unwrap();
        assert_eq!(host.messages(id, ALICE).await.len(), 1);
    }
    // The restarted host still deduplicates against what was stored before.
    let params = sms(&format!("SM{:032}", 3), "+14155550003", "message 3");
    host.post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(host.conversations(ALICE).await.len(), 20);
}

/// A server and one queue: the start of the files the `check` tests write.
const CHECK_HEAD: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"
data_dir = "data"
[[queues]]
name = "support"
router = "ring-all"
"#;

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = run_check(
        dir.path(),
        &format!(
            r#"{CHECK_HEAD}
[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "support"
[channels.settings]
account_sid = "AC1"
from = "+15005550006"
"#
        ),
    );
    assert!(!ok);
    assert!(
        stderr.contains("channels[0].settings.auth_token"),
        "{stderr}"
    );
    assert!(stderr.contains("requires"), "{stderr}");
}

/// `plugboard check` names every problem of a file in one run, including settings that cannot
/// work (a `from` that is not E.164, an `api_base` that is not http(s)), and refuses the file.
#[test]
fn check_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str| run_check(dir.path(), text);
    let (ok, stderr) = run(&format!(
        r#"{CHECK_HEAD}
offer_timeout = 0
[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "nowhere"
[[agents]]
id = "alice"
name = "Alice"
token = "short"
queues = ["support"]
"#
    ));
    assert!(!ok);
    for key in [
        "3 problems",
        "queues[0].offer_timeout",
        "channels[0].queue",
        "agents[0].token",
    ] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }

    let (ok, stderr) = run(&format!(
        r#"{CHECK_HEAD}
[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "support"
[channels.settings]
account_sid = "AC1"
auth_token = "secret"
from = "Plugboard"
api_base = "ftp://127.0.0.1:1"
[[channels]]
name = "wa"
plugin = "twilio-whatsapp"
queue = "support"
[channels.settings]
account_sid = "AC1"
auth_token = "secret"
from = "whatsapp:+15005550006"
api_base = "http://127.0.0.1:1"
"#
    ));
    assert!(!ok);
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(
        stderr.contains("channels[0].settings.from") && stderr.contains("E.164"),
        "{stderr}"
    );
    assert!(
        stderr.contains("channels[0].settings.api_base") && stderr.contains("http"),
        "{stderr}"
    );
    assert!(!stderr.contains("channels[1]"), "{stderr}");
}
