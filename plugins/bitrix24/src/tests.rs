//! Native tests of the whole flow: events run against a small fake portal the way the host runs
//! them (fetch, answers, call again; a pause calls again with the memory kept), and the portal's
//! calls to the host go through `handle_webhook`.

use std::collections::VecDeque;

use plugboard_sdk::crm::{
    Action, Author, ConversationFacts, Event, Handled, Outcome, Start, Step, Turn, WebhookOutcome,
};
use plugboard_sdk::serde_json::{Value, json};
use plugboard_sdk::testing::pairs;
use plugboard_sdk::types::{Fields, HttpRequest, HttpResponse, WebhookError};
use plugboard_sdk::{Integration, http, serde_json};

use super::Bitrix24;

const URL: &str = "http://127.0.0.1:18998/rest/1/abc123/";
const TOKEN: &str = "b24-outbound-token-1234";

fn settings() -> Fields {
    pairs(&[
        ("webhook_url", URL),
        ("application_token", TOKEN),
        ("user_map", "alice=5,bob=7"),
        ("default_channel", "sms"),
    ])
}

fn facts(conversation: &str, contact: &str, name: Option<&str>) -> ConversationFacts {
    ConversationFacts {
        conversation: conversation.into(),
        channel: "sms".into(),
        kind: "sms".into(),
        queue: "support".into(),
        contact: contact.into(),
        contact_name: name.map(str::to_string),
        known_contact: false,
        now: 1_796_191_200,
    }
}

fn event(kind: &str, conversation: ConversationFacts, data: Value) -> Event {
    Event {
        id: "evt_42".into(),
        kind: kind.into(),
        at: 1_796_191_200,
        conversation,
        data: data.to_string(),
        transcript: Vec::new(),
    }
}

fn ann(kind: &str, conversation: &str) -> Event {
    event(
        kind,
        facts(conversation, "+14155550100", Some("Ann")),
        json!({}),
    )
}

fn memory(entity_type: &str, id: &str) -> Fields {
    pairs(&[("entity_type", entity_type), ("entity_id", id)])
}

fn answer(status: u16, body: Value) -> Result<HttpResponse, String> {
    Ok(http::response(status, "application/json", body.to_string()))
}

fn ok(result: Value) -> Result<HttpResponse, String> {
    answer(
        200,
        json!({"result": result, "time": {"start": 1.0, "finish": 1.1}}),
    )
}

/// The method a request calls and its JSON body.
fn call_of(req: &HttpRequest) -> (String, Value) {
    assert_eq!(req.method, "POST");
    let method = req
        .url
        .strip_prefix(URL)
        .and_then(|m| m.strip_suffix(".json"))
        .unwrap_or_else(|| panic!("not a call of the webhook: {}", req.url));
    (
        method.to_string(),
        serde_json::from_slice(&req.body).unwrap(),
    )
}

/// One step of the integration.
fn step(event: &Event, memory: Fields, answers: Vec<Result<HttpResponse, String>>) -> Step {
    Bitrix24::on_event(event.clone(), memory, answers, settings()).unwrap()
}

/// The single request of a fetch step.
fn fetched(step: Step) -> (String, Value) {
    match step {
        Step::Fetch(requests) if requests.len() == 1 => call_of(&requests[0]),
        other => panic!("one request expected: {other:?}"),
    }
}

fn done(step: Step) -> Outcome {
    match step {
        Step::Done(outcome) => outcome,
        other => panic!("done expected: {other:?}"),
    }
}

/// A fake portal: contacts and leads with one phone number each, every call it got, and
/// answers to give instead of its own, by method.
#[derive(Default)]
struct Portal {
    contacts: Vec<(u64, String)>,
    leads: Vec<(u64, String)>,
    calls: Vec<(String, Value)>,
    scripted: VecDeque<(String, Result<HttpResponse, String>)>,
}

