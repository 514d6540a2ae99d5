//! LINE, Messenger, LINE WORKS and email end to end against the real binary and fake
//! providers on 127.0.0.1: a LINE message answered by reply then push, the Messenger handshake
//! and a batched delivery, a LINE WORKS token fetched once and reused until it expires, and an
//! email thread of three messages in one conversation.

mod support;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use support::*;

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn channel(name: &str, plugin: &str, settings: &[(&str, &str)]) -> String {
    let mut s = format!(
        "\n[[channels]]\nname = \"{name}\"\nplugin = \"{plugin}\"\nqueue = \"support\"\n[channels.settings]\n"
    );
    for (k, v) in settings {
        s.push_str(&format!("{k} = {}\n", toml_string(v)));
    }
    s
}

fn toml_string(v: &str) -> String {
    format!(
        "\"{}\"",
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

async fn post_raw(
    host: &Host,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut req = host.http.post(host.url(path)).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn reply(host: &Host, id: &str, text: &str) -> (u16, Value) {
    host.post_json(
        &format!("/api/v1/conversations/{id}/messages"),
        ALICE,
        json!({"text": text}),
    )
    .await
}

const LINE_SECRET: &str = "line-channel-secret-0123";

fn line_event(event_id: &str, user: &str, text: &str, reply_token: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "destination": "U0123456789abcdef0123456789abcdef",
        "events": [{
            "replyToken": reply_token, "type": "message", "mode": "active",
            "timestamp": 1462629479859u64,
            "source": {"type": "user", "userId": user},
            "webhookEventId": event_id,
            "deliveryContext": {"isRedelivery": false},
            "message": {"id": "325708", "type": "text", "text": text, "quoteToken": "q"}
        }]
    }))
    .unwrap()
}

async fn post_line(host: &Host, body: &[u8]) -> (u16, String) {
    let sig =
        base64::engine::general_purpose::STANDARD.encode(hmac256(LINE_SECRET.as_bytes(), body));
    post_raw(
        host,
        "/webhooks/line",
        &[
            ("content-type", "application/json".into()),
            ("x-line-signature", sig),
        ],
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_message_is_answered_by_reply_then_push() {
    let line = FakeProvider::start(vec![(
        200,
        json!({"sentMessages": [{"id": "461230966842064897", "quoteToken": "x"}]}),
    )])
    .await;
    let host = Host::start(Setup {
        extra: channel(
            "line",
            "line",
            &[
                ("channel_id", "1656789012"),
                ("channel_secret", LINE_SECRET),
                ("channel_access_token", "line-access-token"),
                ("api_base", &line.base),
            ],
        ),
        ..Setup::default()
    });
    // The console's Verify call: no events, 200.
    let verify = br#"{"destination":"U0123456789abcdef0123456789abcdef","events":[]}"#;
    assert_eq!(post_line(&host, verify).await.0, 200);
    let (status, _) = post_raw(
        &host,
        "/webhooks/line",
        &[("x-line-signature", "bm9wZQ==".into())],
        verify,
    )
    .await;
    assert_eq!(status, 403);

    let user = "U206d25c2ea6bd87c17655609a1c37cb8";
    let body = line_event(
        "01FZ74A0TDDPYRVKNK77XKC3ZR",
        user,
        "Hello, world",
        "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA",
    );
    assert_eq!(post_line(&host, &body).await.0, 200);
    assert_eq!(
        post_line(&host, &body).await.0,
        200,
        "redelivery acknowledged"
    );
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0]["kind"], "line");
    let id = convs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        host.messages(&id, ALICE).await.len(),
        1,
        "redelivery stored once"
    );

    let (status, m) = reply(&host, &id, "Hi from the agent").await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["status"], "queued", "{m}");
    let (status, m) = reply(&host, &id, "And a second message").await;
    assert_eq!(status, 201, "{m}");
    let sent = line.recorded();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].path, "/v2/bot/message/reply");
    let first: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(first["replyToken"], "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA");
    assert_eq!(sent[0].headers["authorization"], "Bearer line-access-token");
    assert_eq!(
        sent[1].path, "/v2/bot/message/push",
        "the reply token works once"
    );
    let second: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_eq!(second["to"], user);
    assert_eq!(second["messages"][0]["text"], "And a second message");
}

