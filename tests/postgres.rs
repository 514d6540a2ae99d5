//! The PostgreSQL backend (issue 13): the storage conformance suite unchanged against a real
//! PostgreSQL, migrations under their lock, and two hosts on one database behaving as one.
//! Each test starts a throwaway cluster of its own (`support::postgres`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plugboard::store::postgres::{PostgresOptions, PostgresStore};
use plugboard::store::{Store, conformance};
use serde_json::json;
use support::postgres::PgCluster;
use support::{
    ADMIN, ALICE, AUTH_TOKEN, Host, Reply, ScriptedProvider, Setup, Sse, SseStream, eventually,
    form, inbound_sms, pairs, spawn_visitor_poll, twilio_created, twilio_signature,
};

fn options(url: String) -> PostgresOptions {
    PostgresOptions {
        url,
        pool_size: 8,
        connect_timeout: Duration::from_secs(10),
        ca_file: None,
        zone: jiff::tz::TimeZone::UTC,
    }
}

/// Every conformance case passes on PostgreSQL, each on a database of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_postgres() {
    let cluster = PgCluster::start();
    let made = AtomicUsize::new(0);
    let open = || -> Arc<dyn Store> {
        let name = format!("case_{}", made.fetch_add(1, Ordering::SeqCst));
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let url = cluster.create_database(&name).await;
                let store: Arc<dyn Store> = PostgresStore::open(&options(url))
                    .await
                    .unwrap_or_else(|e| panic!("opening {name}: {e}"));
                store
            })
        })
    };
    conformance::run(&open).await;
    assert_eq!(made.load(Ordering::SeqCst), conformance::CASES.len());
}

/// A test's cluster, its database, and the configuration that points hosts at it.
struct Shared {
    _cluster: PgCluster,
    url: String,
}

impl Shared {
    async fn start() -> Shared {
        let cluster = PgCluster::start();
        let url = cluster.create_database("plugboard").await;
        Shared {
            _cluster: cluster,
            url,
        }
    }

    /// A host on the shared database: `support` gets `support` lines, carol joins alice in it.
    fn setup(&self, api_base: Option<String>, support: &str, env: &[(&str, &str)]) -> Setup {
        self.setup_with(api_base, support, env, "")
    }

    /// [`Shared::setup`] with more `[storage]` lines.
    fn setup_with(
        &self,
        api_base: Option<String>,
        support: &str,
        env: &[(&str, &str)],
        storage: &str,
    ) -> Setup {
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.push(("TEST_DATABASE_URL".into(), self.url.clone()));
        Setup {
            twilio_api_base: api_base,
            support: support.to_owned(),
            extra: format!(
                r#"
[[agents]]
id = "carol"
name = "Carol"
token = "{CAROL}"
queues = ["support"]

[storage]
backend = "postgres"
url = "${{TEST_DATABASE_URL}}"
pool_size = 8
{storage}
"#
            ),
            env,
            ..Setup::default()
        }
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connecting to the test database");
        tokio::spawn(connection);
        client
    }
}

/// Carol's bearer token (queue `support`, beside alice).
const CAROL: &str = "carol-token-1234";

/// Starts hosts with `setups` at once (so they migrate the schema at the same time).
fn start_together(setups: Vec<Setup>) -> Vec<Host> {
    let starting: Vec<_> = setups
        .into_iter()
        .map(|s| std::thread::spawn(move || Host::start(s)))
        .collect();
    starting
        .into_iter()
        .map(|t| t.join().expect("a host failed to start"))
        .collect()
}

async fn webhook(host: &Host, sid: &str, from: &str, body: &str) -> u16 {
    let params = inbound_sms(sid, from, body);
    host.post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await
        .status()
        .as_u16()
}