impl Portal {
    fn answer(&mut self, req: &HttpRequest) -> Result<HttpResponse, String> {
        let (method, body) = call_of(req);
        self.calls.push((method.clone(), body.clone()));
        if self.scripted.front().is_some_and(|(m, _)| *m == method) {
            return self.scripted.pop_front().unwrap().1;
        }
        match method.as_str() {
            "crm.duplicate.findbycomm" => {
                let value = body["values"][0].as_str().unwrap().to_string();
                let ids = |list: &[(u64, String)]| -> Vec<u64> {
                    list.iter()
                        .filter(|(_, v)| *v == value)
                        .map(|(id, _)| *id)
                        .collect()
                };
                let (contacts, leads) = (ids(&self.contacts), ids(&self.leads));
                if contacts.is_empty() && leads.is_empty() {
                    return ok(json!([]));
                }
                let mut found = serde_json::Map::new();
                if !contacts.is_empty() {
                    found.insert("CONTACT".into(), json!(contacts));
                }
                if !leads.is_empty() {
                    found.insert("LEAD".into(), json!(leads));
                }
                ok(Value::Object(found))
            }
            "crm.lead.add" => {
                let id = 100 + self.leads.len() as u64;
                let phone = body["fields"]["PHONE"][0]["VALUE"].as_str().unwrap_or("");
                self.leads.push((id, phone.to_string()));
                ok(json!(id))
            }
            "crm.timeline.comment.add" => ok(json!(999)),
            "crm.lead.update" | "crm.contact.update" => ok(json!(true)),
            other => panic!("unexpected method {other}"),
        }
    }

    fn methods(&self) -> Vec<&str> {
        self.calls.iter().map(|(m, _)| m.as_str()).collect()
    }

    fn count(&self, method: &str) -> usize {
        self.methods().iter().filter(|m| **m == method).count()
    }
}

/// Delivers `event` as the host does: steps until done (at most 4 fetches a call), calling
/// again with the kept memory after a pause. Returns how each call ended and the last outcome.
fn deliver(event: &Event, memory: Fields, portal: &mut Portal) -> (Vec<Handled>, Outcome) {
    let mut memory = memory;
    let mut ends = Vec::new();
    for _call in 0..6 {
        let mut answers = Vec::new();
        let outcome = 'call: {
            for _fetch in 0..=4 {
                match Bitrix24::on_event(event.clone(), memory.clone(), answers, settings()) {
                    Ok(Step::Fetch(requests)) => {
                        answers = requests.iter().map(|r| portal.answer(r)).collect();
                    }
                    Ok(Step::Done(outcome)) => break 'call outcome,
                    Err(e) => panic!("dead letter: {e}"),
                }
            }
            panic!("more than 4 fetches in one call");
        };
        ends.push(outcome.handled);
        memory = outcome.memory.clone();
        if outcome.handled == Handled::Done {
            return (ends, outcome);
        }
    }
    panic!("still pausing after 6 calls: {ends:?}");
}

#[test]
fn describes_itself() {
    let m = Bitrix24::describe();
    assert_eq!(m.name, "bitrix24");
    assert!(m.api_hosts.is_empty());
    assert_eq!(
        m.events,
        [
            "contact.unknown",
            "conversation.created",
            "conversation.assigned",
            "conversation.transferred",
            "conversation.closed"
        ]
    );
    let spec = |name: &str| m.settings.iter().find(|s| s.name == name).unwrap();
    assert!(spec("webhook_url").required);
    assert!(spec("application_token").required && spec("application_token").secret);
    for optional in ["user_map", "source_id", "default_channel"] {
        assert!(!spec(optional).required, "{optional}");
    }
    assert_eq!(Bitrix24::check_settings(settings()), Ok(()));
    let insecure = pairs(&[
        ("webhook_url", "http://portal.example/rest/1/x/"),
        ("application_token", TOKEN),
    ]);
    assert!(Bitrix24::check_settings(insecure).is_err());
}

#[test]
fn findbycomm_empty_array_creates_a_lead() {
    let e = ann("contact.unknown", "17");
    let (method, body) = fetched(step(&e, vec![], vec![]));
    assert_eq!(method, "crm.duplicate.findbycomm");
    assert_eq!(body, json!({"type": "PHONE", "values": ["+14155550100"]}));
    let (method, body) = fetched(step(&e, vec![], vec![ok(json!([]))]));
    assert_eq!(method, "crm.lead.add");
    assert_eq!(
        body,
        json!({"fields": {
            "TITLE": "Plugboard: Ann",
            "NAME": "Ann",
            "PHONE": [{"VALUE": "+14155550100", "VALUE_TYPE": "WORK"}],
            "SOURCE_ID": "OTHER",
            "SOURCE_DESCRIPTION": "sms",
        }})
    );
    let outcome = done(step(&e, vec![], vec![ok(json!(3465))]));
    assert_eq!(outcome.handled, Handled::Done);
    assert_eq!(outcome.memory, memory("lead", "3465"));
}

