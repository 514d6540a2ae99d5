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
    let poll = tokio::spawn({
        let url = host.url("/webchat/site/messages?after=1&wait=20");
        let token = token.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
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
