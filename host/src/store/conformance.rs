//! The storage conformance suite: every [`Store`] operation's contract stated as a test against
//! the trait alone, so that each backend runs the very same cases: idempotent intake, reopening,
//! opt-changes applied once, statuses that never move backwards, exactly one winner of
//! concurrent takes, the outbox's retries and dead letters, the event log's order and resume,
//! list pages in order and stable under writes, and the smaller records.
//!
//! Each case is a `pub async fn` taking a fresh, empty store, so a backend's test file runs
//! them one per test; [`run`] runs them all in turn and names the case that failed. Every case
//! panics on a broken contract. The sled backend passes it (`tests/store.rs`); the PostgreSQL
//! backend (issue 13) must pass it unchanged.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::Barrier;

use crate::model::{
    AgentRecord, AgentSession, Contact, Conversation, ConversationState, ConversationTarget,
    Direction, Failover, InboundEvent, IngestReport, Message, MessageStatus, OptChange,
    OutboundDraft, Rejection, StoredInbound, Visitor,
};
use crate::store::{
    ConversationCursor, ConversationQuery, IntakeNotices, NewEvent, NonceClaim, Selector, Store,
    UpdateError, update,
};

/// One case: it gets a fresh, empty store and panics when the store breaks its contract.
pub type Case = fn(Arc<dyn Store>) -> BoxFuture<'static, ()>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case by name, in the order [`run`] runs them.
        pub const CASES: &[(&str, Case)] = &[$((stringify!($name), |store| Box::pin($name(store)))),*];
    };
}

cases!(
    intake_is_idempotent_by_provider_id,
    closed_conversation_reopens_on_a_new_message,
    opt_changes_apply_once,
    statuses_never_move_backwards,
    concurrent_takes_have_exactly_one_winner,
    outbox_queues_retries_and_dead_letters,
    sends_are_claimed_by_one_holder_at_a_time,
    a_send_moves_to_its_fallback_once,
    event_log_orders_and_resumes,
    intake_logs_its_notices_with_the_messages,
    replies_and_outcomes_log_their_notices,
    lists_page_every_selector_in_order,
    list_pages_stay_stable_under_writes,
    list_pages_stay_ordered_under_concurrent_writes,
    owned_counts_and_queued_ids_follow_the_state,
    conversations_by_key_and_started_by_agents,
    messages_page_in_order,
    contacts_are_added_and_renamed,
    visitors_expire_per_channel,
    agent_records_are_kept,
    channel_states_are_kept,
    documents_are_kept_per_space_in_key_order,
    nonces_are_claimed_once_per_window,
    nul_characters_are_stored_replaced,
    notes_are_messages_nothing_sends,
    read_marks_only_move_forward,
    sessions_are_kept_until_ended,
    statistics_count_each_write_once,
    a_bot_holds_what_it_is_given_until_it_hands_off,
);

/// Runs every case, each on a fresh store from `open`, one after the other; panics naming the
/// first case that fails.
pub async fn run(open: &dyn Fn() -> Arc<dyn Store>) {
    for (name, case) in CASES {
        let outcome = tokio::spawn(case(open())).await;
        if let Err(e) = outcome {
            let reason = match e.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned()),
                Err(e) => e.to_string(),
            };
            panic!("storage conformance case `{name}` failed: {reason}");
        }
    }
}

/// A time in Unix milliseconds that every case counts from.
const T0: u64 = 1_700_000_000_000;

const AGENTS: [&str; 3] = ["alice", "bob", "carol"];

fn queue(name: &str) -> ConversationTarget {
    ConversationTarget::Queue {
        bot: None,
        queue: name.to_owned(),
        skills: Vec::new(),
        priority: 0,
    }
}

fn inbound(provider_id: &str, from: &str) -> InboundEvent {
    InboundEvent::Message {
        provider_id: provider_id.to_owned(),
        from: from.to_owned(),
        text: Some(format!("text of {provider_id}")),
        attachments: Vec::new(),
        contact_name: None,
        thread: Vec::new(),
        note: None,
    }
}

fn status(provider_id: &str, status: MessageStatus) -> InboundEvent {
    InboundEvent::Status {
        provider_id: provider_id.to_owned(),
        status,
        error: None,
    }
}

fn change(address: &str, id: Option<&str>) -> OptChange {
    OptChange {
        address: address.to_owned(),
        provider_id: id.map(str::to_owned),
    }
}

fn draft(text: &str) -> OutboundDraft {
    OutboundDraft {
        text: Some(text.to_owned()),
        ..OutboundDraft::default()
    }
}

async fn intake(
    store: &dyn Store,
    channel: &str,
    target: ConversationTarget,
    events: Vec<InboundEvent>,
    now: u64,
) -> IngestReport {
    store
        .intake(channel, &target, events, now)
        .await
        .unwrap_or_else(|e| panic!("intake on {channel} failed: {e}"))
}

async fn get(store: &dyn Store, id: u64) -> Conversation {
    store
        .conversation(id)
        .await
        .unwrap_or_else(|e| panic!("reading conversation {id} failed: {e}"))
        .unwrap_or_else(|| panic!("conversation {id} is missing"))
}

async fn message(store: &dyn Store, conversation: u64, seq: u64) -> Message {
    store
        .message(conversation, seq)
        .await
        .unwrap_or_else(|e| panic!("reading message {conversation}-{seq} failed: {e}"))
        .unwrap_or_else(|| panic!("message {conversation}-{seq} is missing"))
}

/// The attempts and due time of a send still waiting in the outbox.
async fn waiting(store: &dyn Store, conversation: u64, seq: u64) -> (u32, u64) {
    let entry = store
        .outbox_entry(conversation, seq)
        .await
        .unwrap_or_else(|e| panic!("reading the outbox failed: {e}"))
        .unwrap_or_else(|| panic!("send {conversation}-{seq} is not waiting"));
    (entry.attempts, entry.next_at)
}

async fn all_messages(store: &dyn Store, conversation: u64) -> Vec<Message> {
    let page = store
        .messages(conversation, None, 10_000)
        .await
        .unwrap_or_else(|e| panic!("reading conversation {conversation}'s messages failed: {e}"));
    assert!(page.next.is_none(), "a page of 10,000 holds every message");
    page.items
}

async fn opted_out(store: &dyn Store, channel: &str, address: &str) -> bool {
    store
        .is_opted_out(channel, address)
        .await
        .expect("reading an opt-out")
}

/// A change that takes a queued conversation for `agent` (the precondition of a take), and
/// refuses any other.
fn take(
    agent: &str,
    now: u64,
) -> impl Fn(&mut Conversation) -> Result<String, Rejection> + Send + Sync + use<> {
    let agent = agent.to_owned();
    move |c| {
        if c.state != ConversationState::Queued {
            return Err(Rejection::Conflict(format!(
                "{} is {:?}, owner {:?}",
                c.id, c.state, c.owner
            )));
        }
        c.assign(&agent);
        c.updated_at = now;
        Ok(agent.clone())
    }
}

/// A change that hands the conversation to `agent` whatever its state (a transfer).
fn hand_to(
    agent: &str,
    now: u64,
) -> impl Fn(&mut Conversation) -> Result<(), Rejection> + Send + Sync + use<> {
    let agent = agent.to_owned();
    move |c| {
        c.transfer(&agent, now);
        Ok(())
    }
}

/// A change that closes the conversation as its owner (who stays recorded).
fn close(now: u64) -> impl Fn(&mut Conversation) -> Result<(), Rejection> + Send + Sync {
    move |c| {
        let by = c
            .owner
            .clone()
            .ok_or_else(|| Rejection::Conflict(format!("nobody holds {}", c.id)))?;
        c.close(&by, now);
        Ok(())
    }
}

/// A change that puts the conversation back in the other of the two list queues.
fn requeue(now: u64) -> impl Fn(&mut Conversation) -> Result<(), Rejection> + Send + Sync {
    move |c| {
        let to = if c.queue == "support" {
            "sales"
        } else {
            "support"
        };
        c.enqueue(to, now);
        c.updated_at = now;
        Ok(())
    }
}

/// A change that only marks the conversation as updated at `now`.
fn touch(now: u64) -> impl Fn(&mut Conversation) -> Result<(), Rejection> + Send + Sync {
    move |c| {
        c.updated_at = now;
        Ok(())
    }
}

async fn apply<T: Send>(
    store: &dyn Store,
    id: u64,
    change: impl Fn(&mut Conversation) -> Result<T, Rejection> + Send + Sync,
) -> Conversation {
    match update(store, id, change).await {
        Ok((c, _)) => c,
        Err(e) => panic!("updating conversation {id} failed: {e}"),
    }
}

/// Intake stores each message once per provider id (within one webhook, across webhooks and
/// between concurrent deliveries), counts the rest as duplicates, scopes provider ids by
/// channel, creates one conversation per customer and numbers conversations densely from 1.
pub async fn intake_is_idempotent_by_provider_id(store: Arc<dyn Store>) {
    let s = store.as_ref();
    assert_eq!(s.failure(), None, "a new store is in service");
    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("SM1", "+15550001"), inbound("SM1", "+15550001")],
        T0,
    )
    .await;
    assert_eq!(
        (r.stored, r.duplicates),
        (1, 1),
        "one provider id twice in one webhook is stored once"
    );
    assert_eq!(r.created, [1], "the first conversation has id 1");
    assert_eq!(r.to_route, [1], "a new conversation waits in its queue");
    assert_eq!(
        r.messages
            .iter()
            .map(|m| (m.conversation, m.seq, m.customer.as_str(), m.queue.as_str()))
            .collect::<Vec<_>>(),
        [(1, 1, "+15550001", "support")]
    );
    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("SM1", "+15550001"), inbound("SM2", "+15550001")],
        T0 + 10,
    )
    .await;
    assert_eq!(
        (r.stored, r.duplicates),
        (1, 1),
        "a provider's retry in a later webhook is a duplicate"
    );
    assert!(
        r.created.is_empty() && r.to_route.is_empty(),
        "a queued conversation is neither created nor routed again: {r:?}"
    );
    let c = get(s, 1).await;
    assert_eq!(
        (c.channel.as_str(), c.customer.as_str(), c.queue.as_str()),
        ("sms", "+15550001", "support")
    );
    assert_eq!(c.state, ConversationState::Queued);
    assert_eq!((c.last_seq, c.created_at, c.updated_at), (2, T0, T0 + 10));
    assert_eq!(c.last_inbound_at, Some(T0 + 10));
    let messages = all_messages(s, 1).await;
    assert_eq!(
        messages
            .iter()
            .map(|m| (m.seq, m.provider_id.as_deref(), m.direction, m.status))
            .collect::<Vec<_>>(),
        [
            (1, Some("SM1"), Direction::Inbound, MessageStatus::Received),
            (2, Some("SM2"), Direction::Inbound, MessageStatus::Received),
        ],
        "each message is stored once, in order"
    );
    assert_eq!(messages[0].text.as_deref(), Some("text of SM1"));

    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("SM3", "+15550002")],
        T0 + 20,
    )
    .await;
    assert_eq!(r.created, [2], "the next conversation has id 2");
    let r = intake(
        s,
        "wa",
        queue("support"),
        vec![inbound("SM1", "+15550001")],
        T0 + 30,
    )
    .await;
    assert_eq!(
        (r.stored, r.duplicates, r.created.as_slice()),
        (1, 0, &[3][..]),
        "provider ids and customers are scoped by channel"
    );

    // Eight deliveries of one new message at once: stored once, one conversation.
    let reports = race(8, |_| {
        let store = store.clone();
        async move {
            store
                .intake(
                    "sms",
                    &queue("support"),
                    vec![inbound("SMrace", "+15550009")],
                    T0 + 40,
                )
                .await
        }
    })
    .await;
    let reports: Vec<IngestReport> = reports
        .into_iter()
        .map(|r| r.expect("racing intake"))
        .collect();
    let stored: usize = reports.iter().map(|r| r.stored).sum();
    let duplicates: usize = reports.iter().map(|r| r.duplicates).sum();
    let created: Vec<u64> = reports.iter().flat_map(|r| r.created.clone()).collect();
    assert_eq!(
        (stored, duplicates),
        (1, 7),
        "eight concurrent deliveries of one message store it once"
    );
    assert_eq!(created, [4], "and create one conversation");
    assert_eq!(all_messages(s, 4).await.len(), 1);

    // Eight different messages of one new customer at once: one conversation, eight messages.
    let reports = race(8, |i| {
        let store = store.clone();
        async move {
            store
                .intake(
                    "sms",
                    &queue("support"),
                    vec![inbound(&format!("SMburst{i}"), "+15550010")],
                    T0 + 50,
                )
                .await
        }
    })
    .await;
    let reports: Vec<IngestReport> = reports
        .into_iter()
        .map(|r| r.expect("racing intake"))
        .collect();
    let created: Vec<u64> = reports.iter().flat_map(|r| r.created.clone()).collect();
    assert_eq!(
        created,
        [5],
        "concurrent first messages of one customer create one conversation"
    );
    let burst = all_messages(s, 5).await;
    assert_eq!(
        burst.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<u64>>(),
        "each message gets its own sequence number"
    );
    let ids: BTreeSet<String> = burst.iter().filter_map(|m| m.provider_id.clone()).collect();
    assert_eq!(ids, (0..8).map(|i| format!("SMburst{i}")).collect());
    assert_eq!(get(s, 5).await.last_seq, 8);
    assert!(
        s.conversation(6).await.expect("reading").is_none(),
        "ids are dense: five conversations, ids 1 to 5"
    );
}