#[test]
fn findbycomm_found_prefers_the_contact() {
    let e = ann("conversation.created", "17");
    let found = ok(json!({"CONTACT": [5], "LEAD": [7]}));
    let outcome = done(step(&e, vec![], vec![found]));
    assert_eq!(outcome.handled, Handled::Done);
    assert_eq!(outcome.memory, memory("contact", "5"));
    let outcome = done(step(&e, vec![], vec![ok(json!({"LEAD": ["7"]}))]));
    assert_eq!(outcome.memory, memory("lead", "7"));
}

#[test]
fn emails_and_whatsapp_numbers_are_searched_as_such() {
    let mut e = event(
        "contact.unknown",
        facts("3", "ann@example.com", None),
        json!({}),
    );
    e.conversation.kind = "email".into();
    let (_, body) = fetched(step(&e, vec![], vec![]));
    assert_eq!(
        body,
        json!({"type": "EMAIL", "values": ["ann@example.com"]})
    );
    let (_, body) = fetched(step(&e, vec![], vec![ok(json!([]))]));
    assert_eq!(
        body["fields"]["EMAIL"],
        json!([{"VALUE": "ann@example.com", "VALUE_TYPE": "WORK"}])
    );
    assert_eq!(body["fields"]["TITLE"], "Plugboard: ann@example.com");
    assert!(body["fields"].get("NAME").is_none());
    let mut e = ann("contact.unknown", "4");
    e.conversation.contact = "whatsapp:+14155550100".into();
    let (_, body) = fetched(step(&e, vec![], vec![]));
    assert_eq!(body["values"], json!(["+14155550100"]));
    // A chat id is no phone number: nothing to search, the lead is created at once.
    let mut e = ann("contact.unknown", "5");
    e.conversation.kind = "messenger".into();
    e.conversation.contact = "1234567890123456".into();
    let (method, body) = fetched(step(&e, vec![], vec![]));
    assert_eq!(method, "crm.lead.add");
    assert!(body["fields"].get("PHONE").is_none());
    assert_eq!(
        done(step(&e, vec![], vec![ok(json!(8))])).memory,
        memory("lead", "8")
    );
}

#[test]
fn one_lead_for_a_customer_who_writes_three_times() {
    let mut portal = Portal::default();
    let (ends, first) = deliver(&ann("contact.unknown", "17"), vec![], &mut portal);
    assert_eq!(ends, [Handled::Done]);
    assert_eq!(first.memory, memory("lead", "100"));
    // The same conversation's next event: linked already, no call at all.
    let calls = portal.calls.len();
    let (_, again) = deliver(
        &ann("conversation.created", "17"),
        first.memory,
        &mut portal,
    );
    assert_eq!(again.memory, memory("lead", "100"));
    assert_eq!(portal.calls.len(), calls);
    // Two more conversations: the search finds the lead.
    for conversation in ["18", "19"] {
        let (_, outcome) = deliver(&ann("contact.unknown", conversation), vec![], &mut portal);
        assert_eq!(outcome.memory, memory("lead", "100"));
    }
    assert_eq!(portal.leads.len(), 1);
    assert_eq!(portal.count("crm.lead.add"), 1);
    assert_eq!(portal.count("crm.duplicate.findbycomm"), 3);
}

#[test]
fn a_known_contact_gets_no_lead() {
    let mut portal = Portal {
        contacts: vec![(5, "+14155550100".into())],
        ..Portal::default()
    };
    let (_, outcome) = deliver(&ann("conversation.created", "17"), vec![], &mut portal);
    assert_eq!(outcome.memory, memory("contact", "5"));
    assert_eq!(portal.methods(), ["crm.duplicate.findbycomm"]);
}

