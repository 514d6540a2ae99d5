//! A data directory of the previous release opens in this one and keeps working (issue 12).
//!
//! `tests/fixtures/data-0.2.0.tar.gz` was written by the 0.2.0 binary (see
//! `tests/fixtures/README.md`); `data-0.2.0.json` records what it holds as that release's API
//! showed it. Each test unpacks a fresh copy, starts the current binary on it and checks, only
//! through the HTTP API, that everything reads back the same, that new traffic continues where
//! the old data left off, and that a second start on the migrated directory is harmless.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use support::*;

/// The manifest of the 0.2.0 fixture.
fn manifest() -> Value {
    serde_json::from_str(include_str!("fixtures/data-0.2.0.json")).unwrap()
}

/// A fresh directory holding the 0.2.0 fixture as its `data` folder.
fn old_data_dir() -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("plugboard-migration-")
        .tempdir()
        .unwrap()
        .keep();
    let tarball = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/data-0.2.0.tar.gz"
    );
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(&dir)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar -xzf {tarball} failed");
    assert!(dir.join("data/db").is_dir(), "the fixture holds data/db");
    dir
}

/// The current binary on a fresh copy of the 0.2.0 data.
fn old_data_host(setup: Setup) -> Host {
    Host::start_in(old_data_dir(), setup)
}

fn conversation<'a>(m: &'a Value, id: &str) -> &'a Value {
    m["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("conversation {id} in the manifest"))
}

/// The id of the manifest's conversation with the customer of `role` (`"closed"`, ...).
/// The first outbound message of conversation `id` in the manifest.
fn first_outbound(m: &Value, id: &str) -> Value {
    conversation(m, id)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["direction"] == "outbound")
        .unwrap_or_else(|| panic!("an outbound message in conversation {id}"))
        .clone()
}