/// A closed conversation reopens on a new inbound message: back in the channel's queue,
/// unowned, with its history and handlers kept, reported in `to_route`; a channel that
/// targets an agent hands it straight to them.
pub async fn closed_conversation_reopens_on_a_new_message(store: Arc<dyn Store>) {
    let s = store.as_ref();
    intake(s, "sms", queue("support"), vec![inbound("SM1", "+1")], T0).await;
    apply(s, 1, take("alice", T0 + 1)).await;
    s.add_outbound(1, Some("alice"), draft("hello"), T0 + 2)
        .await
        .expect("a reply");
    let closed = apply(s, 1, close(T0 + 3)).await;
    assert_eq!(closed.state, ConversationState::Closed);
    assert_eq!(closed.handled_by, ["alice"]);

    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("SM2", "+1")],
        T0 + 4,
    )
    .await;
    assert_eq!(r.to_route, [1], "the reopened conversation is routed again");
    assert!(r.created.is_empty(), "reopening creates nothing");
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].owner, None);
    let c = get(s, 1).await;
    assert_eq!(c.state, ConversationState::Queued, "back in its queue");
    assert_eq!(c.queue, "support");
    assert_eq!(c.owner, None, "unowned");
    assert_eq!(c.handled_by, ["alice"], "who handled it is kept");
    assert_eq!(
        (c.created_at, c.queued_since, c.updated_at),
        (T0, T0 + 4, T0 + 4)
    );
    assert_eq!(
        all_messages(s, 1)
            .await
            .iter()
            .map(|m| (m.seq, m.direction))
            .collect::<Vec<_>>(),
        [
            (1, Direction::Inbound),
            (2, Direction::Outbound),
            (3, Direction::Inbound)
        ],
        "the history is kept"
    );

    // A message on an open conversation routes nothing and keeps the owner.
    apply(s, 1, take("alice", T0 + 5)).await;
    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("SM3", "+1")],
        T0 + 6,
    )
    .await;
    assert!(
        r.to_route.is_empty(),
        "an assigned conversation is not routed"
    );
    assert_eq!(r.messages[0].owner.as_deref(), Some("alice"));
    let c = get(s, 1).await;
    assert_eq!(
        (c.state, c.owner.as_deref()),
        (ConversationState::Assigned, Some("alice"))
    );

    // A channel that targets an agent reopens straight to them.
    apply(s, 1, close(T0 + 7)).await;
    let r = intake(
        s,
        "sms",
        ConversationTarget::Agent("bob".into()),
        vec![inbound("SM4", "+1")],
        T0 + 8,
    )
    .await;
    assert!(
        r.to_route.is_empty(),
        "a conversation for an agent is not routed"
    );
    let c = get(s, 1).await;
    assert_eq!(
        (c.state, c.owner.as_deref()),
        (ConversationState::Assigned, Some("bob"))
    );
    assert_eq!(c.handled_by, ["alice", "bob"]);
    let r = intake(
        s,
        "sms",
        ConversationTarget::Agent("bob".into()),
        vec![inbound("SM5", "+2")],
        T0 + 9,
    )
    .await;
    assert_eq!((r.created.as_slice(), r.to_route.len()), (&[2][..], 0));
    let c = get(s, 2).await;
    assert_eq!(
        (c.state, c.owner.as_deref()),
        (ConversationState::Assigned, Some("bob"))
    );
}

/// Opt-outs and opt-ins from intake apply per channel and address; one that carries an id is
/// applied once by that id (a redelivered older STOP after a START does not opt out again),
/// and a webhook retried whole does not apply its id-less change again; `set_opted_out` sets
/// it directly.
pub async fn opt_changes_apply_once(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let sq = || queue("support");
    assert!(!opted_out(s, "sms", "+1").await);
    let r = intake(
        s,
        "sms",
        sq(),
        vec![InboundEvent::OptOut(change("+1", None))],
        T0,
    )
    .await;
    assert!(opted_out(s, "sms", "+1").await, "an opt-out applies");
    assert_eq!(
        r.opt_changes,
        [("+1".to_owned(), true)],
        "the report names it"
    );
    assert!(!opted_out(s, "wa", "+1").await, "only on its channel");
    assert!(!opted_out(s, "sms", "+2").await, "only for its address");
    let r = intake(
        s,
        "sms",
        sq(),
        vec![InboundEvent::OptIn(change("+1", None))],
        T0 + 1,
    )
    .await;
    assert!(!opted_out(s, "sms", "+1").await, "an opt-in undoes it");
    assert_eq!(r.opt_changes, [("+1".to_owned(), false)]);

    intake(
        s,
        "sms",
        sq(),
        vec![InboundEvent::OptOut(change("+1", Some("EV1")))],
        T0 + 2,
    )
    .await;
    assert!(opted_out(s, "sms", "+1").await);
    intake(
        s,
        "sms",
        sq(),
        vec![InboundEvent::OptIn(change("+1", Some("EV2")))],
        T0 + 3,
    )
    .await;
    assert!(!opted_out(s, "sms", "+1").await);
    let r = intake(
        s,
        "sms",
        sq(),
        vec![InboundEvent::OptOut(change("+1", Some("EV1")))],
        T0 + 4,
    )
    .await;
    assert!(
        !opted_out(s, "sms", "+1").await,
        "a redelivered STOP (EV1) after a START (EV2) does not opt out again"
    );
    assert_eq!(r.duplicates, 1, "the redelivery is counted as a duplicate");
    intake(
        s,
        "wa",
        sq(),
        vec![InboundEvent::OptOut(change("+1", Some("EV1")))],
        T0 + 5,
    )
    .await;
    assert!(
        opted_out(s, "wa", "+1").await,
        "an opt-change id is scoped by channel"
    );
    assert!(!opted_out(s, "sms", "+1").await);

    intake(s, "sms", sq(), vec![inbound("EV3", "+2")], T0 + 6).await;
    intake(
        s,
        "sms",
        sq(),
        vec![InboundEvent::OptOut(change("+2", Some("EV3")))],
        T0 + 7,
    )
    .await;
    assert!(
        opted_out(s, "sms", "+2").await,
        "an opt-change's id and a message's provider id do not collide"
    );

    // A webhook retried whole (a 0.2.0 plugin's STOP without an id of its own).
    let stop = || {
        vec![
            inbound("SM10", "+3"),
            InboundEvent::OptOut(change("+3", None)),
        ]
    };
    intake(s, "sms", sq(), stop(), T0 + 8).await;
    assert!(opted_out(s, "sms", "+3").await);
    intake(
        s,
        "sms",
        sq(),
        vec![
            inbound("SM11", "+3"),
            InboundEvent::OptIn(change("+3", None)),
        ],
        T0 + 9,
    )
    .await;
    assert!(!opted_out(s, "sms", "+3").await);
    let r = intake(s, "sms", sq(), stop(), T0 + 10).await;
    assert_eq!(
        (r.stored, r.duplicates),
        (0, 2),
        "the retried message and its opt-out are both duplicates"
    );
    assert!(
        !opted_out(s, "sms", "+3").await,
        "a retried STOP after a START does not opt out again"
    );

    s.set_opted_out("sms", "+4", true, T0 + 11)
        .await
        .expect("opting out");
    assert!(opted_out(s, "sms", "+4").await);
    assert!(!opted_out(s, "wa", "+4").await);
    s.set_opted_out("sms", "+4", false, T0 + 12)
        .await
        .expect("opting in");
    assert!(!opted_out(s, "sms", "+4").await);
    s.set_opted_out("sms", "+1", true, T0 + 13)
        .await
        .expect("opting out");
    intake(
        s,
        "sms",
        sq(),
        vec![InboundEvent::OptIn(change("+1", None))],
        T0 + 14,
    )
    .await;
    assert!(
        !opted_out(s, "sms", "+1").await,
        "an opt-in undoes a direct opt-out"
    );
}

/// One step of [`statuses_never_move_backwards`]: the channel, the webhook's events, the
/// statuses applied and ignored, what the step shows, and the reply's status after it.
type StatusStep = (
    &'static str,
    Vec<InboundEvent>,
    (usize, usize),
    &'static str,
    Option<MessageStatus>,
);

/// Delivery statuses only move forward (`Delivered` then `Sent` stays `Delivered`; `Failed`
/// is final); a status for an unknown provider id, another channel's, or an inbound message's
/// is ignored and counted.
pub async fn statuses_never_move_backwards(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let sq = || queue("support");
    intake(s, "sms", sq(), vec![inbound("SM1", "+1")], T0).await;
    let mut sent = Vec::new();
    for (i, provider_id) in ["OUT1", "OUT2"].into_iter().enumerate() {
        let (_, m) = s
            .add_outbound(1, Some("alice"), draft("hi"), T0 + 1 + i as u64)
            .await
            .expect("a reply");
        let done = s
            .complete_send("sms", 1, m.seq, Ok(provider_id.to_owned()))
            .await
            .expect("completing")
            .expect("the message exists");
        assert_eq!(done.status, MessageStatus::Queued);
        sent.push(m.seq);
    }
    let status_of = |seq| async move { message(s, 1, seq).await.status };

    // (channel, events, (applied, ignored), what it shows, the first reply's status after).
    use MessageStatus::{Delivered, Read, Sent};
    let steps: [StatusStep; 8] = [
        (
            "sms",
            vec![status("OUT1", Sent)],
            (1, 0),
            "sent",
            Some(Sent),
        ),
        (
            "sms",
            vec![status("OUT1", Delivered)],
            (1, 0),
            "delivered",
            Some(Delivered),
        ),
        (
            "sms",
            vec![status("OUT1", Sent)],
            (0, 1),
            "a late `sent` after `delivered` is ignored",
            Some(Delivered),
        ),
        (
            "sms",
            vec![status("OUT1", Delivered)],
            (0, 1),
            "the same status again is no move",
            None,
        ),
        (
            "sms",
            vec![status("NOPE", Delivered)],
            (0, 1),
            "an unknown id is ignored",
            None,
        ),
        (
            "wa",
            vec![status("OUT1", Read)],
            (0, 1),
            "another channel's provider id is another message",
            None,
        ),
        (
            "sms",
            vec![status("SM1", Delivered)],
            (0, 1),
            "an inbound message's id is not a sent message's",
            None,
        ),
        (
            "sms",
            vec![status("OUT2", Delivered), status("OUT2", Sent)],
            (1, 1),
            "within one webhook too",
            Some(Delivered),
        ),
    ];
    let mut at = T0 + 10;
    let mut before = Vec::new();
    for (i, (channel, events, want, what, first_after)) in steps.into_iter().enumerate() {
        if i == 4 {
            before = all_messages(s, 1).await.iter().map(|m| m.status).collect();
        }
        if i == 7 {
            let after: Vec<MessageStatus> =
                all_messages(s, 1).await.iter().map(|m| m.status).collect();
            assert_eq!(before, after, "ignored statuses change no message");
            assert_eq!(after[0], MessageStatus::Received);
        }
        let r = intake(s, channel, sq(), events, at).await;
        at += 1;
        assert_eq!((r.statuses, r.statuses_ignored), want, "{what}");
        assert_eq!(
            r.status_changes.len(),
            r.statuses,
            "{what}: the report names each"
        );
        if let Some(expected) = first_after {
            let seq = if i == 7 { sent[1] } else { sent[0] };
            assert_eq!(status_of(seq).await, expected, "{what}");
            if let Some(last) = r.status_changes.last() {
                assert_eq!(
                    (last.conversation, last.seq, last.status),
                    (1, seq, expected),
                    "{what}"
                );
            }
        }
    }

    let r = intake(
        s,
        "sms",
        sq(),
        vec![InboundEvent::Status {
            provider_id: "OUT1".into(),
            status: MessageStatus::Failed,
            error: Some("30008 unknown error".into()),
        }],
        at,
    )
    .await;
    assert_eq!(r.statuses, 1);
    let m = message(s, 1, sent[0]).await;
    assert_eq!(
        (m.status, m.error.as_deref()),
        (MessageStatus::Failed, Some("30008 unknown error"))
    );
    let r = intake(
        s,
        "sms",
        sq(),
        vec![status("OUT1", MessageStatus::Read)],
        at + 1,
    )
    .await;
    assert_eq!(r.statuses_ignored, 1, "`failed` is final");
    assert_eq!(status_of(sent[0]).await, MessageStatus::Failed);
}

/// Runs `n` tasks made by `task` at once (they wait for each other before starting) and
/// returns their results in task order.
async fn race<T, F>(n: usize, task: impl Fn(usize) -> F) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let start = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let start = start.clone();
            let work = task(i);
            tokio::spawn(async move {
                start.wait().await;
                work.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("a racing task panicked"));
    }
    out
}