#[test]
fn query_limit_pauses_keeping_the_memory() {
    let limit = || {
        answer(
            503,
            json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}),
        )
    };
    // The creation itself hits the limit: nothing was created, the memory stays empty.
    let e = ann("contact.unknown", "17");
    let outcome = done(step(&e, vec![], vec![limit()]));
    assert_eq!(outcome.handled, Handled::RetryAfter(2));
    assert!(outcome.memory.is_empty());

    // A closed conversation not linked yet: the lead is created and kept before the comment,
    // so the comment's pause does not create it again.
    let mut portal = Portal::default();
    portal
        .scripted
        .push_back(("crm.timeline.comment.add".into(), limit()));
    let closed = event(
        "conversation.closed",
        facts("17", "+14155550100", Some("Ann")),
        json!({"by": "alice", "handling": {"waited_ms": 1234, "open_ms": 5678}}),
    );
    let (ends, outcome) = deliver(&closed, vec![], &mut portal);
    assert_eq!(
        ends,
        [
            Handled::RetryAfter(0),
            Handled::RetryAfter(2),
            Handled::Done
        ]
    );
    assert_eq!(outcome.memory, memory("lead", "100"));
    assert_eq!(
        portal.methods(),
        [
            "crm.duplicate.findbycomm",
            "crm.lead.add",
            "crm.timeline.comment.add",
            "crm.timeline.comment.add"
        ]
    );
    assert_eq!(portal.calls[3].1["fields"]["ENTITY_ID"], 100);

    // The pause keeps whatever memory the event came with.
    let linked = memory("contact", "5");
    let outcome = done(step(&closed, linked.clone(), vec![limit()]));
    assert_eq!(
        (outcome.handled, outcome.memory),
        (Handled::RetryAfter(2), linked.clone())
    );
    let overload = answer(401, json!({"error": "OVERLOAD_LIMIT"}));
    assert_eq!(
        done(step(&closed, linked.clone(), vec![overload])).handled,
        Handled::RetryAfter(2)
    );
    let transport = Err("connection refused".to_string());
    assert_eq!(
        done(step(&closed, linked, vec![transport])).handled,
        Handled::RetryAfter(5)
    );
}

#[test]
fn other_errors_dead_letter_naming_the_method_and_code() {
    let closed = event("conversation.closed", facts("17", "+1415", None), json!({}));
    let not_found = answer(
        400,
        json!({"error": "NOT_FOUND", "error_description": "Not found."}),
    );
    let err =
        Bitrix24::on_event(closed, memory("lead", "7"), vec![not_found], settings()).unwrap_err();
    assert_eq!(
        err,
        "Bitrix24 refused crm.timeline.comment.add: NOT_FOUND: Not found. (HTTP 400)"
    );
    let denied = answer(
        403,
        json!({"error": "ACCESS_DENIED", "error_description": "Access denied."}),
    );
    let err = Bitrix24::on_event(
        ann("contact.unknown", "1"),
        vec![],
        vec![denied],
        settings(),
    )
    .unwrap_err();
    assert!(
        err.contains("crm.lead.add") && err.contains("ACCESS_DENIED"),
        "{err}"
    );
}

#[test]
fn the_transcript_comment() {
    let mut closed = event(
        "conversation.closed",
        facts("17", "+14155550100", Some("Ann")),
        json!({"by": "alice", "handling": {"waited_ms": 65_000, "open_ms": 3_723_000}}),
    );
    let turn = |author, name: Option<&str>, text: Option<&str>, at| Turn {
        author,
        name: name.map(str::to_string),
        text: text.map(str::to_string),
        at,
    };
    closed.transcript = vec![
        turn(Author::Customer, None, Some("Hi, my order?"), 1_796_187_600),
        turn(
            Author::Bot,
            Some("faq"),
            Some("Let me connect you."),
            1_796_187_601,
        ),
        turn(
            Author::Host,
            None,
            Some("Waiting for an agent"),
            1_796_187_602,
        ),
        turn(
            Author::Agent,
            Some("alice"),
            Some("It ships today."),
            1_796_187_700,
        ),
        turn(Author::Agent, Some("carol"), None, 1_796_187_800),
    ];
    let (method, body) = fetched(step(&closed, memory("lead", "7"), vec![]));
    assert_eq!(method, "crm.timeline.comment.add");
    assert_eq!(body["fields"]["ENTITY_TYPE"], "lead");
    assert_eq!(body["fields"]["ENTITY_ID"], 7);
    assert_eq!(
        body["fields"]["COMMENT"],
        "Plugboard conversation 17 with Ann (+14155550100) on sms (queue support), closed by \
         alice (Bitrix24 user 5) at 2026-12-02 06:00:00 UTC.\n\
         Open 1 h 2 min 3 s; waited 1 min 5 s for an agent.\n\
         \n\
         [2026-12-02 05:00:00 UTC] Ann (+14155550100): Hi, my order?\n\
         [2026-12-02 05:00:01 UTC] Bot faq: Let me connect you.\n\
         [2026-12-02 05:00:02 UTC] Plugboard: Waiting for an agent\n\
         [2026-12-02 05:01:40 UTC] Agent alice (Bitrix24 user 5): It ships today.\n\
         [2026-12-02 05:03:20 UTC] Agent carol: (no text)"
    );
    assert_eq!(
        done(step(&closed, memory("lead", "7"), vec![ok(json!(999))])),
        Outcome {
            handled: Handled::Done,
            memory: memory("lead", "7")
        }
    );
    // Closed by nobody, never queued, no messages, customer without a name.
    let bare = event(
        "conversation.closed",
        facts("18", "+14155550100", None),
        json!({"by": null, "handling": {"waited_ms": null, "open_ms": 5678}}),
    );
    let (_, body) = fetched(step(&bare, memory("contact", "5"), vec![]));
    assert_eq!(
        body["fields"]["COMMENT"],
        "Plugboard conversation 18 with +14155550100 on sms (queue support), closed at \
         2026-12-02 06:00:00 UTC.\nOpen 5 s; did not wait for an agent.\n\n(no messages)"
    );
    assert_eq!(body["fields"]["ENTITY_TYPE"], "contact");
}

