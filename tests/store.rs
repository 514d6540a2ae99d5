//! The storage conformance suite (`plugboard::store::conformance`) against the sled backend,
//! one test per case, each on a fresh data directory; and what only an embedded store has to
//! show: reopened on its directory, it keeps everything and its ids continue.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plugboard::model::{
    AgentRecord, Contact, ConversationState, ConversationTarget, InboundEvent, MessageStatus,
    OptChange, OutboundDraft, Rejection, Visitor,
};
use plugboard::store::sled::{SledOptions, SledStore};
use plugboard::store::{
    ConversationQuery, NonceClaim, Selector, Store, StoreError, conformance, update,
};

/// A sled store in a fresh temporary directory (kept as long as the returned guard).
fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SledStore::open(dir.path(), SledOptions::default()).expect("opening sled");
    (dir, store)
}

macro_rules! sled_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_dir, store) = fresh();
                conformance::$case(store).await;
            }
        )*

        #[test]
        fn every_conformance_case_runs_on_sled() {
            let here = [$(stringify!($case)),*];
            let suite: Vec<&str> = conformance::CASES.iter().map(|(name, _)| *name).collect();
            assert_eq!(here.to_vec(), suite, "tests/store.rs must run every conformance case");
        }
    };
}

sled_cases!(
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

/// `conformance::run`, the one call a backend's test file may make instead, passes on sled and
/// gives each case a store of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_passes_through_run() {
    let parent = tempfile::tempdir().expect("a temporary directory");
    let opened = AtomicUsize::new(0);
    let open = || -> Arc<dyn Store> {
        let dir = parent
            .path()
            .join(opened.fetch_add(1, Ordering::SeqCst).to_string());
        std::fs::create_dir(&dir).expect("a case directory");
        SledStore::open(&dir, SledOptions::default()).expect("opening sled")
    };
    conformance::run(&open).await;
    assert_eq!(opened.load(Ordering::SeqCst), conformance::CASES.len());
}

const T0: u64 = 1_700_000_000_000;

fn support() -> ConversationTarget {
    ConversationTarget::Queue {
        queue: "support".into(),
        skills: vec![],
        priority: 0,
        bot: None,
    }
}

fn inbound(provider_id: &str, from: &str) -> InboundEvent {
    InboundEvent::Message {
        provider_id: provider_id.into(),
        from: from.into(),
        text: Some(format!("text of {provider_id}")),
        attachments: vec![],
        contact_name: None,
        thread: vec![],
        note: None,
    }
}