/// Two hosts on one database: they migrate once between them, a provider's retry on the other
/// host is stored once and answered 200, an agent on host B is told (in order, with ids that
/// resume on host A) what host A received and routed, concurrent takes on the two hosts have
/// one winner, and the winner's reply is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_database_behave_as_one() {
    let db = Shared::start().await;
    let twilio = ScriptedProvider::start(vec![Reply::new(201, twilio_created("SMout1"))]).await;
    let mut hosts = start_together(vec![
        db.setup(Some(twilio.base.clone()), "", &[]),
        db.setup(Some(twilio.base.clone()), "", &[]),
    ]);
    let (a, b) = (hosts.remove(0), hosts.remove(0));
    let pg = db.client().await;
    let versions: Vec<i32> = pg
        .query("SELECT version FROM plugboard_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=plugboard::store::postgres::schema::SCHEMA_VERSION as i32).collect::<Vec<_>>(),
        "each migration applied once though both hosts started together"
    );

    let mut on_b = SseStream::open(&b, ALICE, None).await;
    a.presence(ALICE, "online").await;
    assert_eq!(
        on_b.next_of("presence").await.data["data"]["presence"],
        "online",
        "host B's stream carries what alice did on host A"
    );

    assert_eq!(webhook(&a, "SM1", "+15550001", "hello").await, 200);
    assert_eq!(
        webhook(&b, "SM1", "+15550001", "hello").await,
        200,
        "the provider's retry on the other host is answered 200"
    );
    assert_eq!(webhook(&b, "SM2", "+15550001", "still there?").await, 200);
    // Host B's stream: both messages and the offer (which may come between them or after),
    // in log order.
    let mut seen = Vec::new();
    while !(seen.iter().filter(|e: &&Sse| e.kind == "message").count() == 2
        && seen.iter().any(|e| e.kind == "offered"))
    {
        let e = on_b.next().await;
        if e.kind == "message" || e.kind == "offered" {
            seen.push(e);
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "events come in log order: {seen:?}"
    );
    assert!(
        seen.iter().all(|e| e.data["conversation"] == "1"),
        "{seen:?}"
    );
    let texts: Vec<&str> = seen
        .iter()
        .filter(|e| e.kind == "message")
        .filter_map(|e| e.data["data"]["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["hello", "still there?"],
        "the retry on host B was not announced again"
    );
    let offered = seen.iter().find(|e| e.kind == "offered").unwrap().clone();
    let after_offer: Vec<u64> = seen
        .iter()
        .map(|e| e.id)
        .filter(|&id| id > offered.id)
        .collect();
    for host in [&a, &b] {
        let messages = host.messages("1", ALICE).await;
        let texts: Vec<&str> = messages.iter().filter_map(|m| m["text"].as_str()).collect();
        assert_eq!(
            texts,
            ["hello", "still there?"],
            "stored once, seen alike from either host"
        );
    }
    let (_, row) = (
        (),
        pg.query_one(
            "SELECT count(*) FROM conversations WHERE customer = '+15550001'",
            &[],
        )
        .await
        .unwrap(),
    );
    assert_eq!(row.get::<_, i64>(0), 1, "one conversation");

    // Resume on host A from just before the offer seen on host B: the same ids, in order.
    let mut on_a = SseStream::open(&a, ALICE, Some(offered.id - 1)).await;
    let resumed = on_a.next().await;
    assert_eq!((resumed.id, resumed.kind.as_str()), (offered.id, "offered"));
    for id in after_offer {
        let next = loop {
            let e = on_a.next().await;
            if e.kind == "message" || e.kind == "offered" {
                break e;
            }
        };
        assert_eq!(next.id, id, "the same events, in the same order");
    }

    // Alice on host A and carol on host B take the conversation at once: one wins.
    let (take_a, take_b) = tokio::join!(
        a.post_json("/api/v1/conversations/1/take", ALICE, json!({})),
        b.post_json("/api/v1/conversations/1/take", CAROL, json!({})),
    );
    let mut statuses = [take_a.0, take_b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 409],
        "exactly one take wins: {take_a:?} {take_b:?}"
    );
    let (winner, token) = if take_a.0 == 200 {
        (&a, ALICE)
    } else {
        (&b, CAROL)
    };
    let loser_token = if token == ALICE { CAROL } else { ALICE };
    let (status, _) = winner
        .post_json(
            "/api/v1/conversations/1/messages",
            loser_token,
            json!({"text": "mine now"}),
        )
        .await;
    assert_eq!(
        status, 409,
        "the loser cannot reply to the winner's conversation"
    );
    let (status, body) = winner
        .post_json(
            "/api/v1/conversations/1/messages",
            token,
            json!({"text": "how can I help?"}),
        )
        .await;
    assert!((200..=202).contains(&status), "{status} {body}");
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        id, "1-3",
        "the reply is the conversation's third message: {body}"
    );
    for host in [&a, &b] {
        eventually(
            "the reply recorded as sent, seen from both hosts",
            || async {
                let (_, m) = host
                    .get_json("/api/v1/conversations/1/messages?limit=200", token)
                    .await;
                m["messages"]
                    .as_array()?
                    .iter()
                    .find(|m| m["id"] == id.as_str() && m["status"] == "queued")
                    .cloned()
            },
        )
        .await;
    }
    // The send is done and out of the outbox: no host can claim it again.
    assert_eq!(
        twilio.hits().len(),
        1,
        "the reply went out once though both hosts sweep the outbox"
    );

    // A channel disabled through host A stops taking traffic on host B too, and comes back.
    let (status, body) = a
        .post_json("/api/v1/admin/channels/sms/disable", ADMIN, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("host B refusing the disabled channel", || async {
        (webhook(&b, "SM3", "+15550002", "anyone?").await == 404).then_some(())
    })
    .await;
    let (status, body) = b
        .post_json("/api/v1/admin/channels/sms/enable", ADMIN, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("host A taking the channel's traffic again", || async {
        (webhook(&a, "SM3", "+15550002", "anyone?").await == 200).then_some(())
    })
    .await;
    drop(pg);
}

/// A host killed while its send waits on the provider leaves a claim that lapses; the other
/// host then sends it. The repeat (the provider got the first attempt too) is the in-flight
/// window at-least-once delivery allows, and is counted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_left_by_a_dead_host_is_resumed_by_the_other() {
    let db = Shared::start().await;
    // The first attempt hangs (the host dies meanwhile); the next is answered at once.
    let twilio = ScriptedProvider::start(vec![
        Reply::new(201, twilio_created("SMslow")).after(Duration::from_secs(60)),
        Reply::new(201, twilio_created("SMresumed")),
    ])
    .await;
    let lease = [("PLUGBOARD_OUTBOX_LEASE_MS", "3000")];
    let mut hosts = start_together(vec![
        db.setup(Some(twilio.base.clone()), "", &lease),
        db.setup(Some(twilio.base.clone()), "", &lease),
    ]);
    let (mut a, b) = (hosts.remove(0), hosts.remove(0));
    assert_eq!(webhook(&a, "SM1", "+15550001", "hello").await, 200);
    let (status, _) = a
        .post_json("/api/v1/conversations/1/take", ALICE, json!({}))
        .await;
    assert_eq!(status, 200);
    let reply = a
        .http
        .post(a.url("/api/v1/conversations/1/messages"))
        .bearer_auth(ALICE)
        .json(&json!({"text": "on its way"}))
        .send();
    // The answer waits for the first attempt, which hangs: do not wait for it.
    let pending = tokio::spawn(reply);
    eventually("host A's attempt reaching the provider", || async {
        (!twilio.hits().is_empty()).then_some(())
    })
    .await;
    a.kill();
    pending.abort();

    let sent = eventually("host B resuming the send once the claim lapsed", || async {
        let (_, m) = b
            .get_json("/api/v1/conversations/1/messages?limit=200", ALICE)
            .await;
        m["messages"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == "1-2" && m["status"] == "queued")
            .cloned()
    })
    .await;
    assert_eq!(sent["provider_id"], "SMresumed");
    let hits = twilio.hits();
    assert_eq!(
        hits.len(),
        2,
        "one attempt by the dead host (in flight when it died), one by the survivor"
    );
    let gap = hits[1].at.duration_since(hits[0].at);
    assert!(
        gap >= Duration::from_millis(2_500),
        "the survivor waited for the claim to lapse, not sending beside a live holder: {gap:?}"
    );
}

