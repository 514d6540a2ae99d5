//! The walls between agents, against the real binary over loopback: an agent starts
//! conversations only on channels that feed their queues and never takes over another queue's
//! conversation; `send_from` must feed one of the agent's queues or the configuration is
//! refused; a colleague's conversation and closed ones an agent never handled are not
//! readable by id; transfers stay inside the conversation's queue (and its managers) and never
//! go to oneself; a reply not yet accepted by the provider answers `202`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const CAROL: &str = "carol-token-123";
const DAVE: &str = "dave-token-1234";
const ERIN: &str = "erin-token-1234";

/// Carol works `support` with Alice; Dave manages `support` without working it; Erin works
/// `sales` with Bob and may start conversations, with no `send_from`.
const TEAM: &str = r#"
[[agents]]
id = "carol"
name = "Carol"
token = "carol-token-123"
queues = ["support"]

[[agents]]
id = "dave"
name = "Dave"
token = "dave-token-1234"

[[agents]]
id = "erin"
name = "Erin"
token = "erin-token-1234"
queues = ["sales"]
may_start = true
"#;

/// A Twilio SMS channel `shop` feeding `sales`, sending to `api_base`.
fn shop_channel(api_base: &str) -> String {
    format!(
        r#"
[[channels]]
name = "shop"
plugin = "twilio-sms"
queue = "sales"
[channels.settings]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "+15005550008"
api_base = "{api_base}"
"#
    )
}

fn team(twilio: &FakeProvider, support: &str) -> Setup {
    Setup {
        twilio_api_base: Some(twilio.base.clone()),
        extra: format!("{TEAM}{}", shop_channel(&twilio.base)),
        support: format!("managers = [\"dave\"]\n{support}"),
        ..Setup::default()
    }
}

async fn twilio_ok() -> FakeProvider {
    FakeProvider::start(vec![(
        201,
        json!({"sid": "SMout000000000000000000000000001"}),
    )])
    .await
}

/// Posts an inbound SMS on `sms` and returns its conversation's id (as Dave, who monitors
/// `support`, or Bob, should it have overflowed to `sales` already).
async fn inbound(host: &Host, sid: &str, from: &str, text: &str) -> String {
    let params = inbound_sms(sid, from, text);
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    for (token, list) in [(DAVE, "monitor"), (BOB, "recent")] {
        if let Some(c) = view(host, token, list)
            .await
            .into_iter()
            .find(|c| c["customer"] == from)
        {
            return c["id"].as_str().unwrap().to_owned();
        }
    }
    panic!("no conversation with {from}");
}

async fn view(host: &Host, token: &str, view: &str) -> Vec<Value> {
    let (status, body) = host
        .get_json(&format!("/api/v1/conversations?view={view}"), token)
        .await;
    assert_eq!(status, 200, "{view}: {body}");
    body["conversations"].as_array().cloned().unwrap()
}

/// The conversation `id` as its queue's manager Dave sees it.
async fn monitored(host: &Host, id: &str) -> Value {
    view(host, DAVE, "monitor")
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("conversation {id} not monitored"))
}

async fn messages_status(host: &Host, id: &str, token: &str) -> (u16, Value) {
    host.get_json(&format!("/api/v1/conversations/{id}/messages"), token)
        .await
}

async fn act(host: &Host, id: &str, action: &str, token: &str, body: Value) -> (u16, Value) {
    host.post_json(&format!("/api/v1/conversations/{id}/{action}"), token, body)
        .await
}