/// Of many agents taking one queued conversation at once (an update with the precondition
/// "still queued"), exactly one wins and the rest are refused; of two agents replying to a
/// queued conversation at once, one takes it and the other is refused.
pub async fn concurrent_takes_have_exactly_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 8;
    let s = store.as_ref();
    for round in 0..3u64 {
        let r = intake(
            s,
            "sms",
            queue("support"),
            vec![inbound(&format!("SMtake{round}"), &format!("+1{round}"))],
            T0 + round,
        )
        .await;
        let id = r.created[0];
        let at = move |i: usize| T0 + 1000 * (round + 1) + i as u64;
        let results = race(RACERS, |i| {
            let store = store.clone();
            async move {
                update(
                    store.as_ref(),
                    id,
                    take(&format!("r{round}-agent{i}"), at(i)),
                )
                .await
            }
        })
        .await;
        let mut winners = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok((c, agent)) => {
                    assert_eq!(c.owner.as_deref(), Some(agent.as_str()));
                    winners.push(i);
                }
                Err(UpdateError::Rejected(Rejection::Conflict(_))) => {}
                Err(e) => panic!("a losing take must be refused, got {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "exactly one of {RACERS} concurrent takes wins, got {winners:?}"
        );
        let winner = format!("r{round}-agent{}", winners[0]);
        let c = get(s, id).await;
        assert_eq!(
            (c.state, c.owner.as_deref()),
            (ConversationState::Assigned, Some(winner.as_str()))
        );
        assert_eq!(
            c.handled_by,
            std::slice::from_ref(&winner),
            "no loser left a trace"
        );
        assert_eq!(
            c.updated_at,
            at(winners[0]),
            "the stored record is the winner's"
        );
        assert_eq!(s.owned_count(&winner).await.expect("counting"), 1);
    }

    for round in 0..3u64 {
        let r = intake(
            s,
            "sms",
            queue("support"),
            vec![inbound(&format!("SMreply{round}"), &format!("+2{round}"))],
            T0 + 10 + round,
        )
        .await;
        let id = r.created[0];
        let results = race(2, |i| {
            let store = store.clone();
            async move {
                store
                    .add_outbound(id, Some(AGENTS[i]), draft(AGENTS[i]), T0 + 5000 + round)
                    .await
            }
        })
        .await;
        let mut winners = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(_) => winners.push(AGENTS[i]),
                Err(UpdateError::Rejected(Rejection::Conflict(_))) => {}
                Err(e) => panic!("the losing reply must be refused, got {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "of two agents replying to a queued conversation at once, one takes it: {winners:?}"
        );
        let c = get(s, id).await;
        assert_eq!(
            (c.state, c.owner.as_deref()),
            (ConversationState::Assigned, Some(winners[0]))
        );
        let outbound: Vec<Message> = all_messages(s, id)
            .await
            .into_iter()
            .filter(|m| m.direction == Direction::Outbound)
            .collect();
        assert_eq!(outbound.len(), 1, "the refused reply stored no message");
        assert_eq!(outbound[0].author.as_deref(), Some(winners[0]));
        let queued: Vec<_> = s
            .pending_sends()
            .await
            .expect("the outbox")
            .into_iter()
            .filter(|e| e.conversation == id)
            .collect();
        assert_eq!(queued.len(), 1, "the refused reply queued no send");
    }

    let missing = update(s, 999, |_| Ok(())).await;
    assert!(
        matches!(missing, Err(UpdateError::Rejected(Rejection::NotFound))),
        "updating a missing conversation is NotFound: {missing:?}"
    );
    let missing = s.add_outbound(999, Some("alice"), draft("x"), T0).await;
    assert!(
        matches!(missing, Err(UpdateError::Rejected(Rejection::NotFound))),
        "replying to a missing conversation is NotFound: {missing:?}"
    );
    let refused = update(s, 1, |_| Err::<(), _>(Rejection::Forbidden("no".into()))).await;
    assert!(
        matches!(refused, Err(UpdateError::Rejected(Rejection::Forbidden(_)))),
        "a change's own refusal comes back as it was: {refused:?}"
    );
    let owner = get(s, 1).await.owner.expect("conversation 1 was taken");
    apply(s, 1, close(T0 + 9000)).await;
    let closed = s
        .add_outbound(1, Some(&owner), draft("late"), T0 + 9001)
        .await;
    assert!(
        matches!(closed, Err(UpdateError::Rejected(Rejection::Conflict(_)))),
        "an agent's reply to a closed conversation is refused: {closed:?}"
    );
}

/// The outbox: a reply is stored `pending` with an entry queued for it; a retry updates the
/// entry's attempts and due time and notes why on the still-pending message; success takes the
/// entry out and records the provider's id (a later status for that id moves the message on);
/// failure for good is the dead letter (`failed`, error kept, entry gone); a retry of a send
/// no longer waiting finds nothing.
pub async fn outbox_queues_retries_and_dead_letters(store: Arc<dyn Store>) {
    let s = store.as_ref();
    intake(s, "sms", queue("support"), vec![inbound("SM1", "+1")], T0).await;
    intake(s, "sms", queue("support"), vec![inbound("SM2", "+2")], T0).await;
    assert!(s.pending_sends().await.expect("the outbox").is_empty());

    let (c, m) = s
        .add_outbound(1, Some("alice"), draft("first"), T0 + 10)
        .await
        .expect("a reply");
    assert_eq!(
        (c.state, c.owner.as_deref(), c.last_seq, c.updated_at),
        (ConversationState::Assigned, Some("alice"), 2, T0 + 10),
        "the first reply to a queued conversation takes it"
    );
    assert_eq!(
        (m.conversation, m.seq, m.direction, m.status),
        (1, 2, Direction::Outbound, MessageStatus::Pending)
    );
    assert_eq!(
        (
            m.author.as_deref(),
            m.text.as_deref(),
            m.provider_id.as_deref()
        ),
        (Some("alice"), Some("first"), None)
    );
    let stored = message(s, 1, 2).await;
    assert_eq!(
        (stored.status, stored.text.as_deref(), stored.created_at),
        (MessageStatus::Pending, Some("first"), T0 + 10)
    );
    let entry = s
        .outbox_entry(1, 2)
        .await
        .expect("the outbox")
        .expect("the reply is queued");
    assert_eq!(
        (entry.conversation, entry.seq, entry.attempts, entry.next_at),
        (1, 2, 0, 0)
    );
    s.add_outbound(1, Some("alice"), draft("second"), T0 + 11)
        .await
        .expect("a reply");
    let (c, m) = s
        .add_outbound(2, None, draft("we are closed"), T0 + 12)
        .await
        .expect("the host's notice");
    assert_eq!(
        (c.state, c.owner.as_deref(), m.author.as_deref()),
        (ConversationState::Queued, None, None),
        "the host's own message takes nothing"
    );
    let pending: Vec<(u64, u64)> = s
        .pending_sends()
        .await
        .expect("the outbox")
        .iter()
        .map(|e| (e.conversation, e.seq))
        .collect();
    assert_eq!(
        pending.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([(1, 2), (1, 3), (2, 2)]),
        "every queued send is pending"
    );
    let of_1: Vec<u64> = pending.iter().filter(|e| e.0 == 1).map(|e| e.1).collect();
    assert_eq!(
        of_1,
        [2, 3],
        "one conversation's sends come in the order queued"
    );

    let retried = s
        .record_retry(1, 2, 1, T0 + 5000, "provider answered 503")
        .await
        .expect("recording a retry")
        .expect("the send is waiting");
    assert_eq!(
        (retried.status, retried.error.as_deref()),
        (MessageStatus::Pending, Some("provider answered 503"))
    );
    assert_eq!(waiting(s, 1, 2).await, (1, T0 + 5000));
    s.record_retry(1, 2, 2, T0 + 9000, "provider answered 503 again")
        .await
        .expect("recording a retry");
    assert_eq!(waiting(s, 1, 2).await, (2, T0 + 9000));
    let m = message(s, 1, 2).await;
    assert_eq!(
        (m.status, m.error.as_deref()),
        (MessageStatus::Pending, Some("provider answered 503 again"))
    );

    let done = s
        .complete_send("sms", 1, 2, Ok("OUT-1".into()))
        .await
        .expect("completing")
        .expect("the message exists");
    assert_eq!(
        (
            done.status,
            done.provider_id.as_deref(),
            done.error.as_deref()
        ),
        (MessageStatus::Queued, Some("OUT-1"), None),
        "a sent message is queued at the provider, the retry note gone"
    );
    assert!(s.outbox_entry(1, 2).await.expect("the outbox").is_none());
    assert!(
        !s.pending_sends()
            .await
            .expect("the outbox")
            .iter()
            .any(|e| (e.conversation, e.seq) == (1, 2)),
        "a completed send is no longer pending"
    );
    assert!(
        s.record_retry(1, 2, 3, T0 + 20_000, "too late")
            .await
            .expect("recording a retry")
            .is_none(),
        "a retry after completion finds nothing"
    );
    let m = message(s, 1, 2).await;
    assert_eq!(
        (m.status, m.error.as_deref()),
        (MessageStatus::Queued, None)
    );
    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![status("OUT-1", MessageStatus::Delivered)],
        T0 + 30,
    )
    .await;
    assert_eq!(r.statuses, 1, "the provider's id finds the sent message");
    assert_eq!(message(s, 1, 2).await.status, MessageStatus::Delivered);

    s.record_retry(1, 3, 1, T0 + 6000, "timed out")
        .await
        .expect("recording a retry");
    let dead = s
        .complete_send("sms", 1, 3, Err("21211 invalid number".into()))
        .await
        .expect("completing")
        .expect("the message exists");
    assert_eq!(
        (
            dead.status,
            dead.error.as_deref(),
            dead.provider_id.as_deref()
        ),
        (MessageStatus::Failed, Some("21211 invalid number"), None),
        "the dead letter keeps the error"
    );
    assert!(s.outbox_entry(1, 3).await.expect("the outbox").is_none());
    assert!(
        s.record_retry(1, 3, 2, T0 + 7000, "again")
            .await
            .expect("recording a retry")
            .is_none()
    );
    let m = message(s, 1, 3).await;
    assert_eq!(
        (m.status, m.error.as_deref()),
        (MessageStatus::Failed, Some("21211 invalid number"))
    );
    let pending: Vec<(u64, u64)> = s
        .pending_sends()
        .await
        .expect("the outbox")
        .iter()
        .map(|e| (e.conversation, e.seq))
        .collect();
    assert_eq!(pending, [(2, 2)]);
    assert!(
        s.complete_send("sms", 1, 99, Ok("X".into()))
            .await
            .expect("completing")
            .is_none(),
        "completing a send without a message finds nothing"
    );
    assert!(
        s.record_retry(1, 99, 1, T0, "x")
            .await
            .expect("recording a retry")
            .is_none()
    );
}

/// A waiting send is claimed by one holder at a time: a claim stands against others until
/// its lease ends, its holder renews it, concurrent claims have one winner, a retry keeps it
/// waiting (claimable), and a completed send can no longer be claimed.
pub async fn sends_are_claimed_by_one_holder_at_a_time(store: Arc<dyn Store>) {
    let s = store.as_ref();
    intake(s, "sms", queue("support"), vec![inbound("SM1", "+1")], T0).await;
    s.add_outbound(1, Some("alice"), draft("hello"), T0 + 1)
        .await
        .expect("a reply");
    let claim = |holder: &'static str, now: u64| {
        let store = store.clone();
        async move {
            store
                .claim_send(1, 2, holder, now, 1_000)
                .await
                .expect("claiming a send")
        }
    };
    let entry = claim("host-a", T0 + 10)
        .await
        .expect("a free send is granted");
    assert_eq!((entry.conversation, entry.seq, entry.attempts), (1, 2, 0));
    assert!(
        claim("host-b", T0 + 20).await.is_none(),
        "another holder is refused while the lease stands"
    );
    assert!(
        claim("host-a", T0 + 500).await.is_some(),
        "the holder renews its own claim"
    );
    assert!(
        claim("host-b", T0 + 1_400).await.is_none(),
        "the renewed lease runs from the renewal"
    );
    assert!(
        claim("host-b", T0 + 1_500).await.is_some(),
        "a lapsed claim goes to the next holder"
    );
    assert!(claim("host-a", T0 + 1_600).await.is_none());
    s.record_retry(1, 2, 1, T0 + 5_000, "provider answered 503")
        .await
        .expect("recording a retry")
        .expect("the send is waiting");
    let entry = claim("host-a", T0 + 10_000)
        .await
        .expect("a retry is claimable once the lease lapsed");
    assert_eq!(
        (entry.attempts, entry.next_at),
        (1, T0 + 5_000),
        "the claim hands out the retry's state"
    );

    // Eight hosts racing for a lapsed claim: one wins.
    let holders = ["h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"];
    let won = race(8, |i| {
        let store = store.clone();
        async move {
            store
                .claim_send(1, 2, holders[i], T0 + 20_000, 1_000)
                .await
                .expect("claiming a send")
                .is_some()
        }
    })
    .await;
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "concurrent claims have one winner: {won:?}"
    );

    s.complete_send("sms", 1, 2, Ok("SMout".into()))
        .await
        .expect("completing")
        .expect("the message");
    assert!(
        claim("host-a", T0 + 60_000).await.is_none(),
        "a completed send is no longer claimable"
    );
    assert!(
        s.claim_send(9, 9, "host-a", T0, 1_000)
            .await
            .expect("claiming")
            .is_none(),
        "a send that was never queued is not claimable"
    );
}

