//! The API pieces the agent console needs, against the real binary, usable by any client:
//! console sessions (cookie, CSRF, server-side sign-out, the event stream by cookie), who am I,
//! colleagues with presence, queues with canned replies, one conversation with its reply
//! rules, unread counts and read markers, internal notes (never sent, never shown to a web
//! chat visitor), transfer to a queue, reopen, search over what the agent can see, the new
//! live events (outbound, status, note, opt-out), CORS from configured origins, and the
//! console's files with their Content Security Policy.

mod support;

use serde_json::{Value, json};
use support::*;

/// Alice and Dana work `support`, Carol manages it; Bob works `sales`. A WhatsApp channel
/// with one template feeds `support` too, and a web chat channel.
fn setup(api_base: &str) -> Setup {
    Setup {
        twilio_api_base: Some(api_base.to_owned()),
        server: "allowed_origins = [\"https://crm.example.com\"]".into(),
        support: "managers = [\"carol\"]\ncanned = [{ shortcut = \"late\", text = \"Sorry for the wait!\" }]"
            .into(),
        alice: "may_start = true".into(),
        extra: format!(
            "{}{}\n[[channels]]\nname = \"site\"\nplugin = \"webchat\"\nqueue = \"support\"\n",
            console_team(),
            whatsapp_channel(api_base)
        ),
        ..Setup::default()
    }
}

async fn twilio() -> FakeProvider {
    FakeProvider::start(vec![(
        201,
        twilio_created("SMout000000000000000000000000001"),
    )])
    .await
}

async fn sms(host: &Host, sid: &str, from: &str, body: &str) {
    let resp = host
        .post_twilio(
            "sms",
            &pairs(&inbound_sms(sid, from, body)),
            Some(AUTH_TOKEN),
        )
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

/// The one conversation `token` sees in Recent.
async fn only(host: &Host, token: &str) -> Value {
    let list = host.conversations(token).await;
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].clone()
}