fn assert_json_error(status: u16, body: &Value, expected: u16, words: &[&str]) {
    assert_eq!(status, expected, "{body}");
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error: {body}"));
    for w in words {
        assert!(error.contains(w), "{w:?} not in {error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_starts_only_on_channels_of_their_queues_and_takes_no_other_queues_conversation() {
    let twilio = twilio_ok().await;
    let host = Host::start(team(&twilio, ""));
    let id = inbound(
        &host,
        "SMwall0000000000000000000000000001",
        "+14155557001",
        "my card number is 4111",
    )
    .await;

    // Erin (sales) names `sms`, which feeds support: the queued conversation stays support's.
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ERIN,
            json!({"to": "+14155557001", "channel": "sms", "text": "Erin here"}),
        )
        .await;
    assert_json_error(status, &body, 403, &["sms", "queue `support`"]);
    assert!(body.get("conversation").is_none(), "{body}");
    let c = monitored(&host, &id).await;
    assert_eq!(
        (c["state"].clone(), c["owner"].clone()),
        (json!("queued"), Value::Null)
    );
    assert_eq!(messages_status(&host, &id, ERIN).await.0, 404);
    // A number with no conversation yet is refused the same way.
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ERIN,
            json!({"to": "+14155557002", "channel": "sms"}),
        )
        .await;
    assert_json_error(status, &body, 403, &["sms"]);

    // Closed, it is still not Erin's to take over.
    assert_eq!(act(&host, &id, "take", ALICE, json!({})).await.0, 200);
    assert_eq!(act(&host, &id, "close", ALICE, json!({})).await.0, 200);
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ERIN,
            json!({"to": "+14155557001", "channel": "sms", "text": "Erin again"}),
        )
        .await;
    assert_json_error(status, &body, 403, &["sms"]);
    let c = monitored(&host, &id).await;
    assert_eq!(
        (c["state"].clone(), c["owner"].clone()),
        (json!("closed"), json!("alice"))
    );
    assert!(view(&host, ERIN, "recent").await.is_empty());
    assert!(view(&host, ERIN, "archived").await.is_empty());
    // The 403s are answered after the send would have been attempted: nothing went out.
    assert!(twilio.recorded().is_empty(), "{:?}", twilio.recorded());

    // On `shop`, which feeds her queue, she may.
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ERIN,
            json!({"to": "+14155557001", "channel": "shop", "text": "Sales here"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["conversation"]["channel"], "shop");
    assert_eq!(body["conversation"]["queue"], "sales");
    assert_eq!(body["conversation"]["owner"], "erin");
    assert_eq!(twilio.recorded().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_that_overflowed_to_another_queue_is_not_taken_over() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        alice: "may_start = true\nsend_from = \"sms\"".to_owned(),
        ..team(&twilio, "max_wait = 1\noverflow = \"sales\"")
    });
    let id = inbound(
        &host,
        "SMwall0000000000000000000000000002",
        "+14155557003",
        "hello?",
    )
    .await;
    eventually("overflow to sales", || async {
        view(&host, BOB, "recent")
            .await
            .into_iter()
            .find(|c| c["id"] == id)
    })
    .await;
    // `sms` is Alice's own send_from, but the conversation now belongs to sales.
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ALICE,
            json!({"to": "+14155557003", "text": "Alice here"}),
        )
        .await;
    assert_json_error(status, &body, 403, &["+14155557003", "sales"]);
    let c = view(&host, BOB, "recent")
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("still in sales");
    assert_eq!(
        (c["state"].clone(), c["owner"].clone()),
        (json!("queued"), Value::Null)
    );
    assert_eq!(messages_status(&host, &id, ALICE).await.0, 404);
    assert!(twilio.recorded().is_empty());

    // A new number on her own channel still works.
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ALICE,
            json!({"to": "+14155557004"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["conversation"]["queue"], "support");
}

