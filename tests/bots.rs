//! Bots in front of the queue against the real binary: the bundled `faq` bot answers a known
//! question while the conversation is held from the agents, hands off on the customer's
//! keyword with a summary note and is then offered; it hands off after two misses and resolves
//! on thanks. A bot that traps, spins past its deadline or keeps too much hands off at once; a
//! bot's requests go through the host to a service it names; a classifier plugin decides a
//! VIP's queue.

mod support;

use serde_json::{Value, json};
use support::*;

const HOURS: &str = "We are open 9:00-17:00, Monday to Friday.";
/// An answer longer than the 1,600 characters an SMS channel carries.
const TERMS: &str = concat!(
    "Our terms: ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
    "each and every clause applies to every order, shipment, refund and account we hold. ",
);

fn faq_bot() -> String {
    format!(
        r#"
[[bots]]
name = "helpdesk"
plugin = "faq"
handoff_keywords = ["agent", "real person"]
[bots.settings]
entries = """
opening hours, open, close => {HOURS}
refund, return => Refunds take 5 working days.
terms => {TERMS}
"""
"#
    )
}

async fn inbound(host: &Host, sid: &str, from: &str, text: &str) {
    host.sms(sid, from, text).await;
}

/// The conversation of `customer`, once it is in `state`.
async fn conversation_in(host: &Host, customer: &str, state: &str) -> Value {
    eventually(&format!("{customer}'s conversation {state}"), || async {
        host.all_pages(
            "/api/v1/conversations?view=monitor&limit=200",
            "conversations",
            ALICE,
        )
        .await
        .into_iter()
        .find(|c| c["customer"] == customer && c["state"] == state)
    })
    .await
}

/// `customer`'s conversation, once it is in the list of the agent with `token`.
async fn listed(host: &Host, customer: &str, token: &str) -> Value {
    eventually(&format!("{customer}'s conversation"), || async {
        host.conversations(token)
            .await
            .into_iter()
            .find(|c| c["customer"] == customer)
    })
    .await
}

fn id(c: &Value) -> String {
    c["id"].as_str().unwrap().to_owned()
}