/// GETs `path` with the session `cookie`.
async fn cookie_get(host: &Host, cookie: &str, path: &str) -> reqwest::Response {
    host.http
        .get(host.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// A console session: the cookie (`name=value`) and the CSRF value.
async fn sign_in(host: &Host, token: &str) -> (String, String) {
    let resp = host
        .http
        .post(host.url("/api/v1/session"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    assert!(
        !set.contains("Secure"),
        "http public URL: no Secure flag: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("plugboard_session="), "{cookie}");
    (cookie, body["csrf"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_use_a_cookie_with_csrf_and_end_on_the_server() {
    let fake = twilio().await;
    let host = Host::start(setup(&fake.base));
    let resp = host
        .http
        .post(host.url("/api/v1/session"))
        .json(&json!({"token": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("no agent"),
        "{body}"
    );

    let (cookie, csrf) = sign_in(&host, ALICE).await;
    let get = |path: &str| {
        host.http
            .get(host.url(path))
            .header("cookie", &cookie)
            .send()
    };
    let me: Value = get("/api/v1/agents/me")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], "alice");
    assert_eq!(
        me["csrf"],
        csrf.as_str(),
        "the console reads it again after a reload"
    );
    assert_eq!(me["may_start"], true);

    // A state change by cookie needs the CSRF value; by bearer it does not.
    let put = |csrf: Option<&str>| {
        let mut req = host
            .http
            .put(host.url("/api/v1/agents/me/presence"))
            .header("cookie", &cookie)
            .json(&json!({"presence": "online"}));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.send()
    };
    let refused = put(None).await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("X-CSRF-Token"),
        "{body}"
    );
    assert_eq!(put(Some("forged")).await.unwrap().status(), 403);
    let mut stream = SseStream::open_cookie(&host, &cookie, None).await;
    assert_eq!(put(Some(&csrf)).await.unwrap().status(), 200);
    let presence = stream.next_of("presence").await;
    assert_eq!(presence.data["data"]["presence"], "online");
    let (_, me) = host.get_json("/api/v1/agents/me", ALICE).await;
    assert_eq!(me["presence"], "online");
    assert!(
        me.get("csrf").is_none(),
        "no CSRF value for a bearer client: {me}"
    );

    // The stream by cookie carries what concerns alice.
    sms(
        &host,
        "SMc00000000000000000000000000001",
        "+14155550123",
        "hello",
    )
    .await;
    let offered = stream.next_of("offered").await;
    assert_eq!(offered.data["data"]["customer"], "+14155550123");

    // Signing out ends the session on the server: the same cookie no longer works.
    let out = host
        .http
        .delete(host.url("/api/v1/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = get("/api/v1/agents/me").await.unwrap();
    assert_eq!(after.status(), 401);
    let body: Value = after.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("sign in again"),
        "{body}"
    );
    // Sign-out with a bearer token has no session to end.
    let (status, _) = host
        .post_json("/api/v1/agents/me/presence", ALICE, json!({}))
        .await;
    assert_eq!(status, 405, "PUT only");
    let resp = host
        .http
        .delete(host.url("/api/v1/session"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_colleagues_and_queues_say_what_a_console_shows() {
    let fake = twilio().await;
    let host = Host::start(setup(&fake.base));
    host.presence(DANA, "away").await;
    let (_, me) = host.get_json("/api/v1/agents/me", CAROL).await;
    assert_eq!(me["manages"], json!(["support"]), "{me}");
    assert_eq!(me["queues"], json!([]));

    let (_, colleagues) = host.get_json("/api/v1/agents", ALICE).await;
    let mut seen: Vec<(String, String)> = colleagues["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["presence"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("carol".into(), "offline".into()),
            ("dana".into(), "away".into())
        ],
        "support's agents and its manager, not bob of sales, not alice herself"
    );

    let (_, queues) = host.get_json("/api/v1/queues", ALICE).await;
    let queues = queues["queues"].as_array().unwrap().clone();
    let support = queues.iter().find(|q| q["name"] == "support").unwrap();
    assert_eq!(support["member"], true);
    assert_eq!(
        support["canned"],
        json!([{"shortcut": "late", "text": "Sorry for the wait!"}])
    );
    let sales = queues.iter().find(|q| q["name"] == "sales").unwrap();
    assert_eq!(
        (sales["member"].clone(), sales["canned"].clone()),
        (json!(false), json!([]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conversation_with_its_rules_unread_counts_and_notes_never_sent() {
    let fake = twilio().await;
    let host = Host::start(setup(&fake.base));
    host.presence(ALICE, "online").await;
    sms(
        &host,
        "SMc00000000000000000000000000002",
        "+14155550123",
        "my order is late",
    )
    .await;
    let row = only(&host, ALICE).await;
    let id = row["id"].as_str().unwrap().to_owned();
    assert_eq!(row["unread"], 1, "{row}");
    assert_eq!(row["preview"]["text"], "my order is late");
    assert_eq!(row["preview"]["direction"], "inbound");
    assert!(row["waiting_since"].as_u64().unwrap() > 0, "{row}");

    let (status, one) = host
        .get_json(&format!("/api/v1/conversations/{id}"), ALICE)
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], id.as_str());
    assert_eq!(one["rules"]["max_chars"], 1600);
    assert_eq!(one["rules"]["segments"], true);
    assert_eq!(
        one["rules"]["window"],
        Value::Null,
        "SMS has no reply window"
    );
    assert_eq!(one["rules"]["opted_out"], false);
    let (status, _) = host
        .get_json(&format!("/api/v1/conversations/{id}"), BOB)
        .await;
    assert_eq!(status, 404, "bob works sales: not his to see");

    // Reading moves the marker; a new message is unread again.
    let (status, body) = host.act(&id, "read", ALICE, json!({"seq": 1})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(only(&host, ALICE).await["unread"], 0);
    let (_, dana_view) = host
        .get_json(&format!("/api/v1/conversations/{id}"), DANA)
        .await;
    assert_eq!(dana_view["unread"], 1, "markers are per agent");
    let (status, body) = host.act(&id, "read", ALICE, json!({"seq": "x"})).await;
    assert_eq!(status, 400, "{body}");

    // A note: stored with the history, told to the agents, never sent.
    let mut carol = SseStream::open(&host, CAROL, None).await;
    let (status, note) = host
        .act(&id, "notes", ALICE, json!({"text": "VIP customer"}))
        .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["direction"], "note");
    assert_eq!(note["author"], "alice");
    let told = carol.next_of("note").await;
    assert_eq!(told.data["data"]["id"], note["id"]);
    let (status, body) = host.act(&id, "notes", ALICE, json!({"text": "  "})).await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = host.act(&id, "notes", BOB, json!({"text": "x"})).await;
    assert_eq!(status, 404);

    // A reply is told to the manager as `outbound`, then its status as the provider takes it.
    let (status, sent) = host
        .act(&id, "messages", ALICE, json!({"text": "Checking now"}))
        .await;
    assert_eq!(status, 201, "{sent}");
    // The first reply takes the offered conversation: the manager hears that, the reply, and
    // then the provider's answer, in that order (each is logged before the next can be).
    let mut told = Vec::new();
    while told.last().is_none_or(|e: &Sse| e.kind != "status") {
        told.push(carol.next().await);
    }
    let kinds: Vec<&str> = told.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["assigned", "outbound", "status"], "{told:?}");
    let (outbound, taken) = (&told[1], &told[2]);
    assert_eq!(outbound.data["data"]["id"], sent["id"]);
    assert_eq!(outbound.data["data"]["author"], "alice");
    assert_eq!(taken.data["data"]["id"], sent["id"]);
    let sid = sent["provider_id"].as_str().unwrap().to_owned();
    let resp = host
        .post_twilio(
            "sms",
            &pairs(&status_callback(&sid, "delivered", None)),
            Some(AUTH_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let delivered = carol.next_of("status").await;
    assert_eq!(delivered.data["data"]["status"], "delivered");
    assert_eq!(delivered.data["data"]["id"], sent["id"]);

    let bodies: Vec<String> = fake
        .recorded()
        .iter()
        .flat_map(|r| r.form())
        .filter(|(k, _)| k == "Body")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(bodies, ["Checking now"], "the note was never sent");
    let messages = host.messages(&id, ALICE).await;
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["inbound", "note", "outbound"]);
    assert_eq!(messages[1]["seq"], 2);

    // An opt-out is told too.
    sms(
        &host,
        "SMc00000000000000000000000000003",
        "+14155550123",
        "STOP",
    )
    .await;
    let opted = carol.next_of("opted_out").await;
    assert_eq!(opted.data["data"]["address"], "+14155550123");
    let (_, one) = host
        .get_json(&format!("/api/v1/conversations/{id}"), ALICE)
        .await;
    assert_eq!(one["rules"]["opted_out"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_rules_show_the_window_and_the_templates() {
    let fake = twilio().await;
    let host = Host::start(setup(&fake.base));
    let (status, started) = host
        .post_json(
            "/api/v1/conversations",
            ALICE,
            json!({"to": "+14155552100", "channel": "wa"}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let id = started["conversation"]["id"].as_str().unwrap();
    let (_, one) = host
        .get_json(&format!("/api/v1/conversations/{id}"), ALICE)
        .await;
    assert_eq!(one["kind"], "whatsapp");
    assert_eq!(
        one["rules"]["window"],
        json!({"hours": 24, "open": false, "closes_at": null})
    );
    assert_eq!(one["rules"]["segments"], false);
    assert_eq!(one["rules"]["templates"][0]["name"], "order_update");
    assert_eq!(one["rules"]["templates"][0]["variables"], json!(["1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_to_a_queue_reopen_and_search() {
    let fake = twilio().await;
    let host = Host::start(setup(&fake.base));
    host.presence(BOB, "online").await;
    sms(
        &host,
        "SMc00000000000000000000000000004",
        "+14155550123",
        "refund for order A-1001",
    )
    .await;
    sms(
        &host,
        "SMc00000000000000000000000000005",
        "+14155550199",
        "hello there",
    )
    .await;
    let (status, _) = host
        .post_json(
            "/api/v1/contacts",
            ALICE,
            json!({"name": "Ann Example", "address": "+14155550199"}),
        )
        .await;
    assert_eq!(status, 201);

    // Search: message text, address, directory name; nothing outside the agent's views.
    let search = |token: &'static str, q: &'static str| {
        let host = &host;
        async move {
            let (status, body) = host
                .get_json(
                    &format!("/api/v1/conversations?q={}", q.replace(' ', "%20")),
                    token,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["customer"].as_str().unwrap().to_owned(),
                        c["match"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        search(ALICE, "A-1001").await,
        [(
            "+14155550123".to_owned(),
            "refund for order A-1001".to_owned()
        )]
    );
    assert_eq!(search(ALICE, "ann ex").await[0].0, "+14155550199");
    assert_eq!(search(ALICE, "5550199").await[0].1, "+14155550199");
    assert!(
        search(BOB, "A-1001").await.is_empty(),
        "bob sees no support work"
    );
    assert!(search(ALICE, "nowhere").await.is_empty());
    let long = "x".repeat(201);
    let (status, _) = host
        .get_json(&format!("/api/v1/conversations?q={long}"), ALICE)
        .await;
    assert_eq!(status, 400);

    // Alice takes the refund and hands it to the sales queue: bob is offered it.
    let list = host.conversations(ALICE).await;
    let id = list
        .iter()
        .find(|c| c["customer"] == "+14155550123")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = host.act(&id, "take", ALICE, json!({})).await;
    assert_eq!(status, 200);
    let mut bob = SseStream::open(&host, BOB, None).await;
    let (status, body) = host
        .act(&id, "transfer", ALICE, json!({"queue": "nope"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no queue"),
        "{body}"
    );
    let (status, body) = host
        .act(
            &id,
            "transfer",
            ALICE,
            json!({"queue": "sales", "agent": "dana"}),
        )
        .await;
    assert_eq!(status, 422, "one target only: {body}");
    let (status, moved) = host
        .act(&id, "transfer", ALICE, json!({"queue": "sales"}))
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (moved["queue"].clone(), moved["state"].clone()),
        (json!("sales"), json!("queued"))
    );
    let offered = bob.next_of("offered").await;
    assert_eq!(offered.data["conversation"], id.as_str());
    let (status, _) = host
        .get_json(&format!("/api/v1/conversations/{id}"), ALICE)
        .await;
    assert_eq!(status, 404, "no longer alice's to read");

    // Bob takes and closes it; he may reopen it, alice (of another queue) may not.
    let (status, _) = host.act(&id, "take", BOB, json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = host.act(&id, "reopen", BOB, json!({})).await;
    assert_eq!(status, 409, "open conversations are not reopened: {body}");
    let (status, _) = host.act(&id, "close", BOB, json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = host.act(&id, "reopen", ALICE, json!({})).await;
    assert_eq!(
        status, 403,
        "alice handled it but no longer works its queue: {body}"
    );
    let (status, reopened) = host.act(&id, "reopen", BOB, json!({})).await;
    assert_eq!(status, 200, "{reopened}");
    assert_eq!(
        (reopened["state"].clone(), reopened["owner"].clone()),
        (json!("assigned"), json!("bob"))
    );
    let messages = host.messages(&id, BOB).await;
    assert_eq!(
        messages[0]["text"], "refund for order A-1001",
        "with its history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_never_reaches_the_web_chat_visitor() {
    let fake = twilio().await;
    let host = Host::start(setup(&fake.base));
    host.presence(ALICE, "online").await;
    let session = host.webchat_session("site").await;
    let token = session["token"].as_str().unwrap().to_owned();
    let resp = host
        .http
        .post(host.url("/webchat/site/messages"))
        .bearer_auth(&token)
        .json(&json!({"text": "hi", "message_id": "w1"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let id = only(&host, ALICE).await["id"].as_str().unwrap().to_owned();
    let (status, _) = host
        .act(&id, "notes", ALICE, json!({"text": "internal"}))
        .await;
    assert_eq!(status, 201);
    let (status, _) = host
        .act(&id, "messages", ALICE, json!({"text": "Hello!"}))
        .await;
    assert!(status == 201 || status == 202);
    let poll: Value = host
        .http
        .get(host.url("/webchat/site/messages?after=1&wait=0"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let texts: Vec<&str> = poll["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["Hello!"],
        "the visitor sees the reply and never the note: {poll}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_configured_origins_only_and_the_console_is_served() {
    let fake = twilio().await;
    let host = Host::start(setup(&fake.base));
    let preflight = |origin: &'static str| {
        host.http
            .request(reqwest::Method::OPTIONS, host.url("/api/v1/conversations"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://crm.example.com").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://crm.example.com"
    );
    let allowed = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(
        ok.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let answer = host
        .http
        .get(host.url("/api/v1/agents/me"))
        .bearer_auth(ALICE)
        .header("origin", "https://crm.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://crm.example.com"
    );
    let other = host
        .http
        .get(host.url("/api/v1/agents/me"))
        .bearer_auth(ALICE)
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    for path in [
        "/console",
        "/console/",
        "/console/console.js",
        "/console/console.css",
    ] {
        let resp = host.http.get(host.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
    }
    let html = host.http.get(host.url("/console")).send().await.unwrap();
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let missing = host
        .http
        .get(host.url("/console/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("nope.js"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_its_stream_and_dies_with_a_changed_token() {
    let fake = twilio().await;
    let mut setup = setup(&fake.base);
    setup
        .env
        .push(("PLUGBOARD_SESSION_RECHECK_MS".into(), "300".into()));
    let mut host = Host::start(setup);

    // Sign-in takes JSON only: a form posted from another page cannot sign a browser in.
    let form = host
        .http
        .post(host.url("/api/v1/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ALICE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);

    // A stream opened by cookie ends soon after sign-out (here on the same host; the
    // session is gone from the shared store for every host).
    let (cookie, csrf) = sign_in(&host, ALICE).await;
    let stream = host
        .http
        .get(host.url("/api/v1/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let out = host
        .http
        .delete(host.url("/api/v1/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), stream.bytes()).await;
    assert!(
        matches!(ended, Ok(Ok(_))),
        "the stream of a signed-out session must end: {ended:?}"
    );
    // Signing out again with the dead cookie just clears it.
    let again = host
        .http
        .delete(host.url("/api/v1/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);
    assert!(
        again.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );

    // A session begun with a token the operator has since changed no longer works.
    let (cookie, _) = sign_in(&host, ALICE).await;
    assert_eq!(
        cookie_get(&host, &cookie, "/api/v1/agents/me")
            .await
            .status(),
        200
    );
    let config = std::fs::read_to_string(host.config_path()).unwrap();
    std::fs::write(
        host.config_path(),
        config.replace(ALICE, "alice-rotated-token-987"),
    )
    .unwrap();
    host.restart();
    let refused = cookie_get(&host, &cookie, "/api/v1/agents/me").await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("token changed"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_and_replies_reach_only_those_who_may_read_them() {
    let fake = twilio().await;
    let host = Host::start(setup(&fake.base));
    host.presence(ALICE, "online").await;
    host.presence(BOB, "online").await;
    sms(
        &host,
        "SMc00000000000000000000000000006",
        "+14155550123",
        "hello",
    )
    .await;
    let id = only(&host, ALICE).await["id"].as_str().unwrap().to_owned();
    let (status, _) = host.act(&id, "take", ALICE, json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = host
        .act(&id, "transfer", ALICE, json!({"queue": "sales"}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = host.act(&id, "take", BOB, json!({})).await;
    assert_eq!(status, 200);

    // Bob's note and reply in sales: alice once handled it, but may not read it now.
    let mut alice = SseStream::open(&host, ALICE, None).await;
    let (status, _) = host.act(&id, "notes", BOB, json!({"text": "secret"})).await;
    assert_eq!(status, 201);
    let (status, _) = host
        .act(&id, "messages", BOB, json!({"text": "hi from sales"}))
        .await;
    assert_eq!(status, 201);
    // A signal to wait on: alice's own presence change, after the note and the reply.
    host.presence(ALICE, "away").await;
    loop {
        let e = alice.next().await;
        assert!(
            !["note", "outbound", "status"].contains(&e.kind.as_str()),
            "alice heard about a conversation she cannot read: {e:?}"
        );
        if e.kind == "presence" && e.data["data"]["agent"] == "alice" {
            break;
        }
    }
    // Bob's own reply counts as read for him.
    let (_, row) = host
        .get_json(&format!("/api/v1/conversations/{id}"), BOB)
        .await;
    assert_eq!(row["unread"], 0, "{row}");
}
