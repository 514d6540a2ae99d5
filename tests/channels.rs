//! Channel rules end to end against the real binary: opt-out keywords, WhatsApp's 24-hour
//! window and templates, delivery status that never moves backwards, attachment switches,
//! length limits and segment counts, and the credential check against a fake provider.

mod support;

use serde_json::{Value, json};
use support::*;

async fn twilio_ok() -> FakeProvider {
    FakeProvider::start(vec![(
        201,
        json!({"sid": "SMout000000000000000000000000001"}),
    )])
    .await
}

async fn sms_in(host: &Host, channel: &str, params: &[(&'static str, String)]) {
    let resp = host
        .post_twilio(channel, &pairs(params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

async fn only_conversation(host: &Host) -> String {
    let convs = host.conversations(ALICE).await;
    assert_eq!(convs.len(), 1, "{convs:?}");
    convs[0]["id"].as_str().unwrap().to_owned()
}

async fn reply(host: &Host, id: &str, body: Value) -> (u16, Value) {
    host.post_json(&format!("/api/v1/conversations/{id}/messages"), ALICE, body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_keywords_block_sends_until_the_customer_opts_back_in() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    let from = "+14155552000";
    sms_in(
        &host,
        "sms",
        &inbound_sms("SMopt00000000000000000000000000001", from, "stop please"),
    )
    .await;
    let id = only_conversation(&host).await;
    assert_eq!(
        reply(&host, &id, json!({"text": "not a keyword"})).await.0,
        201
    );

    sms_in(
        &host,
        "sms",
        &inbound_sms("SMopt00000000000000000000000000002", from, "  Stop "),
    )
    .await;
    let (status, body) = reply(&host, &id, json!({"text": "are you there?"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("opted out"),
        "{body}"
    );
    assert_eq!(
        twilio.recorded().len(),
        1,
        "nothing reached the provider after STOP"
    );

    sms_in(
        &host,
        "sms",
        &inbound_sms("SMopt00000000000000000000000000003", from, "UNSTOP"),
    )
    .await;
    assert_eq!(
        reply(&host, &id, json!({"text": "welcome back"})).await.0,
        201
    );
    assert_eq!(twilio.recorded().len(), 2);
    for (i, word) in ["STOPALL", "unsubscribe", "Cancel", "END", "quit"]
        .iter()
        .enumerate()
    {
        sms_in(
            &host,
            "sms",
            &inbound_sms(&format!("SMopt1{i:029}"), from, word),
        )
        .await;
        assert_eq!(
            reply(&host, &id, json!({"text": "x"})).await.0,
            422,
            "{word}"
        );
        sms_in(
            &host,
            "sms",
            &inbound_sms(&format!("SMopt2{i:029}"), from, "start"),
        )
        .await;
        assert_eq!(
            reply(&host, &id, json!({"text": "x"})).await.0,
            201,
            "{word} then START"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_window_allows_only_templates_outside_24_hours() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        extra: whatsapp_channel(&twilio.base),
        alice: "may_start = true\nsend_from = \"wa\"".to_owned(),
        ..Setup::default()
    });
    // A new conversation has no inbound message: the window is closed.
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ALICE,
            json!({"to": "+14155552100", "text": "hello"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("24-hour") && error.contains("order_update (en)"),
        "{error}"
    );
    assert!(twilio.recorded().is_empty());

    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ALICE,
            json!({"to": "+14155552100", "template": {"name": "order_update", "variables": {"1": "A-1001"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["template"], "order_update");
    let id = body["conversation"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["conversation"]["customer"], "whatsapp:+14155552100");
    let sent = twilio.recorded();
    assert_eq!(sent.len(), 1);
    let form = sent[0].form();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        field("ContentSid").as_deref(),
        Some("HXb5b62575e6e4ff6129ad7c8efe1f983e")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&field("ContentVariables").unwrap()).unwrap(),
        json!({"1": "A-1001"})
    );
    assert_eq!(field("Body"), None);
    assert_eq!(field("To").as_deref(), Some("whatsapp:+14155552100"));

    let (status, body) = reply(&host, &id, json!({"template": {"name": "nope"}})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = reply(&host, &id, json!({"template": {"name": "order_update"}})).await;
    assert_eq!(status, 422, "missing variable: {body}");

    // The customer writes: the window opens and free text goes out.
    let mut params = inbound_sms(
        "SMwa000000000000000000000000000001",
        "whatsapp:+14155552100",
        "where is it?",
    );
    for (k, v) in params.iter_mut() {
        if *k == "To" {
            *v = format!("whatsapp:{WA_FROM}");
        }
    }
    params.push(("ProfileName", "Wanda".into()));
    params.push(("WaId", "14155552100".into()));
    sms_in(&host, "wa", &params).await;
    let (status, body) = reply(&host, &id, json!({"text": "On its way!"})).await;
    assert_eq!(status, 201, "{body}");
    let last = twilio.recorded().pop().unwrap().form();
    assert!(
        last.contains(&("Body".to_owned(), "On its way!".to_owned())),
        "{last:?}"
    );
    let conv = &host.conversations(ALICE).await[0];
    assert_eq!(conv["contact_name"], "Wanda");
    assert_eq!(conv["kind"], "whatsapp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_status_never_moves_backwards() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    sms_in(
        &host,
        "sms",
        &inbound_sms("SMst000000000000000000000000000001", "+14155552200", "hi"),
    )
    .await;
    let id = only_conversation(&host).await;
    let (_, sent) = reply(&host, &id, json!({"text": "hello"})).await;
    assert_eq!(sent["status"], "queued");
    let sid = "SMout000000000000000000000000001";
    async fn status_of(host: &Host, id: &str) -> Value {
        host.messages(id, ALICE).await[1]["status"].clone()
    }
    sms_in(&host, "sms", &status_callback(sid, "sent", None)).await;
    assert_eq!(status_of(&host, &id).await, "sent");
    sms_in(&host, "sms", &status_callback(sid, "delivered", None)).await;
    assert_eq!(status_of(&host, &id).await, "delivered");
    // Late callbacks arrive out of order: ignored.
    sms_in(&host, "sms", &status_callback(sid, "sent", None)).await;
    sms_in(&host, "sms", &status_callback(sid, "queued", None)).await;
    assert_eq!(status_of(&host, &id).await, "delivered");
    // A callback for a message we never sent is acknowledged and ignored.
    sms_in(
        &host,
        "sms",
        &status_callback("SMunknown0000000000000000000000001", "delivered", None),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_63016_marks_the_message_failed_with_the_reason() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        extra: whatsapp_channel(&twilio.base),
        ..Setup::default()
    });
    let mut params = inbound_sms(
        "SMwa000000000000000000000000000002",
        "whatsapp:+14155552300",
        "hi",
    );
    for (k, v) in params.iter_mut() {
        if *k == "To" {
            *v = format!("whatsapp:{WA_FROM}");
        }
    }
    sms_in(&host, "wa", &params).await;
    let id = only_conversation(&host).await;
    reply(&host, &id, json!({"text": "hello"})).await;
    let mut cb = status_callback("SMout000000000000000000000000001", "failed", Some("63016"));
    for (k, v) in cb.iter_mut() {
        if *k == "To" {
            *v = "whatsapp:+14155552300".into();
        }
        if *k == "From" {
            *v = format!("whatsapp:{WA_FROM}");
        }
    }
    sms_in(&host, "wa", &cb).await;
    let m = &host.messages(&id, ALICE).await[1];
    assert_eq!(m["status"], "failed");
    let error = m["error"].as_str().unwrap();
    assert!(error.contains("63016"), "{error}");
    assert!(error.contains("24-hour"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_switches_and_capabilities() {
    let twilio = twilio_ok().await;
    let extra = format!(
        r#"
[[channels]]
name = "strict"
plugin = "twilio-sms"
queue = "sales"
customer_attachments = false
agent_attachments = false
[channels.settings]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "+15005550007"
api_base = "{base}"
"#,
        base = twilio.base
    );
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        extra,
        ..Setup::default()
    });
    let media = |sid: &str, from: &str| {
        let mut p = inbound_sms(sid, from, "photo");
        p.retain(|(k, _)| *k != "NumMedia");
        p.push(("NumMedia", "1".into()));
        p.push(("MediaUrl0", "https://api.twilio.com/media/ME1".into()));
        p.push(("MediaContentType0", "image/jpeg".into()));
        p
    };
    // Allowed channel: kept, and agents can send media.
    sms_in(
        &host,
        "sms",
        &media("SMatt00000000000000000000000000001", "+14155552400"),
    )
    .await;
    let id = only_conversation(&host).await;
    assert_eq!(
        host.messages(&id, ALICE).await[0]["attachments"][0]["content_type"],
        "image/jpeg"
    );
    let (status, body) = reply(
        &host,
        &id,
        json!({"text": "here", "attachments": [{"url": "https://example.com/a.png", "content_type": "image/png"}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let form = twilio.recorded()[0].form();
    assert!(
        form.contains(&(
            "MediaUrl".to_owned(),
            "https://example.com/a.png".to_owned()
        )),
        "{form:?}"
    );

    // Strict channel: customer media dropped with a note, agent media refused.
    sms_in(
        &host,
        "strict",
        &media("SMatt00000000000000000000000000002", "+14155552401"),
    )
    .await;
    let convs = host.conversations(BOB).await;
    let strict = convs[0]["id"].as_str().unwrap().to_owned();
    let m = &host.messages(&strict, BOB).await[0];
    assert_eq!(m["attachments"], json!([]));
    assert!(
        m["note"]
            .as_str()
            .unwrap()
            .contains("customer attachments are off"),
        "{m}"
    );
    let (status, body) = host
        .post_json(
            &format!("/api/v1/conversations/{strict}/messages"),
            BOB,
            json!({"attachments": [{"url": "https://example.com/a.png"}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("agent attachments are off")
    );
    let (status, _) = host
        .post_json(
            &format!("/api/v1/conversations/{strict}/messages"),
            BOB,
            json!({"text": "x", "attachments": [{"url": "ftp://example.com/a.png"}]}),
        )
        .await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_limit_and_segment_counts() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    sms_in(
        &host,
        "sms",
        &inbound_sms("SMlen00000000000000000000000000001", "+14155552500", "hi"),
    )
    .await;
    let id = only_conversation(&host).await;
    let (status, body) = reply(&host, &id, json!({"text": "x".repeat(1601)})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("1600"), "{body}");
    let cases = [
        ("hello".to_owned(), "gsm7", 1),
        ("a".repeat(161), "gsm7", 2),
        ("€".repeat(81), "gsm7", 2),
        ("ok ✓".to_owned(), "ucs2", 1),
        (format!("{}😀", "a".repeat(69)), "ucs2", 2),
        ("x".repeat(1600), "gsm7", 11),
    ];
    for (text, encoding, count) in cases {
        let (status, body) = reply(&host, &id, json!({"text": text})).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body["segments"],
            json!({"encoding": encoding, "count": count}),
            "{text}"
        );
    }
    assert_eq!(
        host.messages(&id, ALICE).await[0]["segments"]["count"],
        1,
        "inbound too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_check_reports_ok_or_the_provider_error() {
    let twilio =
        FakeProvider::start(vec![(200, json!({"sid": ACCOUNT_SID, "status": "active"}))]).await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    let cli = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_plugboard"))
            .args(["channel", "test", name, "--config"])
            .arg(host.config_path())
            .env("TEST_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let out = cli("sms");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""result":"ok""#), "{stdout}");
    let checked = twilio.recorded();
    assert_eq!(checked[0].method, "GET");
    assert_eq!(
        checked[0].path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}.json")
    );
    assert!(checked[0].headers["authorization"].starts_with("Basic "));

    twilio.answer(vec![(
        401,
        json!({"code": 20003, "message": "Authentication Error - invalid username", "status": 401}),
    )]);
    let out = cli("sms");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("failed") && stdout.contains("20003"),
        "{stdout}"
    );
    assert!(!stdout.contains(AUTH_TOKEN), "no secret in the output");

    let resp = host
        .http
        .post(host.url("/api/v1/admin/channels/sms/test"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["outcome"]["result"], "failed", "{body}");
    let resp = host
        .http
        .post(host.url("/api/v1/admin/channels/sms/test"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "agents are not admins");
    let out = cli("nope");
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_can_be_disabled_enabled_and_deleted_without_losing_data() {
    let twilio = twilio_ok().await;
    let mut host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });

    sms_in(
        &host,
        "sms",
        &inbound_sms(
            "SMadm00000000000000000000000000001",
            "+14155552600",
            "before",
        ),
    )
    .await;
    let id = only_conversation(&host).await;

    let resp = admin(
        &host,
        "/api/v1/admin/channels/sms/disable",
        reqwest::Method::POST,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let params = inbound_sms(
        "SMadm00000000000000000000000000002",
        "+14155552600",
        "while off",
    );
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 404, "a disabled channel's webhook is 404");
    let (status, body) = reply(&host, &id, json!({"text": "hello?"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("disabled"),
        "{body}"
    );
    assert_eq!(
        host.messages(&id, ALICE).await.len(),
        1,
        "nothing lost, nothing added"
    );

    let resp = admin(
        &host,
        "/api/v1/admin/channels/sms/enable",
        reqwest::Method::POST,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    sms_in(&host, "sms", &params).await;
    assert_eq!(reply(&host, &id, json!({"text": "back"})).await.0, 201);

    let resp = admin(&host, "/api/v1/admin/channels/sms", reqwest::Method::DELETE)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = admin(
        &host,
        "/api/v1/admin/channels/sms/enable",
        reqwest::Method::POST,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 409, "deletion cannot be undone");
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 404);
    // Conversations stay readable, across a restart too, and the channel stays deleted.
    host.restart();
    assert_eq!(host.messages(&id, ALICE).await.len(), 3);
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 404);
    assert!(host.log().contains("stays deleted"));
    let resp = admin(
        &host,
        "/api/v1/admin/channels/nope/disable",
        reqwest::Method::POST,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = host
        .http
        .post(host.url("/api/v1/admin/channels/sms/disable"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

fn admin(
    host: &Host,
    path: &str,
    method: reqwest::Method,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
    host.http
        .request(method, host.url(path))
        .bearer_auth(ADMIN)
        .send()
}

/// A channel of the `outbound-probe` test guest (it sends each message to the URL in its text
/// and declares `localhost` and `127.0.0.1` in its own manifest), with `settings`.
fn probe_channel(name: &str, settings: &[(&str, &str)]) -> String {
    let mut s = format!(
        "\n[[channels]]\nname = \"{name}\"\nplugin = \"outbound-probe\"\nqueue = \"support\"\n[channels.settings]\n"
    );
    for (k, v) in settings {
        s.push_str(&format!("{k} = \"{v}\"\n"));
    }
    s
}

/// Opens a conversation on a probe channel and returns its id.
async fn probe_conversation(host: &Host, channel: &str, from: &str) -> String {
    let resp = host
        .http
        .post(host.url(&format!("/webhooks/{channel}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("id", &format!("in-{from}")),
            ("from", from),
            ("text", "hi"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    host.conversations(ALICE)
        .await
        .iter()
        .find(|c| c["customer"] == from)
        .expect("probe conversation")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sends `url` as the text of a reply, so the probe plugin requests it; returns the message as
/// the API answered it (after the first attempt).
async fn probe_send(host: &Host, id: &str, url: &str) -> Value {
    let (status, m) = reply(host, id, json!({ "text": url })).await;
    assert!(status == 201 || status == 202, "{status} {m}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_allow_list_is_the_configured_origin_exactly() {
    let allowed = FakeProvider::start(vec![(200, json!({}))]).await;
    let other_port = FakeProvider::start(vec![(200, json!({}))]).await;
    let host = Host::start(Setup {
        plugins: vec!["outbound-probe"],
        extra: probe_channel("probe", &[("api_base", &allowed.base)]),
        ..Setup::default()
    });
    let id = probe_conversation(&host, "probe", "probe-user-1").await;
    let allowed_port = allowed.base.rsplit(':').next().unwrap();

    // Another port on the configured loopback host, and the configured port with another
    // scheme: both refused for good before any connection.
    for url in [
        format!("{}/steal", other_port.base),
        format!("https://127.0.0.1:{allowed_port}/wrong-scheme"),
        "http://127.0.0.1:22/ssh".to_owned(),
    ] {
        let m = probe_send(&host, &id, &url).await;
        assert_eq!(m["status"], "failed", "{url}: {m}");
        let error = m["error"].as_str().unwrap();
        assert!(
            error.contains("refused to send") && error.contains("not among"),
            "{url}: {error}"
        );
        assert!(
            error.contains(&allowed.base),
            "names what is allowed: {error}"
        );
    }
    // The configured origin itself still works.
    let m = probe_send(&host, &id, &format!("{}/ok", allowed.base)).await;
    assert_eq!(m["status"], "queued", "{m}");
    let sent = allowed.recorded();
    assert_eq!(
        sent.len(),
        1,
        "only the allowed request reached the provider"
    );
    assert_eq!(sent[0].path, "/ok");
    assert!(
        other_port.recorded().is_empty(),
        "the fake provider on the other port recorded {:?}",
        other_port.recorded()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_allow_itself_localhost() {
    let local = FakeProvider::start(vec![(200, json!({}))]).await;
    let port = local.base.rsplit(':').next().unwrap().to_owned();
    let operator_base = format!("http://localhost:{port}");
    let mut extra = probe_channel("probe", &[]);
    extra.push_str(&probe_channel("probe2", &[("api_base", &operator_base)]));
    let host = Host::start(Setup {
        plugins: vec!["outbound-probe"],
        extra,
        ..Setup::default()
    });
    // The plugin's manifest declares `localhost` and `127.0.0.1`; no operator setting does.
    let id = probe_conversation(&host, "probe", "probe-user-2").await;
    for url in [
        format!("http://localhost:{port}/manifest-localhost"),
        format!("http://127.0.0.1:{port}/manifest-loopback"),
        "https://localhost/manifest-https".to_owned(),
    ] {
        let m = probe_send(&host, &id, &url).await;
        assert_eq!(m["status"], "failed", "{url}: {m}");
        assert!(
            m["error"].as_str().unwrap().contains("refused to send"),
            "{url}: {m}"
        );
    }
    assert!(
        local.recorded().is_empty(),
        "a manifest `localhost` reached {:?}",
        local.recorded()
    );
    assert!(
        host.log().contains("manifest API host ignored"),
        "the ignored manifest hosts are logged"
    );
    // The same plugin on a channel whose operator configured the local origin reaches it.
    let id2 = probe_conversation(&host, "probe2", "probe-user-3").await;
    let m = probe_send(&host, &id2, &format!("{operator_base}/configured")).await;
    assert_eq!(m["status"], "queued", "{m}");
    let sent = local.recorded();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sends_ask_for_status_callbacks_and_may_use_a_messaging_service() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        extra: format!(
            r#"
[[channels]]
name = "svc"
plugin = "twilio-sms"
queue = "support"
[channels.settings]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
messaging_service_sid = "MG0123456789abcdef0123456789abcdef"
api_base = "{}"
"#,
            twilio.base
        ),
        ..Setup::default()
    });
    sms_in(
        &host,
        "sms",
        &inbound_sms("SMcb000000000000000000000000000001", "+14155552101", "hi"),
    )
    .await;
    sms_in(
        &host,
        "svc",
        &inbound_sms("SMcb000000000000000000000000000002", "+14155552102", "hi"),
    )
    .await;
    let convs = host.conversations(ALICE).await;
    let conv = |customer: &str| {
        convs.iter().find(|c| c["customer"] == customer).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (status, m) = reply(
        &host,
        &conv("+14155552101"),
        json!({"text": "from a number"}),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let (status, m) = reply(
        &host,
        &conv("+14155552102"),
        json!({"text": "from a service"}),
    )
    .await;
    assert_eq!(status, 201, "{m}");

    let sent = twilio.recorded();
    assert_eq!(sent.len(), 2);
    let field = |i: usize, name: &str| {
        sent[i]
            .form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    };
    assert_eq!(
        field(0, "StatusCallback").as_deref(),
        Some(host.url("/webhooks/sms").as_str())
    );
    assert_eq!(field(0, "From").as_deref(), Some("+15005550006"));
    assert_eq!(field(0, "MessagingServiceSid"), None);
    assert_eq!(
        field(1, "StatusCallback").as_deref(),
        Some(host.url("/webhooks/svc").as_str())
    );
    assert_eq!(
        field(1, "MessagingServiceSid").as_deref(),
        Some("MG0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        field(1, "From"),
        None,
        "no From next to MessagingServiceSid"
    );

    // Twilio calling the StatusCallback it was given moves the message forward.
    let callback = [
        ("MessageSid", "SMout000000000000000000000000001"),
        ("MessageStatus", "delivered"),
    ];
    let resp = host.post_twilio("sms", &callback, Some(AUTH_TOKEN)).await;
    assert_eq!(resp.status(), 200);
    let id = conv("+14155552101");
    eventually("the status callback to land", || async {
        host.messages(&id, ALICE)
            .await
            .iter()
            .any(|m| m["text"] == "from a number" && m["status"] == "delivered")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_json_webhooks_signed_with_body_sha256() {
    use sha2::Digest;
    let host = Host::start(Setup::default());
    let body = serde_json::to_vec(&json!({
        "MessageSid": "SMjson0000000000000000000000000001",
        "SmsStatus": "received",
        "From": "+14155552201",
        "To": "+15005550006",
        "Body": "hello as JSON",
        "NumMedia": "0"
    }))
    .unwrap();
    let url = host.url(&format!(
        "/webhooks/sms?bodySHA256={}",
        hex::encode(sha2::Sha256::digest(&body))
    ));
    // The helper libraries' rule: the URL (with bodySHA256) signed with no parameters.
    let signature = twilio_signature(AUTH_TOKEN, &url, &[]);
    let post = |body: Vec<u8>| {
        host.http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-twilio-signature", signature.clone())
            .body(body)
            .send()
    };

    let mut tampered = body.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 0x01;
    let resp = post(tampered).await.unwrap();
    assert_eq!(resp.status(), 403);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("bodySHA256"),
        "{err}"
    );
    assert!(host.conversations(ALICE).await.is_empty(), "nothing stored");

    let resp = post(body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = only_conversation(&host).await;
    let messages = host.messages(&id, ALICE).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "hello as JSON");
}

/// Issue 11, item 11: a provider's retry of a STOP that arrives after a later START does not
/// undo the START (the retried message is a duplicate, and so is the opt-out it carries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_stop_after_a_start_leaves_the_address_opted_in() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..Setup::default()
    });
    let from = "+14155552100";
    let mut stop = inbound_sms("SMretry0000000000000000000000000001", from, "STOP");
    stop.push(("OptOutType", "STOP".to_owned()));
    let mut start = inbound_sms("SMretry0000000000000000000000000002", from, "START");
    start.push(("OptOutType", "START".to_owned()));
    sms_in(&host, "sms", &stop).await;
    sms_in(&host, "sms", &start).await;
    // The provider retries the STOP (it never saw our first answer, say).
    sms_in(&host, "sms", &stop).await;

    let id = only_conversation(&host).await;
    let texts: Vec<String> = host
        .messages(&id, ALICE)
        .await
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts, ["STOP", "START"], "the retry was stored once");
    let (status, body) = reply(&host, &id, json!({"text": "welcome back"})).await;
    assert_eq!(
        status, 201,
        "the address is opted in, as the latest message said: {body}"
    );
}

/// A pager page from `from` (the `pager` test guest takes unauthenticated forms).
async fn page_in(host: &Host, id: &str, from: &str, text: &str) {
    let resp = host
        .http
        .post(host.url("/webhooks/pg"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("id", id), ("from", from), ("text", text)]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kind_of_channel_gets_the_rules_its_manifest_declares() {
    let provider = FakeProvider::start(vec![(200, json!({}))]).await;
    let host = Host::start(Setup {
        plugins: vec!["pager"],
        extra: format!(
            "\n[[channels]]\nname = \"pg\"\nplugin = \"pager\"\nqueue = \"support\"\n[channels.settings]\napi_base = \"{}\"\nfrom = \"pager:+15005550006\"\n",
            provider.base
        ),
        alice: "may_start = true\nsend_from = \"pg\"".to_owned(),
        ..Setup::default()
    });
    let customer = "pager:+14155552300";
    page_in(&host, "pg-1", customer, "hello").await;
    let id = eventually("the pager conversation", || async {
        host.conversations(ALICE)
            .await
            .iter()
            .find(|c| c["customer"] == customer)
            .map(|c| c["id"].as_str().unwrap().to_owned())
    })
    .await;
    let detail = host
        .get_json(&format!("/api/v1/conversations/{id}"), ALICE)
        .await
        .1;
    assert_eq!(detail["kind"], "pager");
    let rules = &detail["rules"];
    assert_eq!(
        (
            rules["max_chars"].clone(),
            rules["segments"].clone(),
            rules["window"]["hours"].clone()
        ),
        (json!(160), json!(false), json!(1)),
        "{detail}"
    );

    // Its declared longest text, 160 characters, not the 5,000 of other kinds.
    let (status, body) = reply(&host, &id, json!({"text": "x".repeat(161)})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("at most 160"),
        "{body}"
    );
    assert_eq!(
        reply(&host, &id, json!({"text": "x".repeat(160)})).await.0,
        201
    );

    // Its declared keywords: STOP opts out, whatever the kind is called.
    page_in(&host, "pg-2", customer, "STOP").await;
    let (status, body) = reply(&host, &id, json!({"text": "still there?"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("opted out"),
        "{body}"
    );

    // Its declared address form and window: an agent starts by number, the address is
    // `pager:+1...`, and with no message from the customer the 1-hour window is closed.
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ALICE,
            json!({"to": "+14155552301", "text": "hello"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("1-hour pager reply window is closed"),
        "{body}"
    );
}

/// `plugboard check` flags a `from` that is not E.164 on any channel whose manifest declares
/// E.164 addresses, in that channel's own address form.
#[test]
fn check_flags_a_from_that_does_not_fit_the_declared_address_form() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        plugboard_artifacts::test_plugin("pager"),
        plugins.join("pager.wasm"),
    )
    .unwrap();
    let (ok, stderr) = run_check(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\ndata_dir = \"data\"\nplugins_dir = \"{}\"\n[[queues]]\nname = \"support\"\nrouter = \"ring-all\"\n[[channels]]\nname = \"pg\"\nplugin = \"pager\"\nqueue = \"support\"\n[channels.settings]\nfrom = \"pager:12345\"\n",
            plugins.display()
        ),
    );
    assert!(!ok);
    assert!(
        stderr.contains("channels[0].settings.from") && stderr.contains("pager:+14155550100"),
        "{stderr}"
    );
}