/// A send moves to its fallback channel once: the message records from where, to where and
/// why, its attempts start again from none, due at once; a second move changes nothing; the
/// fallback's provider id is indexed under the fallback channel, so that channel's status
/// callbacks find the message and the first channel's do not; a send no longer waiting does
/// not move.
pub async fn a_send_moves_to_its_fallback_once(store: Arc<dyn Store>) {
    let s = store.as_ref();
    intake(s, "sms", queue("support"), vec![inbound("SM1", "+1")], T0).await;
    s.add_outbound(1, Some("alice"), draft("hello"), T0 + 10)
        .await
        .expect("a reply");
    s.record_retry(1, 2, 3, T0 + 5000, "attempt 3 failed: unavailable: 503")
        .await
        .expect("recording a retry");
    let failover = Failover {
        from: "sms".into(),
        to: "backup".into(),
        reason: "dead-lettered after 3 attempts: unavailable: 503".into(),
        at: T0 + 6000,
    };
    let moved = s
        .move_send(1, 2, &failover)
        .await
        .expect("moving the send")
        .expect("the send is waiting");
    assert_eq!(moved.failover.as_ref(), Some(&failover));
    assert_eq!(moved.status, MessageStatus::Pending);
    assert_eq!(moved.send_channel("sms"), "backup");
    assert_eq!(
        moved.error.as_deref(),
        Some("moved to channel backup: dead-lettered after 3 attempts: unavailable: 503")
    );
    assert_eq!(
        waiting(s, 1, 2).await,
        (0, 0),
        "attempts start again on the fallback, at once"
    );
    assert_eq!(message(s, 1, 2).await.failover.as_ref(), Some(&failover));

    s.record_retry(1, 2, 1, T0 + 9000, "attempt 1 failed: timed out")
        .await
        .expect("recording a retry");
    let again = Failover {
        from: "backup".into(),
        to: "third".into(),
        reason: "unavailable".into(),
        at: T0 + 9500,
    };
    let unchanged = s
        .move_send(1, 2, &again)
        .await
        .expect("moving the send")
        .expect("the send is waiting");
    assert_eq!(
        unchanged.failover.as_ref(),
        Some(&failover),
        "a send moves once"
    );
    assert_eq!(
        waiting(s, 1, 2).await,
        (1, T0 + 9000),
        "a refused second move leaves the attempts as they stand"
    );

    let sent = s
        .complete_send("backup", 1, 2, Ok("TS-1".into()))
        .await
        .expect("completing")
        .expect("the message exists");
    assert_eq!(
        (
            sent.status,
            sent.provider_id.as_deref(),
            sent.error.as_deref()
        ),
        (MessageStatus::Queued, Some("TS-1"), None)
    );
    assert_eq!(
        sent.failover.as_ref(),
        Some(&failover),
        "the move stays on record"
    );
    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![status("TS-1", MessageStatus::Delivered)],
        T0 + 10_000,
    )
    .await;
    assert_eq!(r.statuses, 0, "the first channel never sent TS-1");
    let r = intake(
        s,
        "backup",
        queue("support"),
        vec![status("TS-1", MessageStatus::Delivered)],
        T0 + 10_001,
    )
    .await;
    assert_eq!(r.statuses, 1, "the fallback's status callback finds it");
    assert_eq!(message(s, 1, 2).await.status, MessageStatus::Delivered);
    assert!(
        s.move_send(1, 2, &failover)
            .await
            .expect("moving the send")
            .is_none(),
        "a send no longer waiting does not move"
    );
}

/// The event log: ids start after `last_event_id()` and only grow, `events_after` resumes in
/// order with its limit, and many concurrent appends get distinct ids in the order a reader
/// tailing the log sees them, with nothing lost.
pub async fn event_log_orders_and_resumes(store: Arc<dyn Store>) {
    let s = store.as_ref();
    assert_eq!(
        s.last_event_id().await.expect("the log"),
        0,
        "a new log is empty"
    );
    assert!(s.events_after(0, 10).await.expect("the log").is_empty());
    let mut appended = Vec::new();
    for i in 0..5u64 {
        let e = s
            .append_event(
                if i % 2 == 0 { "message" } else { "assigned" },
                vec!["alice".into(), "bob".into()],
                (i != 3).then_some(i + 1),
                json!({ "n": i }),
                T0 + i,
            )
            .await
            .expect("appending");
        appended.push(e);
    }
    assert_eq!(
        appended[0].id, 1,
        "the first event follows last_event_id() (0)"
    );
    for w in appended.windows(2) {
        assert!(
            w[1].id > w[0].id,
            "ids only grow: {} then {}",
            w[0].id,
            w[1].id
        );
    }
    let last = appended[4].id;
    assert_eq!(s.last_event_id().await.expect("the log"), last);
    let all = s.events_after(0, 100).await.expect("the log");
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        appended.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let e = &all[1];
    assert_eq!(
        (
            e.kind.as_str(),
            e.audience.as_slice(),
            e.conversation.as_deref(),
            e.at
        ),
        (
            "assigned",
            &["alice".to_owned(), "bob".to_owned()][..],
            Some("2"),
            T0 + 1
        )
    );
    assert_eq!(e.data, json!({ "n": 1 }));
    assert_eq!(all[3].conversation, None);
    let ids =
        |events: Vec<crate::model::StoredEvent>| events.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.events_after(appended[1].id, 2).await.expect("the log")),
        [appended[2].id, appended[3].id],
        "resuming after an id, with the limit honoured"
    );
    assert!(s.events_after(last, 10).await.expect("the log").is_empty());
    assert!(s.events_after(0, 0).await.expect("the log").is_empty());

    // Six writers append 20 events each while a reader tails the log.
    const WRITERS: usize = 6;
    const EACH: usize = 20;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = last;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = store.events_after(cursor, 7).await.expect("tailing");
                assert!(batch.len() <= 7, "the limit is honoured");
                for e in &batch {
                    assert!(
                        e.id > cursor,
                        "events come in order: {} after {cursor}",
                        e.id
                    );
                    cursor = e.id;
                    seen.push(e.id);
                }
                if batch.is_empty() && finished {
                    break;
                }
                // Leaves the worker thread to the writers between reads.
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let written = race(WRITERS, |w| {
        let store = store.clone();
        async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let e = store
                    .append_event("w", vec![], None, json!({ "w": w, "i": i }), T0 + 100)
                    .await
                    .expect("appending");
                ids.push(e.id);
            }
            ids
        }
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.expect("the reader panicked");
    for ids in &written {
        assert!(
            ids.windows(2).all(|w| w[1] > w[0]),
            "one writer's appends get growing ids: {ids:?}"
        );
    }
    let mut every: Vec<u64> = written.concat();
    every.sort_unstable();
    let distinct: BTreeSet<u64> = every.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        WRITERS * EACH,
        "concurrent appends get distinct ids"
    );
    assert!(every[0] > last, "new events come after the old ones");
    let logged = s.events_after(last, 10_000).await.expect("the log");
    assert_eq!(
        logged.iter().map(|e| e.id).collect::<Vec<_>>(),
        every,
        "the log holds every appended event, in id order"
    );
    let payloads: BTreeSet<(u64, u64)> = logged
        .iter()
        .map(|e| {
            (
                e.data["w"].as_u64().unwrap_or(99),
                e.data["i"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(payloads.len(), WRITERS * EACH, "each event is logged once");
    assert_eq!(
        seen, every,
        "a reader resuming from its last id while others append misses nothing"
    );
    assert_eq!(
        s.last_event_id().await.expect("the log"),
        *every.last().expect("events")
    );
}

/// Logs one `message` event per stored message, saying whether its customer is new.
struct MessageNotices;

impl IntakeNotices for MessageNotices {
    fn notices(&self, channel: &str, message: &StoredInbound, new_contact: bool) -> Vec<NewEvent> {
        vec![NewEvent {
            kind: "message".into(),
            audience: vec![message.queue.clone()],
            conversation: Some(message.conversation),
            data: json!({
                "channel": channel,
                "seq": message.seq,
                "customer": message.customer,
                "new_contact": new_contact,
            }),
        }]
    }
}

/// A reply and a send's outcome log the events their notices make of what was written, in the
/// same write and in order after what was logged before; a write refused or finding nothing
/// logs nothing; appending no events logs nothing.
pub async fn replies_and_outcomes_log_their_notices(store: Arc<dyn Store>) {
    let s = store.as_ref();
    intake(s, "sms", queue("support"), vec![inbound("M1", "+1")], T0).await;
    let first = s
        .append_event("presence", vec!["alice".into()], None, json!({}), T0 + 1)
        .await
        .expect("appending");
    let said = |c: &Conversation, m: &Message| {
        vec![NewEvent {
            kind: "outbound".into(),
            audience: c.owner.iter().cloned().collect(),
            conversation: Some(c.id),
            data: json!({"seq": m.seq, "text": m.text}),
        }]
    };
    let (conv, reply, logged) = s
        .add_outbound_with(1, Some("alice"), draft("hi"), T0 + 2, &said)
        .await
        .expect("a reply");
    assert_eq!(
        conv.owner.as_deref(),
        Some("alice"),
        "the first reply takes it"
    );
    assert_eq!(
        logged
            .iter()
            .map(|e| (e.kind.as_str(), e.audience.clone(), e.data.clone(), e.at))
            .collect::<Vec<_>>(),
        [(
            "outbound",
            vec!["alice".to_owned()],
            json!({"seq": reply.seq, "text": "hi"}),
            T0 + 2
        )],
        "the notice sees the conversation and the message as written"
    );
    assert!(logged[0].id > first.id, "logged after what came before");

    let settled = |m: &Message| {
        vec![
            NewEvent {
                kind: "status".into(),
                audience: vec!["alice".into()],
                conversation: Some(m.conversation),
                data: json!({"seq": m.seq, "status": m.status, "id": m.provider_id}),
            },
            NewEvent {
                kind: "audit".into(),
                audience: vec!["alice".into()],
                conversation: Some(m.conversation),
                data: json!({"seq": m.seq}),
            },
        ]
    };
    let (sent, outcome) = s
        .complete_send_with("sms", 1, reply.seq, Ok("OUT-1".into()), T0 + 3, &settled)
        .await
        .expect("completing")
        .expect("the message exists");
    assert_eq!(sent.provider_id.as_deref(), Some("OUT-1"));
    assert!(
        s.outbox_entry(1, reply.seq)
            .await
            .expect("the outbox")
            .is_none()
    );
    assert_eq!(
        outcome
            .iter()
            .map(|e| (e.kind.as_str(), e.data.clone(), e.at))
            .collect::<Vec<_>>(),
        [
            (
                "status",
                json!({"seq": reply.seq, "status": sent.status, "id": "OUT-1"}),
                T0 + 3
            ),
            ("audit", json!({"seq": reply.seq}), T0 + 3),
        ],
        "the notices see the message as recorded, logged in their order"
    );
    assert!(outcome[0].id > logged[0].id && outcome[1].id > outcome[0].id);

    let last = outcome[1].id;
    let missing = s
        .complete_send_with("sms", 1, 99, Ok("X".into()), T0 + 4, &settled)
        .await
        .expect("completing a missing send");
    assert!(missing.is_none(), "no message, no outcome");
    let refused = s
        .add_outbound_with(999, Some("alice"), draft("x"), T0 + 4, &said)
        .await;
    assert!(
        matches!(refused, Err(UpdateError::Rejected(Rejection::NotFound))),
        "a reply to no conversation is refused: {refused:?}"
    );
    assert!(
        s.append_events(Vec::new(), T0 + 5)
            .await
            .expect("appending nothing")
            .is_empty()
    );
    let all = s.events_after(first.id, 100).await.expect("the log");
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        logged
            .iter()
            .chain(&outcome)
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        "the log holds exactly what the writes returned"
    );
    assert_eq!(s.last_event_id().await.expect("the last id"), last);
}

/// Intake with notices logs the events they name for each stored message (none for a
/// duplicate) in the same write: the report carries them with the ids the log gives them,
/// after every event logged before, and concurrent intakes and appends share one log without
/// losing or reordering any; plain intake logs nothing.
pub async fn intake_logs_its_notices_with_the_messages(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let notices: Arc<dyn IntakeNotices> = Arc::new(MessageNotices);
    s.put_contact(&Contact {
        address: "+2".into(),
        name: "Known".into(),
    })
    .await
    .expect("a contact");
    let first = s
        .append_event("presence", vec!["alice".into()], None, json!({}), T0)
        .await
        .expect("appending");
    let r = s
        .intake_with(
            "sms",
            &queue("support"),
            vec![
                inbound("M1", "+1"),
                inbound("M1", "+1"),
                inbound("M2", "+2"),
            ],
            T0 + 1,
            notices.clone(),
        )
        .await
        .expect("intake");
    assert_eq!((r.stored, r.duplicates), (2, 1));
    assert_eq!(
        r.events.len(),
        2,
        "one event per stored message, none for the duplicate"
    );
    assert!(
        r.events[0].id > first.id && r.events[1].id > r.events[0].id,
        "logged after what was logged before, in order: {:?}",
        r.events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let logged = s.events_after(first.id, 100).await.expect("the log");
    assert_eq!(
        logged
            .iter()
            .map(|e| (e.id, e.data.clone()))
            .collect::<Vec<_>>(),
        r.events
            .iter()
            .map(|e| (e.id, e.data.clone()))
            .collect::<Vec<_>>(),
        "the report carries what the log holds"
    );
    assert_eq!(
        logged
            .iter()
            .map(|e| (
                e.kind.as_str(),
                e.conversation.as_deref(),
                e.data["customer"].as_str(),
                e.data["new_contact"].as_bool(),
                e.at
            ))
            .collect::<Vec<_>>(),
        [
            ("message", Some("1"), Some("+1"), Some(true), T0 + 1),
            ("message", Some("2"), Some("+2"), Some(false), T0 + 1),
        ],
        "a created conversation's customer is new unless the directory knows them"
    );
    let r = s
        .intake_with(
            "sms",
            &queue("support"),
            vec![inbound("M3", "+1")],
            T0 + 2,
            notices.clone(),
        )
        .await
        .expect("intake");
    assert_eq!(r.events.len(), 1);
    assert_eq!(
        r.events[0].data["new_contact"].as_bool(),
        Some(false),
        "an existing conversation's customer is not new"
    );
    let last = s.last_event_id().await.expect("the log");
    assert_eq!(last, r.events[0].id);
    let r = s
        .intake_with(
            "sms",
            &queue("support"),
            vec![inbound("M1", "+1"), inbound("M3", "+1")],
            T0 + 3,
            notices.clone(),
        )
        .await
        .expect("intake");
    assert!(
        r.events.is_empty() && r.duplicates == 2,
        "a retried webhook logs nothing again"
    );
    intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("M4", "+3")],
        T0 + 4,
    )
    .await;
    assert_eq!(
        s.last_event_id().await.expect("the log"),
        last,
        "plain intake logs nothing"
    );

    // Intakes and plain appends at once share the log.
    let results = race(12, |i| {
        let store = store.clone();
        let notices = notices.clone();
        async move {
            if i % 3 == 0 {
                let e = store
                    .append_event("w", vec![], None, json!({ "task": i }), T0 + 5)
                    .await
                    .expect("appending");
                vec![e]
            } else {
                let events = (0..3)
                    .map(|j| inbound(&format!("R{i}-{j}"), &format!("+5{i}")))
                    .collect();
                store
                    .intake_with("sms", &queue("support"), events, T0 + 5, notices)
                    .await
                    .expect("intake")
                    .events
            }
        }
    })
    .await;
    let reported: BTreeMap<u64, serde_json::Value> = results
        .iter()
        .flatten()
        .map(|e| (e.id, e.data.clone()))
        .collect();
    assert_eq!(
        reported.len(),
        4 + 8 * 3,
        "every event has an id of its own"
    );
    let logged = s.events_after(last, 1000).await.expect("the log");
    assert_eq!(
        logged
            .iter()
            .map(|e| (e.id, e.data.clone()))
            .collect::<BTreeMap<_, _>>(),
        reported,
        "the log holds exactly what the calls reported"
    );
    assert!(logged.windows(2).all(|w| w[1].id > w[0].id));
    for events in &results {
        assert!(
            events.windows(2).all(|w| w[1].id > w[0].id),
            "one webhook's events are logged in order"
        );
    }
}

/// Stores `webhooks * per` conversations through intake (channels `sms`/`wa`, queues
/// `support`/`sales`, several created in one webhook so that `updated_at` ties), then moves
/// them through `update()` into every state: queued, assigned, closed, transferred, closed
/// after a transfer, put back in the other queue. Returns them all, by id.
async fn populate(store: &Arc<dyn Store>, webhooks: u64, per: u64) -> Vec<Conversation> {
    let created: Vec<_> = (0..webhooks)
        .map(|k| {
            let store = store.clone();
            tokio::spawn(async move {
                let channel = if k % 3 == 0 { "wa" } else { "sms" };
                let to = if k % 2 == 0 { "support" } else { "sales" };
                let events = (0..per)
                    .map(|j| inbound(&format!("P{k}-{j}"), &format!("+1666{k:04}{j:02}")))
                    .collect();
                store.intake(channel, &queue(to), events, T0 + k).await
            })
        })
        .collect();
    for task in created {
        let r = task.await.expect("intake task").expect("intake");
        assert_eq!(r.stored as u64, per);
    }
    let n = webhooks * per;
    let changed: Vec<_> = (1..=n)
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = store.as_ref();
                let agent = AGENTS[(id % 3) as usize];
                let other = AGENTS[((id + 1) % 3) as usize];
                let at = T0 + 10_000 + id / 4;
                match id % 10 {
                    3 | 4 => {
                        apply(s, id, take(agent, at)).await;
                    }
                    5 | 6 => {
                        apply(s, id, take(agent, at)).await;
                        apply(s, id, close(at + 1)).await;
                    }
                    7 => {
                        apply(s, id, take(agent, at)).await;
                        apply(s, id, hand_to(other, at + 1)).await;
                        apply(s, id, close(at + 2)).await;
                    }
                    8 => {
                        apply(s, id, take(agent, at)).await;
                        apply(s, id, hand_to(other, at + 1)).await;
                    }
                    9 => {
                        apply(s, id, take(agent, at)).await;
                        apply(s, id, requeue(at + 1)).await;
                    }
                    _ => {}
                }
            })
        })
        .collect();
    for task in changed {
        task.await.expect("update task");
    }
    let mut all = Vec::new();
    for id in 1..=n {
        all.push(get(store.as_ref(), id).await);
    }
    assert!(
        store.conversation(n + 1).await.expect("reading").is_none(),
        "{n} conversations have ids 1 to {n}"
    );
    all
}