/// The bot's replies in the history, in order.
fn bot_replies(history: &[Value], bot: &str) -> Vec<String> {
    history
        .iter()
        .filter(|m| m["automated"] == format!("bot:{bot}"))
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until bot `bot` has sent `n` replies in conversation `c`.
async fn replied(host: &Host, c: &Value, bot: &str, n: usize) {
    eventually(&format!("{n} replies of bot {bot}"), || async {
        (bot_replies(&host.messages(&id(c), ALICE).await, bot).len() == n).then_some(())
    })
    .await;
}

fn notes(history: &[Value]) -> Vec<(String, String)> {
    history
        .iter()
        .filter(|m| m["direction"] == "note")
        .map(|m| {
            (
                m["author"].as_str().unwrap_or_default().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faq_bot_answers_hands_off_on_the_keyword_and_resolves_on_thanks() {
    let twilio = FakeProvider::accepting().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        support: "managers = [\"alice\"]\nbot = \"helpdesk\"".into(),
        extra: faq_bot(),
        ..Setup::default()
    });
    host.presence(ALICE, "online").await;

    // A known question: answered by the bot, and the conversation is held from the agents.
    let ann = "+14155550901";
    inbound(
        &host,
        "SMbot0000000000000000000000000001",
        ann,
        "What are your opening hours?",
    )
    .await;
    let held = conversation_in(&host, ann, "bot").await;
    assert_eq!(held["bot"], "helpdesk");
    let delivered = eventually("the answer at the provider", || async {
        let bodies = twilio.bodies_to(ann);
        (!bodies.is_empty()).then_some(bodies)
    })
    .await;
    assert_eq!(delivered, vec![HOURS]);
    let history = host.messages(&id(&held), ALICE).await;
    assert_eq!(bot_replies(&history, "helpdesk"), vec![HOURS]);
    let now = host
        .get_json(&format!("/api/v1/conversations/{}", id(&held)), ALICE)
        .await
        .1;
    assert_eq!(now["state"], "bot");
    assert_eq!(
        now["offered_to"],
        json!([]),
        "not offered while the bot holds it: {now}"
    );
    assert!(
        host.conversations(ALICE)
            .await
            .iter()
            .all(|c| c["customer"] != ann),
        "not in the agents' own list either"
    );

    // The customer's keyword: handed off at once with a note, and offered to Alice.
    inbound(
        &host,
        "SMbot0000000000000000000000000002",
        ann,
        "Let me talk to a REAL person",
    )
    .await;
    let queued = eventually("offered to Alice", || async {
        let c = host
            .get_json(&format!("/api/v1/conversations/{}", id(&held)), ALICE)
            .await
            .1;
        (c["offered_to"] == json!(["alice"])).then_some(c)
    })
    .await;
    assert_eq!(queued["state"], "queued");
    let history = host.messages(&id(&held), ALICE).await;
    assert_eq!(
        notes(&history),
        vec![(
            "bot:helpdesk".to_owned(),
            "Customer asked for a person: \"Let me talk to a REAL person\".".to_owned()
        )]
    );
    assert_eq!(
        bot_replies(&history, "helpdesk"),
        vec![HOURS],
        "the keyword skips the bot"
    );
    assert_eq!(host.act(&id(&held), "take", ALICE, json!({})).await.0, 200);

    // Two questions it cannot answer: the bot hands off with its own summary.
    let ben = "+14155550902";
    inbound(
        &host,
        "SMbot0000000000000000000000000003",
        ben,
        "Do you sell llamas?",
    )
    .await;
    let c = conversation_in(&host, ben, "bot").await;
    replied(&host, &c, "helpdesk", 1).await;
    inbound(
        &host,
        "SMbot0000000000000000000000000004",
        ben,
        "Or alpacas?",
    )
    .await;
    conversation_in(&host, ben, "queued").await;
    let history = host.messages(&id(&c), ALICE).await;
    let replies = bot_replies(&history, "helpdesk");
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[1], "Let me connect you with an agent.");
    let (author, summary) = &notes(&history)[0];
    assert_eq!(author, "bot:helpdesk");
    assert!(
        summary.contains("Do you sell llamas?") && summary.contains("Or alpacas?"),
        "{summary}"
    );

    // Answered, then thanked: resolved by the bot, closed without an agent.
    let cy = "+14155550903";
    inbound(
        &host,
        "SMbot0000000000000000000000000005",
        cy,
        "How do I get a refund",
    )
    .await;
    let c = conversation_in(&host, cy, "bot").await;
    replied(&host, &c, "helpdesk", 1).await;
    inbound(
        &host,
        "SMbot0000000000000000000000000006",
        cy,
        "great, thanks",
    )
    .await;
    let closed = conversation_in(&host, cy, "closed").await;
    assert_eq!(closed["handled_by"], json!([]), "no agent handled it");
    let replies = bot_replies(&host.messages(&id(&c), ALICE).await, "helpdesk");
    assert_eq!(
        replies,
        vec![
            "Refunds take 5 working days.",
            "Glad I could help. Goodbye!"
        ]
    );
    let stats = host
        .get_json("/api/v1/stats/queues?period=day", ADMIN)
        .await
        .1;
    let support = stats["lines"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "support"))
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(support["counts"]["bot_resolved"], 1, "{support}");
    assert_eq!(support["counts"]["bot_handoffs"], 2, "{support}");
    assert_eq!(support["counts"]["abandoned"], 0, "{support}");

    // An answer the channel cannot carry is not sent, and the agents take over at once.
    let dot = "+14155550904";
    inbound(
        &host,
        "SMbot0000000000000000000000000007",
        dot,
        "What are your terms?",
    )
    .await;
    let c = conversation_in(&host, dot, "queued").await;
    let history = host.messages(&id(&c), ALICE).await;
    assert!(bot_replies(&history, "helpdesk").is_empty());
    let notes = notes(&history);
    assert!(
        notes.iter().any(|(a, t)| a == "bot:helpdesk"
            && t.starts_with("A reply of bot helpdesk could not be sent")
            && t.contains("1600 characters")),
        "{notes:?}"
    );

    // A manager who replies to a conversation the bot holds takes it: the bot stops answering.
    let eli = "+14155550905";
    inbound(
        &host,
        "SMbot0000000000000000000000000008",
        eli,
        "Do you ship to Mars?",
    )
    .await;
    let c = conversation_in(&host, eli, "bot").await;
    replied(&host, &c, "helpdesk", 1).await;
    let (status, body) = host
        .post_json(
            &format!("/api/v1/conversations/{}/messages", id(&c)),
            ALICE,
            json!({"text": "Alice here: not yet, sorry!"}),
        )
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    let taken = conversation_in(&host, eli, "assigned").await;
    assert_eq!(taken["owner"], "alice");
    inbound(
        &host,
        "SMbot0000000000000000000000000009",
        eli,
        "What are your opening hours?",
    )
    .await;
    eventually("the customer's message stored", || async {
        (host.messages(&id(&c), ALICE).await.len() >= 4).then_some(())
    })
    .await;
    assert_eq!(
        bot_replies(&host.messages(&id(&c), ALICE).await, "helpdesk").len(),
        1,
        "the bot answers no more once an agent took it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bot_hands_off_at_once_and_a_bots_requests_go_through_the_host() {
    let twilio = FakeProvider::accepting().await;
    let service = ScriptedProvider::start(vec![Reply::new(200, json!("the answer is 42"))]).await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        plugins: vec!["bot-probe"],
        support: "managers = [\"alice\"]\nbot = \"probe\"".into(),
        extra: format!(
            "[[bots]]\nname = \"probe\"\nplugin = \"bot-probe\"\n[bots.settings]\napi_base = \"{}\"\n",
            service.base
        ),
        ..Setup::default()
    });

    // The bot asks the host to fetch; the service's answer comes back as its reply.
    let dee = "+14155550911";
    inbound(
        &host,
        "SMbot0000000000000000000000000011",
        dee,
        "please fetch it",
    )
    .await;
    let c = conversation_in(&host, dee, "bot").await;
    let replies = eventually("the fetched reply", || async {
        let r = bot_replies(&host.messages(&id(&c), ALICE).await, "probe");
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(replies, vec!["\"the answer is 42\""]);
    let hits = service.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].request.method, "GET");
    assert_eq!(hits[0].request.path, "/answer?q=please%20fetch%20it");

    // A trap, the deadline, too much memory: each hands off at once, saying why.
    for (n, text, why) in [
        ("21", "trap now", "trap"),
        ("22", "spin forever", "deadline"),
        ("23", "memory-bomb", "bytes of memory"),
    ] {
        let customer = format!("+141555509{n}");
        let sid = format!("SMbot00000000000000000000000000{n}");
        inbound(&host, &sid, &customer, text).await;
        let c = conversation_in(&host, &customer, "queued").await;
        let history = host.messages(&id(&c), ALICE).await;
        let notes = notes(&history);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].0, "bot:probe");
        assert!(
            notes[0].1.starts_with("Bot probe failed (") && notes[0].1.contains(why),
            "{text}: {}",
            notes[0].1
        );
        assert!(bot_replies(&history, "probe").is_empty());
    }

    // The bot's own hand-off names a queue and skills.
    let eve = "+14155550931";
    inbound(
        &host,
        "SMbot0000000000000000000000000031",
        eve,
        "handoff please",
    )
    .await;
    let c = conversation_in(&host, eve, "queued").await;
    assert_eq!(c["skills"], json!(["billing"]));
    assert_eq!(
        notes(&host.messages(&id(&c), ALICE).await),
        vec![(
            "bot:probe".to_owned(),
            "probe handed off: handoff please".to_owned()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifier_plugin_decides_a_vips_queue_and_declining_falls_through() {
    let host = Host::start(Setup {
        plugins: vec!["classifier-probe"],
        support: "managers = [\"alice\"]".into(),
        extra: r#"
[[agents]]
id = "sam"
name = "Sam"
token = "sam-token-12345"
queues = ["sales"]

[[rules]]
classifier = "classifier-probe"
[rules.classifier_settings]
vip = "+14155550941"
queue = "sales"

[[rules]]
keywords = ["invoice"]
queue = "sales"
priority = 5
"#
        .into(),
        ..Setup::default()
    });
    let sam = "sam-token-12345";
    inbound(
        &host,
        "SMcls0000000000000000000000000041",
        "+14155550941",
        "hello",
    )
    .await;
    let vip = listed(&host, "+14155550941", sam).await;
    assert_eq!(vip["queue"], "sales");
    assert_eq!(vip["skills"], json!(["vip"]));
    assert_eq!(vip["priority"], 50);

    // Not a VIP: the classifier decides nothing, the next rule does.
    inbound(
        &host,
        "SMcls0000000000000000000000000042",
        "+14155550942",
        "my invoice",
    )
    .await;
    let next = listed(&host, "+14155550942", sam).await;
    assert_eq!(
        (next["priority"].clone(), next["skills"].clone()),
        (json!(5), json!([]))
    );

    // The classifier fails: the next rules decide; none matches, so the channel's queue.
    let other = "+14155550943";
    inbound(
        &host,
        "SMcls0000000000000000000000000044",
        other,
        "classifier-error",
    )
    .await;
    let fallback = listed(&host, other, ALICE).await;
    assert_eq!(fallback["queue"], "support");
    assert!(
        host.log()
            .contains("classifier declined with an error: asked to fail")
    );
}

/// `plugboard check` on a bot configuration: every problem with its key.
#[test]
fn check_names_what_is_wrong_with_a_bot() {
    let dir = tempfile::tempdir().unwrap();
    let head = "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\ndata_dir = \"data\"\n[[queues]]\nname = \"support\"\nrouter = \"ring-all\"\nbot = \"helpdesk\"\n";
    let run = |text: &str| run_check(dir.path(), text);
    let (ok, stderr) = run(&format!(
        "{head}[[bots]]\nname = \"helpdesk\"\nplugin = \"faq\"\n[bots.settings]\ncolour = \"blue\"\n[[bots]]\nname = \"other\"\nplugin = \"ring-all\"\n[[rules]]\nclassifier = \"nobody\"\n"
    ));
    assert!(!ok);
    for key in [
        "bots[0].settings.entries",
        "bots[0].settings.colour",
        "bots[1].plugin",
        "is not a bot plugin",
        "rules[0].classifier",
    ] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
    let (ok, stderr) = run(&format!(
        "{head}[[bots]]\nname = \"helpdesk\"\nplugin = \"faq\"\n[bots.settings]\nentries = \"no arrow here\"\n"
    ));
    assert!(!ok);
    assert!(
        stderr.contains("bots[0].settings") && stderr.contains("line 1"),
        "the plugin's own check: {stderr}"
    );
    let (ok, stderr) = run(&format!(
        "{head}[[bots]]\nname = \"helpdesk\"\nplugin = \"faq\"\n[bots.settings]\nentries = \"hours => 9 to 5\"\n"
    ));
    assert!(ok, "{stderr}");
}
