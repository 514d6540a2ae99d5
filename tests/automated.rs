//! Automated messages against the real binary: a queue's greeting, take message (naming the
//! agent) and closing message each go out once per conversation, through the provider, marked
//! automated in the history; never to an address that opted out, nor on WhatsApp outside the
//! 24-hour window, where a note in the history says why instead.

mod support;

use serde_json::{Value, json};
use support::*;

const GREETING: &str = "Thanks for writing to Acme! An agent will be with you shortly.";
const CLOSING: &str = "We are closing this conversation. Write again any time.";

async fn inbound(host: &Host, sid: &str, from: &str, text: &str) {
    let params = inbound_sms(sid, from, text);
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
}

async fn conversation_of(host: &Host, customer: &str) -> String {
    eventually("the conversation", || async {
        host.all_pages(
            "/api/v1/conversations?view=monitor&limit=200",
            "conversations",
            ALICE,
        )
        .await
        .into_iter()
        .find(|c| c["customer"] == customer)
        .map(|c| c["id"].as_str().unwrap().to_owned())
    })
    .await
}

/// The automated messages of the history, in order: (which, text, direction).
async fn automated(host: &Host, id: &str) -> Vec<(String, String)> {
    host.messages(id, ALICE)
        .await
        .iter()
        .filter(|m| !m["automated"].is_null())
        .map(|m| {
            assert!(m["author"].is_null(), "no agent wrote it: {m}");
            (
                m["automated"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn notes(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .filter(|m| m["direction"] == "note")
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_take_and_closing_go_out_once_and_respect_the_channel_rules() {
    let twilio = FakeProvider::accepting().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        support: format!(
            "managers = [\"alice\"]\ngreeting = \"{GREETING}\"\ntake_message = \"{{agent}} is looking at this now.\"\nclosing_message = \"{CLOSING}\""
        ),
        alice: "may_start = true".into(),
        extra: whatsapp_channel(&twilio.base),
        ..Setup::default()
    });
    let customer = "+14155550701";
    inbound(
        &host,
        "SMauto000000000000000000000000001",
        customer,
        "Where is my order?",
    )
    .await;
    let id = conversation_of(&host, customer).await;
    assert_eq!(
        automated(&host, &id).await,
        vec![("greeting".to_owned(), GREETING.to_owned())],
        "the greeting is in the history as soon as the webhook is answered"
    );
    inbound(
        &host,
        "SMauto000000000000000000000000002",
        customer,
        "Hello?",
    )
    .await;
    assert_eq!(host.act(&id, "take", ALICE, json!({})).await.0, 200);
    assert_eq!(host.act(&id, "close", ALICE, json!({})).await.0, 200);
    let once = vec![
        ("greeting".to_owned(), GREETING.to_owned()),
        (
            "take_message".to_owned(),
            "Alice is looking at this now.".to_owned(),
        ),
        ("closing_message".to_owned(), CLOSING.to_owned()),
    ];
    assert_eq!(automated(&host, &id).await, once);

    // The customer writes again: the same conversation reopens; taking and closing it again
    // sends nothing more.
    inbound(
        &host,
        "SMauto000000000000000000000000003",
        customer,
        "One more thing",
    )
    .await;
    eventually("the conversation reopened", || async {
        (host
            .get_json(&format!("/api/v1/conversations/{id}"), ALICE)
            .await
            .1["state"]
            == "queued")
            .then_some(())
    })
    .await;
    assert_eq!(host.act(&id, "take", ALICE, json!({})).await.0, 200);
    assert_eq!(host.act(&id, "close", ALICE, json!({})).await.0, 200);
    assert_eq!(
        automated(&host, &id).await,
        once,
        "each once per conversation"
    );
    let delivered = eventually("the three automated texts at the provider", || async {
        let bodies = twilio.bodies_to(customer);
        (bodies.len() >= 3).then_some(bodies)
    })
    .await;
    assert_eq!(
        delivered,
        vec![GREETING, "Alice is looking at this now.", CLOSING],
        "sent through the provider, in order, once each"
    );

    // An address whose first message is STOP gets no greeting: a note says why.
    let stopper = "+14155550702";
    let mut stop = inbound_sms("SMauto000000000000000000000000004", stopper, "STOP");
    stop.push(("OptOutType", "STOP".to_owned()));
    let resp = host
        .post_twilio("sms", &pairs(&stop), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
    let stopped = conversation_of(&host, stopper).await;
    let history = host.messages(&stopped, ALICE).await;
    assert!(automated(&host, &stopped).await.is_empty(), "{history:?}");
    let why = notes(&history);
    assert!(
        why.len() == 1 && why[0].contains("greeting") && why[0].contains("opted out"),
        "{why:?}"
    );

    // WhatsApp: a conversation Alice starts has no customer message, so the window is shut:
    // the closing message is not sent and the history says why.
    let (status, started) = host
        .post_json(
            "/api/v1/conversations",
            ALICE,
            json!({"to": "+14155550703", "channel": "wa"}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {started}");
    let wa = started["id"]
        .as_str()
        .or_else(|| started["conversation"]["id"].as_str())
        .unwrap_or_else(|| panic!("no id in {started}"))
        .to_owned();
    assert_eq!(host.act(&wa, "close", ALICE, json!({})).await.0, 200);
    let history = host.messages(&wa, ALICE).await;
    assert!(automated(&host, &wa).await.is_empty(), "{history:?}");
    let why = notes(&history);
    assert!(
        why.len() == 1 && why[0].contains("closing") && why[0].contains("24-hour window"),
        "{why:?}"
    );
    // Nothing went to either address: the provider saw only the first customer's texts.
    assert!(twilio.bodies_to(stopper).is_empty());
    assert!(twilio.bodies_to("whatsapp:+14155550703").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_answer_is_the_rating_and_anything_else_reopens() {
    let twilio = FakeProvider::accepting().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        support: "managers = [\"alice\"]\nsurvey_question = \"How did we do? Reply 1 to 5.\""
            .into(),
        ..Setup::default()
    });
    let state = |id: String| {
        let host = &host;
        async move {
            host.get_json(&format!("/api/v1/conversations/{id}"), ALICE)
                .await
                .1
        }
    };
    let (happy, unsure) = ("+14155550711", "+14155550712");
    for (i, customer) in [happy, unsure].into_iter().enumerate() {
        inbound(&host, &format!("SMsurvey{i:025}"), customer, "Help, please").await;
        let id = conversation_of(&host, customer).await;
        assert_eq!(host.act(&id, "take", ALICE, json!({})).await.0, 200);
        let (status, body) = host
            .act(
                &id,
                "messages",
                ALICE,
                json!({"text": "Done: it ships today."}),
            )
            .await;
        assert!(status < 300, "{status} {body}");
        assert_eq!(host.act(&id, "close", ALICE, json!({})).await.0, 200);
        assert_eq!(
            automated(&host, &id).await,
            vec![(
                "survey".to_owned(),
                "How did we do? Reply 1 to 5.".to_owned()
            )]
        );
    }
    let happy_id = conversation_of(&host, happy).await;
    let unsure_id = conversation_of(&host, unsure).await;

    // "5" is the rating: stored with the message, and the conversation stays closed.
    inbound(&host, "SMsurveyanswer00000000000000001", happy, " 5 ").await;
    let c = eventually("the rating", || async {
        let c = state(happy_id.clone()).await;
        (c["rating"] == 5).then_some(c)
    })
    .await;
    assert_eq!(c["state"], "closed", "{c}");
    assert!(
        host.messages(&happy_id, ALICE)
            .await
            .iter()
            .any(|m| m["direction"] == "inbound" && m["text"] == " 5 "),
        "the answer is in the history"
    );
    // Anything else is not an answer: that conversation reopens as usual, unrated.
    inbound(
        &host,
        "SMsurveyanswer00000000000000002",
        unsure,
        "it was ok I guess",
    )
    .await;
    let c = eventually("the reopening", || async {
        let c = state(unsure_id.clone()).await;
        (c["state"] == "queued").then_some(c)
    })
    .await;
    assert!(c["rating"].is_null(), "{c}");
    // A later message of the rated customer reopens theirs too, keeping the rating.
    inbound(
        &host,
        "SMsurveyanswer00000000000000003",
        happy,
        "One more question",
    )
    .await;
    let c = eventually("the rated conversation reopened", || async {
        let c = state(happy_id.clone()).await;
        (c["state"] == "queued").then_some(c)
    })
    .await;
    assert_eq!(c["rating"], 5);

    // The statistics count one rating of 5 for Alice and for the queue.
    let (_, agents) = host
        .get_json("/api/v1/stats/agents?period=month", ADMIN)
        .await;
    let alice = &agents["lines"][0];
    assert_eq!(alice["name"], "alice", "{agents}");
    assert_eq!(
        (
            alice["counts"]["ratings"].as_u64(),
            alice["counts"]["rating_points"].as_u64()
        ),
        (Some(1), Some(5)),
        "{agents}"
    );
    let (_, queues) = host
        .get_json("/api/v1/stats/queues?period=month", ADMIN)
        .await;
    let support = queues["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "support")
        .unwrap_or_else(|| panic!("{queues}"));
    assert_eq!(support["counts"]["ratings"], 1, "{queues}");
    assert_eq!(support["counts"]["rating_points"], 5, "{queues}");
}