/// Whether `selector`'s index range holds `c`.
fn selects(selector: &Selector, c: &Conversation) -> bool {
    match selector {
        Selector::Queue { queue, state } => c.queue == *queue && c.state == *state,
        Selector::OwnedBy(agent) => {
            c.state == ConversationState::Assigned && c.owner.as_deref() == Some(agent.as_str())
        }
        Selector::HandledBy(agent) => {
            c.state == ConversationState::Closed && c.handled_by.iter().any(|a| a == agent)
        }
    }
}

/// The ids `query` must list out of `all`, in list order (its `after` and `limit` aside).
fn expected(all: &[Conversation], query: &ConversationQuery) -> Vec<u64> {
    let mut hits: Vec<&Conversation> = all
        .iter()
        .filter(|c| {
            query.any_of.iter().any(|s| selects(s, c))
                && query.channel.as_ref().is_none_or(|ch| *ch == c.channel)
                && query.queue.as_ref().is_none_or(|q| *q == c.queue)
                && query.state.is_none_or(|st| st == c.state)
                && query
                    .owner
                    .as_ref()
                    .is_none_or(|o| c.owner.as_deref() == Some(o.as_str()))
                && query.updated_since.is_none_or(|t| c.updated_at >= t)
        })
        .collect();
    hits.sort_by_key(|c| Reverse((c.updated_at, c.id)));
    hits.iter().map(|c| c.id).collect()
}

/// Pages through `query` `limit` at a time from the start, checking each page: at most
/// `limit` items, full unless it is the last, in list order across pages, the cursor the last
/// item's, none after the last page.
async fn page_through(
    store: &dyn Store,
    query: &ConversationQuery,
    limit: usize,
) -> Vec<Conversation> {
    let mut q = query.clone();
    q.limit = limit;
    q.after = None;
    let mut out: Vec<Conversation> = Vec::new();
    for _ in 0..100_000 {
        let page = store
            .conversations(&q)
            .await
            .unwrap_or_else(|e| panic!("listing {query:?} failed: {e}"));
        assert!(
            page.items.len() <= limit,
            "a page of {} for limit {limit} ({query:?})",
            page.items.len()
        );
        for c in &page.items {
            if let Some(prev) = out.last() {
                assert!(
                    (c.updated_at, c.id) < (prev.updated_at, prev.id),
                    "list order is updated_at desc, id desc: {} ({}) after {} ({}) in {query:?}",
                    c.id,
                    c.updated_at,
                    prev.id,
                    prev.updated_at
                );
            }
            out.push(c.clone());
        }
        match page.next {
            Some(cursor) => {
                assert_eq!(
                    page.items.len(),
                    limit,
                    "a page before the last is full ({query:?})"
                );
                let last = page.items.last().expect("a full page");
                assert_eq!(
                    cursor,
                    ConversationCursor::of(last),
                    "the cursor is the last item's position"
                );
                q.after = Some(cursor);
            }
            None => return out,
        }
    }
    panic!("paging {query:?} never ended");
}

fn any_of(selectors: Vec<Selector>) -> ConversationQuery {
    ConversationQuery {
        any_of: selectors,
        ..ConversationQuery::default()
    }
}

fn in_queue(queue: &str, state: ConversationState) -> Selector {
    Selector::Queue {
        queue: queue.to_owned(),
        state,
    }
}

const STATES: [ConversationState; 3] = [
    ConversationState::Queued,
    ConversationState::Assigned,
    ConversationState::Closed,
];

/// Lists of several hundred conversations page in order (most recently updated first, ties by
/// id) through every selector kind and their combinations (a conversation two selectors hold
/// is listed once), narrowed by channel, queue, state, owner and `updated_since`: the pages
/// together are exactly the conversations the stored records say, each once.
pub async fn lists_page_every_selector_in_order(store: Arc<dyn Store>) {
    let all = populate(&store, 80, 4).await;
    let s = store.as_ref();
    let every_queue: Vec<Selector> = ["support", "sales"]
        .into_iter()
        .flat_map(|q| STATES.map(|st| in_queue(q, st)))
        .collect();
    let mut queries: Vec<ConversationQuery> = Vec::new();
    queries.extend(every_queue.iter().map(|sel| any_of(vec![sel.clone()])));
    for agent in AGENTS {
        queries.push(any_of(vec![Selector::OwnedBy(agent.into())]));
        queries.push(any_of(vec![Selector::HandledBy(agent.into())]));
    }
    let recent = any_of(vec![
        in_queue("support", ConversationState::Queued),
        in_queue("sales", ConversationState::Queued),
        Selector::OwnedBy("alice".into()),
    ]);
    let overlapping_open = any_of(vec![
        in_queue("support", ConversationState::Assigned),
        in_queue("sales", ConversationState::Assigned),
        Selector::OwnedBy("alice".into()),
        Selector::OwnedBy("bob".into()),
    ]);
    let overlapping_closed = any_of(vec![
        Selector::HandledBy("alice".into()),
        Selector::HandledBy("bob".into()),
        Selector::HandledBy("carol".into()),
        in_queue("support", ConversationState::Closed),
    ]);
    let monitor = any_of(STATES.map(|st| in_queue("support", st)).to_vec());
    let mid = {
        let mut times: Vec<u64> = all.iter().map(|c| c.updated_at).collect();
        times.sort_unstable();
        times[times.len() / 2]
    };
    let everything = any_of(every_queue.clone());
    queries.extend([
        recent.clone(),
        overlapping_open.clone(),
        overlapping_closed.clone(),
        monitor.clone(),
        ConversationQuery {
            channel: Some("wa".into()),
            ..monitor.clone()
        },
        ConversationQuery {
            state: Some(ConversationState::Assigned),
            ..monitor.clone()
        },
        ConversationQuery {
            owner: Some("bob".into()),
            ..everything.clone()
        },
        ConversationQuery {
            queue: Some("sales".into()),
            ..any_of(vec![
                Selector::OwnedBy("alice".into()),
                Selector::OwnedBy("bob".into()),
            ])
        },
        ConversationQuery {
            updated_since: Some(mid),
            ..everything.clone()
        },
        ConversationQuery {
            channel: Some("sms".into()),
            state: Some(ConversationState::Closed),
            updated_since: Some(T0 + 10_000 + 20),
            ..overlapping_closed.clone()
        },
        everything.clone(),
    ]);

    // The data covers what the queries test.
    assert_eq!(
        expected(&all, &everything).len(),
        all.len(),
        "every conversation is in a queue range"
    );
    for q in &queries {
        assert!(!expected(&all, q).is_empty(), "the data leaves {q:?} empty");
    }
    let count = |sels: &[Selector]| {
        sels.iter()
            .map(|sel| all.iter().filter(|c| selects(sel, c)).count())
            .sum::<usize>()
    };
    for q in [&overlapping_open, &overlapping_closed] {
        assert!(
            expected(&all, q).len() < count(&q.any_of),
            "the data has conversations that two of {q:?}'s selectors hold"
        );
    }
    let mut times: Vec<(u64, u64)> = all.iter().map(|c| (c.updated_at, c.id)).collect();
    times.sort_unstable();
    assert!(
        times.windows(2).any(|w| w[0].0 == w[1].0),
        "the data has updated_at ties"
    );

    for q in &queries {
        let want = expected(&all, q);
        for limit in [7, 50, 1000] {
            let listed = page_through(s, q, limit).await;
            let ids: Vec<u64> = listed.iter().map(|c| c.id).collect();
            assert_eq!(ids, want, "listing {q:?} {limit} at a time");
            for c in &listed {
                let stored = &all[(c.id - 1) as usize];
                assert_eq!(
                    (c.updated_at, c.state, &c.owner, &c.queue),
                    (
                        stored.updated_at,
                        stored.state,
                        &stored.owner,
                        &stored.queue
                    ),
                    "a listed conversation is the stored one"
                );
            }
        }
    }
    let one_at_a_time = page_through(s, &recent, 1).await;
    assert_eq!(
        one_at_a_time.iter().map(|c| c.id).collect::<Vec<_>>(),
        expected(&all, &recent),
        "one at a time"
    );
    let page = s
        .conversations(&ConversationQuery {
            limit: 50,
            ..ConversationQuery::default()
        })
        .await
        .expect("listing");
    assert!(
        page.items.is_empty() && page.next.is_none(),
        "no selector lists nothing"
    );
}

