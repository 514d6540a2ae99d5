//! Nothing lost, against the real binary over loopback: the outbox retries what is worth
//! retrying (honouring `Retry-After` and the provider timeout), never retries a permanent error,
//! dead-letters with the reason after its last attempt, resumes after a SIGKILL, remembers
//! opt-outs, drains on SIGTERM; and every webhook acknowledged with a 2xx survives SIGKILLs
//! under load, stored once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Posts an inbound SMS from `from` and returns its conversation's id.
async fn conversation_with(host: &Host, sid: &str, from: &str) -> String {
    let params = inbound_sms(sid, from, "hello");
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    host.conversations(ALICE)
        .await
        .iter()
        .find(|c| c["customer"] == from)
        .expect("conversation")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn reply(host: &Host, id: &str, text: &str) -> (u16, Value) {
    host.post_json(
        &format!("/api/v1/conversations/{id}/messages"),
        ALICE,
        json!({ "text": text }),
    )
    .await
}

/// The stored message of conversation `id` with `text`.
async fn stored(host: &Host, id: &str, text: &str) -> Value {
    host.messages(id, ALICE)
        .await
        .into_iter()
        .find(|m| m["text"] == text)
        .unwrap_or_else(|| panic!("no message {text:?}"))
}

/// Waits until the message with `text` has left `pending`, and returns it.
async fn settled(host: &Host, id: &str, text: &str) -> Value {
    eventually(&format!("{text:?} to settle"), || async {
        let m = stored(host, id, text).await;
        (m["status"] != "pending").then_some(m)
    })
    .await
}

/// The message bodies `provider` received, in order.
fn bodies(provider: &ScriptedProvider) -> Vec<String> {
    provider
        .hits()
        .iter()
        .map(|h| {
            let form = h.request.form();
            form.into_iter()
                .find(|(k, _)| k == "Body")
                .map(|(_, v)| v)
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_retries_then_succeeds() {
    let twilio = ScriptedProvider::start(vec![
        Reply::new(503, twilio_error(503, 20500, "Service Unavailable")),
        Reply::new(429, twilio_error(429, 20429, "Too Many Requests")).header("Retry-After", "1"),
        // Answered after the host's 1 s provider timeout: a transport failure for the host.
        Reply::new(504, twilio_error(504, 20504, "too late")).after(Duration::from_secs(3)),
        Reply::new(201, twilio_created("SMretried000000000000000000000001")),
    ])
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        limits: "provider_timeout_ms = 1000".to_owned(),
        env: env(&[("PLUGBOARD_OUTBOX_BASE_MS", "100")]),
        ..Setup::default()
    });
    let id = conversation_with(&host, "SM10000000000000000000000000000001", "+14155550201").await;

    let (status, msg) = reply(&host, &id, "we will get back to you").await;
    // The agent hears about the first attempt at once: pending, with the retry note.
    assert!(status == 201 || status == 202, "{status} {msg}");
    assert_eq!(msg["status"], "pending", "{msg}");
    let note = msg["error"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("attempt 1 failed: provider unavailable"),
        "{note}"
    );
    assert!(note.contains("retrying in"), "{note}");

    let m = settled(&host, &id, "we will get back to you").await;
    assert_eq!(m["status"], "queued", "{m}");
    assert_eq!(m["provider_id"], "SMretried000000000000000000000001");
    assert_eq!(m["error"], Value::Null, "the retry note is cleared: {m}");

    let hits = twilio.hits();
    let statuses: Vec<u16> = hits.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [503, 429, 504, 201], "one request per attempt");
    let gap = |i: usize| hits[i].at - hits[i - 1].at;
    assert!(
        gap(2) >= Duration::from_millis(950),
        "Retry-After: 1 honoured: {:?}",
        gap(2)
    );
    assert!(
        gap(3) >= Duration::from_millis(950),
        "timed out after 1 s: {:?}",
        gap(3)
    );
    let sids: BTreeSet<String> = hits
        .iter()
        .map(|h| {
            h.request
                .form()
                .into_iter()
                .find(|(k, _)| k == "Body")
                .unwrap()
                .1
        })
        .collect();
    assert_eq!(sids.len(), 1, "every attempt sends the same message");
    println!(
        "attempts: {statuses:?}; gaps {:?} {:?} {:?}",
        gap(1),
        gap(2),
        gap(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_sends_go_out_in_order_and_a_backoff_holds_back_only_its_own() {
    let twilio = ScriptedProvider::start(vec![
        Reply::new(429, twilio_error(429, 20429, "Too Many Requests")).header("Retry-After", "2"),
        Reply::new(201, twilio_created("SMordered00000000000000000000000001")),
    ])
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        env: env(&[("PLUGBOARD_OUTBOX_BASE_MS", "100")]),
        ..Setup::default()
    });
    let (alice, bob) = ("+14155550291", "+14155550292");
    let a = conversation_with(&host, "SM10000000000000000000000000000291", alice).await;
    let b = conversation_with(&host, "SM10000000000000000000000000000292", bob).await;

    let (status, first) = reply(&host, &a, "first").await;
    assert_eq!(status, 202, "{first}");
    assert!(
        first["error"]
            .as_str()
            .unwrap_or_default()
            .contains("retrying in")
    );
    // Written while the first waits out its Retry-After: held back, and the agent hears at once
    // that it is pending, before any attempt.
    let (status, second) = reply(&host, &a, "second").await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["status"], "pending", "{second}");
    assert_eq!(second["error"], Value::Null, "not attempted yet: {second}");
    // Another conversation is not held back.
    let (status, other) = reply(&host, &b, "other").await;
    assert_eq!(status, 201, "{other}");
    assert_eq!(other["status"], "queued", "{other}");

    assert_eq!(settled(&host, &a, "second").await["status"], "queued");
    assert_eq!(settled(&host, &a, "first").await["status"], "queued");
    let sent: Vec<(String, String)> = twilio
        .hits()
        .iter()
        .map(|h| {
            let form = h.request.form();
            let field = |k: &str| form.iter().find(|(n, _)| n == k).unwrap().1.clone();
            (field("To"), field("Body"))
        })
        .collect();
    let to = |who: &str| -> Vec<&str> {
        sent.iter()
            .filter(|(t, _)| t == who)
            .map(|(_, b)| b.as_str())
            .collect()
    };
    assert_eq!(to(alice), ["first", "first", "second"], "{sent:?}");
    assert_eq!(to(bob), ["other"]);
    assert_eq!(
        sent[1].1, "other",
        "sent during the first's backoff: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_error_is_not_retried() {
    let twilio = ScriptedProvider::start(vec![Reply::new(
        400,
        twilio_error(400, 21211, "The 'To' number is not a valid phone number."),
    )])
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        env: env(&[("PLUGBOARD_OUTBOX_BASE_MS", "50")]),
        ..Setup::default()
    });
    let id = conversation_with(&host, "SM10000000000000000000000000000002", "+14155550202").await;
    let (status, msg) = reply(&host, &id, "hello?").await;
    assert_eq!(status, 201, "{msg}");
    assert_eq!(msg["status"], "failed", "{msg}");
    let error = msg["error"].as_str().unwrap();
    assert!(error.contains("21211"), "{error}");
    assert!(!error.contains("dead-lettered"), "{error}");
    // The conversation's next send goes out only once the first is settled for good (a retry
    // due would hold it back): when it arrives, the first was attempted exactly once.
    let (status, next) = reply(&host, &id, "anyone?").await;
    assert_eq!(status, 201, "{next}");
    assert_eq!(bodies(&twilio), ["hello?", "anyone?"]);
    assert_eq!(stored(&host, &id, "hello?").await["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_after_last_attempt() {
    let twilio = ScriptedProvider::start(vec![Reply::new(
        503,
        twilio_error(503, 20500, "Service Unavailable"),
    )])
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        env: env(&[
            ("PLUGBOARD_OUTBOX_MAX_ATTEMPTS", "3"),
            ("PLUGBOARD_OUTBOX_BASE_MS", "50"),
        ]),
        ..Setup::default()
    });
    let id = conversation_with(&host, "SM10000000000000000000000000000003", "+14155550203").await;
    let (status, msg) = reply(&host, &id, "anyone?").await;
    assert!(status == 201 || status == 202, "{status} {msg}");
    assert_eq!(msg["status"], "pending", "{msg}");

    let m = settled(&host, &id, "anyone?").await;
    assert_eq!(m["status"], "failed", "{m}");
    let error = m["error"].as_str().unwrap();
    assert!(
        error.starts_with("dead-lettered after 3 attempts: provider unavailable"),
        "{error}"
    );
    // The conversation's next send starts only once no attempt of the first is due.
    let (_, next) = reply(&host, &id, "hello?").await;
    let note = next["error"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("attempt 1 failed"),
        "attempted at once: {next}"
    );
    settled(&host, &id, "hello?").await;
    assert_eq!(
        bodies(&twilio),
        [
            "anyone?", "anyone?", "anyone?", "hello?", "hello?", "hello?"
        ],
        "no attempt after the last"
    );

    // The author hears about it on the event stream.
    let mut events = SseStream::open(&host, ALICE, Some(0)).await;
    let e = events.next_of("dead_lettered").await;
    let data = &e.data["data"];
    assert_eq!(data["attempts"], 3, "{:?}", e.data);
    assert_eq!(data["message"], m["id"], "{:?}", e.data);
    assert_eq!(e.data["conversation"], id.as_str(), "{:?}", e.data);
    assert!(
        data["error"].as_str().unwrap().starts_with("dead-lettered"),
        "{:?}",
        e.data
    );
    println!("dead-lettered: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_sends_resume_after_restart() {
    let twilio = ScriptedProvider::start(vec![Reply::new(
        503,
        twilio_error(503, 20500, "Service Unavailable"),
    )])
    .await;
    let mut host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        env: env(&[("PLUGBOARD_OUTBOX_BASE_MS", "300")]),
        ..Setup::default()
    });
    let id = conversation_with(&host, "SM10000000000000000000000000000004", "+14155550204").await;
    let (_, msg) = reply(&host, &id, "sorry for the wait").await;
    assert_eq!(msg["status"], "pending", "{msg}");
    eventually("two failed attempts", || async {
        (twilio.hits().len() >= 2).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| host.kill());
    let before = twilio.hits().len();
    twilio.answer(vec![Reply::new(
        201,
        twilio_created("SMresumed000000000000000000000001"),
    )]);
    tokio::task::block_in_place(|| host.restart());
    let m = settled(&host, &id, "sorry for the wait").await;
    assert_eq!(m["status"], "queued", "{m}");
    assert_eq!(m["provider_id"], "SMresumed000000000000000000000001");
    // A later send of the conversation goes out only after any repeat of the first would have.
    let (status, next) = reply(&host, &id, "all sorted").await;
    assert_eq!(status, 201, "{next}");
    assert_eq!(
        twilio.answered(201),
        2,
        "sent exactly once, then the next one"
    );
    assert_eq!(twilio.hits().len(), before + 2);
    let sent = bodies(&twilio);
    assert_eq!(sent[before..], ["sorry for the wait", "all sorted"]);
    let outbound: Vec<Value> = host
        .messages(&id, ALICE)
        .await
        .into_iter()
        .filter(|m| m["direction"] == "outbound")
        .collect();
    assert_eq!(outbound.len(), 2, "stored once each: {outbound:?}");
    println!("{before} failed attempts before SIGKILL, 1 after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_after_21610_refuses_next_send_before_provider() {
    let twilio = ScriptedProvider::start(vec![Reply::new(
        400,
        twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"),
    )])
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    let id = conversation_with(&host, "SM10000000000000000000000000000005", "+14155550205").await;
    let (status, msg) = reply(&host, &id, "first").await;
    assert_eq!(status, 201, "{msg}");
    assert_eq!(msg["status"], "failed", "{msg}");
    assert!(
        msg["error"].as_str().unwrap().contains("opted out"),
        "{msg}"
    );
    assert_eq!(twilio.hits().len(), 1);

    let (status, body) = reply(&host, &id, "second").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("opted out"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(twilio.hits().len(), 1, "the provider saw no new request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_inflight_sends() {
    let twilio = ScriptedProvider::start(vec![
        Reply::new(201, twilio_created("SMdrained000000000000000000000001"))
            .after(Duration::from_secs(1)),
    ])
    .await;
    let mut host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    let id = conversation_with(&host, "SM10000000000000000000000000000006", "+14155550206").await;
    let (http, url) = (
        host.http.clone(),
        host.url(&format!("/api/v1/conversations/{id}/messages")),
    );
    let in_flight = tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(ALICE)
            .json(&json!({"text": "draining"}))
            .send()
            .await;
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
            Err(e) => panic!("the in-flight request was cut off: {e}"),
        }
    });
    eventually("the send to reach the provider", || async {
        (!twilio.hits().is_empty()).then_some(())
    })
    .await;
    let started = Instant::now();
    let exit = tokio::task::block_in_place(|| host.terminate());
    let took = started.elapsed();
    assert!(exit.success(), "exit status {exit:?}; log:\n{}", host.log());
    let (status, msg) = in_flight.await.unwrap();
    assert_eq!(status, 201, "{msg}");
    assert_eq!(msg["status"], "queued", "{msg}");

    tokio::task::block_in_place(|| host.restart());
    let m = stored(&host, &id, "draining").await;
    assert_eq!(m["status"], "queued", "{m}");
    assert_eq!(m["provider_id"], "SMdrained000000000000000000000001");
    // A send resumed at start-up would go before the conversation's next one.
    let (status, next) = reply(&host, &id, "still here").await;
    assert_eq!(status, 201, "{next}");
    assert_eq!(
        bodies(&twilio),
        ["draining", "still here"],
        "not sent again after the restart"
    );
    println!("SIGTERM to exit 0: {took:?}");
}