/// The host that dispatches dies with an offer outstanding: the other host takes the role
/// over, sees the offer lapse at the time stored with it, withdraws it once and offers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_and_their_timeouts_survive_the_host_that_made_them() {
    let db = Shared::start().await;
    let mut hosts = start_together(vec![
        db.setup(None, "offer_timeout = 3", &[]),
        db.setup(None, "offer_timeout = 3", &[]),
    ]);
    let dispatching = |h: &Host| h.log().contains("this host now dispatches waiting work");
    let leader = eventually("one host dispatching", || async {
        let leaders: Vec<usize> = (0..2).filter(|&i| dispatching(&hosts[i])).collect();
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await;
    let mut dead = hosts.remove(leader);
    let survivor = hosts.remove(0);

    let mut stream = SseStream::open(&survivor, ALICE, None).await;
    survivor.presence(ALICE, "online").await;
    assert_eq!(webhook(&survivor, "SM1", "+15550001", "hello").await, 200);
    let offered = stream.next_of("offered").await;
    assert_eq!(offered.data["conversation"], "1");
    let expires = offered.data["data"]["expires_at"].as_u64().unwrap();
    dead.kill();

    let mut seen = Vec::new();
    loop {
        let e = stream.next().await;
        let next_offer = e.kind == "offered";
        seen.push(e);
        if next_offer {
            break;
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["offer_withdrawn", "offered"],
        "the lapsed offer is withdrawn once, then the work offered again: {seen:?}"
    );
    assert_eq!(seen[0].data["data"]["reason"], "timeout");
    assert!(
        seen[0].data["at"].as_u64().unwrap() >= expires,
        "withdrawn when the stored offer lapsed, not before"
    );
    assert!(dispatching(&survivor), "the survivor took the role over");
}

/// Posts one signed inbound SMS to `base` (a host's URL); `None` when the host is down.
async fn post_sms(http: &reqwest::Client, base: &str, sid: &str, from: &str) -> Option<u16> {
    let url = format!("{base}/webhooks/sms");
    let params = inbound_sms(sid, from, &format!("message {sid}"));
    let params = pairs(&params);
    let resp = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(AUTH_TOKEN, &url, &params),
        )
        .body(form(&params))
        .send()
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

/// Chaos: 2,000 signed webhooks spread over two hosts while one of them is SIGKILLed and
/// restarted three times, then 40 replies over both with that host killed once more. A webhook
/// is retried on the other host until one answers 200 (what a provider behind a load balancer
/// does). Every acknowledged message is stored once, every accepted reply is sent (duplicates
/// only from attempts in flight at a kill, counted), and every conversation still waiting
/// holds an offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_two_hosts_with_kills_lose_nothing() {
    const WEBHOOKS: usize = 2_000;
    const CUSTOMERS: usize = 100;
    const REPLIES: usize = 40;
    let db = Shared::start().await;
    let twilio = ScriptedProvider::start(vec![Reply::new(201, twilio_created("SMout"))]).await;
    let lease = [("PLUGBOARD_OUTBOX_LEASE_MS", "3000")];
    let mut hosts = start_together(vec![
        db.setup(Some(twilio.base.clone()), "", &lease),
        db.setup(Some(twilio.base.clone()), "", &lease),
    ]);
    hosts[0].presence(ALICE, "online").await;
    let bases: Vec<String> = hosts.iter().map(|h| h.base.clone()).collect();
    let acked = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (bases, acked, http) = (bases.clone(), acked.clone(), http.clone());
            tokio::spawn(async move {
                let mut retried = 0usize;
                for i in (w..WEBHOOKS).step_by(8) {
                    let sid = format!("SMchaos{i:05}");
                    let from = format!("+1555{:07}", i % CUSTOMERS);
                    let mut target = i % 2;
                    loop {
                        if post_sms(&http, &bases[target], &sid, &from).await == Some(200) {
                            break;
                        }
                        retried += 1;
                        target = 1 - target;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                retried
            })
        })
        .collect();
    for at in [WEBHOOKS / 4, WEBHOOKS / 2, 3 * WEBHOOKS / 4] {
        eventually("webhooks acknowledged before the next kill", || async {
            (acked.load(Ordering::SeqCst) >= at).then_some(())
        })
        .await;
        hosts[1].restart();
    }
    let mut retried = 0;
    for w in workers {
        retried += w.await.expect("a webhook worker panicked");
    }
    assert_eq!(acked.load(Ordering::SeqCst), WEBHOOKS);

    // Every acknowledged message stored once.
    let pg = db.client().await;
    let count = |sql: &'static str| {
        let pg = &pg;
        async move { pg.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM inbound_ids WHERE provider_id LIKE 'SMchaos%'").await,
        WEBHOOKS as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM messages WHERE record->>'direction' = 'inbound'").await,
        WEBHOOKS as i64,
        "each acknowledged message stored exactly once"
    );
    assert_eq!(
        count("SELECT count(*) FROM conversations").await,
        CUSTOMERS as i64
    );

    // Replies, spread over both hosts, with one more kill in the middle.
    let mut accepted = Vec::new();
    for i in 0..REPLIES {
        if i == REPLIES / 2 {
            hosts[1].restart();
        }
        let conversation = i % CUSTOMERS + 1;
        let host = &hosts[i % 2];
        if i < CUSTOMERS {
            let _ = host
                .post_json(
                    &format!("/api/v1/conversations/{conversation}/take"),
                    ALICE,
                    json!({}),
                )
                .await;
        }
        let (status, body) = host
            .post_json(
                &format!("/api/v1/conversations/{conversation}/messages"),
                ALICE,
                json!({"text": format!("reply {i}")}),
            )
            .await;
        assert!((200..=202).contains(&status), "reply {i}: {status} {body}");
        accepted.push(body["id"].as_str().expect("the reply's id").to_owned());
    }
    eventually("every accepted reply sent", || async {
        let left = count(
            "SELECT count(*) FROM messages WHERE record->>'direction' = 'outbound'
             AND record->>'status' = 'pending'",
        )
        .await;
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(
        count("SELECT count(*) FROM messages WHERE record->>'status' = 'queued'").await,
        REPLIES as i64,
        "every accepted reply ended sent, none failed"
    );
    let sends = twilio.hits().len();
    let duplicates = sends - REPLIES;
    println!(
        "chaos: {WEBHOOKS} webhooks ({retried} retried on the other host), {REPLIES} replies, \
         {sends} provider sends ({duplicates} repeated from the in-flight window)"
    );
    assert!(
        duplicates <= 8,
        "repeats only from attempts in flight at the kill during replies: {duplicates}"
    );

    // No offer lost: every conversation still waiting is offered to alice.
    eventually("every waiting conversation offered", || async {
        let bare = count(
            "SELECT count(*) FROM conversations WHERE state = 'queued'
             AND record->'offered_to' = '[]'::jsonb",
        )
        .await;
        (bare == 0).then_some(())
    })
    .await;
    assert!(
        count("SELECT count(*) FROM conversations WHERE state = 'queued'").await > 0,
        "work is still waiting, offered"
    );
}

async fn presence_on(host: &Host, token: &str) -> String {
    let (status, body) = host.get_json("/api/v1/agents/me/presence", token).await;
    assert_eq!(status, 200, "{body}");
    body["presence"].as_str().unwrap_or_default().to_owned()
}

/// An agent whose only event stream lived on a host that died is set offline once that host
/// has been silent for the heartbeat window; an agent who also has a stream on a live host
/// stays as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_does_not_outlive_the_host_of_the_stream() {
    let db = Shared::start().await;
    let window = [("PLUGBOARD_HEARTBEAT_WINDOW_MS", "3000")];
    let mut hosts = start_together(vec![
        db.setup(None, "", &window),
        db.setup(None, "", &window),
    ]);
    let (mut a, b) = (hosts.remove(0), hosts.remove(0));
    let _alice_on_a = SseStream::open(&a, ALICE, None).await;
    let _carol_on_a = SseStream::open(&a, CAROL, None).await;
    let _carol_on_b = SseStream::open(&b, CAROL, None).await;
    a.presence(ALICE, "online").await;
    b.presence(CAROL, "online").await;
    eventually("both online, seen from host B", || async {
        (presence_on(&b, ALICE).await == "online" && presence_on(&b, CAROL).await == "online")
            .then_some(())
    })
    .await;
    // Both hosts have recorded these streams before one dies.
    let pg = db.client().await;
    eventually("the streams recorded by the hosts' beats", || async {
        let rows = pg
            .query("SELECT agent FROM host_streams ORDER BY agent", &[])
            .await
            .unwrap();
        let agents: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        (agents == ["alice", "carol", "carol"]).then_some(())
    })
    .await;
    a.kill();

    eventually("alice offline once host A went silent", || async {
        (presence_on(&b, ALICE).await == "offline").then_some(())
    })
    .await;
    // Host A's records went in one statement: carol's stream on it was handled with alice's.
    assert_eq!(
        presence_on(&b, CAROL).await,
        "online",
        "carol's stream on host B keeps her online"
    );
}

/// Runs `plugboard` with `args` and the database URL in the environment; (exit code, output).
fn plugboard(args: &[&str], url: &str) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(args)
        .env("TEST_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running plugboard");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `plugboard migrate` applies the schema alone and says what it did; run again it changes
/// nothing; a schema from a newer release is refused by `migrate` and `serve`, naming both
/// versions; an unreachable database stops `serve` at once, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_runs_alone_and_refuses_a_newer_schema() {
    let db = Shared::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plugboard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1"
data_dir = "{data}"

[[queues]]
name = "support"
router = "ring-all"

[storage]
backend = "postgres"
url = "${{TEST_DATABASE_URL}}"
connect_timeout_ms = 2000
"#,
            port = support::free_port(),
            data = dir.path().join("data").display(),
        ),
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let version = plugboard::store::postgres::schema::SCHEMA_VERSION;
    let (code, out) = plugboard(&["migrate", "--config", path], &db.url);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("migrated from version 0 to {version}")),
        "{out}"
    );
    let (code, out) = plugboard(&["migrate", "--config", path], &db.url);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("current (version {version})")),
        "{out}"
    );

    let pg = db.client().await;
    pg.execute("INSERT INTO plugboard_schema (version) VALUES (999)", &[])
        .await
        .unwrap();
    for command in ["migrate", "serve"] {
        let (code, out) = plugboard(&[command, "--config", path], &db.url);
        assert_eq!(code, 1, "{command}: {out}");
        assert!(
            out.contains("schema version 999")
                && out.contains(&format!("this release's {version}")),
            "{command} names both versions: {out}"
        );
    }

    let closed = format!("postgres://postgres@127.0.0.1:{}/x", support::free_port());
    let started = std::time::Instant::now();
    let (code, out) = plugboard(&["serve", "--config", path], &closed);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("storage.url"),
        "the failure names the key: {out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "an unreachable database fails the start at once"
    );
}