#[test]
fn assignments_update_mapped_agents_only() {
    let f = || facts("17", "+14155550100", None);
    let assigned = event("conversation.assigned", f(), json!({"agent": "alice"}));
    let (method, body) = fetched(step(&assigned, memory("contact", "5"), vec![]));
    assert_eq!(method, "crm.contact.update");
    assert_eq!(body, json!({"id": 5, "fields": {"ASSIGNED_BY_ID": 5}}));
    let outcome = done(step(
        &assigned,
        memory("contact", "5"),
        vec![ok(json!(true))],
    ));
    assert_eq!(outcome.handled, Handled::Done);

    let moved =
        json!({"from_queue": "support", "to_queue": "sales", "to_agent": "bob", "by": "alice"});
    let transferred = event("conversation.transferred", f(), moved);
    let (method, body) = fetched(step(&transferred, memory("lead", "9"), vec![]));
    assert_eq!(method, "crm.lead.update");
    assert_eq!(body, json!({"id": 9, "fields": {"ASSIGNED_BY_ID": 7}}));

    for data in [
        json!({"agent": "dave"}),
        json!({"to_agent": null, "to_queue": "sales"}),
    ] {
        for kind in ["conversation.assigned", "conversation.transferred"] {
            let e = event(kind, f(), data.clone());
            let outcome = done(step(&e, vec![], vec![]));
            assert_eq!(outcome.handled, Handled::Done, "{kind} {data}");
            assert!(outcome.memory.is_empty());
        }
    }

    // Not linked yet: linked first, then assigned.
    let mut portal = Portal {
        contacts: vec![(5, "+14155550100".into())],
        ..Portal::default()
    };
    let (ends, outcome) = deliver(&assigned, vec![], &mut portal);
    assert_eq!(ends, [Handled::RetryAfter(0), Handled::Done]);
    assert_eq!(outcome.memory, memory("contact", "5"));
    assert_eq!(
        portal.methods(),
        ["crm.duplicate.findbycomm", "crm.contact.update"]
    );
}

#[test]
fn other_events_change_nothing() {
    let e = ann("message.received", "17");
    let outcome = done(step(&e, memory("lead", "7"), vec![]));
    assert_eq!(
        (outcome.handled, outcome.memory),
        (Handled::Done, memory("lead", "7"))
    );
    let mut broken = ann("conversation.closed", "17");
    broken.data = "{".into();
    assert!(Bitrix24::on_event(broken, vec![], vec![], settings()).is_err());
}

fn call(url: &str, body: &str) -> HttpRequest {
    http::request(
        "POST",
        url,
        pairs(&[("Content-Type", "application/x-www-form-urlencoded")]),
        body,
    )
}

const HOOK: &str = "https://plugboard.example/integrations/bitrix24";

fn started(outcome: &WebhookOutcome) -> Vec<Start> {
    outcome
        .actions
        .iter()
        .map(|Action::StartConversation(start)| start.clone())
        .collect()
}