/// Runs `plugboard ARGS`, waiting up to 60 s; returns (exit code, stderr).
fn run_plugboard(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("plugboard {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(err_path).unwrap())
}

#[test]
fn send_from_a_channel_of_another_queue_refuses_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = |bob_send_from: &str| {
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
data_dir = "{data}"

[[queues]]
name = "support"
router = "ring-all"

[[queues]]
name = "sales"
router = "ring-all"

[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "support"
[channels.settings]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "+15005550006"
api_base = "http://127.0.0.1:9"

[[channels]]
name = "shop"
plugin = "twilio-sms"
queue = "sales"
[channels.settings]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "+15005550008"
api_base = "http://127.0.0.1:9"

[[agents]]
id = "alice"
name = "Alice"
token = "{ALICE}"
queues = ["support"]
may_start = true
send_from = "sms"

[[agents]]
id = "bob"
name = "Bob"
token = "{BOB}"
queues = ["sales"]
may_start = true
send_from = "{bob_send_from}"
"#,
            port = free_port(),
            data = dir.path().join("data").display(),
        )
    };
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, config("sms")).unwrap();
    let bad = bad.to_str().unwrap();
    for command in ["check", "serve"] {
        let (code, stderr) = run_plugboard(&[command, "--config", bad]);
        assert_ne!(code, Some(0), "{command} accepted it: {stderr}");
        for w in ["agents[1].send_from", "`bob`", "`sms`", "queue `support`"] {
            assert!(stderr.contains(w), "{command}: {w:?} not in {stderr}");
        }
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, config("shop")).unwrap();
    let (code, stderr) = run_plugboard(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_colleagues_conversation_is_not_readable_by_id() {
    let twilio = twilio_ok().await;
    let host = Host::start(team(&twilio, ""));
    let id = inbound(
        &host,
        "SMwall0000000000000000000000000003",
        "+14155557005",
        "private matter",
    )
    .await;
    assert_eq!(
        messages_status(&host, &id, CAROL).await.0,
        200,
        "queued: every agent"
    );
    assert_eq!(act(&host, &id, "take", ALICE, json!({})).await.0, 200);

    // Carol works the queue: the conversation is gone for her, by list and by id.
    assert!(
        !view(&host, CAROL, "recent")
            .await
            .iter()
            .any(|c| c["id"] == id)
    );
    let (status, body) = messages_status(&host, &id, CAROL).await;
    assert_json_error(status, &body, 404, &[]);
    assert!(!body.to_string().contains("private matter"), "{body}");
    // Contending for it is the conflict that names the owner, and nothing more.
    let (status, body) = act(&host, &id, "take", CAROL, json!({})).await;
    assert_json_error(status, &body, 409, &["alice"]);
    let (status, body) = act(&host, &id, "messages", CAROL, json!({"text": "me too"})).await;
    assert_json_error(status, &body, 409, &["alice"]);
    assert!(!body.to_string().contains("private matter"), "{body}");
    assert!(twilio.recorded().is_empty(), "carol's reply was not sent");

    // Dave manages the queue: he still reads it.
    let (status, body) = messages_status(&host, &id, DAVE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"][0]["text"], "private matter");

    // Handed to Carol, it is hers and no longer Alice's to read.
    let (status, body) = act(&host, &id, "transfer", ALICE, json!({"agent": "carol"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(messages_status(&host, &id, CAROL).await.0, 200);
    assert_eq!(messages_status(&host, &id, ALICE).await.0, 404);
    let (status, body) = act(&host, &id, "close", ALICE, json!({})).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_conversations_are_readable_only_by_those_who_handled_them() {
    let twilio = twilio_ok().await;
    let host = Host::start(team(&twilio, ""));
    let id = inbound(
        &host,
        "SMwall0000000000000000000000000004",
        "+14155557006",
        "closed business",
    )
    .await;
    assert_eq!(act(&host, &id, "take", ALICE, json!({})).await.0, 200);
    assert_eq!(act(&host, &id, "close", ALICE, json!({})).await.0, 200);

    // Carol never handled it: not found, whatever she asks.
    let (status, body) = messages_status(&host, &id, CAROL).await;
    assert_json_error(status, &body, 404, &[]);
    for (action, body) in [
        ("take", json!({})),
        ("close", json!({})),
        ("transfer", json!({"agent": "carol"})),
        ("messages", json!({"text": "hello"})),
    ] {
        let (status, answer) = act(&host, &id, action, CAROL, body).await;
        assert_json_error(status, &answer, 404, &[]);
        assert!(!answer.to_string().contains("alice"), "{action}: {answer}");
    }
    assert!(view(&host, CAROL, "archived").await.is_empty());
    // Alice handled it; Dave manages the queue.
    assert_eq!(messages_status(&host, &id, ALICE).await.0, 200);
    assert_eq!(messages_status(&host, &id, DAVE).await.0, 200);
    assert!(twilio.recorded().is_empty());

    // The customer writes again: back in the queue with its whole history, for everyone in it.
    inbound(
        &host,
        "SMwall0000000000000000000000000005",
        "+14155557006",
        "one more thing",
    )
    .await;
    let (status, body) = messages_status(&host, &id, CAROL).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_stay_inside_the_queue_and_never_go_to_oneself() {
    let twilio = twilio_ok().await;
    let host = Host::start(team(&twilio, ""));
    let id = inbound(
        &host,
        "SMwall0000000000000000000000000006",
        "+14155557007",
        "help",
    )
    .await;
    assert_eq!(act(&host, &id, "take", ALICE, json!({})).await.0, 200);

    // Bob works sales: he may not be handed a support conversation.
    let (status, body) = act(&host, &id, "transfer", ALICE, json!({"agent": "bob"})).await;
    assert_json_error(status, &body, 422, &["bob", "support"]);
    assert_eq!(messages_status(&host, &id, BOB).await.0, 404);
    let (status, body) = act(&host, &id, "transfer", ALICE, json!({"agent": "alice"})).await;
    assert_json_error(status, &body, 422, &["yourself"]);
    let c = monitored(&host, &id).await;
    assert_eq!(c["owner"], "alice", "{c}");

    // Dave manages support: he may receive it, and may not transfer it to himself.
    let (status, body) = act(&host, &id, "transfer", ALICE, json!({"agent": "dave"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner"], "dave");
    let (status, body) = act(&host, &id, "transfer", DAVE, json!({"agent": "dave"})).await;
    assert_json_error(status, &body, 422, &["yourself"]);
    let (status, body) = act(&host, &id, "transfer", DAVE, json!({"agent": "erin"})).await;
    assert_json_error(status, &body, 422, &["erin", "support"]);
    let (status, body) = act(&host, &id, "transfer", DAVE, json!({"agent": "carol"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner"], "carol");
    assert_eq!(monitored(&host, &id).await["owner"], "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_not_yet_accepted_by_the_provider_answers_202() {
    let twilio = ScriptedProvider::start(vec![
        Reply::new(503, twilio_error(503, 20500, "Service Unavailable")),
        Reply::new(201, twilio_created("SMlater0000000000000000000000001")),
    ])
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        env: vec![("PLUGBOARD_OUTBOX_BASE_MS".into(), "100".into())],
        ..Setup::default()
    });
    let params = inbound_sms("SMwall0000000000000000000000000007", "+14155557008", "hi");
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The first attempt fails and will be retried: pending, so 202 with the retry note.
    let (status, msg) = act(&host, &id, "messages", ALICE, json!({"text": "first"})).await;
    assert_eq!(
        (status, msg["status"].clone()),
        (202, json!("pending")),
        "{msg}"
    );
    assert!(
        msg["error"]
            .as_str()
            .unwrap_or_default()
            .contains("retrying"),
        "{msg}"
    );
    eventually("the retry to be accepted", || async {
        host.messages(&id, ALICE)
            .await
            .into_iter()
            .find(|m| m["text"] == "first" && m["status"] == "queued")
    })
    .await;
    // Accepted at the first attempt: 201 with the provider's id.
    let (status, msg) = act(&host, &id, "messages", ALICE, json!({"text": "second"})).await;
    assert_eq!(
        (status, msg["status"].clone()),
        (201, json!("queued")),
        "{msg}"
    );
    assert_eq!(msg["provider_id"], "SMlater0000000000000000000000001");
}