/// Paging through a list while conversations are created, updated, and leave the list between
/// pages: no page repeats a conversation, every conversation that did not move is listed once,
/// and the ones that moved are found with `updated_since`.
pub async fn list_pages_stay_stable_under_writes(store: Arc<dyn Store>) {
    let all = populate(&store, 30, 4).await;
    let s = store.as_ref();
    let query = ConversationQuery {
        any_of: vec![
            in_queue("support", ConversationState::Queued),
            in_queue("sales", ConversationState::Queued),
            Selector::OwnedBy("alice".into()),
        ],
        limit: 8,
        ..ConversationQuery::default()
    };
    let want = expected(&all, &query);
    assert!(want.len() > 4 * 8, "several pages to list: {}", want.len());
    let by_id: BTreeMap<u64, &Conversation> = all.iter().map(|c| (c.id, c)).collect();
    let start = T0 + 1_000_000;
    let mut now = start;
    let mut q = query.clone();
    let mut listed: Vec<(u64, u64)> = Vec::new();
    let mut seen = HashSet::new();
    let mut moved = HashSet::new();
    let mut created = Vec::new();
    for round in 0.. {
        let page = s.conversations(&q).await.expect("listing");
        for c in &page.items {
            assert!(
                seen.insert(c.id),
                "conversation {} listed twice (moved: {})",
                c.id,
                moved.contains(&c.id)
            );
            listed.push((c.updated_at, c.id));
        }
        let Some(cursor) = page.next else { break };
        q.after = Some(cursor);
        let remaining: Vec<u64> = want
            .iter()
            .copied()
            .filter(|id| !seen.contains(id) && !moved.contains(id))
            .collect();
        // A new conversation arrives.
        now += 1;
        let r = intake(
            s,
            "sms",
            queue("support"),
            vec![inbound(&format!("NEW{round}"), &format!("+1777{round:04}"))],
            now,
        )
        .await;
        created.extend(r.created);
        // One already listed is updated.
        now += 1;
        let again = listed[listed.len() / 2].1;
        apply(s, again, touch(now)).await;
        moved.insert(again);
        if remaining.len() < 6 {
            continue;
        }
        // The very next one gets a message, the oldest is updated, one in the middle leaves.
        let next = by_id[&remaining[0]];
        now += 1;
        intake(
            s,
            &next.channel,
            queue(&next.queue),
            vec![inbound(&format!("MOVE{round}"), &next.customer)],
            now,
        )
        .await;
        moved.insert(next.id);
        now += 1;
        let oldest = remaining[remaining.len() - 1];
        apply(s, oldest, touch(now)).await;
        moved.insert(oldest);
        now += 1;
        let leaving = remaining[remaining.len() / 2];
        if by_id[&leaving].state == ConversationState::Queued {
            apply(s, leaving, hand_to("carol", now)).await;
        } else {
            apply(s, leaving, close(now)).await;
        }
        moved.insert(leaving);
    }
    assert!(
        !created.is_empty() && moved.len() > 6,
        "the writes happened"
    );
    for w in listed.windows(2) {
        assert!(
            w[1] < w[0],
            "listed out of order: {:?} after {:?}",
            w[1],
            w[0]
        );
    }
    let wanted: HashSet<u64> = want.iter().copied().collect();
    for id in &seen {
        assert!(
            wanted.contains(id),
            "conversation {id} was listed though it sorted before the first page (created or moved meanwhile)"
        );
    }
    for id in &want {
        assert!(
            seen.contains(id) || moved.contains(id),
            "conversation {id} did not move and was skipped"
        );
    }

    let mut now_all = Vec::new();
    for id in 1..=all.len() as u64 + created.len() as u64 {
        now_all.push(get(s, id).await);
    }
    let since = ConversationQuery {
        updated_since: Some(start),
        ..query.clone()
    };
    let changed = page_through(s, &since, 5).await;
    assert_eq!(
        changed.iter().map(|c| c.id).collect::<Vec<_>>(),
        expected(&now_all, &since),
        "updated_since finds what changed while paging"
    );
    for id in &created {
        assert!(
            changed.iter().any(|c| c.id == *id),
            "new conversation {id} is found"
        );
    }
    let after = page_through(s, &query, 8).await;
    assert_eq!(
        after.iter().map(|c| c.id).collect::<Vec<_>>(),
        expected(&now_all, &query),
        "a fresh listing reflects every write"
    );
}

/// Paging while other tasks keep updating the listed conversations (each update moves one to
/// the front, later than any before it): every page is in list order with the cursor of its last item, and no pass over
/// the list repeats a conversation, however the writes interleave with a page's reads.
pub async fn list_pages_stay_ordered_under_concurrent_writes(store: Arc<dyn Store>) {
    const CONVERSATIONS: u64 = 60;
    const WRITERS: u64 = 4;
    const WRITES: u64 = 400;
    let events = (0..CONVERSATIONS)
        .map(|i| inbound(&format!("C{i}"), &format!("+1888{i:04}")))
        .collect();
    intake(store.as_ref(), "sms", queue("support"), events, T0).await;
    let clock = Arc::new(std::sync::atomic::AtomicU64::new(T0 + 1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                for i in 0..WRITES {
                    // Each writer has its own conversations, so each one's updates only move it forward.
                    let id = 1 + w + WRITERS * (i * 7 % (CONVERSATIONS / WRITERS));
                    let now = clock.fetch_add(1, Ordering::SeqCst);
                    apply(store.as_ref(), id, touch(now)).await;
                }
            })
        })
        .collect();
    let query = ConversationQuery {
        any_of: vec![in_queue("support", ConversationState::Queued)],
        limit: 5,
        ..ConversationQuery::default()
    };
    let s = store.as_ref();
    let mut passes = 0;
    loop {
        let writing = writers.iter().any(|w| !w.is_finished());
        let mut q = query.clone();
        let mut seen = HashSet::new();
        let mut last: Option<(u64, u64)> = None;
        loop {
            let page = s.conversations(&q).await.expect("listing");
            assert!(page.items.len() <= q.limit);
            for c in &page.items {
                assert!(
                    last.is_none_or(|l| (c.updated_at, c.id) < l),
                    "pass {passes}: conversation {} ({}) listed after {last:?}",
                    c.id,
                    c.updated_at
                );
                last = Some((c.updated_at, c.id));
                assert!(
                    seen.insert(c.id),
                    "pass {passes}: conversation {} listed twice",
                    c.id
                );
            }
            // A backend whose reads never wait would otherwise keep this task on its worker
            // thread while the writers wait for one.
            tokio::task::yield_now().await;
            match page.next {
                Some(cursor) => {
                    let tail = page
                        .items
                        .last()
                        .expect("a page before the last is not empty");
                    assert_eq!(
                        cursor,
                        ConversationCursor::of(tail),
                        "the cursor is the last item's"
                    );
                    q.after = Some(cursor);
                }
                None => break,
            }
        }
        passes += 1;
        if !writing {
            assert_eq!(
                seen.len() as u64,
                CONVERSATIONS,
                "once writes stop, a pass lists them all"
            );
            break;
        }
    }
    for w in writers {
        w.await.expect("a writer panicked");
    }
}

/// `owned_count` and `queued_ids` follow takes, transfers, closes, requeues and reopens.
pub async fn owned_counts_and_queued_ids_follow_the_state(store: Arc<dyn Store>) {
    let s = store.as_ref();
    for i in 1..=4 {
        intake(
            s,
            "sms",
            queue("support"),
            vec![inbound(&format!("SM{i}"), &format!("+{i}"))],
            T0,
        )
        .await;
    }
    let queued = || async move {
        let mut ids = s.queued_ids().await.expect("queued ids");
        ids.sort_unstable();
        ids
    };
    let owned = |agent: &'static str| async move { s.owned_count(agent).await.expect("counting") };
    let waiting = |q: &'static str| async move { s.queued_count(q).await.expect("counting") };
    assert_eq!(queued().await, [1, 2, 3, 4]);
    assert_eq!((waiting("support").await, waiting("sales").await), (4, 0));
    assert_eq!(owned("alice").await, 0);
    apply(s, 1, take("alice", T0 + 1)).await;
    apply(s, 2, take("alice", T0 + 2)).await;
    apply(s, 3, take("bob", T0 + 3)).await;
    assert_eq!(queued().await, [4]);
    assert_eq!(waiting("support").await, 1);
    assert_eq!(
        (
            owned("alice").await,
            owned("bob").await,
            owned("carol").await
        ),
        (2, 1, 0)
    );
    apply(s, 1, close(T0 + 4)).await;
    assert_eq!(
        owned("alice").await,
        1,
        "a closed conversation is owned no more"
    );
    apply(s, 2, hand_to("bob", T0 + 5)).await;
    assert_eq!(
        (owned("alice").await, owned("bob").await),
        (0, 2),
        "a transfer moves it"
    );
    apply(s, 3, requeue(T0 + 6)).await;
    assert_eq!(owned("bob").await, 1);
    assert_eq!(queued().await, [3, 4], "a requeued one is queued");
    intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("SM5", "+1")],
        T0 + 7,
    )
    .await;
    assert_eq!(queued().await, [1, 3, 4], "a reopened one is queued");
    assert_eq!(
        (waiting("support").await, waiting("sales").await),
        (2, 1),
        "per queue: the requeued one waits in sales"
    );
}

/// `conversation_by_key` finds a customer's conversation on a channel; `start_conversation`
/// creates one (the next dense id), takes over an unowned or closed one with its history,
/// and refuses one another agent owns.
pub async fn conversations_by_key_and_started_by_agents(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let by_key = |channel: &'static str, address: &'static str| async move {
        s.conversation_by_key(channel, address)
            .await
            .expect("reading by key")
            .map(|c| c.id)
    };
    assert_eq!(by_key("sms", "+1").await, None);
    intake(s, "sms", queue("support"), vec![inbound("SM1", "+1")], T0).await;
    assert_eq!(by_key("sms", "+1").await, Some(1));
    assert_eq!(by_key("wa", "+1").await, None, "keys are per channel");
    assert_eq!(by_key("sms", "+2").await, None);

    let c = s
        .start_conversation("sms", "+2", "sales", "alice", T0 + 1)
        .await
        .expect("starting");
    assert_eq!(c.id, 2, "a started conversation takes the next id");
    assert_eq!(
        (c.channel.as_str(), c.customer.as_str(), c.queue.as_str()),
        ("sms", "+2", "sales")
    );
    assert_eq!(
        (c.state, c.owner.as_deref(), c.created_at, c.updated_at),
        (ConversationState::Assigned, Some("alice"), T0 + 1, T0 + 1)
    );
    assert_eq!(c.handled_by, ["alice"]);
    assert_eq!(by_key("sms", "+2").await, Some(2));
    assert_eq!(get(s, 2).await.owner.as_deref(), Some("alice"));
    assert_eq!(s.owned_count("alice").await.expect("counting"), 1);

    let c = s
        .start_conversation("sms", "+1", "support", "bob", T0 + 2)
        .await
        .expect("taking over a queued one");
    assert_eq!(
        (c.id, c.state, c.owner.as_deref()),
        (1, ConversationState::Assigned, Some("bob")),
        "an unowned conversation is taken over"
    );
    let refused = s
        .start_conversation("sms", "+1", "support", "alice", T0 + 3)
        .await;
    assert!(
        matches!(refused, Err(UpdateError::Rejected(Rejection::Conflict(_)))),
        "one another agent owns is refused: {refused:?}"
    );
    let c = get(s, 1).await;
    assert_eq!(
        (c.owner.as_deref(), c.updated_at),
        (Some("bob"), T0 + 2),
        "the refusal changed nothing"
    );
    let c = s
        .start_conversation("sms", "+1", "support", "bob", T0 + 4)
        .await
        .expect("one's own");
    assert_eq!((c.id, c.owner.as_deref()), (1, Some("bob")));

    apply(s, 1, close(T0 + 5)).await;
    let c = s
        .start_conversation("sms", "+1", "support", "alice", T0 + 6)
        .await
        .expect("taking over a closed one");
    assert_eq!(
        (c.id, c.state, c.owner.as_deref()),
        (1, ConversationState::Assigned, Some("alice"))
    );
    assert_eq!(c.handled_by, ["bob", "alice"]);
    assert_eq!(all_messages(s, 1).await.len(), 1, "its history is kept");
    assert_eq!(by_key("sms", "+1").await, Some(1));

    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("SM3", "+3")],
        T0 + 7,
    )
    .await;
    assert_eq!(r.created, [3], "ids stay dense across intake and starts");
    let r = intake(
        s,
        "sms",
        queue("support"),
        vec![inbound("SM4", "+2")],
        T0 + 8,
    )
    .await;
    assert!(
        r.created.is_empty(),
        "a started conversation is the customer's"
    );
    assert_eq!(r.messages[0].conversation, 2);
}