const APP_SECRET: &str = "messenger-app-secret";

fn messenger_sig(body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac256(APP_SECRET.as_bytes(), body))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messenger_handshake_and_a_batched_delivery() {
    let graph = FakeProvider::start(vec![(
        200,
        json!({"recipient_id": "PSID1", "message_id": "m_out1"}),
    )])
    .await;
    let host = Host::start(Setup {
        extra: channel(
            "fb",
            "messenger",
            &[
                ("app_secret", APP_SECRET),
                ("verify_token", "verify-me-please"),
                ("page_access_token", "page-token"),
                ("api_base", &graph.base),
            ],
        ),
        ..Setup::default()
    });
    let ok = host
        .http
        .get(host.url("/webhooks/fb?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me-please"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad =
        host.http
            .get(host.url(
                "/webhooks/fb?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong",
            ))
            .send()
            .await
            .unwrap();
    assert_eq!(bad.status(), 403);

    let msg = |psid: &str, mid: &str, text: &str| json!({"sender": {"id": psid}, "recipient": {"id": "PAGE1"}, "timestamp": 1459991487970u64, "message": {"mid": mid, "text": text}});
    let body = serde_json::to_vec(&json!({"object": "page", "entry": [
        {"id": "PAGE1", "time": 1459991487970u64, "messaging": [msg("PSID1", "m_1", "first"), msg("PSID2", "m_2", "other person")]},
        {"id": "PAGE1", "time": 1459991487971u64, "messaging": [
            msg("PSID1", "m_3", "second"),
            {"sender": {"id": "PAGE1"}, "recipient": {"id": "PSID1"}, "timestamp": 1459991487972u64, "message": {"mid": "m_echo", "text": "our own", "is_echo": true}}
        ]}
    ]}))
    .unwrap();
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("x-hub-signature-256", messenger_sig(&body)),
    ];
    assert_eq!(
        post_raw(&host, "/webhooks/fb", &headers, &body).await.0,
        200
    );
    assert_eq!(
        post_raw(&host, "/webhooks/fb", &headers, &body).await.0,
        200,
        "Meta retries the batch"
    );
    let bad_sig = [
        ("content-type", "application/json".to_owned()),
        ("x-hub-signature-256", messenger_sig(b"other")),
    ];
    assert_eq!(
        post_raw(&host, "/webhooks/fb", &bad_sig, &body).await.0,
        403
    );

    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 2, "two senders, the echo dropped");
    let psid1 = convs.iter().find(|c| c["customer"] == "PSID1").unwrap();
    let id = psid1["id"].as_str().unwrap().to_owned();
    let texts: Vec<_> = host
        .messages(&id, ALICE)
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("first"), json!("second")]);
    assert_eq!(psid1["kind"], "messenger");

    let (status, m) = reply(&host, &id, "Hello from the page").await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["provider_id"], "m_out1");
    let sent = &graph.recorded()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["recipient"]["id"], "PSID1");
    assert_eq!(body["message"]["text"], "Hello from the page");
}

const WORKS_SECRET: &str = "works-bot-secret";