/// One provider's view of the load: which webhooks got a 2xx.
#[derive(Default)]
struct Tally {
    acknowledged: BTreeSet<String>,
    attempts: usize,
    refused: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_webhooks_survive_sigkill_under_load() {
    const WEBHOOKS: usize = 300;
    const SENDERS: usize = 6;
    const KILLS: usize = 3;
    let mut host = Host::start(Setup {
        env: env(&[("PLUGBOARD_WEBHOOK_RATE", "0")]),
        ..Setup::default()
    });
    let url = host.url("/webhooks/sms");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (client, url, tally) = (client.clone(), url.clone(), tally.clone());
        senders.push(tokio::spawn(async move {
            for n in (s..WEBHOOKS).step_by(SENDERS) {
                let sid = format!("SM{n:032}");
                let from = format!("+1415555{:04}", n % 25);
                let params = inbound_sms(&sid, &from, &format!("load {n}"));
                let params = pairs(&params);
                let body = form(&params);
                let signature = twilio_signature(AUTH_TOKEN, &url, &params);
                // Like a provider: retry until acknowledged (the host may be down).
                for _ in 0..200 {
                    tally.lock().unwrap().attempts += 1;
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("x-twilio-signature", &signature)
                        .body(body.clone())
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().is_success() => {
                            tally.lock().unwrap().acknowledged.insert(sid.clone());
                            break;
                        }
                        _ => {
                            tally.lock().unwrap().refused += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }));
    }
    // Kill at random moments while the load runs: after a random number of acknowledgements
    // within each third of the load.
    for k in 0..KILLS {
        let third = WEBHOOKS / KILLS;
        let target = rand::random_range(k * third + 10..(k + 1) * third - 10);
        let deadline = Instant::now() + Duration::from_secs(60);
        while tally.lock().unwrap().acknowledged.len() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let acked = tally.lock().unwrap().acknowledged.len();
        println!("SIGKILL {} at {acked} acknowledged", k + 1);
        tokio::task::block_in_place(|| host.restart());
    }
    for s in senders {
        s.await.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());

    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for conv in host.conversations(ALICE).await {
        for m in host.messages(conv["id"].as_str().unwrap(), ALICE).await {
            if let Some(p) = m["provider_id"].as_str() {
                *stored.entry(p.to_owned()).or_default() += 1;
            }
        }
    }
    let lost: Vec<_> = tally
        .acknowledged
        .iter()
        .filter(|sid| !stored.contains_key(*sid))
        .collect();
    let doubled: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "{WEBHOOKS} webhooks, {SENDERS} senders, {KILLS} SIGKILLs: {} requests, {} failed or refused, {} acknowledged, {} stored, {} lost, {} stored twice",
        tally.attempts,
        tally.refused,
        tally.acknowledged.len(),
        stored.len(),
        lost.len(),
        doubled.len()
    );
    assert_eq!(
        tally.acknowledged.len(),
        WEBHOOKS,
        "every webhook acknowledged in the end"
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    assert_eq!(stored.len(), WEBHOOKS);
}

/// Promise 3: a channel whose plugin keeps failing is quarantined (503 with the reason and
/// `Retry-After`, visible in the plugins API), a healthy channel is served throughout, and the
/// quarantined channel is tried again after the cool-down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_is_quarantined_and_tried_again_after_the_cool_down() {
    let host = Host::start(Setup {
        plugins: vec!["trap"],
        extra: "\n[[channels]]\nname = \"broken\"\nplugin = \"trap\"\nqueue = \"support\"\nkeep_failed = false\n"
            .to_owned(),
        env: vec![("PLUGBOARD_QUARANTINE_SECS".to_owned(), "2".to_owned())],
        ..Setup::default()
    });
    let hit = || {
        host.http
            .post(host.url("/webhooks/broken"))
            .body("x=1")
            .send()
    };
    for i in 0..5 {
        assert_eq!(
            hit().await.unwrap().status(),
            500,
            "failure {i} reaches the plugin"
        );
        let params = inbound_sms(&format!("SMq{i:031}"), "+14155553000", "still served");
        let ok = host
            .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
            .await;
        assert_eq!(ok.status(), 200, "the healthy channel is served throughout");
    }
    let resp = hit().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    let reason = body["error"].as_str().unwrap();
    assert!(
        reason.contains("quarantined") && reason.contains("trapped"),
        "{reason}"
    );
    let (_, plugins) = host.get_json("/api/v1/admin/plugins", ADMIN).await;
    let broken = plugins["channel_health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "broken")
        .cloned()
        .unwrap();
    assert_eq!(broken["state"], "quarantined", "{broken}");
    assert!(
        broken["last_error"]
            .as_str()
            .unwrap()
            .contains("deliberate panic")
            || broken["last_error"].as_str().unwrap().contains("trapped")
    );

    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        hit().await.unwrap().status(),
        500,
        "after the cool-down the plugin is tried again"
    );
    assert_eq!(
        hit().await.unwrap().status(),
        503,
        "and quarantined again at once while it still fails"
    );
    assert_eq!(host.conversations(ALICE).await.len(), 1);
}

/// Promise 3: a plugin that answers with a huge body or thousands of events fails that call
/// with a clear error; nothing is stored and a healthy channel is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_plugin_outputs_are_refused() {
    let host = Host::start(Setup {
        plugins: vec!["huge-output"],
        extra: "\n[[channels]]\nname = \"huge\"\nplugin = \"huge-output\"\nqueue = \"support\"\nkeep_failed = false\n"
            .to_owned(),
        ..Setup::default()
    });
    for (path, needle) in [
        ("/webhooks/huge", "returned more than the 4 MiB"),
        ("/webhooks/huge?events", "5000 events"),
    ] {
        let resp = host
            .http
            .post(host.url(path))
            .body("x=1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "the channel's plugin answered too much");
        // The caller gets a request id; the log has the detail under it.
        let request_id = body["request_id"].as_str().unwrap();
        let log = host.log();
        let line = log.lines().find(|l| l.contains(request_id)).unwrap();
        assert!(
            line.contains(needle) && line.contains("huge-output"),
            "{line}"
        );
        let params = inbound_sms(&format!("SMh{:031}", path.len()), "+14155553100", "fine");
        assert_eq!(
            host.post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
                .await
                .status(),
            200
        );
    }
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1, "none of the 5,000 events was stored");
}

/// The outbound messages of conversations `ids`.
async fn outbound_of(host: &Host, ids: &[String]) -> Vec<Value> {
    let mut outbound = Vec::new();
    for id in ids {
        outbound.extend(
            host.messages(id, ALICE)
                .await
                .into_iter()
                .filter(|m| m["direction"] == "outbound"),
        );
    }
    outbound
}

/// The default per-channel cap on provider attempts in flight (`PLUGBOARD_OUTBOX_IN_FLIGHT`).
const IN_FLIGHT_PER_CHANNEL: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_repeats_at_most_the_sends_in_flight_on_a_channel() {
    // Two replies in each of ten conversations: a conversation sends one at a time, so more
    // conversations than the channel's cap are needed to fill it.
    const CONVERSATIONS: usize = 10;
    const REPLIES: usize = 2 * CONVERSATIONS;
    // The provider holds every answer, so every request it received is in doubt at the kill.
    let twilio = ScriptedProvider::start(vec![
        Reply::new(201, twilio_created("SMslow000000000000000000000000001"))
            .after(Duration::from_secs(60)),
    ])
    .await;
    let mut host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    let mut ids = Vec::new();
    for n in 0..CONVERSATIONS {
        let sid = format!("SM1000000000000000000000000000{:04}", 3100 + n);
        let from = format!("+1415555{:04}", 2310 + n);
        ids.push(conversation_with(&host, &sid, &from).await);
    }
    let client = reqwest::Client::new();
    for i in 0..REPLIES {
        let (client, url) = (
            client.clone(),
            host.url(&format!(
                "/api/v1/conversations/{}/messages",
                ids[i % CONVERSATIONS]
            )),
        );
        tokio::spawn(async move {
            // Answered late or cut by the kill; the stored messages are what counts.
            let _ = client
                .post(url)
                .bearer_auth(ALICE)
                .json(&json!({ "text": format!("reply {i}") }))
                .send()
                .await;
        });
    }
    eventually(
        "every reply stored and the channel's sends in flight",
        || async {
            let stored = outbound_of(&host, &ids).await.len();
            (stored == REPLIES && twilio.hits().len() >= IN_FLIGHT_PER_CHANNEL).then_some(())
        },
    )
    .await;
    tokio::task::block_in_place(|| host.kill());
    let in_doubt = twilio.hits().len();
    assert!(
        in_doubt <= IN_FLIGHT_PER_CHANNEL,
        "{in_doubt} requests were in flight on one channel at the kill"
    );

    twilio.answer(vec![Reply::new(
        201,
        twilio_created("SMfast000000000000000000000000001"),
    )]);
    tokio::task::block_in_place(|| host.restart());
    let outbound = eventually("every stored reply to be sent", || async {
        let outbound = outbound_of(&host, &ids).await;
        outbound
            .iter()
            .all(|m| m["status"] == "queued")
            .then_some(outbound)
    })
    .await;
    assert_eq!(outbound.len(), REPLIES);
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for hit in twilio.hits() {
        let body = hit
            .request
            .form()
            .into_iter()
            .find(|(k, _)| k == "Body")
            .map(|(_, v)| v)
            .unwrap_or_default();
        *received.entry(body).or_default() += 1;
    }
    for m in &outbound {
        assert!(received.contains_key(m["text"].as_str().unwrap()), "{m}");
    }
    let repeated = received.values().filter(|&&n| n > 1).count();
    println!(
        "{} replies stored, {in_doubt} in flight at the SIGKILL, {repeated} sent twice",
        outbound.len()
    );
    assert!(
        repeated <= IN_FLIGHT_PER_CHANNEL,
        "{repeated} replies went out twice: {received:?}"
    );
    assert!(received.values().all(|&n| n <= 2), "{received:?}");
}

/// The TeleSign API key and customer id of the bundled fixtures (their callbacks are signed
/// with them).
const TS_CUSTOMER: &str = "FFFFFFFF-EEEE-DDDD-1234-AB1234567890";
const TS_KEY: &str =
    "EXAMPLE----TE8sTgg45yusumoN6BYsBVkh+yRJ5czgsnCehZaOYldPJdmFh6NeX8kunZ2zU1YWaUw/0wV6xfw==";

/// A TeleSign SMS channel `backup` sending to `api_base`, for [`Setup::extra`].
fn telesign_backup(api_base: &str) -> String {
    format!(
        r#"
[[channels]]
name = "backup"
plugin = "telesign-sms"
queue = "support"
[channels.settings]
customer_id = "{TS_CUSTOMER}"
api_key = "{TS_KEY}"
from = "+15005550007"
api_base = "{api_base}"
"#
    )
}

/// A send the first provider cannot take (down through every retry) moves, once, to the
/// channel's fallback: the second provider gets it, the message names both channels and why,
/// and the second provider's delivery report finds it. A message the first provider calls
/// invalid, or a customer who opted out there, never moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_moves_to_the_fallback_provider_when_the_first_is_down() {
    let twilio = ScriptedProvider::start(vec![Reply::new(
        503,
        twilio_error(503, 20500, "Service Unavailable"),
    )])
    .await;
    // The reference id of the bundled delivery-report fixture, so its signed callback applies.
    let reference = "B56A497A5F4C1B2C3D4E5F6A7B8C9D0E";
    let telesign = ScriptedProvider::start(vec![Reply::new(
        200,
        json!({"reference_id": reference, "status": {"code": 290, "description": "Message in progress"}}),
    )])
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        sms: "fallback = \"backup\"".to_owned(),
        extra: telesign_backup(&telesign.base),
        env: env(&[
            ("PLUGBOARD_OUTBOX_MAX_ATTEMPTS", "2"),
            ("PLUGBOARD_OUTBOX_BASE_MS", "50"),
        ]),
        ..Setup::default()
    });
    let customer = "+14155550231";
    let id = conversation_with(&host, "SM10000000000000000000000000000031", customer).await;
    let (status, msg) = reply(&host, &id, "your order shipped").await;
    assert!(status == 201 || status == 202, "{status} {msg}");

    let m = settled(&host, &id, "your order shipped").await;
    assert_eq!(m["status"], "queued", "{m}");
    assert_eq!(m["provider_id"], reference, "{m}");
    assert_eq!(m["error"], Value::Null, "{m}");
    let failover = &m["failover"];
    assert_eq!(
        (&failover["from"], &failover["to"]),
        (&json!("sms"), &json!("backup")),
        "{m}"
    );
    let reason = failover["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("unavailable after 2 attempts: provider unavailable"),
        "{reason}"
    );
    assert_eq!(
        twilio.answered(503),
        2,
        "every attempt on the first provider"
    );
    let hits = telesign.hits();
    assert_eq!(hits.len(), 1, "the fallback sends it once");
    let form: BTreeMap<String, String> = hits[0].request.form().into_iter().collect();
    assert_eq!(form["phone_number"], customer.trim_start_matches('+'));
    assert_eq!(form["message"], "your order shipped");
    assert!(
        host.log().contains("send moves to the fallback channel"),
        "the move is logged"
    );

    // TeleSign's delivery report, on the fallback's own webhook, finds the message.
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../plugins/telesign-sms/fixtures/dlr-delivered.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let request = &fixture["request"];
    let mut callback = host
        .http
        .post(host.url("/webhooks/backup"))
        .body(request["body"].as_str().unwrap().to_owned());
    for h in request["headers"].as_array().unwrap() {
        callback = callback.header(h[0].as_str().unwrap(), h[1].as_str().unwrap());
    }
    let resp = callback.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    eventually("the fallback's delivery report to apply", || async {
        (stored(&host, &id, "your order shipped").await["status"] == "delivered").then_some(())
    })
    .await;

    // Invalid on the first provider: failed there, never moved.
    twilio.answer(vec![Reply::new(
        400,
        twilio_error(400, 21211, "The 'To' number is not a valid phone number."),
    )]);
    reply(&host, &id, "second").await;
    let m = settled(&host, &id, "second").await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["failover"], Value::Null, "{m}");
    // Opted out on the first provider: failed there, never moved.
    twilio.answer(vec![Reply::new(
        400,
        twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"),
    )]);
    reply(&host, &id, "third").await;
    let m = settled(&host, &id, "third").await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["failover"], Value::Null, "{m}");
    assert_eq!(
        telesign.hits().len(),
        1,
        "neither invalid nor opted out moved to the fallback"
    );
}

/// A fallback must be another configured channel whose customers are addressed the same way.
#[test]
fn a_fallback_addressed_differently_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = |fallback: &str| {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://plugboard.example.com"
data_dir = "data"

[[queues]]
name = "support"
router = "ring-all"

[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "support"
fallback = "{fallback}"
[channels.settings]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "+15005550006"
{wa}{backup}"#,
            wa = whatsapp_channel("http://127.0.0.1:9"),
            backup = telesign_backup("http://127.0.0.1:9"),
        )
    };
    let (ok, stderr) = run_check(dir.path(), &config("backup"));
    assert!(ok, "SMS behind SMS is fine: {stderr}");
    for (fallback, says) in [
        (
            "wa",
            "`sms` addresses customers as E.164 numbers and `wa` as E.164 numbers after \"whatsapp:\"",
        ),
        ("sms", "a channel cannot be its own fallback"),
        ("nowhere", "no channel named `nowhere`"),
    ] {
        let (ok, stderr) = run_check(dir.path(), &config(fallback));
        assert!(!ok, "fallback {fallback} was accepted");
        assert!(
            stderr.contains("channels[0].fallback") && stderr.contains(says),
            "{fallback}: {stderr}"
        );
    }
}