/// A conversation's messages page in sequence order after a sequence number, `limit` at a
/// time, with no cursor after the last page.
pub async fn messages_page_in_order(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let sq = || queue("support");
    intake(
        s,
        "sms",
        sq(),
        vec![
            inbound("A1", "+1"),
            inbound("A2", "+1"),
            inbound("A3", "+1"),
        ],
        T0,
    )
    .await;
    intake(s, "sms", sq(), vec![inbound("B1", "+2")], T0 + 1).await;
    intake(
        s,
        "sms",
        sq(),
        vec![inbound("A4", "+1"), inbound("A5", "+1")],
        T0 + 2,
    )
    .await;
    s.add_outbound(1, Some("alice"), draft("reply"), T0 + 3)
        .await
        .expect("a reply");
    let page = |after: Option<u64>, limit: usize| async move {
        let p = s.messages(1, after, limit).await.expect("messages");
        (p.items.iter().map(|m| m.seq).collect::<Vec<u64>>(), p.next)
    };
    assert_eq!(page(None, 2).await, (vec![1, 2], Some(2)));
    assert_eq!(page(Some(2), 2).await, (vec![3, 4], Some(4)));
    assert_eq!(
        page(Some(4), 2).await,
        (vec![5, 6], None),
        "the last page has no cursor, even when it is full"
    );
    assert_eq!(page(Some(3), 1).await, (vec![4], Some(4)));
    assert_eq!(page(None, 100).await, ((1..=6).collect(), None));
    assert_eq!(page(Some(6), 10).await, (vec![], None));
    let all = all_messages(s, 1).await;
    assert_eq!(
        all.iter()
            .map(|m| m.provider_id.as_deref())
            .collect::<Vec<_>>(),
        [
            Some("A1"),
            Some("A2"),
            Some("A3"),
            Some("A4"),
            Some("A5"),
            None
        ]
    );
    assert!(all.iter().all(|m| m.conversation == 1));
    let other = all_messages(s, 2).await;
    assert_eq!(
        other
            .iter()
            .map(|m| (m.conversation, m.seq, m.provider_id.as_deref()))
            .collect::<Vec<_>>(),
        [(2, 1, Some("B1"))],
        "a conversation lists only its own messages"
    );
    assert!(
        s.messages(99, None, 10)
            .await
            .expect("messages")
            .items
            .is_empty()
    );
    assert_eq!(message(s, 1, 4).await.text.as_deref(), Some("text of A4"));
    assert!(s.message(1, 7).await.expect("a message").is_none());
}

/// Contacts are added, renamed in place, found by address, and listed by address.
pub async fn contacts_are_added_and_renamed(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let contact = |address: &str, name: &str| Contact {
        address: address.into(),
        name: name.into(),
    };
    assert!(s.contacts().await.expect("contacts").is_empty());
    assert_eq!(s.contact("+1").await.expect("a contact"), None);
    s.put_contact(&contact("+3", "Carol"))
        .await
        .expect("adding");
    s.put_contact(&contact("+1", "Ann")).await.expect("adding");
    s.put_contact(&contact("+2", "Bo")).await.expect("adding");
    s.put_contact(&contact("+1", "Anne"))
        .await
        .expect("renaming");
    assert_eq!(
        s.contact("+1").await.expect("a contact"),
        Some(contact("+1", "Anne"))
    );
    assert_eq!(
        s.contacts().await.expect("contacts"),
        [
            contact("+1", "Anne"),
            contact("+2", "Bo"),
            contact("+3", "Carol")
        ],
        "the directory, by address, each once"
    );
}

/// Visitor sessions are stored and updated by token hash; `expire_visitors` drops only the
/// sessions of its channel that the predicate calls over.
pub async fn visitors_expire_per_channel(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let visitor = |id: &str, channel: &str, last_seen: u64| Visitor {
        id: id.into(),
        channel: channel.into(),
        created_at: T0,
        last_seen,
    };
    let seen = |hash: &'static [u8]| async move {
        s.visitor(hash)
            .await
            .expect("a visitor")
            .map(|v| (v.id, v.channel, v.last_seen))
    };
    s.put_visitor(b"h-old", &visitor("v1", "web", T0))
        .await
        .expect("storing");
    s.put_visitor(b"h-new", &visitor("v2", "web", T0 + 100))
        .await
        .expect("storing");
    s.put_visitor(b"h-other", &visitor("v3", "web2", T0))
        .await
        .expect("storing");
    assert_eq!(seen(b"h-old").await, Some(("v1".into(), "web".into(), T0)));
    assert_eq!(seen(b"h-none").await, None);
    s.put_visitor(b"h-new", &visitor("v2", "web", T0 + 200))
        .await
        .expect("updating");
    assert_eq!(
        seen(b"h-new").await,
        Some(("v2".into(), "web".into(), T0 + 200))
    );

    let removed = s
        .expire_visitors("web", &|v: &Visitor| v.last_seen < T0 + 50)
        .await
        .expect("expiring");
    assert_eq!(removed, 1, "one web session was idle");
    assert_eq!(seen(b"h-old").await, None, "the idle one is gone");
    assert!(seen(b"h-new").await.is_some(), "the active one stays");
    assert_eq!(
        seen(b"h-other").await,
        Some(("v3".into(), "web2".into(), T0)),
        "another channel's sessions are untouched"
    );
    let removed = s
        .expire_visitors("web", &|_: &Visitor| false)
        .await
        .expect("expiring");
    assert_eq!(removed, 0);
}

/// An agent record's fields, comparable.
type Facts = (String, Option<u64>, Option<u64>, Option<u64>, u32);

/// Agents' routing records are stored and replaced per agent.
pub async fn agent_records_are_kept(store: Arc<dyn Store>) {
    let s = store.as_ref();
    assert!(s.agent_records().await.expect("agents").is_empty());
    let record = |presence: &str, missed: u32| AgentRecord {
        presence: presence.into(),
        idle_since: Some(T0),
        last_offered: Some(T0 + 1),
        last_assigned: None,
        missed_offers: missed,
    };
    s.put_agent_record("alice", &record("online", 0))
        .await
        .expect("storing");
    s.put_agent_record("bob", &record("away", 2))
        .await
        .expect("storing");
    s.put_agent_record("alice", &record("offline", 1))
        .await
        .expect("replacing");
    let records: BTreeMap<String, Facts> = s
        .agent_records()
        .await
        .expect("agents")
        .into_iter()
        .map(|(a, r)| {
            (
                a,
                (
                    r.presence,
                    r.idle_since,
                    r.last_offered,
                    r.last_assigned,
                    r.missed_offers,
                ),
            )
        })
        .collect();
    assert_eq!(
        records,
        BTreeMap::from([
            (
                "alice".into(),
                ("offline".into(), Some(T0), Some(T0 + 1), None, 1)
            ),
            (
                "bob".into(),
                ("away".into(), Some(T0), Some(T0 + 1), None, 2)
            ),
        ])
    );
}

/// Channels' administrative states are recorded; `enabled` removes the record.
pub async fn channel_states_are_kept(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let states = || async move {
        s.channel_states()
            .await
            .expect("channel states")
            .into_iter()
            .collect::<BTreeMap<String, String>>()
    };
    assert!(states().await.is_empty());
    s.set_channel_state("sms", "disabled")
        .await
        .expect("setting");
    s.set_channel_state("wa", "deleted").await.expect("setting");
    assert_eq!(
        states().await,
        BTreeMap::from([
            ("sms".into(), "disabled".into()),
            ("wa".into(), "deleted".into())
        ])
    );
    s.set_channel_state("sms", "enabled")
        .await
        .expect("setting");
    assert_eq!(
        states().await,
        BTreeMap::from([("wa".into(), "deleted".into())]),
        "an enabled channel has no record"
    );
    s.set_channel_state("wa", "disabled")
        .await
        .expect("setting");
    s.set_channel_state("wa", "enabled").await.expect("setting");
    assert_eq!(
        states().await,
        BTreeMap::from([("wa".into(), "deleted".into())]),
        "a deletion is final, whoever writes after it (another host that has not seen it yet)"
    );
}

/// Documents are kept per space: replaced by a later put, listed in byte order of their keys
/// strictly after a given key, removed by a delete; spaces never see each other's.
pub async fn documents_are_kept_per_space_in_key_order(store: Arc<dyn Store>) {
    let s = store.as_ref();
    assert_eq!(s.document("hooks", "a").await.expect("reading"), None);
    for key in ["b", "a", "a/2", "B"] {
        s.put_document("hooks", key, key.as_bytes())
            .await
            .expect("putting");
    }
    s.put_document("hooks/x", "a", b"other space")
        .await
        .expect("putting");
    s.put_document("hooks", "a", b"replaced")
        .await
        .expect("putting");
    assert_eq!(
        s.document("hooks", "a").await.expect("reading").as_deref(),
        Some(&b"replaced"[..])
    );
    let keys = |list: Vec<(String, Vec<u8>)>| list.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(s.documents("hooks", "", 10).await.expect("listing")),
        ["B", "a", "a/2", "b"],
        "byte order, one space only"
    );
    assert_eq!(
        keys(s.documents("hooks", "a", 10).await.expect("listing")),
        ["a/2", "b"],
        "strictly after the key given"
    );
    assert_eq!(
        keys(s.documents("hooks", "", 2).await.expect("listing")),
        ["B", "a"]
    );
    s.delete_document("hooks", "a").await.expect("deleting");
    s.delete_document("hooks", "never").await.expect("deleting");
    assert_eq!(s.document("hooks", "a").await.expect("reading"), None);
    assert_eq!(
        s.documents("hooks/x", "", 10).await.expect("listing"),
        [("a".to_owned(), b"other space".to_vec())]
    );
}

/// A nonce is claimed once per scope within its window: the same message again is a retry,
/// another message a replay; an expired claim counts as absent; of many claims racing with
/// one value, one wins.
pub async fn nonces_are_claimed_once_per_window(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let claim = |scope: &'static str, nonce: &'static str, message: &'static str, now: u64| async move {
        s.claim_nonce(scope, nonce, message, now, 100)
            .await
            .expect("claiming")
    };
    assert_eq!(
        claim("mailgun", "tok1", "msgA", T0).await,
        NonceClaim::Claimed
    );
    assert_eq!(
        claim("mailgun", "tok1", "msgA", T0 + 10).await,
        NonceClaim::Retry
    );
    assert_eq!(
        claim("mailgun", "tok1", "msgB", T0 + 20).await,
        NonceClaim::Replayed
    );
    assert_eq!(
        claim("other", "tok1", "msgB", T0 + 30).await,
        NonceClaim::Claimed,
        "nonces are scoped"
    );
    assert_eq!(
        claim("mailgun", "tok1", "msgB", T0 + 99).await,
        NonceClaim::Replayed
    );
    assert_eq!(
        claim("mailgun", "tok1", "msgB", T0 + 150).await,
        NonceClaim::Claimed,
        "an expired claim counts as absent"
    );
    assert_eq!(
        claim("mailgun", "tok1", "msgB", T0 + 160).await,
        NonceClaim::Retry
    );
    assert_eq!(
        claim("mailgun", "tok1", "msgA", T0 + 170).await,
        NonceClaim::Replayed
    );

    let claims = race(8, |i| {
        let store = store.clone();
        async move {
            store
                .claim_nonce("mailgun", "raced", &format!("msg{i}"), T0, 100)
                .await
                .expect("claiming")
        }
    })
    .await;
    let won = claims.iter().filter(|c| **c == NonceClaim::Claimed).count();
    let replayed = claims
        .iter()
        .filter(|c| **c == NonceClaim::Replayed)
        .count();
    assert_eq!(
        (won, replayed),
        (1, 7),
        "of eight claims racing with one value, one claims it: {claims:?}"
    );
}