/// A 2048-bit RSA key for tests only (PKCS#8).
fn test_private_key() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/lineworks/testdata/test-key.pem"
    ))
    .expect("lineworks test key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineworks_token_is_fetched_once_and_reused_until_it_expires() {
    let auth = FakeProvider::start(vec![(200, json!({"access_token": "works-token-1", "refresh_token": "r", "token_type": "Bearer", "expires_in": "2", "scope": "bot"}))]).await;
    let api = FakeProvider::start(vec![(201, json!({}))]).await;
    let key = test_private_key();
    let host = Host::start(Setup {
        extra: channel(
            "works",
            "lineworks",
            &[
                ("bot_id", "2000001"),
                ("bot_secret", WORKS_SECRET),
                ("client_id", "client-id-1"),
                ("client_secret", "client-secret-1"),
                ("service_account", "svc@example.works"),
                ("private_key", &key),
                ("api_base", &api.base),
                ("auth_base", &auth.base),
            ],
        ),
        ..Setup::default()
    });
    let body = serde_json::to_vec(&json!({"type": "message", "source": {"userId": "c72af563-0f21-4736-11e4-045237113344", "domainId": 40029600}, "issuedTime": "2022-01-04T05:16:05.716Z", "content": {"type": "text", "text": "hello"}})).unwrap();
    let sig =
        base64::engine::general_purpose::STANDARD.encode(hmac256(WORKS_SECRET.as_bytes(), &body));
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("x-works-signature", sig),
        ("x-works-botid", "2000001".to_owned()),
    ];
    assert_eq!(
        post_raw(&host, "/webhooks/works", &headers, &body).await.0,
        200
    );
    assert_eq!(
        post_raw(&host, "/webhooks/works", &headers, &body).await.0,
        200,
        "redelivery"
    );
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1);
    let id = convs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        host.messages(&id, ALICE).await.len(),
        1,
        "no event id, yet stored once"
    );

    for text in ["one", "two", "three"] {
        let (status, m) = reply(&host, &id, text).await;
        assert_eq!(status, 201, "{m}");
        assert_eq!(m["status"], "queued", "{m}");
    }
    assert_eq!(auth.recorded().len(), 1, "one token for three sends");
    let token_req = auth.recorded()[0].form();
    assert!(
        token_req
            .iter()
            .any(|(k, v)| k == "grant_type" && v == "urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert!(
        api.recorded()
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer works-token-1")
    );
    assert!(
        api.recorded()[0]
            .path
            .starts_with("/v1.0/bots/2000001/users/")
    );

    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(reply(&host, &id, "after expiry").await.0, 201);
    assert_eq!(
        auth.recorded().len(),
        2,
        "an expired token is fetched again"
    );
}

const MAILGUN_KEY: &str = "mailgun-signing-key";

fn mailgun_form(message_id: &str, subject: &str, text: &str, references: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    mailgun_form_at(now, message_id, subject, text, references)
}

fn mailgun_form_at(
    now: u64,
    message_id: &str,
    subject: &str,
    text: &str,
    references: &str,
) -> String {
    let timestamp = now.to_string();
    let token = format!("{:050}", rand_token(message_id));
    let signature = hex::encode(hmac256(
        MAILGUN_KEY.as_bytes(),
        format!("{timestamp}{token}").as_bytes(),
    ));
    let mut headers = vec![
        json!(["Message-Id", message_id]),
        json!(["Subject", subject]),
    ];
    if !references.is_empty() {
        headers.push(json!(["References", references]));
    }
    let headers = serde_json::to_string(&headers).unwrap();
    form(&[
        ("recipient", "support@example.com"),
        ("sender", "ann@example.org"),
        ("from", "Ann Lee <Ann@Example.org>"),
        ("subject", subject),
        ("body-plain", text),
        ("stripped-text", text.lines().next().unwrap()),
        ("message-headers", &headers),
        ("timestamp", &timestamp),
        ("token", &token),
        ("signature", &signature),
    ])
}