/// Runs `openssl` with `args` in `dir`, failing the test with its output if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package `openssl`, which tests/setup.sh installs)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority and a server certificate for 127.0.0.1 it signed, in `dir`:
/// `ca.crt`, `server.crt`, `server.key` (the key readable by the server's user only).
fn certificates(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=plugboard test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    let chmod = std::process::Command::new("chmod")
        .args(["600", "server.key"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(chmod.success());
    let root = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() == "0" {
        let chown = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(chown.success());
    }
}

/// With `sslmode=require` the hosts talk to the database over TLS and verify its certificate
/// against `[storage] ca_file`: a server no authority vouches for is refused, naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_reached_over_verified_tls_when_the_url_asks() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let cluster = PgCluster::start_with(&format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        file("server.crt"),
        file("server.key")
    ));
    let plain = cluster.create_database("plugboard").await;
    let db = Shared {
        url: format!("{plain}?sslmode=require"),
        _cluster: cluster,
    };
    let ca = format!("ca_file = \"{}\"", file("ca.crt"));

    // No authority for the server's certificate: refused, naming the certificate.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plugboard.toml");
    let write = |storage: &str| {
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{}\"\npublic_url = \"http://127.0.0.1\"\n\
                 data_dir = \"{}\"\n[[queues]]\nname = \"support\"\nrouter = \"ring-all\"\n\
                 [storage]\nbackend = \"postgres\"\nurl = \"${{TEST_DATABASE_URL}}\"\n\
                 connect_timeout_ms = 5000\n{storage}\n",
                support::free_port(),
                dir.path().join("data").display()
            ),
        )
        .unwrap();
    };
    write("");
    let path = config.to_str().unwrap();
    let (code, out) = plugboard(&["migrate", "--config", path], &db.url);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.to_lowercase().contains("certificate"),
        "the refusal names the certificate: {out}"
    );
    write(&ca);
    let (code, out) = plugboard(&["migrate", "--config", path], &db.url);
    assert_eq!(code, 0, "with the CA the server is verified: {out}");

    // A host on it: its connections are encrypted.
    let host = Host::start(db.setup_with(None, "", &[], &ca));
    assert_eq!(webhook(&host, "SM1", "+15550001", "over TLS").await, 200);
    let (client, connection) = tokio_postgres::connect(&plain, tokio_postgres::NoTls)
        .await
        .expect("a plain connection for the check");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'plugboard%'",
            &[],
        )
        .await
        .unwrap();
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all > 0, "the host is connected");
    assert_eq!(encrypted, all, "every connection of the host is encrypted");
    assert_eq!(host.messages("1", ALICE).await.len(), 1);
}