/// Text with NUL characters (which a provider may send, and PostgreSQL refuses) is stored with
/// U+FFFD in their place, inbound and outbound, and its provider id still deduplicates.
pub async fn nul_characters_are_stored_replaced(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let webhook = InboundEvent::Message {
        provider_id: "SM\0nul".to_owned(),
        from: "+1\0".to_owned(),
        text: Some("before\0after".to_owned()),
        attachments: Vec::new(),
        contact_name: Some("Ann\0".to_owned()),
        thread: vec![("k\0".to_owned(), "v\0".to_owned())],
        note: None,
    };
    let r = intake(s, "sms", queue("support"), vec![webhook.clone()], T0).await;
    assert_eq!(r.stored, 1, "{r:?}");
    let c = get(s, 1).await;
    assert_eq!(c.customer, "+1\u{FFFD}");
    assert_eq!(c.contact_name.as_deref(), Some("Ann\u{FFFD}"));
    assert_eq!(c.thread, [("k\u{FFFD}".to_owned(), "v\u{FFFD}".to_owned())]);
    let m = message(s, 1, 1).await;
    assert_eq!(m.text.as_deref(), Some("before\u{FFFD}after"));
    assert_eq!(m.provider_id.as_deref(), Some("SM\u{FFFD}nul"));
    let again = intake(s, "sms", queue("support"), vec![webhook], T0 + 1).await;
    assert_eq!(
        (again.stored, again.duplicates),
        (0, 1),
        "the provider's retry is still a duplicate"
    );
    let (_, reply) = s
        .add_outbound(1, Some("alice"), draft("a\0b"), T0 + 2)
        .await
        .expect("a reply with a NUL");
    assert_eq!(reply.text.as_deref(), Some("a\u{FFFD}b"));
    assert_eq!(message(s, 1, 2).await.text.as_deref(), Some("a\u{FFFD}b"));
}

/// A note is the conversation's next message, by its author, open or closed, and never an
/// outbox entry; a note on a missing conversation is `NotFound`.
pub async fn notes_are_messages_nothing_sends(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let report = intake(s, "sms", queue("support"), vec![inbound("SM1", "+1")], T0).await;
    let id = report.created[0];
    let (conv, note) = s
        .add_note(id, "alice", "VIP customer", T0 + 5)
        .await
        .expect("adding a note");
    assert_eq!((note.seq, conv.last_seq), (2, 2), "the next message");
    assert_eq!(note.direction, Direction::Note);
    assert_eq!(note.author.as_deref(), Some("alice"));
    assert_eq!(note.text.as_deref(), Some("VIP customer"));
    assert_eq!(
        conv.state,
        ConversationState::Queued,
        "a note takes nothing"
    );
    assert_eq!(conv.updated_at, T0 + 5);
    assert_eq!(message(s, id, 2).await.direction, Direction::Note);
    assert_eq!(
        s.read_marks("alice", &[id]).await.expect("read marks"),
        [2],
        "the author has read their own note"
    );
    assert!(
        s.pending_sends().await.expect("pending sends").is_empty(),
        "nothing sends a note"
    );
    apply(s, id, |c| {
        c.close("alice", T0 + 6);
        Ok(())
    })
    .await;
    let (conv, _) = s
        .add_note(id, "bob", "closed: refund sent", T0 + 7)
        .await
        .expect("a note on a closed conversation");
    assert_eq!(conv.state, ConversationState::Closed, "it stays closed");
    assert_eq!(all_messages(s, id).await.len(), 3);
    assert!(matches!(
        s.add_note(999, "alice", "x", T0).await,
        Err(UpdateError::Rejected(Rejection::NotFound))
    ));
}

/// Read markers are per agent and conversation, start at 0, and never move back; an agent's
/// own reply moves theirs up to it (the host's own message moves none).
pub async fn read_marks_only_move_forward(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let report = intake(s, "sms", queue("support"), vec![inbound("SM9", "+9")], T0).await;
    let c = report.created[0];
    s.add_outbound(c, None, draft("offline notice"), T0 + 1)
        .await
        .expect("the host's notice");
    assert_eq!(s.read_marks("alice", &[c]).await.expect("read marks"), [0]);
    let (_, reply) = s
        .add_outbound(c, Some("alice"), draft("on it"), T0 + 2)
        .await
        .expect("alice's reply");
    assert_eq!(reply.seq, 3);
    assert_eq!(
        s.read_marks("alice", &[c]).await.expect("read marks"),
        [3],
        "alice has read up to her own reply"
    );
    assert_eq!(s.read_marks("bob", &[c]).await.expect("read marks"), [0]);
    let marks = |agent: &'static str, ids: &'static [u64]| async move {
        s.read_marks(agent, ids).await.expect("read marks")
    };
    assert_eq!(marks("alice", &[101, 102]).await, [0, 0]);
    s.mark_read("alice", 101, 4).await.expect("marking");
    s.mark_read("alice", 101, 2).await.expect("marking back");
    s.mark_read("bob", 102, 7).await.expect("marking");
    assert_eq!(marks("alice", &[101, 102, 103]).await, [4, 0, 0]);
    assert_eq!(
        marks("bob", &[102, 101]).await,
        [7, 0],
        "in the order asked"
    );
    assert_eq!(marks("alice", &[]).await, Vec::<u64>::new());
    s.mark_read("alice", 101, 9).await.expect("marking");
    assert_eq!(marks("alice", &[101]).await, [9]);
}

/// Sessions are found by token hash until ended; storing one drops those already expired.
pub async fn sessions_are_kept_until_ended(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let session = |agent: &str, expires_at: u64| AgentSession {
        agent: agent.into(),
        csrf: format!("csrf-{agent}"),
        credential: format!("hash-of-{agent}"),
        created_at: T0,
        expires_at,
    };
    assert_eq!(s.session(b"h1").await.expect("a session"), None);
    s.put_session(b"h1", &session("alice", T0 + 1_000), T0)
        .await
        .expect("storing");
    s.put_session(b"h2", &session("bob", T0 + 10), T0)
        .await
        .expect("storing");
    assert_eq!(
        s.session(b"h1").await.expect("a session"),
        Some(session("alice", T0 + 1_000))
    );
    s.put_session(b"h3", &session("carol", T0 + 2_000), T0 + 500)
        .await
        .expect("storing");
    assert_eq!(
        s.session(b"h2").await.expect("a session"),
        None,
        "an expired session is dropped when another is stored"
    );
    s.end_session(b"h1").await.expect("ending");
    assert_eq!(s.session(b"h1").await.expect("a session"), None);
    s.end_session(b"h1").await.expect("ending twice is fine");
    assert_eq!(
        s.session(b"h3").await.expect("a session").map(|x| x.agent),
        Some("carol".into())
    );
}

/// Each write adds what it counts to the statistics in the same write, once: a message
/// received (a provider's retry is not counted again), a send the provider took, a wait ended,
/// a first response, a resolution, a conversation closed unanswered; reads return the days
/// asked for and nothing else.
pub async fn statistics_count_each_write_once(store: Arc<dyn Store>) {
    use crate::stats::{Scope, day_of};
    let s = store.as_ref();
    let zone = jiff::tz::TimeZone::UTC;
    for _ in 0..2 {
        intake(
            s,
            "sms",
            queue("support"),
            vec![inbound("SM1", "+1"), inbound("SM2", "+2")],
            T0,
        )
        .await;
    }
    apply(s, 1, take("alice", T0 + 1)).await;
    let (_, reply) = s
        .add_outbound(1, Some("alice"), draft("hello"), T0 + 2)
        .await
        .expect("reply");
    s.complete_send("sms", 1, reply.seq, Ok("OUT-1".into()))
        .await
        .expect("send outcome");
    apply(s, 1, close(T0 + 3)).await;
    apply(s, 2, |c: &mut Conversation| {
        c.close("alice", T0 + 4);
        Ok(())
    })
    .await;

    let first = day_of(T0, &zone) - 1;
    let last = day_of(crate::clock::Clock::System.now_millis(), &zone) + 1;
    let sum = |scope: Scope, name: &'static str, metric: &'static str| async move {
        s.statistics(scope, first, last)
            .await
            .expect("statistics")
            .iter()
            .filter(|c| {
                c.name == name
                    && (c.metric == metric || c.metric.starts_with(&format!("{metric}.")))
                    && !c.metric.ends_with("sum_ms")
            })
            .map(|c| c.value)
            .sum::<u64>()
    };
    assert_eq!(
        sum(Scope::Channel, "sms", "received").await,
        2,
        "a retry is not counted"
    );
    assert_eq!(sum(Scope::Channel, "sms", "sent").await, 1);
    assert_eq!(sum(Scope::Queue, "support", "waiting").await, 1);
    assert_eq!(sum(Scope::Queue, "support", "first_response").await, 1);
    assert_eq!(sum(Scope::Queue, "support", "handled").await, 1);
    assert_eq!(sum(Scope::Queue, "support", "resolution").await, 1);
    assert_eq!(sum(Scope::Queue, "support", "abandoned").await, 1);
    assert_eq!(sum(Scope::Agent, "alice", "handled").await, 1);
    assert_eq!(sum(Scope::Agent, "alice", "first_response").await, 1);
    let received_day = s
        .statistics(Scope::Channel, day_of(T0, &zone), day_of(T0, &zone))
        .await
        .expect("statistics");
    assert_eq!(
        received_day
            .iter()
            .filter(|c| c.metric == "received")
            .map(|c| (c.name.as_str(), c.value))
            .collect::<Vec<_>>(),
        [("sms", 2)],
        "intake counts on the day of its own time"
    );
    assert!(
        s.statistics(Scope::Channel, first - 10, first - 1)
            .await
            .expect("statistics")
            .is_empty(),
        "days outside the range are not read"
    );
}

/// A conversation created (or reopened) for a bot is held by it: not queued for agents, listed
/// under its queue's `bot` state, every customer message a turn for the bot; handed off, it
/// waits in its queue; resolved by the bot, it counts as resolved by a bot, not abandoned.
pub async fn a_bot_holds_what_it_is_given_until_it_hands_off(store: Arc<dyn Store>) {
    use crate::stats::{Scope, day_of};
    let s = store.as_ref();
    let with_bot = ConversationTarget::Queue {
        queue: "support".into(),
        skills: Vec::new(),
        priority: 0,
        bot: Some("faq".into()),
    };
    let first = intake(s, "sms", with_bot.clone(), vec![inbound("SM1", "+1")], T0).await;
    assert_eq!(
        (first.to_bot.clone(), first.to_route.clone()),
        (vec![1], vec![])
    );
    let held = s.conversation(1).await.expect("read").expect("stored");
    assert_eq!(held.state, ConversationState::Bot);
    assert_eq!(held.bot.as_deref(), Some("faq"));
    assert!(s.queued_ids().await.expect("queued ids").is_empty());
    assert_eq!(s.queued_count("support").await.expect("queued count"), 0);
    let listed = s
        .conversations(&ConversationQuery {
            any_of: vec![Selector::Queue {
                queue: "support".into(),
                state: ConversationState::Bot,
            }],
            limit: 10,
            ..ConversationQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.items.iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
    let again = intake(
        s,
        "sms",
        with_bot.clone(),
        vec![inbound("SM2", "+1")],
        T0 + 1,
    )
    .await;
    assert_eq!(
        again.to_bot,
        vec![1],
        "each customer message is the bot's turn"
    );
    apply(s, 1, |c: &mut Conversation| {
        c.bot_memory = vec![("misses".into(), "1".into())];
        Ok(())
    })
    .await;
    let kept = s.conversation(1).await.expect("read").expect("stored");
    assert_eq!(kept.bot_memory, vec![("misses".to_owned(), "1".to_owned())]);
    apply(s, 1, |c: &mut Conversation| {
        c.enqueue("support", T0 + 2);
        Ok(())
    })
    .await;
    assert_eq!(s.queued_ids().await.expect("queued ids"), vec![1]);

    intake(s, "sms", with_bot, vec![inbound("SM3", "+2")], T0 + 3).await;
    apply(s, 2, |c: &mut Conversation| {
        assert!(c.resolve_by_bot(T0 + 4));
        Ok(())
    })
    .await;
    // Updates count on the host's clock, intakes at their `now`.
    let zone = jiff::tz::TimeZone::UTC;
    let first = day_of(T0, &zone) - 1;
    let last = day_of(crate::clock::Clock::System.now_millis(), &zone) + 1;
    let counts = s
        .statistics(Scope::Queue, first, last)
        .await
        .expect("statistics");
    let count = |metric: &str| {
        counts
            .iter()
            .filter(|c| c.name == "support" && c.metric == metric)
            .map(|c| c.value)
            .sum::<u64>()
    };
    assert_eq!(
        (
            count("bot_handoffs"),
            count("bot_resolved"),
            count("abandoned")
        ),
        (1, 1, 0)
    );
}