fn rand_token(seed: &str) -> u128 {
    seed.bytes()
        .fold(7u128, |a, b| a.wrapping_mul(31).wrapping_add(b as u128))
        % 10u128.pow(30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_thread_of_three_messages_is_one_conversation() {
    let mailgun = FakeProvider::start(vec![(
        200,
        json!({"id": "<20261121.1@mg.example.com>", "message": "Queued. Thank you."}),
    )])
    .await;
    let host = Host::start(Setup {
        extra: channel(
            "mail",
            "mailgun-email",
            &[
                ("domain", "mg.example.com"),
                ("api_key", "key-123"),
                ("signing_key", MAILGUN_KEY),
                ("from", "Support <support@example.com>"),
                ("api_base", &mailgun.base),
            ],
        ),
        ..Setup::default()
    });
    let post = |body: String| {
        host.http
            .post(host.url("/webhooks/mail"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let m1 = "<m1@mail.example.org>";
    let m2 = "<m2@mail.example.org>";
    let m3 = "<m3@mail.example.org>";
    assert_eq!(
        post(mailgun_form(m1, "Order 42", "My order is late.", ""))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(mailgun_form(
            m2,
            "Re: Order 42",
            "Any news?\n\nOn Mon, Support wrote:\n> earlier",
            m1
        ))
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        post(mailgun_form(
            m3,
            "Re: Order 42",
            "Thanks!",
            &format!("{m1} {m2}")
        ))
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        post(mailgun_form(
            m3,
            "Re: Order 42",
            "Thanks!",
            &format!("{m1} {m2}")
        ))
        .await
        .unwrap()
        .status(),
        200,
        "retry"
    );

    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1, "{convs:?}");
    assert_eq!(convs[0]["kind"], "email");
    assert_eq!(convs[0]["customer"], "ann@example.org");
    let id = convs[0]["id"].as_str().unwrap().to_owned();
    let texts: Vec<_> = host
        .messages(&id, ALICE)
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [
            json!("My order is late."),
            json!("Any news?"),
            json!("Thanks!")
        ]
    );

    let (status, m) = reply(&host, &id, "It ships today.").await;
    assert_eq!(status, 201, "{m}");
    let sent = mailgun.recorded();
    assert_eq!(sent[0].path, "/v3/mg.example.com/messages");
    let f = sent[0].form();
    let field = |k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(field("to"), "ann@example.org");
    assert_eq!(field("subject"), "Re: Order 42");
    assert_eq!(field("h:In-Reply-To"), m3);
    assert!(field("h:References").contains(m1) && field("h:References").contains(m3));

    // A stale timestamp is refused.
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let stale = mailgun_form_at(hour_ago, "<m4@mail.example.org>", "x", "y", "");
    assert_eq!(post(stale).await.unwrap().status(), 403);
}

/// A message of conversation `id` once it has left `pending`.
async fn settled_message(host: &Host, id: &str, text: &str) -> Value {
    eventually(&format!("{text:?} to settle"), || async {
        host.messages(id, ALICE)
            .await
            .into_iter()
            .find(|m| m["text"] == text && m["status"] != "pending")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_push_carries_one_retry_key_across_retries() {
    let ok = json!({"sentMessages": [{"id": "461230966842064898", "quoteToken": "y"}]});
    let line = ScriptedProvider::start(vec![
        Reply::new(200, ok.clone()),
        Reply::new(500, json!({"message": "An internal error occurred"})),
        Reply::new(200, ok.clone()),
        Reply::new(200, ok),
    ])
    .await;
    let host = Host::start(Setup {
        extra: channel(
            "line",
            "line",
            &[
                ("channel_id", "1656789012"),
                ("channel_secret", LINE_SECRET),
                ("channel_access_token", "line-access-token"),
                ("api_base", &line.base),
            ],
        ),
        env: vec![("PLUGBOARD_OUTBOX_BASE_MS".into(), "50".into())],
        ..Setup::default()
    });
    let user = "U306d25c2ea6bd87c17655609a1c37cb9";
    let body = line_event(
        "01FZ74A0TDDPYRVKNK77XKC3ZS",
        user,
        "Hello",
        "mHuyWiB7yP5Zw52FIkcQobQuGDXCTB",
    );
    assert_eq!(post_line(&host, &body).await.0, 200);
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The reply token answers the first message; the next ones are pushes.
    for text in ["by reply", "by push, retried", "by push again"] {
        let (status, m) = reply(&host, &id, text).await;
        assert!(status == 201 || status == 202, "{status} {m}");
        let m = settled_message(&host, &id, text).await;
        assert_eq!(m["status"], "queued", "{m}");
    }
    let hits = line.hits();
    let paths: Vec<&str> = hits.iter().map(|h| h.request.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v2/bot/message/reply",
            "/v2/bot/message/push",
            "/v2/bot/message/push",
            "/v2/bot/message/push"
        ]
    );
    let statuses: Vec<u16> = hits.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [200, 500, 200, 200]);
    let key = |i: usize| hits[i].request.headers.get("x-line-retry-key").cloned();
    assert_eq!(key(0), None, "the reply endpoint takes no retry key");
    let first = key(1).expect("the push carries X-Line-Retry-Key");
    assert_eq!(first.len(), 36, "{first}");
    assert!(
        first
            .char_indices()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }),
        "UUID-shaped: {first}"
    );
    assert_eq!(key(2), Some(first.clone()), "the retry repeats the key");
    assert_ne!(key(3), Some(first), "another message, another key");
}

/// Issue 11, item 10: Mailgun signs only timestamp + token, so a captured signature posted again
/// with another sender, text and Message-Id must be refused, and nothing of it stored. The
/// genuine retry of the captured call (same message) is still acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_mailgun_signature_with_new_content_is_refused() {
    // Two channels of one Mailgun account: one signing key.
    let settings = [
        ("domain", "mg.example.com"),
        ("api_key", "key-123"),
        ("signing_key", MAILGUN_KEY),
        ("from", "Support <support@example.com>"),
    ];
    let host = Host::start(Setup {
        extra: channel("mail", "mailgun-email", &settings)
            + &channel("mail2", "mailgun-email", &settings),
        ..Setup::default()
    });
    let post = |body: String| {
        host.http
            .post(host.url("/webhooks/mail"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let genuine = mailgun_form("<real@mail.example.org>", "Order 7", "Where is it?", "");
    assert_eq!(post(genuine.clone()).await.unwrap().status(), 200);

    // The attacker keeps timestamp, token and signature and changes everything else.
    let forged: Vec<(String, String)> = form_urlencoded::parse(genuine.as_bytes())
        .map(|(k, v)| {
            let v = match &*k {
                "from" | "sender" => "ceo@example.org".to_owned(),
                "body-plain" | "stripped-text" => "FORGED wire money".to_owned(),
                "message-headers" => json!([["Message-Id", "<forged@evil.example>"]]).to_string(),
                _ => v.into_owned(),
            };
            (k.into_owned(), v)
        })
        .collect();
    let forged = form(
        &forged
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let resp = post(forged.clone()).await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("already used"),
        "{body}"
    );
    // Nor does it pass on the account's other channel.
    let resp = host
        .http
        .post(host.url("/webhooks/mail2"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "replayed on the other channel");

    // Mailgun retrying the genuine call is acknowledged as the duplicate it is.
    assert_eq!(post(genuine).await.unwrap().status(), 200);
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1, "only the genuine sender: {convs:?}");
    assert_eq!(convs[0]["customer"], "ann@example.org");
    let id = convs[0]["id"].as_str().unwrap().to_owned();
    let texts: Vec<_> = host
        .messages(&id, ALICE)
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("Where is it?")]);
}

/// One LINE follow or unfollow event, as LINE delivers (or redelivers) it.
fn line_follow_event(event_id: &str, user: &str, kind: &str, redelivery: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "destination": "U0123456789abcdef0123456789abcdef",
        "events": [{
            "type": kind, "mode": "active", "timestamp": 1462629479859u64,
            "source": {"type": "user", "userId": user},
            "webhookEventId": event_id,
            "deliveryContext": {"isRedelivery": redelivery},
        }]
    }))
    .unwrap()
}