/// A web chat visitor long-polling host A gets a reply an agent sent through host B within
/// about a second (host A looks at the shared store again every second while it waits),
/// not at the poll's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_polling_one_host_gets_a_reply_sent_through_the_other() {
    let db = Shared::start().await;
    let site = "[[channels]]\nname = \"site\"\nplugin = \"webchat\"\nqueue = \"support\"\n";
    let mut setups = vec![db.setup(None, "", &[]), db.setup(None, "", &[])];
    for s in &mut setups {
        s.extra = format!("{site}{}", s.extra);
    }
    let mut hosts = start_together(setups);
    let (a, b) = (hosts.remove(0), hosts.remove(0));
    let post = |host: &Host, path: &str, token: Option<String>, body: serde_json::Value| {
        let req = host.http.post(host.url(path)).json(&body);
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let (status, session) = post(&a, "/webchat/site/sessions", None, json!({})).await;
    assert_eq!(status, 201, "{session}");
    let token = session["token"].as_str().unwrap().to_owned();
    let (status, body) = post(
        &a,
        "/webchat/site/messages",
        Some(token.clone()),
        json!({"text": "hello?", "message_id": "w1"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let poll = spawn_visitor_poll(&a, "/webchat/site/messages?after=1&wait=25", &token);
    let (status, reply) = b
        .post_json(
            "/api/v1/conversations/1/messages",
            ALICE,
            json!({"text": "hi, from the other host"}),
        )
        .await;
    assert!((200..=202).contains(&status), "{status} {reply}");
    let replied = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the poll on host A answers within 10 s of the reply (its deadline is 25 s)")
        .expect("the poll");
    assert_eq!(
        answer["messages"][0]["text"], "hi, from the other host",
        "{answer}"
    );
    assert!(replied.elapsed() < Duration::from_secs(10));
}
