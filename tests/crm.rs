//! The CRM hears everything, against the real binary: a subscriber on loopback receives every
//! event type of a scripted conversation, each signed the Standard Webhooks way and in order;
//! a subscriber that answers 500 sees retries and then recovers; one that stays down sees the
//! dead letter, which an admin redelivers. The bundled Bitrix24 integration, against a fake
//! Bitrix24 REST server: one lead for an unknown customer who writes three times (through a
//! `QUERY_LIMIT_EXCEEDED` pause), none for a known one, the transcript on close; a forged call
//! from Bitrix24 is refused and an authentic one starts a conversation. An integration key
//! starts a conversation, posts to it and adds a contact, within what it may do.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use support::*;

/// The signing key of every subscription here.
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    )
}

fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Verifies a delivery as the specification says a receiver does; its JSON body.
fn verified(hit: &Hit) -> Value {
    let id = header(hit, "webhook-id");
    let ts: u64 = header(hit, "webhook-timestamp")
        .parse()
        .expect("a timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 300, "timestamp within 5 minutes");
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&hit.request.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let signatures: Vec<&str> = header(hit, "webhook-signature").split(' ').collect();
    assert!(signatures.contains(&expected.as_str()), "signature of {id}");
    let body: Value = serde_json::from_slice(&hit.request.body).expect("JSON body");
    assert_eq!(body["id"], id, "the body's id is the header's");
    body
}

/// Runs the Standard Webhooks reference library (Python, `tests/python/verify_webhook.py` in
/// the virtual environment `tests/setup.sh` makes) over `hit`: whether it verified, and what it
/// printed.
fn reference_verifies(hit: &Hit, body: &[u8]) -> (bool, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("tests/python/.venv/bin/python");
    assert!(
        python.is_file(),
        "the Python virtual environment is missing at {}: run `bash tests/setup.sh` (it \
         pip-installs tests/python/requirements.txt, standardwebhooks among them)",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let headers: BTreeMap<&str, &str> = hit
        .request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let headers_file = dir.path().join("headers.json");
    std::fs::write(&headers_file, serde_json::to_vec(&headers).unwrap()).unwrap();
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, body).unwrap();
    let out = std::process::Command::new(python)
        .arg(root.join("tests/python/verify_webhook.py"))
        .arg(secret())
        .arg(&headers_file)
        .arg(&body_file)
        .output()
        .expect("running the reference verifier");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed.trim().to_owned())
}

fn subscription(name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[subscriptions]]\nname = \"{name}\"\nurl = \"{url}/hooks\"\nsecret = \"{}\"\n{extra}\n",
        secret()
    )
}

/// The bodies `sub` has received (verified), once `done` holds for them.
async fn received(
    sub: &ScriptedProvider,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually(what, || async {
        let bodies: Vec<Value> = sub
            .hits()
            .iter()
            .filter(|h| h.status < 300)
            .map(verified)
            .collect();
        done(&bodies).then_some(bodies)
    })
    .await
}

fn types(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| b["type"].as_str().unwrap().to_owned())
        .collect()
}

