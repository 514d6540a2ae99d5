//! Lists a client can page through, against the real binary: conversation lists and message
//! lists come a page at a time with an opaque `next_cursor`, pages never repeat a conversation
//! when new ones arrive between them, bad paging input is a 400 with a message, and
//! conversation ids are ours: dense, from 1 in each data directory, across restarts.

mod support;

use serde_json::Value;
use support::*;

async fn sms_in(host: &Host, sid: &str, from: &str, text: &str) {
    let params = inbound_sms(sid, from, text);
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
}

fn ids(page: &Value) -> Vec<String> {
    page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_lists_page_by_cursor_without_repeats_when_new_ones_arrive() {
    let host = Host::start(Setup::default());
    for i in 0..7 {
        sms_in(
            &host,
            &format!("SMpage{i:028}"),
            &format!("+1415555070{i}"),
            "hi",
        )
        .await;
    }
    let (status, first) = host.get_json("/api/v1/conversations?limit=3", ALICE).await;
    assert_eq!(status, 200, "{first}");
    let page1 = ids(&first);
    assert_eq!(page1.len(), 3);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();

    // A new conversation between two pages goes to the front, not into the next page.
    sms_in(
        &host,
        "SMpage0000000000000000000000000099",
        "+14155550799",
        "new",
    )
    .await;
    let (_, second) = host
        .get_json(
            &format!("/api/v1/conversations?limit=3&cursor={cursor}"),
            ALICE,
        )
        .await;
    let page2 = ids(&second);
    assert_eq!(page2.len(), 3);
    let cursor = second["next_cursor"].as_str().unwrap().to_owned();
    let (_, third) = host
        .get_json(
            &format!("/api/v1/conversations?limit=3&cursor={cursor}"),
            ALICE,
        )
        .await;
    let page3 = ids(&third);
    assert_eq!(page3.len(), 1);
    assert!(third["next_cursor"].is_null(), "the last page says so");

    let mut seen: Vec<String> = [page1, page2, page3].concat();
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "no conversation on two pages");
    assert_eq!(total, 7, "every conversation that existed is on a page");
    let (_, again) = host.get_json("/api/v1/conversations?limit=3", ALICE).await;
    assert_eq!(
        again["conversations"][0]["customer"], "+14155550799",
        "the newest is first"
    );

    // Only what changed since a moment.
    let since = again["conversations"][0]["updated_at"].as_u64().unwrap();
    let (_, changed) = host
        .get_json(
            &format!("/api/v1/conversations?updated_since={since}"),
            ALICE,
        )
        .await;
    assert_eq!(ids(&changed).len(), 1, "{changed}");

    for query in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "cursor=not-a-cursor",
        "updated_since=yesterday",
    ] {
        let (status, body) = host
            .get_json(&format!("/api/v1/conversations?{query}"), ALICE)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().is_some(), "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_page_in_order() {
    let host = Host::start(Setup::default());
    for i in 0..5 {
        sms_in(
            &host,
            &format!("SMmsgs{i:028}"),
            "+14155550800",
            &format!("m{i}"),
        )
        .await;
    }
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut texts = Vec::new();
    let mut path = format!("/api/v1/conversations/{id}/messages?limit=2");
    let mut pages = 0;
    loop {
        let (status, body) = host.get_json(&path, ALICE).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        let page = body["messages"].as_array().unwrap();
        assert!(page.len() <= 2);
        texts.extend(page.iter().map(|m| m["text"].as_str().unwrap().to_owned()));
        match body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/conversations/{id}/messages?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(pages, 3);
    let (status, body) = host
        .get_json(
            &format!("/api/v1/conversations/{id}/messages?cursor=x"),
            ALICE,
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_ids_are_dense_from_one_across_restarts() {
    let mut host = Host::start(Setup::default());
    for i in 0..3 {
        sms_in(
            &host,
            &format!("SMdense{i:027}"),
            &format!("+1415555090{i}"),
            "hi",
        )
        .await;
    }
    let mut got: Vec<String> = host
        .conversations(ALICE)
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, ["1", "2", "3"]);
    host.restart();
    sms_in(
        &host,
        "SMdense0000000000000000000000000009",
        "+14155550909",
        "hi",
    )
    .await;
    let newest = host.conversations(ALICE).await[0]["id"].clone();
    assert_eq!(newest, "4", "the counter survives a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_narrow_by_queue_state_channel_and_owner_and_refuse_unknown_filters() {
    let host = Host::start(Setup {
        support: r#"managers = ["alice"]"#.into(),
        ..Setup::default()
    });
    for i in 0..4 {
        sms_in(
            &host,
            &format!("SMfilt{i:028}"),
            &format!("+1415555080{i}"),
            "hi",
        )
        .await;
    }
    // Alice takes two and closes one of them.
    for id in ["1", "2"] {
        let (status, body) = host
            .post_json(
                &format!("/api/v1/conversations/{id}/take"),
                ALICE,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = host
        .post_json(
            "/api/v1/conversations/2/close",
            ALICE,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let list = |query: &'static str| {
        let host = &host;
        async move {
            let (status, body) = host
                .get_json(&format!("/api/v1/conversations?{query}"), ALICE)
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            let mut got = ids(&body);
            got.sort();
            got
        }
    };
    assert_eq!(list("view=recent").await, ["1", "3", "4"]);
    assert_eq!(list("view=recent&state=queued").await, ["3", "4"]);
    assert_eq!(list("view=recent&state=assigned").await, ["1"]);
    assert_eq!(list("view=recent&owner=alice").await, ["1"]);
    assert_eq!(list("view=archived").await, ["2"]);
    assert_eq!(list("view=monitor").await, ["1", "2", "3", "4"]);
    assert_eq!(list("view=monitor&state=closed").await, ["2"]);
    assert_eq!(
        list("view=monitor&queue=support&channel=sms").await,
        ["1", "2", "3", "4"]
    );
    assert!(list("view=monitor&channel=email").await.is_empty());
    assert!(
        list("view=monitor&queue=sales").await.is_empty(),
        "alice does not manage sales"
    );
    // Closing is a change a client polling with updated_since finds.
    let (_, conv) = host
        .get_json("/api/v1/conversations?view=archived", ALICE)
        .await;
    let closed_at = conv["conversations"][0]["updated_at"].as_u64().unwrap();
    let since = format!("/api/v1/conversations?view=monitor&updated_since={closed_at}");
    let (_, recent) = host.get_json(&since, ALICE).await;
    assert!(ids(&recent).contains(&"2".to_owned()), "{recent}");

    for (query, words) in [
        ("state=open", "unknown state"),
        ("queue=nowhere", "unknown queue"),
    ] {
        let (status, body) = host
            .get_json(&format!("/api/v1/conversations?{query}"), ALICE)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(words), "{body}");
    }
}