fn id_of(m: &Value, role: &str) -> String {
    let customer = &m["customers"][role];
    m["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| &c["customer"] == customer)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every conversation alice sees, recent and archived, by id.
async fn alice_sees(host: &Host) -> Vec<Value> {
    let mut all = host
        .all_pages(
            "/api/v1/conversations?view=recent&limit=200",
            "conversations",
            ALICE,
        )
        .await;
    all.extend(
        host.all_pages(
            "/api/v1/conversations?view=archived&limit=200",
            "conversations",
            ALICE,
        )
        .await,
    );
    all.sort_by_key(|c| c["id"].as_str().unwrap().parse::<u64>().unwrap());
    all
}

/// A Twilio message SID of our own, apart from the fixture's.
fn sid(n: u32) -> String {
    format!("SM{n:032x}")
}

async fn sms_in(host: &Host, sid: &str, from: &str, text: &str) {
    let params = inbound_sms(sid, from, text);
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Checks that everything the manifest records reads back the same through the API.
async fn assert_reads_back(host: &Host, m: &Value) {
    let convs = alice_sees(host).await;
    let want = m["conversations"].as_array().unwrap();
    let ids: Vec<&str> = convs.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let want_ids: Vec<&str> = want.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, want_ids, "the same conversations under the same ids");
    for (got, old) in convs.iter().zip(want) {
        let id = old["id"].as_str().unwrap();
        for field in [
            "channel",
            "kind",
            "customer",
            "queue",
            "state",
            "owner",
            "handled_by",
            "message_count",
            "created_at",
            "last_inbound_at",
            "contact_name",
            "known_contact",
        ] {
            assert_eq!(got[field], old[field], "conversation {id}: {field}");
        }
        let messages = host.messages(id, ALICE).await;
        let old_messages = old["messages"].as_array().unwrap();
        assert_eq!(
            messages.len(),
            old_messages.len(),
            "conversation {id}: {messages:?}"
        );
        for (got, old) in messages.iter().zip(old_messages) {
            let mid = old["id"].as_str().unwrap();
            for field in [
                "id",
                "direction",
                "text",
                "author",
                "provider_id",
                "created_at",
            ] {
                assert_eq!(got[field], old[field], "message {mid}: {field}");
            }
            if old["status"] == "pending" {
                // The resumed outbox may have tried it again since, and given up.
                assert!(
                    got["status"] == "pending" || got["status"] == "failed",
                    "message {mid}: {got}"
                );
            } else {
                assert_eq!(got["status"], old["status"], "message {mid}: status");
                assert_eq!(got["error"], old["error"], "message {mid}: error");
            }
        }
    }
    let (status, bobs) = host.get_json("/api/v1/conversations?limit=200", BOB).await;
    assert_eq!(status, 200);
    assert_eq!(
        bobs["conversations"],
        json!([]),
        "bob works another queue: he sees none of them"
    );

    let (status, contacts) = host.get_json("/api/v1/contacts", ALICE).await;
    assert_eq!(status, 200);
    assert_eq!(contacts, m["contacts"]);

    for (agent, token) in [("alice", ALICE), ("bob", BOB)] {
        let (status, presence) = host.get_json("/api/v1/agents/me/presence", token).await;
        assert_eq!(status, 200);
        assert_eq!(presence, m["presence"][agent], "{agent}'s stored presence");
    }

    // The event log replays from its start with the same ids, kinds and conversations.
    for (agent, token) in [("alice", ALICE), ("bob", BOB)] {
        let old_events = m["events"][agent].as_array().unwrap();
        let mut stream = SseStream::open(host, token, Some(0)).await;
        for old in old_events {
            let e = stream.next().await;
            assert_eq!(
                (json!(e.id), json!(e.kind), &e.data["conversation"]),
                (old["id"].clone(), old["kind"].clone(), &old["conversation"]),
                "{agent}'s event log"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_release_data_reads_back_the_same_and_opens_again() {
    let m = manifest();
    let mut host = old_data_host(Setup::default());
    assert_reads_back(&host, &m).await;

    // A second start on the migrated directory: migrating again changes nothing.
    let status = host.terminate();
    assert!(status.success(), "clean shutdown: {status}");
    host.restart();
    assert_reads_back(&host, &m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_traffic_on_previous_release_data_continues_its_ids_and_conversations() {
    let m = manifest();
    let mut host = old_data_host(Setup::default());
    let largest = m["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap();

    // A new customer gets the next id after the largest stored one.
    sms_in(&host, &sid(0x100), "+14155550106", "New here").await;
    let convs = alice_sees(&host).await;
    let new = convs
        .iter()
        .find(|c| c["customer"] == "+14155550106")
        .expect("the new customer's conversation");
    assert_eq!(new["id"], (largest + 1).to_string(), "{new}");

    // An existing customer's message lands in their old conversation, after its history.
    let pending = id_of(&m, "pending_reply");
    let old = conversation(&m, &pending);
    let customer = old["customer"].as_str().unwrap();
    sms_in(&host, &sid(0x101), customer, "And on Sundays?").await;
    let messages = host.messages(&pending, ALICE).await;
    let old_count = old["messages"].as_array().unwrap().len();
    assert_eq!(messages.len(), old_count + 1, "{messages:?}");
    assert_eq!(messages[old_count]["text"], "And on Sundays?");
    assert_eq!(messages[old_count]["direction"], "inbound");
    assert_eq!(
        messages[old_count]["id"],
        format!("{pending}-{}", old_count + 1)
    );

    // A closed conversation's customer writes again: the same conversation goes back to its
    // queue, unowned, with its history.
    let closed = id_of(&m, "closed");
    let customer = conversation(&m, &closed)["customer"].as_str().unwrap();
    sms_in(&host, &sid(0x102), customer, "Still there?").await;
    let convs = alice_sees(&host).await;
    let reopened = convs.iter().find(|c| c["id"] == closed.as_str()).unwrap();
    assert_eq!(reopened["state"], "queued", "{reopened}");
    assert_eq!(reopened["owner"], Value::Null, "{reopened}");
    let texts: Vec<Value> = host
        .messages(&closed, ALICE)
        .await
        .iter()
        .map(|x| x["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [
            conversation(&m, &closed)["messages"][0]["text"].clone(),
            json!("Still there?")
        ]
    );
    assert_eq!(
        convs.len(),
        m["conversations"].as_array().unwrap().len() + 1,
        "no conversation besides the new customer's was created"
    );

    // A provider's retry of a message the old release stored is acknowledged, not stored again.
    let order = id_of(&m, "order");
    let first = &conversation(&m, &order)["messages"][0];
    sms_in(
        &host,
        first["provider_id"].as_str().unwrap(),
        conversation(&m, &order)["customer"].as_str().unwrap(),
        first["text"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        host.messages(&order, ALICE).await.len(),
        conversation(&m, &order)["messages"]
            .as_array()
            .unwrap()
            .len(),
        "the retried message is stored once"
    );

    // After another start the counter still continues: the next new customer gets the next id.
    let status = host.terminate();
    assert!(status.success(), "clean shutdown: {status}");
    host.restart();
    sms_in(&host, &sid(0x103), "+14155550107", "Me too").await;
    let convs = alice_sees(&host).await;
    let newer = convs
        .iter()
        .find(|c| c["customer"] == "+14155550107")
        .unwrap();
    assert_eq!(newer["id"], (largest + 2).to_string(), "{newer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_outs_statuses_outbox_and_event_log_of_previous_release_data_carry_over() {
    let m = manifest();
    let host = old_data_host(Setup {
        env: vec![("PLUGBOARD_OUTBOX_MAX_ATTEMPTS".into(), "1".into())],
        ..Setup::default()
    });

    // The customer who sent STOP is still opted out: a reply is refused before any send.
    let opted = id_of(&m, "opted_out");
    let path = format!("/api/v1/conversations/{opted}/messages");
    let (status, body) = host
        .post_json(&path, ALICE, json!({"text": "Sorry to bother you"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("opted out"),
        "{body}"
    );
    let before = conversation(&m, &opted);
    assert_eq!(
        host.messages(&opted, ALICE).await.len(),
        before["messages"].as_array().unwrap().len(),
        "nothing was stored"
    );
    // START opts them back in: the stored opt-out is one the current binary can lift.
    let customer = before["customer"].as_str().unwrap();
    sms_in(&host, &sid(0x200), customer, "START").await;
    let (status, body) = host
        .post_json(&path, ALICE, json!({"text": "Welcome back"}))
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");

    // A status callback for a reply the old release sent still finds it, and moves it forward
    // only.
    let order = id_of(&m, "order");
    let sent = first_outbound(&m, &order);
    assert_eq!(sent["status"], "delivered");
    let sid = sent["provider_id"].as_str().unwrap();
    for status in ["read", "sent"] {
        let params = [
            ("MessageSid", sid),
            ("MessageStatus", status),
            ("AccountSid", ACCOUNT_SID),
            ("From", "+15005550006"),
            ("To", conversation(&m, &order)["customer"].as_str().unwrap()),
            ("ApiVersion", "2010-04-01"),
        ];
        let resp = host.post_twilio("sms", &params, Some(AUTH_TOKEN)).await;
        assert_eq!(resp.status(), 200);
    }
    let now = host.messages(&order, ALICE).await;
    let got = now.iter().find(|x| x["id"] == sent["id"]).unwrap();
    assert_eq!(got["status"], "read", "{got}");

    // The reply that was waiting in the old outbox is resumed: with one attempt allowed and
    // the provider unreachable, it is dead-lettered.
    let waiting = id_of(&m, "pending_reply");
    let reply = first_outbound(&m, &waiting);
    assert_eq!(reply["status"], "pending");
    let failed = eventually("the old pending reply to be dead-lettered", || async {
        let list = host.messages(&waiting, ALICE).await;
        list.into_iter()
            .find(|x| x["id"] == reply["id"] && x["status"] == "failed")
    })
    .await;
    assert!(
        failed["error"].as_str().unwrap().contains("dead-lettered"),
        "{failed}"
    );

    // The event log continues after the old last id: a resumed stream gets no old event and
    // the next one has a larger id.
    let last = m["last_event_id"].as_u64().unwrap();
    let mut stream = SseStream::open(&host, ALICE, Some(last)).await;
    host.presence(ALICE, "online").await;
    loop {
        let e = stream.next().await;
        assert!(e.id > last, "event {} {} after {last}", e.id, e.kind);
        if e.kind == "presence" {
            assert_eq!(e.data["data"]["presence"], "online", "{:?}", e.data);
            break;
        }
    }
}
