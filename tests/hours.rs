//! Business hours against the real binary, on a host whose clock starts just before the
//! support queue opens (`PLUGBOARD_CLOCK_START`): work that arrives while the queue is closed
//! gets the closed message once and waits, is offered when the queue opens, and the web chat
//! shows its offline form while closed. Within hours, an agent set away for missed offers
//! makes the host send the offline message, never the closed one.

mod support;

use serde_json::Value;
use support::*;

/// The host's clock starts here: a Tuesday, 20 s before the queue opens at 09:00 in Tokyo.
const START: &str = "2026-12-01T08:59:40+09:00";
/// When the queue opens, Unix milliseconds (2026-12-01T00:00:00Z).
const OPENS_MS: u64 = 1_796_083_200_000;
const CLOSED: &str = "We are closed; we answer from 09:00 Tokyo time.";
const OFFLINE: &str = "Nobody is free right now; we will answer soon.";

async fn inbound(host: &Host, sid: &str, from: &str) {
    let params = inbound_sms(sid, from, "hello");
    let resp = host
        .post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await;
    assert_eq!(resp.status(), 200);
}

async fn support_queue(host: &Host) -> Value {
    let (status, body) = host.get_json("/api/v1/queues", ALICE).await;
    assert_eq!(status, 200, "{body}");
    body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "support")
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_work_waits_for_the_opening_and_offline_is_not_closed() {
    assert_eq!(
        START.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64 + 20_000,
        OPENS_MS
    );
    let twilio = FakeProvider::accepting().await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        support: format!(
            "offer_timeout = 1\nmissed_offers_before_away = 1\nclosed_message = \"{CLOSED}\"\noffline_message = \"{OFFLINE}\"\nhours = {{ timezone = \"Asia/Tokyo\", tue = \"09:00-18:00\", wed = \"09:00-18:00\", holidays = [\"2026-12-31\"] }}"
        ),
        extra: "\n[[channels]]\nname = \"site\"\nplugin = \"webchat\"\nqueue = \"support\"\n"
            .into(),
        env: vec![("PLUGBOARD_CLOCK_START".into(), START.into())],
        ..Setup::default()
    });
    host.presence(ALICE, "online").await;
    let mut stream = SseStream::open(&host, ALICE, None).await;

    // Closed: the queue says so, the widget shows its offline form though Alice is online,
    // and the first customer gets the closed message once, however often they write.
    let queue = support_queue(&host).await;
    assert_eq!(queue["open"], false, "{queue}");
    assert_eq!(queue["opens_at"], OPENS_MS, "{queue}");
    let session = host.webchat_session("site").await;
    assert_eq!(session["online"], false, "{session}");
    inbound(&host, "SMhours0000000000000000000000001", "+14155550901").await;
    eventually("the closed message", || async {
        (!twilio.bodies_to("+14155550901").is_empty()).then_some(())
    })
    .await;
    inbound(&host, "SMhours0000000000000000000000002", "+14155550901").await;
    // Alice going away and back looks at all waiting work again while closed: the closed
    // message must not go out a second time.
    host.presence(ALICE, "away").await;
    host.presence(ALICE, "online").await;
    assert_eq!(
        support_queue(&host).await["open"],
        false,
        "still before 09:00"
    );

    // 09:00: the waiting work is offered (not before), and the closed message went out once.
    let offered = stream.next_of("offered").await;
    let at = offered.data["at"].as_u64().unwrap();
    assert!(
        at >= OPENS_MS,
        "offered at {at}, before the opening {OPENS_MS}"
    );
    assert_eq!(twilio.bodies_to("+14155550901"), vec![CLOSED.to_owned()]);
    assert_eq!(support_queue(&host).await["open"], true);

    // Alice lets the offer lapse and is set away: within hours that is "nobody is free", so
    // the next customer gets the offline message and never the closed one.
    let away = stream.next_of("presence").await;
    assert_eq!(away.data["data"]["presence"], "away", "{:?}", away.data);
    inbound(&host, "SMhours0000000000000000000000003", "+14155550902").await;
    eventually("the offline message to the second customer", || async {
        (!twilio.bodies_to("+14155550902").is_empty()).then_some(())
    })
    .await;
    assert_eq!(twilio.bodies_to("+14155550902"), vec![OFFLINE.to_owned()]);
    let first = eventually(
        "the first customer's offline message, now within hours",
        || async {
            let texts = twilio.bodies_to("+14155550901");
            (texts.len() == 2).then_some(texts)
        },
    )
    .await;
    assert_eq!(first, vec![CLOSED.to_owned(), OFFLINE.to_owned()]);
}