#[test]
fn forged_tokens_are_refused() {
    let webhook = |req| Bitrix24::handle_webhook(req, settings());
    for body in [
        "to=%2B14155550100&text=Hi".to_string(),
        "to=%2B14155550100&text=Hi&auth[application_token]=wrong".to_string(),
        format!("to=%2B14155550100&text=Hi&application_token={TOKEN}"),
        format!("to=%2B14155550100&text=Hi&auth[application_token]={TOKEN}x"),
    ] {
        assert!(
            matches!(
                webhook(call(HOOK, &body)),
                Err(WebhookError::Unauthorized(_))
            ),
            "{body}"
        );
    }
    let unset = pairs(&[("webhook_url", URL)]);
    assert!(matches!(
        Bitrix24::handle_webhook(call(HOOK, "a=b"), unset),
        Err(WebhookError::Misconfigured(_))
    ));
}

#[test]
fn a_message_request_starts_a_conversation() {
    let body =
        format!("to=%2B14155550100&text=Your+order+shipped&auth%5Bapplication_token%5D={TOKEN}");
    let outcome = Bitrix24::handle_webhook(call(HOOK, &body), settings()).unwrap();
    assert_eq!(outcome.response.status, 200);
    assert_eq!(outcome.response.body, br#"{"ok":true}"#);
    assert_eq!(
        started(&outcome),
        [Start {
            channel: "sms".into(),
            to: "+14155550100".into(),
            text: "Your order shipped".into(),
        }]
    );
}

#[test]
fn nested_forms_and_queries_are_read() {
    // A robot's call: the message nested under data[...], the channel in the query.
    let body = format!(
        "document_id[]=crm&document_id[]=CCrmDocumentLead&data[to]=%2B14155550100\
         &data[text]=Hello&auth[domain]=example.bitrix24.com&auth[application_token]={TOKEN}"
    );
    let outcome =
        Bitrix24::handle_webhook(call(&format!("{HOOK}?channel=whatsapp"), &body), settings())
            .unwrap();
    assert_eq!(
        started(&outcome),
        [Start {
            channel: "whatsapp".into(),
            to: "+14155550100".into(),
            text: "Hello".into(),
        }]
    );
    // Everything in the query, the body empty.
    let url = format!("{HOOK}?to=%2B1415&text=Hi+there&auth[application_token]={TOKEN}");
    let outcome = Bitrix24::handle_webhook(call(&url, ""), settings()).unwrap();
    assert_eq!(started(&outcome)[0].text, "Hi there");
    assert_eq!(started(&outcome)[0].to, "+1415");
}

#[test]
fn other_portal_events_are_acknowledged_and_ignored() {
    let body = format!(
        "event=ONCRMLEADUPDATE&data%5BFIELDS%5D%5BID%5D=662&ts=1724140800\
         &auth%5Bdomain%5D=example.bitrix24.com&auth%5Bapplication_token%5D={TOKEN}"
    );
    let outcome = Bitrix24::handle_webhook(call(HOOK, &body), settings()).unwrap();
    assert_eq!(outcome.response.status, 200);
    assert_eq!(
        outcome.response.body,
        br#"{"ok":true,"ignored":"ONCRMLEADUPDATE"}"#
    );
    assert!(outcome.actions.is_empty());
}

#[test]
fn incomplete_requests_are_bad() {
    let webhook = |req, settings| Bitrix24::handle_webhook(req, settings);
    let token = format!("auth[application_token]={TOKEN}");
    let bad = |result: Result<WebhookOutcome, WebhookError>, needle: &str| match result {
        Err(WebhookError::BadRequest(message)) => {
            assert!(message.contains(needle), "{message} lacks {needle}")
        }
        other => panic!("bad-request expected: {other:?}"),
    };
    bad(
        webhook(call(HOOK, &format!("to=%2B1415&{token}")), settings()),
        "missing: text",
    );
    bad(
        webhook(call(HOOK, &format!("text=+&to=&{token}")), settings()),
        "missing: to, text",
    );
    let no_default = pairs(&[("webhook_url", URL), ("application_token", TOKEN)]);
    bad(
        webhook(
            call(HOOK, &format!("to=%2B1415&text=Hi&{token}")),
            no_default,
        ),
        "default_channel",
    );
    let mut get = call(&format!("{HOOK}?to=%2B1415&text=Hi&{token}"), "");
    get.method = "GET".into();
    bad(webhook(get, settings()), "POST");
    bad(webhook(call(HOOK, "to=%zz"), settings()), "does not decode");
}
