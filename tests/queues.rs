//! Queues, agents and routing end to end against the real binary: take and its race, first
//! reply, transfer, views and their walls, offers that time out and move on, absent agents set
//! away, overflow, the offline message, agent-started conversations, contacts, single-agent
//! channels, and the event stream with resume.

mod support;

use serde_json::{Value, json};
use support::*;

const CAROL: &str = "carol-token-123";
const DAVE: &str = "dave-token-1234";

/// Carol works `support` with Alice; Dave manages `support` without working it.
const TEAM: &str = r#"
[[agents]]
id = "carol"
name = "Carol"
token = "carol-token-123"
queues = ["support"]

[[agents]]
id = "dave"
name = "Dave"
token = "dave-token-1234"
"#;

fn team(support: &str) -> Setup {
    Setup {
        extra: TEAM.to_owned(),
        support: format!("managers = [\"dave\"]\n{support}"),
        ..Setup::default()
    }
}

async fn inbound(host: &Host, sid: &str, from: &str, text: &str) -> String {
    let params = inbound_sms(sid, from, text);
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    conversation_of(host, from).await
}

async fn conversation_of(host: &Host, customer: &str) -> String {
    for token in [ALICE, CAROL, DAVE] {
        for view in ["recent", "monitor"] {
            let (status, body) = host
                .get_json(&format!("/api/v1/conversations?view={view}"), token)
                .await;
            if status != 200 {
                continue;
            }
            if let Some(c) = body["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["customer"] == customer)
            {
                return c["id"].as_str().unwrap().to_owned();
            }
        }
    }
    panic!("no conversation with {customer}");
}

async fn view(host: &Host, token: &str, view: &str) -> (u16, Vec<Value>) {
    let (status, body) = host
        .get_json(&format!("/api/v1/conversations?view={view}"), token)
        .await;
    let list = body["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (status, list)
}

async fn conversation(host: &Host, token: &str, id: &str) -> Value {
    for v in ["recent", "monitor", "archived"] {
        let (_, list) = view(host, token, v).await;
        if let Some(c) = list.into_iter().find(|c| c["id"] == id) {
            return c;
        }
    }
    panic!("conversation {id} not visible");
}

async fn twilio_ok() -> FakeProvider {
    FakeProvider::accepting().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_take_at_once_exactly_one_wins() {
    let host = Host::start(team(""));
    for round in 0..5 {
        let id = inbound(
            &host,
            &format!("SMtake{round:028}"),
            &format!("+1415555020{round}"),
            "hi",
        )
        .await;
        let path = format!("/api/v1/conversations/{id}/take");
        let (a, c) = tokio::join!(
            host.post_json(&path, ALICE, json!({})),
            host.post_json(&path, CAROL, json!({}))
        );
        let mut statuses = [a.0, c.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: {a:?} {c:?}");
        let (winner, loser) = if a.0 == 200 {
            ("alice", &c.1)
        } else {
            ("carol", &a.1)
        };
        assert_eq!(loser["owner"], winner, "the 409 names the owner");
        assert!(loser["error"].as_str().unwrap().contains(winner));
        // Taking it again as the owner is harmless; Bob (another queue) cannot even see it.
        let token = if winner == "alice" { ALICE } else { CAROL };
        assert_eq!(host.post_json(&path, token, json!({})).await.0, 200);
        assert_eq!(host.post_json(&path, BOB, json!({})).await.0, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_reply_takes_the_conversation_and_it_vanishes_for_the_others() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..team("")
    });
    let id = inbound(
        &host,
        "SMfirst000000000000000000000000001",
        "+14155550300",
        "hello",
    )
    .await;
    assert!(
        view(&host, CAROL, "recent")
            .await
            .1
            .iter()
            .any(|c| c["id"] == id)
    );
    let (status, msg) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            ALICE,
            json!({"text": "Alice here"}),
        )
        .await;
    assert_eq!(status, 201, "{msg}");
    let conv = conversation(&host, ALICE, &id).await;
    assert_eq!(conv["state"], "assigned");
    assert_eq!(conv["owner"], "alice");
    assert!(
        !view(&host, CAROL, "recent")
            .await
            .1
            .iter()
            .any(|c| c["id"] == id),
        "gone for carol"
    );
    let (status, body) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            CAROL,
            json!({"text": "me too"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("alice"), "{body}");
    assert_eq!(twilio.recorded().len(), 1, "carol's reply was not sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_hands_over_the_whole_history_and_only_owner_or_manager_may() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        ..team("")
    });
    let id = inbound(
        &host,
        "SMxfer0000000000000000000000000001",
        "+14155550400",
        "my order",
    )
    .await;
    host.post_json(
        &format!("/api/v1/conversations/{id}/messages"),
        ALICE,
        json!({"text": "checking"}),
    )
    .await;
    let path = format!("/api/v1/conversations/{id}/transfer");
    let (status, body) = host
        .post_json(&path, CAROL, json!({"agent": "carol"}))
        .await;
    assert_eq!(status, 403, "carol neither owns nor manages it: {body}");
    let (status, body) = host
        .post_json(&path, ALICE, json!({"agent": "nobody"}))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = host
        .post_json(&path, ALICE, json!({"agent": "carol"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner"], "carol");
    let history = host.messages(&id, CAROL).await;
    let texts: Vec<_> = history.iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts, [json!("my order"), json!("checking")]);
    assert!(
        !view(&host, ALICE, "recent")
            .await
            .1
            .iter()
            .any(|c| c["id"] == id)
    );
    // Dave manages the queue: he may move it on without owning it.
    let (status, body) = host.post_json(&path, DAVE, json!({"agent": "alice"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_and_walls() {
    let host = Host::start(team(""));
    let id = inbound(
        &host,
        "SMview0000000000000000000000000001",
        "+14155550500",
        "hi",
    )
    .await;
    host.post_json(
        &format!("/api/v1/conversations/{id}/take"),
        ALICE,
        json!({}),
    )
    .await;
    let other = inbound(
        &host,
        "SMview0000000000000000000000000002",
        "+14155550501",
        "hello",
    )
    .await;

    // Recent: queued work of my queues plus mine.
    let recent: Vec<_> = view(&host, ALICE, "recent")
        .await
        .1
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert!(recent.contains(&json!(id)) && recent.contains(&json!(other)));
    let carol: Vec<_> = view(&host, CAROL, "recent")
        .await
        .1
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(carol, [json!(other)]);

    // Monitor: managers only, every conversation of the queue with owner and state.
    assert_eq!(view(&host, ALICE, "monitor").await.0, 403);
    let (status, monitor) = view(&host, DAVE, "monitor").await;
    assert_eq!(status, 200);
    assert_eq!(monitor.len(), 2);
    let mine = monitor.iter().find(|c| c["id"] == id).unwrap();
    assert_eq!(
        (mine["owner"].clone(), mine["state"].clone()),
        (json!("alice"), json!("assigned"))
    );

    // Close: archived for the handler, gone from recent.
    let (status, body) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/close"),
            CAROL,
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "carol does not own it: {body}");
    let (status, _) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/close"),
            ALICE,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        !view(&host, ALICE, "recent")
            .await
            .1
            .iter()
            .any(|c| c["id"] == id)
    );
    let archived = view(&host, ALICE, "archived").await.1;
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0]["state"], "closed");
    assert!(view(&host, CAROL, "archived").await.1.is_empty());

    // Bob works another queue: nothing, by list or by id, for any action.
    for v in ["recent", "archived"] {
        assert!(view(&host, BOB, v).await.1.is_empty());
    }
    assert_eq!(view(&host, BOB, "monitor").await.0, 403);
    for action in ["take", "close", "transfer"] {
        let (status, _) = host
            .post_json(
                &format!("/api/v1/conversations/{other}/{action}"),
                BOB,
                json!({"agent": "bob"}),
            )
            .await;
        assert_eq!(status, 404, "{action}");
    }
    let (status, _) = host
        .get_json(&format!("/api/v1/conversations/{other}/messages"), BOB)
        .await;
    assert_eq!(status, 404);

    // A new message on the closed conversation brings it back to the queue with its history.
    inbound(
        &host,
        "SMview0000000000000000000000000003",
        "+14155550500",
        "one more thing",
    )
    .await;
    let back = conversation(&host, CAROL, &id).await;
    assert_eq!(back["state"], "queued");
    assert_eq!(back["owner"], Value::Null);
    assert_eq!(host.messages(&id, CAROL).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapsed_offers_move_on_and_an_absent_agent_is_set_away() {
    let host = Host::start(Setup {
        support: "offer_timeout = 1\nmissed_offers_before_away = 2".to_owned(),
        extra: TEAM.to_owned(),
        ..Setup::default()
    });
    // longest-idle is tested on its own; here ring-all offers to whoever is online.
    host.presence(ALICE, "online").await;
    let mut events = SseStream::open(&host, ALICE, None).await;
    let id = inbound(
        &host,
        "SMlapse000000000000000000000000001",
        "+14155550600",
        "anyone?",
    )
    .await;
    let offered = events.next_of("offered").await;
    assert_eq!(offered.data["conversation"], id);
    let withdrawn = events.next_of("offer_withdrawn").await;
    assert_eq!(withdrawn.data["data"]["reason"], "timeout");
    // Alice keeps ignoring it: after two misses she is set away.
    let away = events.next_of("presence").await;
    assert_eq!(away.data["data"]["presence"], "away");
    let (_, me) = host.get_json("/api/v1/agents/me/presence", ALICE).await;
    assert_eq!(me["presence"], "away");

    // Carol comes online: the work moves to her.
    let mut carol = SseStream::open(&host, CAROL, None).await;
    host.presence(CAROL, "online").await;
    let offer = carol.next_of("offered").await;
    assert_eq!(offer.data["conversation"], id);
    let (status, _) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/take"),
            CAROL,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let assigned = carol.next_of("assigned").await;
    assert_eq!(assigned.data["data"]["owner"], "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_overflows_after_max_wait() {
    let host = Host::start(Setup {
        support: "max_wait = 1\noverflow = \"sales\"".to_owned(),
        ..Setup::default()
    });
    let id = inbound(
        &host,
        "SMflow0000000000000000000000000001",
        "+14155550700",
        "hello?",
    )
    .await;
    assert!(view(&host, BOB, "recent").await.1.is_empty());
    let moved = eventually("overflow to sales", || async {
        view(&host, BOB, "recent")
            .await
            .1
            .into_iter()
            .find(|c| c["id"] == id)
    })
    .await;
    assert_eq!(moved["queue"], "sales");
    assert_eq!(moved["state"], "queued");
    assert!(
        !view(&host, ALICE, "recent")
            .await
            .1
            .iter()
            .any(|c| c["id"] == id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_message_is_sent_once_and_work_waits_for_the_first_agent_online() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        support: "offline_message = \"We are closed; we will answer in the morning.\"".to_owned(),
        ..Setup::default()
    });
    let id = inbound(
        &host,
        "SMoff00000000000000000000000000001",
        "+14155550800",
        "hi",
    )
    .await;
    eventually("offline message sent", || async {
        (!twilio.recorded().is_empty()).then_some(())
    })
    .await;
    inbound(
        &host,
        "SMoff00000000000000000000000000002",
        "+14155550800",
        "hello??",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let sent = twilio.recorded();
    assert_eq!(sent.len(), 1, "offline message once per conversation");
    let body = sent[0].form();
    assert!(
        body.iter()
            .any(|(k, v)| k == "Body" && v.starts_with("We are closed")),
        "{body:?}"
    );
    let messages = host.messages(&id, ALICE).await;
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["direction"], "outbound");
    assert_eq!(messages[1]["author"], Value::Null);

    let mut events = SseStream::open(&host, ALICE, None).await;
    host.presence(ALICE, "online").await;
    let offer = events.next_of("offered").await;
    assert_eq!(offer.data["conversation"], id);
    assert_eq!(
        conversation(&host, ALICE, &id).await["state"],
        "queued",
        "the notice took nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_may_start_open_conversations_to_e164_numbers() {
    let twilio = twilio_ok().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        alice: "may_start = true\nsend_from = \"sms\"".to_owned(),
        ..team("")
    });
    for bad in [
        "+1 415 555 0100",
        "+1-415-555-0100",
        "+1(415)5550100",
        "14155550100",
        "+12",
    ] {
        let (status, body) = host
            .post_json("/api/v1/conversations", ALICE, json!({"to": bad}))
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("E.164"),
            "{bad}: {body}"
        );
    }
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            CAROL,
            json!({"to": "+14155550900"}),
        )
        .await;
    assert_eq!(status, 403, "carol may not start: {body}");
    let (status, body) = host
        .post_json(
            "/api/v1/conversations",
            ALICE,
            json!({"to": "+14155550900", "text": "Your order shipped."}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["conversation"]["owner"], "alice");
    assert_eq!(body["conversation"]["state"], "assigned");
    assert_eq!(body["message"]["status"], "queued", "{body}");
    let sent = twilio.recorded();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .form()
            .contains(&("To".to_owned(), "+14155550900".to_owned()))
    );
    // The customer's answer lands in the same conversation, still Alice's.
    let id = body["conversation"]["id"].as_str().unwrap().to_owned();
    inbound(
        &host,
        "SMstart000000000000000000000000001",
        "+14155550900",
        "thanks!",
    )
    .await;
    assert_eq!(host.messages(&id, ALICE).await.len(), 2);
    assert_eq!(conversation(&host, ALICE, &id).await["owner"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_name_known_senders_and_unknown_ones_are_marked() {
    let host = Host::start(Setup {
        extra: "[[contacts]]\nname = \"Ann Lee\"\naddress = \"+14155551000\"\n".to_owned(),
        ..Setup::default()
    });
    let known = inbound(
        &host,
        "SMcont0000000000000000000000000001",
        "+14155551000",
        "hi",
    )
    .await;
    let unknown = inbound(
        &host,
        "SMcont0000000000000000000000000002",
        "+14155551001",
        "hey",
    )
    .await;
    let k = conversation(&host, ALICE, &known).await;
    assert_eq!(
        (k["contact_name"].clone(), k["known_contact"].clone()),
        (json!("Ann Lee"), json!(true))
    );
    let u = conversation(&host, ALICE, &unknown).await;
    assert_eq!(u["known_contact"], false);
    let (status, _) = host
        .post_json(
            "/api/v1/contacts",
            ALICE,
            json!({"name": "Ben Ode", "address": "+14155551001"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = host
        .post_json(
            "/api/v1/contacts",
            ALICE,
            json!({"name": "", "address": "x"}),
        )
        .await;
    assert_eq!(status, 422);
    let u = conversation(&host, ALICE, &unknown).await;
    assert_eq!(
        (u["contact_name"].clone(), u["known_contact"].clone()),
        (json!("Ben Ode"), json!(true))
    );
    let (_, list) = host.get_json("/api/v1/contacts", ALICE).await;
    assert_eq!(list["contacts"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_can_feed_one_agent_directly() {
    let host = Host::start(Setup {
        extra: format!(
            "{TEAM}\n[[channels]]\nname = \"vip\"\nplugin = \"twilio-sms\"\nagent = \"carol\"\n[channels.settings]\naccount_sid = \"{ACCOUNT_SID}\"\nauth_token = \"{AUTH_TOKEN}\"\nfrom = \"+15005550007\"\n"
        ),
        ..Setup::default()
    });
    let params = inbound_sms(
        "SMvip00000000000000000000000000001",
        "+14155551100",
        "vip here",
    );
    let resp = host
        .post_twilio("vip", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    let recent = view(&host, CAROL, "recent").await.1;
    assert_eq!(recent.len(), 1);
    assert_eq!(
        (recent[0]["owner"].clone(), recent[0]["state"].clone()),
        (json!("carol"), json!("assigned"))
    );
    assert!(view(&host, ALICE, "recent").await.1.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_and_resume_after_reconnect() {
    let host = Host::start(team(""));
    host.presence(ALICE, "online").await;
    let mut stream = SseStream::open(&host, ALICE, None).await;
    let id = inbound(
        &host,
        "SMsse00000000000000000000000000001",
        "+14155551200",
        "one",
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(stream.next().await);
    }
    let kinds: Vec<_> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["message", "unknown_contact", "offered"], "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let last = seen.last().unwrap().id;
    drop(stream);

    // While Alice is away from the stream: she takes it, a new message arrives, she closes it.
    host.post_json(
        &format!("/api/v1/conversations/{id}/take"),
        ALICE,
        json!({}),
    )
    .await;
    inbound(
        &host,
        "SMsse00000000000000000000000000002",
        "+14155551200",
        "two",
    )
    .await;
    host.post_json(
        &format!("/api/v1/conversations/{id}/close"),
        ALICE,
        json!({}),
    )
    .await;

    let mut resumed = SseStream::open(&host, ALICE, Some(last)).await;
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(resumed.next().await);
    }
    let kinds: Vec<_> = missed.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["assigned", "message", "closed"], "{missed:?}");
    assert!(missed.iter().all(|e| e.id > last));
    assert!(missed.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(missed[1].data["data"]["text"], "two");

    // Carol, Alice's colleague, heard her come online, then saw the queued message.
    let mut carol = SseStream::open(&host, CAROL, Some(0)).await;
    let first = carol.next().await;
    assert_eq!(first.kind, "presence", "{first:?}");
    assert_eq!(first.data["data"]["agent"], "alice");
    let next = carol.next().await;
    assert_eq!(next.kind, "message", "carol sees the queued message");
}
