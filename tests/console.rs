//! The agent console (`/console`) through a scripted shift in a real headless Chromium, driven
//! by `tests/browser/console.mjs` against the real binary and a fake Twilio on loopback. It
//! proves, through the console's own screens: sign-in with a token (a wrong one refused with
//! the API's words) and the presence switch; an inbound SMS pops an offer card for both agents
//! of the queue, one takes it and the other's card vanishes; the canned reply `/late` + Tab
//! fills the reply box (cleared again, so only the typed reply may reach Twilio); the reply
//! typed with the segment counter reaches Twilio once; the delivery callback turns the tick to
//! delivered without a reload; an internal note shows in the history and never reaches Twilio,
//! and the agent's own reply and note leave her row with nothing unread; a search shows the
//! row with its matching text; a transfer hands the whole history to a colleague (shown online
//! in the dialog), who closes it; the manager's Monitor, opened once before the customer
//! wrote, follows the row live from queued to assigned (alice, then dana) to closed, and both
//! agents' Archived list it; a new WhatsApp conversation outside the 24-hour window offers
//! only the template picker, and the template reaches Twilio as a ContentSid; after a network
//! drop the console resumes from the last event id it handled and catches up without a
//! reload, handling no event twice: the new customer's offer card (from the replayed event,
//! with its countdown) appears, the row shows 1 unread, and the WhatsApp reply shows exactly
//! once; j/k and Enter in the list open a conversation.
//! Screenshots of the main views go to `target/tmp/console-shots/` (printed at the end) for
//! review, not for pixel assertions.
//!
//! Needs Chromium, Node.js and the pinned `playwright-core` (`tests/browser/package-lock.json`):
//! `bash tests/setup.sh` as root installs them. Without them this test fails and says what to
//! install; it never skips.

mod support;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::browser::{Driver, prerequisites};
use support::*;

/// The first customer (SMS).
const CUSTOMER: &str = "+14155550123";
/// The customer alice writes to on WhatsApp.
const WA_CUSTOMER: &str = "+14155552100";

/// The Twilio message SID the fake hands out for the `n`th send.
fn out_sid(n: u32) -> String {
    format!("SM{n:032x}")
}