fn opt_out(address: &str, id: &str) -> InboundEvent {
    InboundEvent::OptOut(OptChange {
        address: address.into(),
        provider_id: Some(id.into()),
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Opens `dir` again once the previous store has let go of it: its intake thread ends on its
/// own after the store is dropped, so the lock may still be held for a moment.
fn reopen(dir: &Path) -> Arc<SledStore> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match SledStore::open(dir, SledOptions::default()) {
            Ok(store) => return store,
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopening {}: {e}", dir.display()),
        }
    }
}

#[test]
fn a_reopened_sled_store_keeps_everything_and_its_ids_continue() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = runtime();
    first.block_on(async {
        let store = SledStore::open(dir.path(), SledOptions::default()).expect("opening");
        let s: &dyn Store = store.as_ref();
        for (i, from) in ["+1", "+2", "+3"].into_iter().enumerate() {
            let r = s
                .intake(
                    "sms",
                    &support(),
                    vec![inbound(&format!("SM{i}"), from)],
                    T0 + i as u64,
                )
                .await
                .expect("intake");
            assert_eq!(r.created, [i as u64 + 1]);
        }
        update(s, 2, |c| {
            c.assign("alice");
            c.updated_at = T0 + 10;
            Ok(())
        })
        .await
        .expect("taking");
        update(s, 3, |c| {
            c.assign("alice");
            c.close("alice", T0 + 11);
            Ok(())
        })
        .await
        .expect("closing");
        let reply = || OutboundDraft {
            text: Some("reply".into()),
            ..Default::default()
        };
        let (_, sent) = s
            .add_outbound(1, Some("bob"), reply(), T0 + 12)
            .await
            .expect("reply");
        s.complete_send("sms", 1, sent.seq, Ok("OUT1".into()))
            .await
            .expect("completing");
        let (_, waiting) = s
            .add_outbound(2, Some("alice"), reply(), T0 + 13)
            .await
            .expect("reply");
        s.record_retry(2, waiting.seq, 2, T0 + 9000, "503")
            .await
            .expect("retry");
        for i in 0..3 {
            s.append_event(
                "message",
                vec!["alice".into()],
                Some(1),
                serde_json::json!({ "i": i }),
                T0,
            )
            .await
            .expect("appending");
        }
        s.intake("sms", &support(), vec![opt_out("+9", "EV1")], T0 + 14)
            .await
            .expect("intake");
        s.put_contact(&Contact {
            address: "+1".into(),
            name: "Ann".into(),
        })
        .await
        .expect("contact");
        s.put_agent_record(
            "alice",
            &AgentRecord {
                presence: "away".into(),
                missed_offers: 3,
                ..Default::default()
            },
        )
        .await
        .expect("agent");
        s.set_channel_state("wa", "disabled")
            .await
            .expect("channel");
        s.put_visitor(
            b"hash",
            &Visitor {
                id: "v1".into(),
                channel: "web".into(),
                created_at: T0,
                last_seen: T0,
            },
        )
        .await
        .expect("visitor");
        assert_eq!(
            s.claim_nonce("mailgun", "tok", "m1", T0, 60_000)
                .await
                .expect("nonce"),
            NonceClaim::Claimed
        );
        s.close().await.expect("closing the store");
    });
    // The runtime's end stops the flusher task, which holds the database.
    drop(first);

    let second = runtime();
    second.block_on(async {
        let store = reopen(dir.path());
        let s: &dyn Store = store.as_ref();
        let c = |id| async move { s.conversation(id).await.expect("reading").expect("kept") };
        let (c1, c2, c3) = (c(1).await, c(2).await, c(3).await);
        assert_eq!(
            (c1.state, c1.owner.as_deref(), c1.last_seq, c1.updated_at),
            (ConversationState::Assigned, Some("bob"), 2, T0 + 12)
        );
        assert_eq!(
            (c2.state, c2.owner.as_deref(), c2.updated_at),
            (ConversationState::Assigned, Some("alice"), T0 + 13)
        );
        assert_eq!(
            (c3.state, c3.handled_by.as_slice()),
            (ConversationState::Closed, &["alice".to_owned()][..])
        );
        let listed = |any_of: Vec<Selector>| async move {
            s.conversations(&ConversationQuery {
                any_of,
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("listing")
            .items
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
        };
        assert_eq!(
            listed(vec![Selector::OwnedBy("alice".into())]).await,
            [2],
            "the index is kept"
        );
        assert_eq!(listed(vec![Selector::HandledBy("alice".into())]).await, [3]);
        assert_eq!(s.owned_count("bob").await.expect("count"), 1);

        let r = s
            .intake(
                "sms",
                &support(),
                vec![inbound("SM0", "+1"), inbound("SM9", "+4")],
                T0 + 20,
            )
            .await
            .expect("intake");
        assert_eq!(
            r.duplicates, 1,
            "provider ids seen before the restart are duplicates"
        );
        assert_eq!(
            r.created,
            [4],
            "conversation ids continue after the restart"
        );
        let started = s
            .start_conversation("sms", "+5", "support", "alice", T0 + 21)
            .await
            .expect("starting");
        assert_eq!(started.id, 5);
        let refused = s
            .start_conversation("sms", "+1", "support", "alice", T0 + 22)
            .await;
        assert!(
            matches!(
                refused,
                Err(plugboard::store::UpdateError::Rejected(
                    Rejection::Conflict(_)
                ))
            ),
            "bob still owns conversation 1: {refused:?}"
        );

        assert_eq!(s.last_event_id().await.expect("log"), 3);
        let e = s
            .append_event("message", vec![], None, serde_json::json!({}), T0 + 23)
            .await
            .expect("appending");
        assert_eq!(e.id, 4, "event ids continue after the restart");
        let logged = s.events_after(0, 100).await.expect("log");
        assert_eq!(
            logged.iter().map(|e| e.id).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(logged[2].data, serde_json::json!({ "i": 2 }));

        let pending = s.pending_sends().await.expect("outbox");
        assert_eq!(
            pending
                .iter()
                .map(|e| (e.conversation, e.seq, e.attempts, e.next_at))
                .collect::<Vec<_>>(),
            [(2, 2, 2, T0 + 9000)],
            "the outbox and its backoff are kept"
        );
        let r = s
            .intake(
                "sms",
                &support(),
                vec![InboundEvent::Status {
                    provider_id: "OUT1".into(),
                    status: MessageStatus::Delivered,
                    error: None,
                }],
                T0 + 24,
            )
            .await
            .expect("intake");
        assert_eq!(r.statuses, 1, "a sent message's provider id is kept");
        assert!(s.is_opted_out("sms", "+9").await.expect("opt-out"));
        let r = s
            .intake("sms", &support(), vec![opt_out("+9", "EV1")], T0 + 25)
            .await
            .expect("intake");
        assert_eq!(r.duplicates, 1, "an applied opt-change id is kept");
        assert_eq!(
            s.contact("+1").await.expect("contact").map(|c| c.name),
            Some("Ann".into())
        );
        let agents = s.agent_records().await.expect("agents");
        assert_eq!(
            agents
                .iter()
                .map(|(a, r)| (a.as_str(), r.presence.as_str(), r.missed_offers))
                .collect::<Vec<_>>(),
            [("alice", "away", 3)]
        );
        assert_eq!(
            s.channel_states().await.expect("channels"),
            [("wa".to_owned(), "disabled".to_owned())]
        );
        assert_eq!(
            s.visitor(b"hash").await.expect("visitor").map(|v| v.id),
            Some("v1".into())
        );
        assert_eq!(
            s.claim_nonce("mailgun", "tok", "m2", T0 + 1, 60_000)
                .await
                .expect("nonce"),
            NonceClaim::Replayed,
            "a claimed nonce is kept"
        );
    });
}
