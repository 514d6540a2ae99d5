//! The website live chat end to end against the real binary: a visitor talks to an agent, a
//! visitor reaches only their own conversation, the offline form becomes waiting work, and the
//! widget script carries the channel's look.

mod support;

use serde_json::{Value, json};
use support::*;

const SITE: &str = r##"
[[channels]]
name = "site"
plugin = "webchat"
queue = "support"
[channels.settings]
title = "Talk to Acme"
color = "#ff6600"
intro = "Hello from Acme!"
"##;

fn setup() -> Setup {
    Setup {
        extra: SITE.to_owned(),
        ..Setup::default()
    }
}

async fn visitor_post(host: &Host, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = host.http.post(host.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn visitor_poll(host: &Host, token: &str, after: u64, wait: u64) -> Value {
    let resp = host
        .http
        .get(host.url(&format!("/webchat/site/messages?after={after}&wait={wait}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_talks_to_an_agent_and_sees_only_their_own_conversation() {
    let host = Host::start(setup());
    host.presence(ALICE, "online").await;
    let (status, session) = visitor_post(&host, "/webchat/site/sessions", None, json!({})).await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["online"], true);
    assert_eq!(session["title"], "Talk to Acme");
    let token = session["token"].as_str().unwrap().to_owned();
    let visitor = session["visitor"].as_str().unwrap().to_owned();

    let (status, body) = visitor_post(
        &host,
        "/webchat/site/messages",
        Some(&token),
        json!({"text": "Do you ship to Japan?", "message_id": "w1"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = visitor_post(
        &host,
        "/webchat/site/messages",
        Some(&token),
        json!({"text": "Do you ship to Japan?", "message_id": "w1"}),
    )
    .await;
    assert_eq!(status, 202, "a retried post is accepted and stored once");

    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0]["kind"], "webchat");
    assert_eq!(convs[0]["customer"], format!("webchat:{visitor}"));
    let id = convs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(host.messages(&id, ALICE).await.len(), 1);

    // The agent answers; the visitor's long-poll returns it.
    let poll = spawn_visitor_poll(&host, "/webchat/site/messages?after=1&wait=20", &token);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, m) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            ALICE,
            json!({"text": "Yes, we do!"}),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["status"], "queued");
    let got = poll.await.unwrap();
    assert_eq!(got["messages"][0]["from"], "agent", "{got}");
    assert_eq!(got["messages"][0]["text"], "Yes, we do!");
    let all = visitor_poll(&host, &token, 0, 0).await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 2);

    // Another visitor sees nothing of it.
    let (_, other) = visitor_post(&host, "/webchat/site/sessions", None, json!({})).await;
    let other = other["token"].as_str().unwrap().to_owned();
    assert!(
        visitor_poll(&host, &other, 0, 0).await["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // No token, a wrong token, or a forged webhook: refused.
    let resp = host
        .http
        .get(host.url("/webchat/site/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (status, _) = visitor_post(
        &host,
        "/webchat/site/messages",
        Some("not-a-token"),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, 401);
    let forged = host
        .http
        .post(host.url("/webhooks/site"))
        .header("x-plugboard-visitor", visitor.as_str())
        .json(&json!({"message_id": "f1", "text": "spoofed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        404,
        "the generic webhook route does not take web chat"
    );
    assert_eq!(host.messages(&id, ALICE).await.len(), 2);
    let (status, body) = visitor_post(
        &host,
        "/webchat/site/messages",
        Some(&token),
        json!({"text": "   "}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_form_becomes_a_conversation_that_waits_for_an_agent() {
    let host = Host::start(setup());
    let (_, session) = visitor_post(&host, "/webchat/site/sessions", None, json!({})).await;
    assert_eq!(session["online"], false, "nobody is online");
    let token = session["token"].as_str().unwrap().to_owned();
    let (status, body) = visitor_post(
        &host,
        "/webchat/site/offline",
        Some(&token),
        json!({"name": "Ann Lee", "email": "not-an-email", "message": "call me"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = visitor_post(
        &host,
        "/webchat/site/offline",
        Some(&token),
        json!({"name": "Ann Lee", "email": "ann@example.org", "message": "Please call me back"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0]["state"], "queued");
    assert_eq!(convs[0]["contact_name"], "Ann Lee");
    let id = convs[0]["id"].as_str().unwrap().to_owned();
    let text = host.messages(&id, ALICE).await[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains("ann@example.org") && text.contains("Please call me back"),
        "{text}"
    );

    let mut events = SseStream::open(&host, ALICE, None).await;
    host.presence(ALICE, "online").await;
    let offer = events.next_of("offered").await;
    assert_eq!(offer.data["conversation"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_is_one_script_with_the_channels_look() {
    let host = Host::start(setup());
    let resp = host
        .http
        .get(host.url("/webchat/site/widget.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/javascript")
    );
    let js = resp.text().await.unwrap();
    assert!(
        js.contains("Talk to Acme") && js.contains("#ff6600") && js.contains("Hello from Acme!")
    );
    assert!(js.contains(&format!("{}/webchat/site", host.base)));
    assert!(!js.contains("__PLUGBOARD_CONFIG__"));
    let resp = host
        .http
        .get(host.url("/webchat/sms/widget.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "an SMS channel has no widget");
}

/// A web chat channel `chat` with `webchat` as its `[channels.webchat]` table and `more` as
/// extra channel keys.
fn chat_setup(more: &str, webchat: &str, env: Vec<(String, String)>) -> Setup {
    Setup {
        extra: format!(
            "\n[[channels]]\nname = \"chat\"\nplugin = \"webchat\"\nqueue = \"support\"\n{more}\n[channels.webchat]\n{webchat}\n"
        ),
        env,
        ..Setup::default()
    }
}

async fn chat_session(host: &Host) -> (u16, Value, Option<String>) {
    let resp = host
        .http
        .post(host.url("/webchat/chat/sessions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

async fn chat_say(host: &Host, token: &str, text: &str) -> (u16, Value) {
    visitor_post(
        host,
        "/webchat/chat/messages",
        Some(token),
        json!({ "text": text }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_floods_get_429_and_what_was_accepted_is_kept() {
    let host = Host::start(chat_setup(
        "",
        "sessions_per_minute = 3\nmessages_per_minute = 5\naddress_messages_per_minute = 8",
        Vec::new(),
    ));
    // New sessions from one address: 3, then 429 with a JSON message and Retry-After.
    let mut tokens = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let (status, body, retry) = chat_session(&host).await;
        statuses.push(status);
        if status == 429 {
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("3 new chat sessions"),
                "{body}"
            );
            assert!(retry.is_some(), "429 carries Retry-After");
            break;
        }
        assert_eq!(status, 201, "{body}");
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, [201, 201, 201, 429]);

    // One session's flood: 5 messages of 5,000 characters, then 429.
    let long = "x".repeat(5000);
    let mut first = Vec::new();
    for _ in 0..40 {
        let (status, body) = chat_say(&host, &tokens[0], &long).await;
        first.push(status);
        if status == 429 {
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("5 messages a minute"),
                "{body}"
            );
            break;
        }
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(first, [202, 202, 202, 202, 202, 429]);
    // The same address in another session: its own session limit, but the address's 8 in all.
    let mut second = Vec::new();
    for i in 0..40 {
        let (status, body) = chat_say(&host, &tokens[1], &format!("hello {i}")).await;
        second.push(status);
        if status == 429 {
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("8 chat messages a minute"),
                "{body}"
            );
            break;
        }
    }
    assert_eq!(second, [202, 202, 202, 429]);

    // What was accepted is kept.
    let convs = host.conversations(ALICE).await;
    let mut counts: Vec<usize> = Vec::new();
    for c in &convs {
        counts.push(host.messages(c["id"].as_str().unwrap(), ALICE).await.len());
    }
    counts.sort();
    assert_eq!(counts, [3, 5], "{convs:?}");
    println!("sessions {statuses:?}; session 1 {first:?}; session 2 {second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_visitor_session_expires_and_an_active_one_does_not() {
    let host = Host::start(chat_setup("", "session_idle_secs = 1", Vec::new()));
    let (_, idle, _) = chat_session(&host).await;
    let idle = idle["token"].as_str().unwrap().to_owned();
    let (_, active, _) = chat_session(&host).await;
    let active = active["token"].as_str().unwrap().to_owned();
    let (status, _) = chat_say(&host, &idle, "hello before a break").await;
    assert_eq!(status, 202);

    // 2.4 s pass: the active session polls every 300 ms, the idle one does nothing.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(2400) {
        let resp = host
            .http
            .get(host.url("/webchat/chat/messages?after=0&wait=0"))
            .bearer_auth(&active)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "an active session stays valid");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let (status, body) = chat_say(&host, &idle, "hello after a break").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let resp = host
        .http
        .get(host.url("/webchat/chat/messages?after=0&wait=0"))
        .bearer_auth(&idle)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "polls too");
    let (status, _) = chat_say(&host, &active, "still here").await;
    assert_eq!(status, 202);

    // The conversation stays with the agents; a new session works.
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 2);
    let (status, fresh, _) = chat_session(&host).await;
    assert_eq!(status, 201);
    let (status, _) = chat_say(&host, fresh["token"].as_str().unwrap(), "new session").await;
    assert_eq!(status, 202);
}

/// The storage reads of every long-poll that ended so far, with the messages it returned.
fn long_polls(host: &Host) -> Vec<(u32, usize)> {
    host.log()
        .lines()
        .filter_map(|l| {
            let rest = l.split("long-poll ended after ").nth(1)?;
            let reads = rest.split(' ').next()?.parse().ok()?;
            let messages = rest
                .split(" with ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((reads, messages))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_sleeps_until_the_agent_replies_without_rereading_storage() {
    let host = Host::start(chat_setup(
        "",
        "",
        vec![(
            "RUST_LOG".to_owned(),
            "info,plugboard::http::webchat=debug".to_owned(),
        )],
    ));
    let (_, session, _) = chat_session(&host).await;
    let token = session["token"].as_str().unwrap().to_owned();
    let (status, _) = chat_say(&host, &token, "Is anyone there?").await;
    assert_eq!(status, 202);
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let poll = spawn_visitor_poll(&host, "/webchat/chat/messages?after=1&wait=20", &token);
    eventually("the long-poll to wait", || async {
        host.log()
            .contains("long-poll waiting for new messages")
            .then_some(())
    })
    .await;
    let (status, m) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            ALICE,
            json!({"text": "Yes, Alice here."}),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    let got = poll.await.unwrap();
    assert_eq!(got["messages"][0]["from"], "agent", "{got}");
    assert_eq!(got["messages"][0]["text"], "Yes, Alice here.");

    // With nothing new, a poll stays pending until its timeout, then answers empty.
    let started = std::time::Instant::now();
    let idle = visitor_poll_on(&host, "chat", &token, 2, 2).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(1900));
    assert!(idle["messages"].as_array().unwrap().is_empty(), "{idle}");

    let polls = eventually("both long-polls in the log", || async {
        let p = long_polls(&host);
        (p.len() >= 2).then_some(p)
    })
    .await;
    assert!(
        polls.iter().all(|(reads, _)| *reads <= 2),
        "a waiting long-poll reads storage once, and once more when woken: {polls:?}"
    );
    assert!(polls.contains(&(2, 1)), "woken by the reply: {polls:?}");
    println!("long-polls (storage reads, messages): {polls:?}");
}

async fn visitor_poll_on(host: &Host, channel: &str, token: &str, after: u64, wait: u64) -> Value {
    let resp = host
        .http
        .get(host.url(&format!(
            "/webchat/{channel}/messages?after={after}&wait={wait}"
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_channels_allowed_origins_only() {
    let mut setup = chat_setup(
        "allowed_origins = [\"https://shop.example.com\"]",
        "",
        Vec::new(),
    );
    setup.extra.push_str(SITE);
    let host = Host::start(setup);
    let preflight = |origin: &'static str, path: &'static str| {
        let url = host.url(path);
        let http = host.http.clone();
        async move {
            http.request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization,content-type",
                )
                .send()
                .await
                .unwrap()
        }
    };
    for path in [
        "/webchat/chat/sessions",
        "/webchat/chat/messages",
        "/webchat/chat/offline",
    ] {
        let ok = preflight("https://shop.example.com", path).await;
        assert_eq!(ok.status(), 204, "{path}");
        let h = ok.headers();
        assert_eq!(h["access-control-allow-origin"], "https://shop.example.com");
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        assert!(
            allowed.contains("authorization") && allowed.contains("content-type"),
            "{allowed}"
        );
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        assert!(h.get_all("vary").iter().any(|v| v == "Origin"));

        let evil = preflight("https://evil.example.com", path).await;
        assert_eq!(evil.status(), 403, "{path}");
        assert!(evil.headers().get("access-control-allow-origin").is_none());
        assert!(evil.headers().get_all("vary").iter().any(|v| v == "Origin"));
        let body: Value = evil.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("allowed_origins"),
            "{body}"
        );
    }

    // Real requests: the allowed origin gets the header, others do not.
    let resp = host
        .http
        .post(host.url("/webchat/chat/sessions"))
        .header("origin", "https://shop.example.com")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = host
        .http
        .get(host.url("/webchat/chat/messages?after=0&wait=0"))
        .header("origin", "https://evil.example.com")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // A channel without allowed_origins allows no origin.
    let resp = preflight("https://shop.example.com", "/webchat/site/sessions").await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}