/// The forms the fake Twilio received, in order.
fn sends(twilio: &ScriptedProvider) -> Vec<Vec<(String, String)>> {
    twilio
        .hits()
        .into_iter()
        .filter(|h| h.request.method == "POST")
        .map(|h| h.request.form())
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Waits for the driver's next line and checks it is `stage`.
async fn expect(driver: &mut Driver, stage: &str, timeout: Duration, host: &Host) -> Value {
    let line = driver.next(timeout).await;
    assert_eq!(
        line["stage"],
        stage,
        "the browser driver: {line:#}\nhost log:\n{}",
        host.log()
    );
    line
}

/// Posts a webhook form signed as Twilio signs it, expecting 200.
async fn twilio_in(host: &Host, channel: &str, params: &[(&'static str, String)]) {
    let resp = host
        .post_twilio(channel, &pairs(params), Some(AUTH_TOKEN))
        .await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_shift_in_the_console_in_chromium() {
    let (node, chromium) = prerequisites();
    let twilio = ScriptedProvider::start(
        (1..=3)
            .map(|n| Reply::new(201, twilio_created(&out_sid(n))))
            .collect(),
    )
    .await;
    let host = Host::start(Setup {
        twilio_api_base: Some(twilio.base.clone()),
        support: "managers = [\"carol\"]\n\
                  canned = [{ shortcut = \"late\", text = \"Sorry for the delay: your order is on its way.\" }]"
            .into(),
        alice: "may_start = true".into(),
        extra: format!("{}{}", console_team(), whatsapp_channel(&twilio.base)),
        ..Setup::default()
    });
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-shots");
    let _ = std::fs::remove_dir_all(&shots);
    let mut args = [
        "--host",
        host.base.as_str(),
        "--alice",
        ALICE,
        "--dana",
        DANA,
        "--carol",
        CAROL,
    ]
    .map(OsString::from)
    .to_vec();
    args.extend([
        OsString::from("--chromium"),
        chromium.into_os_string(),
        OsString::from("--shots"),
        shots.clone().into_os_string(),
    ]);
    let mut driver = Driver::start(&node, "console.mjs", args);

    // a. Everyone signed in through the form; alice and dana are online.
    expect(&mut driver, "ready", Duration::from_secs(90), &host).await;
    let (_, me) = host.get_json("/api/v1/agents/me", DANA).await;
    assert_eq!(me["presence"], "online", "{me}");
    twilio_in(
        &host,
        "sms",
        &inbound_sms(
            "SMin00000000000000000000000000001",
            CUSTOMER,
            "Hi, my order is late",
        ),
    )
    .await;
    driver.send("{}");

    // b. Alice took the offer and replied through the console: Twilio got it exactly once.
    let replied = expect(&mut driver, "replied", Duration::from_secs(60), &host).await;
    let id = replied["conversation"].as_str().unwrap().to_owned();
    let sent = eventually("the reply at the fake Twilio", || async {
        let s = sends(&twilio);
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(field(&sent[0], "Body"), Some("Sorry! Checking now."));
    assert_eq!(field(&sent[0], "To"), Some(CUSTOMER));
    let mut delivered = status_callback(&out_sid(1), "delivered", None);
    for (k, v) in delivered.iter_mut() {
        if *k == "To" {
            *v = CUSTOMER.into();
        }
    }
    twilio_in(&host, "sms", &delivered).await;
    driver.send("{}");

    // c. Note, transfer to dana, closed by dana: the API agrees, and the note stayed inside.
    let closed = expect(&mut driver, "closed", Duration::from_secs(60), &host).await;
    assert_eq!(closed["conversation"], id.as_str());
    let (status, conv) = host
        .get_json(&format!("/api/v1/conversations/{id}"), CAROL)
        .await;
    assert_eq!(status, 200, "{conv}");
    assert_eq!(conv["state"], "closed", "{conv}");
    let handled: Vec<&str> = conv["handled_by"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        handled.contains(&"alice") && handled.contains(&"dana"),
        "{conv}"
    );
    let history = host.messages(&id, CAROL).await;
    let directions: Vec<&str> = history
        .iter()
        .filter_map(|m| m["direction"].as_str())
        .collect();
    assert_eq!(directions, ["inbound", "outbound", "note"], "{history:#?}");
    assert_eq!(history[1]["status"], "delivered", "{history:#?}");
    assert_eq!(history[2]["text"], "VIP customer, be quick");
    assert_eq!(
        sends(&twilio).len(),
        1,
        "the internal note reached Twilio: {:?}",
        sends(&twilio)
    );
    driver.send("{}");

    // d. The WhatsApp template went out as a ContentSid with its variable.
    let template = expect(&mut driver, "template_sent", Duration::from_secs(60), &host).await;
    let wa = template["conversation"].as_str().unwrap().to_owned();
    let sent = eventually("the template at the fake Twilio", || async {
        let s = sends(&twilio);
        (s.len() >= 2).then_some(s)
    })
    .await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(field(&sent[1], "ContentSid"), Some(WA_TEMPLATE_SID));
    assert_eq!(
        serde_json::from_str::<Value>(field(&sent[1], "ContentVariables").unwrap()).unwrap(),
        json!({"1": "A-1001"})
    );
    assert_eq!(field(&sent[1], "Body"), None);
    assert_eq!(
        field(&sent[1], "To").map(str::to_owned),
        Some(format!("whatsapp:{WA_CUSTOMER}"))
    );
    driver.send("{}");

    // e. While alice's page is offline: a new customer writes, and the WhatsApp one answers.
    let offline = expect(&mut driver, "offline", Duration::from_secs(60), &host).await;
    twilio_in(
        &host,
        "sms",
        &inbound_sms(
            "SMin00000000000000000000000000002",
            "+14155550188",
            "Are you open today?",
        ),
    )
    .await;
    let mut thanks = inbound_sms(
        "SMin00000000000000000000000000003",
        &format!("whatsapp:{WA_CUSTOMER}"),
        "thanks",
    );
    for (k, v) in thanks.iter_mut() {
        if *k == "To" {
            *v = format!("whatsapp:{WA_FROM}");
        }
    }
    twilio_in(&host, "wa", &thanks).await;
    driver.send("{}");

    let done = expect(&mut driver, "done", Duration::from_secs(90), &host).await;
    let status = driver.wait();
    assert!(status.success(), "driver exited {status}");
    let stored = host.messages(&wa, ALICE).await;
    assert_eq!(
        stored.iter().filter(|m| m["text"] == "thanks").count(),
        1,
        "{stored:#?}"
    );
    assert!(done["resumed_from"].is_u64(), "{done}");
    println!(
        "console shift done (stream drop by {}, resumed after event {}, {} events handled); \
         screenshots in {}:",
        offline["drop"],
        done["resumed_from"],
        done["handled"],
        shots.display()
    );
    for shot in done["shots"].as_array().unwrap() {
        println!("  {}", shot.as_str().unwrap());
    }
}