fn has(bodies: &[Value], kind: &str) -> bool {
    bodies.iter().any(|b| b["type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_every_event_signed_retried_and_dead_lettered() {
    let twilio = FakeProvider::accepting().await;
    let all = ScriptedProvider::start(vec![Reply::new(204, json!({}))]).await;
    let flaky = ScriptedProvider::start(vec![
        Reply::new(500, json!({})),
        Reply::new(429, json!({})).header("retry-after", "1"),
        Reply::new(200, json!({})),
    ])
    .await;
    let down = ScriptedProvider::start(vec![Reply::new(503, json!({}))]).await;
    let carol = "carol-token-12345";
    let mut extra = format!(
        "\n[[agents]]\nid = \"carol\"\nname = \"Carol\"\ntoken = \"{carol}\"\nqueues = [\"support\"]\n"
    );
    extra += &subscription("all", &all.base, "");
    extra += &subscription("flaky", &flaky.base, "events = [\"conversation.created\"]");
    extra += &subscription(
        "down",
        &down.base,
        "events = [\"message.received\"]\nmax_attempts = 3",
    );
    extra += &subscription(
        "sales-only",
        &all.base,
        "queues = [\"sales\"]\nevents = [\"conversation.created\"]",
    );
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        extra,
        env: vec![("PLUGBOARD_HOOKS_BASE_MS".into(), "200".into())],
        ..Setup::default()
    });
    host.presence(ALICE, "online").await;
    host.presence(carol, "online").await;
    let ann = "+14155550100";
    host.sms("SMcrm000000000000000000000000001", ann, "Hello, my order?")
        .await;
    let conv = eventually("the conversation offered", || async {
        host.conversations(ALICE)
            .await
            .into_iter()
            .find(|c| c["customer"] == ann)
    })
    .await;
    let id = conv["id"].as_str().unwrap().to_owned();
    received(&all, "created, received, offered", |b| {
        has(b, "conversation.offered")
    })
    .await;
    assert_eq!(host.act(&id, "take", ALICE, json!({})).await.0, 200);
    let (status, body) = host
        .act(&id, "messages", ALICE, json!({"text": "On its way"}))
        .await;
    assert!(status < 300, "{status} {body}");
    received(&all, "sent", |b| has(b, "message.sent")).await;
    let callback = status_callback("SMout000000000000000000000000001", "delivered", None);
    let resp = host
        .post_twilio("sms", &pairs(&callback), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(host.act(&id, "close", ALICE, json!({})).await.0, 200);
    host.sms("SMcrm000000000000000000000000003", ann, "One more thing")
        .await;
    eventually("reopened and offered again", || async {
        host.conversations(ALICE)
            .await
            .into_iter()
            .find(|c| c["id"] == id.as_str() && c["state"] == "queued")
    })
    .await;
    assert_eq!(host.act(&id, "take", ALICE, json!({})).await.0, 200);
    assert_eq!(
        host.act(&id, "transfer", ALICE, json!({"queue": "sales"}))
            .await
            .0,
        200
    );
    host.sms("SMcrm000000000000000000000000004", ann, "STOP")
        .await;
    host.sms("SMcrm000000000000000000000000005", ann, "START")
        .await;

    let bodies = received(&all, "every event type", |b| {
        plugboard::model::EVENT_TYPES.iter().all(|t| has(b, t))
    })
    .await;
    // The specification's reference library verifies them, and refuses a tampered body.
    let hits = all.hits();
    for hit in hits.iter().take(3) {
        let (ok, printed) = reference_verifies(hit, &hit.request.body);
        assert!(ok, "standardwebhooks refused a delivery: {printed}");
        assert!(
            plugboard::model::EVENT_TYPES.contains(&printed.as_str()),
            "{printed}"
        );
    }
    let mut tampered = hits[0].request.body.clone();
    tampered.extend_from_slice(b" ");
    let (ok, printed) = reference_verifies(&hits[0], &tampered);
    assert!(!ok, "a tampered body must not verify: {printed}");
    // Every event carries its own id, the conversation's id, channel, queue and contact.
    let ids: BTreeSet<&str> = bodies.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        bodies.len(),
        "each event has its own id: {:?}",
        types(&bodies)
    );
    for b in &bodies {
        let c = &b["data"]["conversation"];
        assert_eq!(c["id"], id, "{b}");
        assert_eq!(c["channel"], "sms");
        assert_eq!(c["contact"]["address"], ann);
        assert!(c["queue"].is_string());
        assert!(b["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // In order: one conversation's events arrive in the order they happened.
    let positions: Vec<u64> = bodies
        .iter()
        .map(|b| {
            let id = b["id"].as_str().unwrap().trim_start_matches("evt_");
            id.split('_').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] <= w[1]),
        "in order: {positions:?}"
    );
    let first = |t: &str| types(&bodies).iter().position(|x| x == t).unwrap();
    assert!(first("conversation.created") < first("message.received"));
    assert!(first("conversation.closed") < first("conversation.reopened"));
    let closed = bodies
        .iter()
        .find(|b| b["type"] == "conversation.closed")
        .unwrap();
    assert_eq!(closed["data"]["by"], "alice");
    assert!(closed["data"]["handling"]["open_ms"].is_u64());
    let offered = bodies
        .iter()
        .find(|b| b["type"] == "conversation.offered")
        .unwrap();
    let agents: BTreeSet<&str> = offered["data"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(agents, BTreeSet::from(["alice", "carol"]));
    let withdrawn = bodies
        .iter()
        .find(|b| b["type"] == "conversation.offer_withdrawn")
        .unwrap();
    assert_eq!(withdrawn["data"]["agents"], json!(["carol"]));
    let sent = bodies.iter().find(|b| b["type"] == "message.sent").unwrap();
    assert_eq!(sent["data"]["message"]["text"], "On its way");
    assert_eq!(sent["data"]["message"]["author"], "alice");
    let transferred = bodies
        .iter()
        .find(|b| b["type"] == "conversation.transferred")
        .unwrap();
    assert_eq!(transferred["data"]["to_queue"], "sales");

    // The flaky subscriber: 500, then 429 with Retry-After, then received, with the same id.
    let flaky_hits = eventually("flaky recovers", || async {
        let hits = flaky.hits();
        hits.iter().any(|h| h.status == 200).then_some(hits)
    })
    .await;
    assert_eq!(
        flaky_hits.iter().map(|h| h.status).collect::<Vec<_>>()[..3],
        [500, 429, 200]
    );
    let ids: BTreeSet<&str> = flaky_hits[..3]
        .iter()
        .map(|h| header(h, "webhook-id"))
        .collect();
    assert_eq!(ids.len(), 1, "a retry keeps its webhook-id");
    assert!(
        flaky_hits[2].at.duration_since(flaky_hits[1].at) >= std::time::Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );
    for h in &flaky_hits[..3] {
        assert_eq!(verified(h)["type"], "conversation.created");
    }

    // The subscriber that stays down: three attempts, then the dead letter.
    let failed = eventually("a dead letter", || async {
        let (status, body) = host
            .get_json("/api/v1/admin/deliveries?target=down&state=failed", ADMIN)
            .await;
        assert_eq!(status, 200, "{body}");
        let list = body["deliveries"].as_array().unwrap().clone();
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(failed[0]["attempts"], 3);
    assert_eq!(failed[0]["type"], "message.received");
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("dead-lettered after 3 attempts: the subscriber answered 503"),
        "{}",
        failed[0]
    );
    // Nothing of the sales-only subscription's queue was created in sales.
    let (status, targets) = host.get_json("/api/v1/admin/targets", ADMIN).await;
    assert_eq!(status, 200);
    let by_name: BTreeMap<String, Value> = targets["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t.clone()))
        .collect();
    assert!(by_name["down"]["failed"].as_u64().unwrap() >= 1);
    assert_eq!(by_name["sales-only"]["delivered"], 0);
    assert_eq!(by_name["sales-only"]["pending"], 0);

    // Once it is back, an admin redelivers every dead letter.
    down.answer(vec![Reply::new(200, json!({}))]);
    let before = down.hits().len();
    let (status, body) = host
        .post_json("/api/v1/admin/deliveries/down/redeliver", ADMIN, json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body["redelivered"].as_u64().unwrap() >= 1);
    eventually("redelivered", || async {
        (down.hits()[before..].iter().any(|h| h.status == 200)).then_some(())
    })
    .await;
    let (status, body) = host
        .post_json(
            "/api/v1/admin/deliveries/down/evt_999999/redeliver",
            ADMIN,
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = host
        .get_json("/api/v1/admin/deliveries?target=nobody", ADMIN)
        .await;
    assert_eq!(status, 404);
    let (status, _) = host
        .get_json("/api/v1/admin/deliveries?target=all", ALICE)
        .await;
    assert_eq!(status, 401, "agents do not read deliveries");
}

/// What the fake Bitrix24 portal has seen and holds.
#[derive(Default)]
struct Portal {
    calls: Vec<(String, Value)>,
    leads: Vec<Value>,
    comments: Vec<Value>,
    /// Known customers' phones and their contact ids.
    contacts: BTreeMap<String, u64>,
    /// Answer the next `crm.lead.add` with a rate-limit error.
    limit_next_add: bool,
}

/// A fake Bitrix24 REST server answering the way Bitrix24 does: `{"result": ...}`, an empty
/// array for no duplicates, `503 QUERY_LIMIT_EXCEEDED` when asked to.
async fn fake_bitrix(portal: Arc<Mutex<Portal>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let portal = portal.clone();
        async move {
            let method = uri
                .path()
                .rsplit('/')
                .next()
                .unwrap()
                .trim_end_matches(".json")
                .to_owned();
            let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut p = portal.lock().unwrap();
            p.calls.push((method.clone(), params.clone()));
            let ok = |result: Value| {
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({"result": result, "time": {"start": 1.0}})),
                )
            };
            match method.as_str() {
                "crm.duplicate.findbycomm" => {
                    let value = params["values"][0].as_str().unwrap_or_default();
                    match p.contacts.get(value) {
                        Some(id) => ok(json!({"CONTACT": [id]})),
                        None => ok(json!([])),
                    }
                }
                "crm.lead.add" if p.limit_next_add => {
                    p.limit_next_add = false;
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(
                            json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}),
                        ),
                    )
                }
                "crm.lead.add" => {
                    p.leads.push(params.clone());
                    let id = 100 + p.leads.len() as u64;
                    ok(json!(id))
                }
                "crm.timeline.comment.add" => {
                    p.comments.push(params.clone());
                    ok(json!(900 + p.comments.len() as u64))
                }
                _ => ok(json!(true)),
            }
        }
    };
    let app = axum::Router::new().fallback(axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

const B24_TOKEN: &str = "b24-application-token-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_gets_one_lead_per_unknown_customer_and_the_transcript() {
    let twilio = FakeProvider::accepting().await;
    let portal = Arc::new(Mutex::new(Portal {
        limit_next_add: true,
        contacts: BTreeMap::from([("+14155550199".to_owned(), 5)]),
        ..Portal::default()
    }));
    let b24 = fake_bitrix(portal.clone()).await;
    let extra = format!(
        r#"
[[integrations]]
name = "bitrix24"
plugin = "bitrix24"
start_channels = ["sms"]
[integrations.settings]
webhook_url = "{b24}/rest/1/abc123/"
application_token = "${{B24_TOKEN}}"
user_map = "alice=5"
default_channel = "sms"
"#
    );
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        extra,
        env: vec![
            ("PLUGBOARD_HOOKS_BASE_MS".into(), "200".into()),
            ("B24_TOKEN".into(), B24_TOKEN.into()),
        ],
        ..Setup::default()
    });
    let ann = "+14155550100";
    for (n, text) in ["Hi", "Is anyone there?", "Order 42 please"]
        .iter()
        .enumerate()
    {
        host.sms(&format!("SMb24{n:029}"), ann, text).await;
    }
    host.sms(
        "SMb24k0000000000000000000000001",
        "+14155550199",
        "Known here",
    )
    .await;
    let ann_conv = eventually("Ann's conversation", || async {
        host.conversations(ALICE)
            .await
            .into_iter()
            .find(|c| c["customer"] == ann)
    })
    .await;
    let id = ann_conv["id"].as_str().unwrap().to_owned();
    eventually("a lead for Ann, after the pause", || async {
        (portal.lock().unwrap().leads.len() == 1).then_some(())
    })
    .await;
    assert_eq!(host.act(&id, "take", ALICE, json!({})).await.0, 200);
    assert_eq!(host.act(&id, "close", ALICE, json!({})).await.0, 200);
    let comment = eventually("the transcript on the lead", || async {
        portal.lock().unwrap().comments.first().cloned()
    })
    .await;
    {
        let p = portal.lock().unwrap();
        assert_eq!(p.leads.len(), 1, "exactly one lead: {:?}", p.leads);
        let lead = &p.leads[0]["fields"];
        assert_eq!(lead["PHONE"][0]["VALUE"], ann);
        assert_eq!(comment["fields"]["ENTITY_TYPE"], "lead");
        assert_eq!(comment["fields"]["ENTITY_ID"], 101);
        let text = comment["fields"]["COMMENT"].as_str().unwrap();
        for said in ["Hi", "Is anyone there?", "Order 42 please"] {
            assert!(text.contains(said), "{said:?} in the transcript:\n{text}");
        }
        assert!(text.contains("alice"), "the agent named:\n{text}");
        let adds = p.calls.iter().filter(|(m, _)| m == "crm.lead.add").count();
        assert_eq!(adds, 2, "one refused for the rate limit, one taken");
        // The known customer was found, and no lead made for them.
        assert!(
            p.calls
                .iter()
                .any(|(m, v)| m == "crm.duplicate.findbycomm" && v["values"][0] == "+14155550199")
        );
        assert!(
            !p.leads
                .iter()
                .any(|l| l["fields"]["PHONE"][0]["VALUE"] == "+14155550199")
        );
    }
    // The assignment went to alice's Bitrix24 user.
    eventually("the responsible user updated", || async {
        portal
            .lock()
            .unwrap()
            .calls
            .iter()
            .any(|(m, v)| m == "crm.lead.update" && v["fields"]["ASSIGNED_BY_ID"] == 5)
            .then_some(())
    })
    .await;

    // From Bitrix24 to the host: a forged call is refused, an authentic one is carried out.
    let call = |token: &str| {
        form(&[
            ("auth[application_token]", token),
            ("auth[domain]", "example.bitrix24.com"),
            ("to", "+14155550123"),
            ("text", "Your quote is ready"),
        ])
    };
    let url = host.url("/integrations/bitrix24");
    let forged = host
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(call("not-the-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let body: Value = forged.json().await.unwrap();
    assert!(body["error"].is_string());
    let authentic = host
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(call(B24_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(authentic.status(), 200);
    eventually("the CRM's message sent", || async {
        (twilio.bodies_to("+14155550123") == ["Your quote is ready"]).then_some(())
    })
    .await;
    assert_eq!(
        twilio.bodies_to("+14155550123").len(),
        1,
        "the forged call sent nothing"
    );
    let (status, _) = host
        .post_json("/integrations/nobody", ADMIN, json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_keys_act_within_what_they_may() {
    let twilio = FakeProvider::accepting().await;
    let key = "backend-key-0123456789";
    let narrow = "narrow-key-0123456789";
    let extra = format!(
        r#"
[[integration_keys]]
name = "backend"
secret = "{key}"
start_channels = ["sms"]
post = true
contacts = true
[[integration_keys]]
name = "narrow"
secret = "{narrow}"
per_minute = 2
"#
    );
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        extra,
        ..Setup::default()
    });
    let to = "+14155550177";
    let (status, body) = host
        .post_json(
            "/api/v1/integration/conversations",
            key,
            json!({"channel": "sms", "to": to, "text": "Your order shipped"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["conversation"]["id"]
        .as_u64()
        .map(|n| n.to_string())
        .unwrap_or_else(|| body["conversation"]["id"].as_str().unwrap().to_owned());
    assert_eq!(body["conversation"]["state"], "queued");
    let (status, body) = host
        .post_json(
            &format!("/api/v1/integration/conversations/{id}/messages"),
            key,
            json!({"text": "It arrives Friday"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("both sent", || async {
        (twilio.bodies_to(to).len() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        twilio.bodies_to(to),
        ["Your order shipped", "It arrives Friday"],
        "a conversation's sends go out in order"
    );
    let (status, body) = host
        .post_json(
            "/api/v1/integration/contacts",
            key,
            json!({"address": to, "name": "Carol"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The narrow key may do none of it; a wrong key is unknown; bad bodies say what is wrong.
    let (status, body) = host
        .post_json(
            "/api/v1/integration/conversations",
            narrow,
            json!({"channel": "sms", "to": to, "text": "x"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("start_channels"));
    for expected in [403, 429] {
        let (status, _) = host
            .post_json(
                "/api/v1/integration/contacts",
                narrow,
                json!({"address": to, "name": "X"}),
            )
            .await;
        assert_eq!(status, expected, "403, then over its 2 requests a minute");
    }
    let (status, _) = host
        .post_json(
            "/api/v1/integration/contacts",
            "wrong-key-0123456789",
            json!({}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = host
        .post_json(
            "/api/v1/integration/conversations",
            key,
            json!({"channel": "sms", "to": "not a number", "text": "x"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = host
        .post_json(
            "/api/v1/integration/conversations",
            key,
            json!({"channel": "sms"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(twilio.bodies_to(to).len(), 2, "nothing else was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_kill_and_arrive_once_the_subscriber_is_back() {
    let hook = ScriptedProvider::start(vec![Reply::new(503, json!({}))]).await;
    let mut host = Host::start(Setup {
        extra: subscription("crm", &hook.base, "events = [\"message.received\"]"),
        env: vec![("PLUGBOARD_HOOKS_BASE_MS".into(), "300".into())],
        ..Setup::default()
    });
    let customers = ["+14155550131", "+14155550132", "+14155550133"];
    for (n, from) in customers.iter().enumerate() {
        host.sms(&format!("SMkill{n:028}"), from, "Are you there?")
            .await;
    }
    // Each was tried and refused, so each is stored as pending when the process dies.
    eventually("every event tried once", || async {
        let tried: BTreeSet<String> = hook
            .hits()
            .iter()
            .map(|h| header(h, "webhook-id").to_owned())
            .collect();
        (tried.len() == customers.len()).then_some(())
    })
    .await;
    host.kill();
    hook.answer(vec![Reply::new(200, json!({}))]);
    host.restart();
    let delivered = eventually("every event delivered after the restart", || async {
        let ok: BTreeMap<String, Value> = hook
            .hits()
            .iter()
            .filter(|h| h.status == 200)
            .map(|h| (header(h, "webhook-id").to_owned(), verified(h)))
            .collect();
        (ok.len() == customers.len()).then_some(ok)
    })
    .await;
    let from: BTreeSet<&str> = delivered
        .values()
        .map(|b| {
            b["data"]["conversation"]["contact"]["address"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(from, BTreeSet::from(customers));
    let (status, body) = host
        .get_json("/api/v1/admin/deliveries?target=crm&state=delivered", ADMIN)
        .await;
    assert_eq!(status, 200);
    let list = body["deliveries"].as_array().unwrap();
    assert_eq!(
        list.len(),
        customers.len(),
        "one delivery per event: {body}"
    );
    assert!(list.iter().all(|d| d["attempts"].as_u64().unwrap() >= 2));
}
