//! Work classification against the real binary: a billing keyword puts a new conversation in
//! the billing queue with its skills and priority, and it is offered ahead of older normal work.

mod support;

use serde_json::json;
use support::*;

const BILLING: &str = r#"
[[queues]]
name = "billing"
router = "ring-all"

[[agents]]
id = "erin"
name = "Erin"
token = "erin-token-1234"
queues = ["support", "billing"]
skills = ["billing"]

[[rules]]
keywords = ["invoice", "billing"]
queue = "billing"
skills = ["billing"]
priority = 10
"#;

async fn inbound(host: &Host, sid: &str, from: &str, text: &str) -> String {
    let params = inbound_sms(sid, from, text);
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    eventually("the conversation", || async {
        host.conversations("erin-token-1234")
            .await
            .into_iter()
            .find(|c| c["customer"] == from)
            .map(|c| c["id"].as_str().unwrap().to_owned())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_keyword_routes_with_skills_and_priority_ahead_of_older_work() {
    let host = Host::start(Setup {
        extra: BILLING.into(),
        ..Setup::default()
    });
    let erin = "erin-token-1234";
    let normal = inbound(
        &host,
        "SMclass00000000000000000000000001",
        "+14155550801",
        "hello there",
    )
    .await;
    let billing = inbound(
        &host,
        "SMclass00000000000000000000000002",
        "+14155550802",
        "A question about my Invoice, please",
    )
    .await;
    let view = |id: String| {
        let host = &host;
        async move {
            host.get_json(&format!("/api/v1/conversations/{id}"), erin)
                .await
                .1
        }
    };
    let b = view(billing.clone()).await;
    assert_eq!(
        (
            b["queue"].as_str(),
            b["priority"].as_i64(),
            b["skills"].clone()
        ),
        (Some("billing"), Some(10), json!(["billing"])),
        "{b}"
    );
    let n = view(normal.clone()).await;
    assert_eq!(
        (n["queue"].as_str(), n["priority"].as_i64()),
        (Some("support"), Some(0)),
        "{n}"
    );

    // Erin comes online: the billing work, though newer, is offered first.
    let mut stream = SseStream::open(&host, erin, None).await;
    host.presence(erin, "online").await;
    let first = stream.next_of("offered").await;
    let second = stream.next_of("offered").await;
    assert_eq!(
        (
            first.data["conversation"].as_str(),
            second.data["conversation"].as_str()
        ),
        (Some(billing.as_str()), Some(normal.as_str())),
        "higher priority first, then longest waiting"
    );
}