/// Issue 11, item 11: LINE redelivers an old `unfollow` after a newer `follow`; the user stays
/// opted in (contract 0.3.0 carries the event id with the change, applied once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_line_unfollow_does_not_undo_a_later_follow() {
    let line = FakeProvider::start(vec![(200, json!({"sentMessages": [{"id": "1"}]}))]).await;
    let host = Host::start(Setup {
        extra: channel(
            "line",
            "line",
            &[
                ("channel_id", "1656789012"),
                ("channel_secret", LINE_SECRET),
                ("channel_access_token", "line-access-token"),
                ("api_base", &line.base),
            ],
        ),
        ..Setup::default()
    });
    let user = "U306d25c2ea6bd87c17655609a1c37cb8";
    let hello = line_event("01GZ74A0TDDPYRVKNK77XKC3Z0", user, "Hello", "rt-1");
    assert_eq!(post_line(&host, &hello).await.0, 200);
    let unfollow = line_follow_event("01GZ74A0TDDPYRVKNK77XKC3Z1", user, "unfollow", false);
    let follow = line_follow_event("01GZ74A0TDDPYRVKNK77XKC3Z2", user, "follow", false);
    let redelivered = line_follow_event("01GZ74A0TDDPYRVKNK77XKC3Z1", user, "unfollow", true);
    for body in [&unfollow, &follow, &redelivered] {
        assert_eq!(post_line(&host, body).await.0, 200);
    }
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            ALICE,
            json!({"text": "welcome back"}),
        )
        .await;
    assert!(
        status == 201 || status == 202,
        "the user is opted in, as the latest event said: {status} {body}"
    );
}
