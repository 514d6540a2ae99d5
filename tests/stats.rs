//! Statistics on a scripted day of traffic with known answers, against the real binary, in
//! Tokyo time on a host whose clock starts 20 s before midnight there: what happens before
//! midnight counts on 1 December, what happens after on 2 December (both are 1 December in
//! UTC). Reports by day, week and month, as JSON and CSV, and what each caller may see.

mod support;

use serde_json::{Value, json};
use support::*;

const START: &str = "2026-12-01T23:59:40+09:00";
const A: &str = "+14155550501";
const B: &str = "+14155550502";

async fn inbound(host: &Host, sid: &str, from: &str) -> String {
    let params = inbound_sms(sid, from, "hello");
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    eventually("the conversation", || async {
        host.conversations(MANAGER)
            .await
            .into_iter()
            .find(|c| c["customer"] == from)
            .map(|c| c["id"].as_str().unwrap().to_owned())
    })
    .await
}

/// Alice manages `support`: she sees every conversation of it, queued or not.
const MANAGER: &str = ALICE;

async fn stats(host: &Host, token: &str, path: &str) -> (u16, Value) {
    host.get_json(&format!("/api/v1/stats/{path}"), token).await
}

/// A report's lines as `(name, period, counts...)` for easy comparison.
fn lines(report: &Value, counts: &[&str]) -> Vec<(String, String, Vec<u64>)> {
    report["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no lines: {report}"))
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_owned(),
                l["period"].as_str().unwrap().to_owned(),
                counts
                    .iter()
                    .map(|c| l["counts"][c].as_u64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

fn span_count(report: &Value, name: &str, span: &str) -> u64 {
    report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no line {name}: {report}"))["spans"][span]["count"]
        .as_u64()
        .unwrap()
}

/// Today in the deployment's time zone, as the host's clock has it (a report's default `to`).
async fn today(host: &Host) -> String {
    stats(host, ADMIN, "channels").await.1["to"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn sent(host: &Host, id: &str, token: &str) {
    eventually("the reply accepted by the provider", || async {
        host.messages(id, token)
            .await
            .iter()
            .any(|m| m["direction"] == "outbound" && m["status"] != "pending")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_day_gives_known_answers_across_midnight_in_tokyo() {
    let twilio = FakeProvider::accepting().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        server: "timezone = \"Asia/Tokyo\"".into(),
        support: "offer_timeout = 1\nmissed_offers_before_away = 1\nmanagers = [\"alice\"]".into(),
        env: vec![("PLUGBOARD_CLOCK_START".into(), START.into())],
        ..Setup::default()
    });
    assert_eq!(today(&host).await, "2026-12-01");

    // 1 December, 23:59:4x: A writes; Alice (offline) takes it and answers.
    let a = inbound(&host, "SMstats000000000000000000000001", A).await;
    assert_eq!(host.act(&a, "take", ALICE, json!({})).await.0, 200);
    let (status, body) = host
        .act(&a, "messages", ALICE, json!({"text": "Hello!"}))
        .await;
    assert!(
        status == 200 || status == 201 || status == 202,
        "{status} {body}"
    );
    sent(&host, &a, ALICE).await;
    assert_eq!(
        today(&host).await,
        "2026-12-01",
        "the first part of the script ran before midnight"
    );

    // Midnight in Tokyo.
    eventually("midnight in Tokyo", || async {
        (today(&host).await == "2026-12-02").then_some(())
    })
    .await;

    // 2 December: B writes while Alice is online; she lets the offer lapse and is set away.
    let mut stream = SseStream::open(&host, ALICE, None).await;
    host.presence(ALICE, "online").await;
    let b = inbound(&host, "SMstats000000000000000000000002", B).await;
    loop {
        let e = stream.next_of("presence").await;
        if e.data["data"]["presence"] == "away" {
            break;
        }
    }
    // Alice, the manager, closes B unanswered (abandoned) and hands A to sales.
    assert_eq!(host.act(&b, "close", ALICE, json!({})).await.0, 200);
    assert_eq!(
        host.act(&a, "transfer", ALICE, json!({"queue": "sales"}))
            .await
            .0,
        200
    );
    // Bob takes A in sales, answers and resolves it.
    assert_eq!(host.act(&a, "take", BOB, json!({})).await.0, 200);
    let (status, body) = host
        .act(&a, "messages", BOB, json!({"text": "Sorted."}))
        .await;
    assert!(
        status == 200 || status == 201 || status == 202,
        "{status} {body}"
    );
    eventually("Bob's reply accepted", || async {
        (host
            .messages(&a, BOB)
            .await
            .iter()
            .filter(|m| m["direction"] == "outbound" && m["status"] != "pending")
            .count()
            == 2)
            .then_some(())
    })
    .await;
    assert_eq!(host.act(&a, "close", BOB, json!({})).await.0, 200);

    // Channels: one message each way on each Tokyo day.
    let range = "from=2026-12-01&to=2026-12-02";
    let (status, day) = stats(&host, ADMIN, &format!("channels?period=day&{range}")).await;
    assert_eq!(status, 200, "{day}");
    assert_eq!(day["timezone"], "Asia/Tokyo");
    let rs = ["received", "sent"];
    assert_eq!(
        lines(&day, &rs),
        vec![
            ("sms".into(), "2026-12-01".into(), vec![1, 1]),
            ("sms".into(), "2026-12-02".into(), vec![1, 1]),
        ]
    );
    let (_, week) = stats(&host, ADMIN, &format!("channels?period=week&{range}")).await;
    assert_eq!(
        lines(&week, &rs),
        vec![("sms".into(), "2026-11-30".into(), vec![2, 2])]
    );
    let (_, month) = stats(&host, ADMIN, &format!("channels?period=month&{range}")).await;
    assert_eq!(
        lines(&month, &rs),
        vec![("sms".into(), "2026-12-01".into(), vec![2, 2])]
    );
    let (_, first_day) = stats(&host, ADMIN, "channels?from=2026-12-01&to=2026-12-01").await;
    assert_eq!(
        lines(&first_day, &rs),
        vec![("sms".into(), "2026-12-01".into(), vec![1, 1])]
    );

    // Agents and queues over the month.
    let ac = ["handled", "offers", "missed", "transfers"];
    let (_, agents) = stats(&host, ADMIN, &format!("agents?period=month&{range}")).await;
    assert_eq!(
        lines(&agents, &ac),
        vec![
            ("alice".into(), "2026-12-01".into(), vec![0, 1, 1, 1]),
            ("bob".into(), "2026-12-01".into(), vec![1, 0, 0, 0]),
        ],
        "{agents}"
    );
    assert_eq!(span_count(&agents, "alice", "first_response"), 1);
    assert_eq!(span_count(&agents, "alice", "resolution"), 0);
    assert_eq!(span_count(&agents, "bob", "first_response"), 1);
    assert_eq!(span_count(&agents, "bob", "resolution"), 1);
    let qc = [
        "handled",
        "offers",
        "missed",
        "transfers",
        "overflowed",
        "abandoned",
    ];
    let (_, queues) = stats(&host, ADMIN, &format!("queues?period=month&{range}")).await;
    assert_eq!(
        lines(&queues, &qc),
        vec![
            ("sales".into(), "2026-12-01".into(), vec![1, 0, 0, 0, 0, 0]),
            (
                "support".into(),
                "2026-12-01".into(),
                vec![0, 1, 1, 1, 0, 1]
            ),
        ],
        "{queues}"
    );
    for (queue, span, n) in [
        ("support", "waiting", 1),
        ("support", "first_response", 1),
        ("support", "resolution", 0),
        ("sales", "waiting", 1),
        ("sales", "first_response", 1),
        ("sales", "resolution", 1),
    ] {
        assert_eq!(
            span_count(&queues, queue, span),
            n,
            "{queue} {span}: {queues}"
        );
    }
    let resolution = &queues["lines"][0]["spans"]["resolution"];
    assert!(
        resolution["median_s"].as_u64().unwrap() <= 60,
        "{resolution}"
    );

    // Who sees what: the manager her queue and its agents; an agent their own line.
    let (_, mine) = stats(&host, ALICE, &format!("queues?period=month&{range}")).await;
    assert_eq!(lines(&mine, &qc).len(), 1);
    assert_eq!(mine["lines"][0]["name"], "support");
    let (_, mine) = stats(&host, BOB, &format!("agents?period=month&{range}")).await;
    assert_eq!(
        lines(&mine, &ac),
        vec![("bob".into(), "2026-12-01".into(), vec![1, 0, 0, 0])]
    );
    let (status, body) = stats(&host, BOB, "queues").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("managers"),
        "{body}"
    );

    // CSV, and bad requests.
    let csv = host
        .http
        .get(host.url(&format!("/api/v1/stats/channels?period=month&{range}")))
        .bearer_auth(ADMIN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        csv.text().await.unwrap(),
        "channel,period,received,sent\r\nsms,2026-12-01,2,2\r\n"
    );
    for (query, needle) in [
        ("channels?period=year", "period"),
        ("channels?from=2026-12-02&to=2026-12-01", "after"),
        ("channels?from=yesterday", "from"),
        ("channels?from=2020-01-01&to=2026-12-01", "at most"),
    ] {
        let (status, body) = stats(&host, ADMIN, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    assert_eq!(stats(&host, ADMIN, "contacts").await.0, 404);
    assert_eq!(stats(&host, "nobody-token", "channels").await.0, 401);
}
