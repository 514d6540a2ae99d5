//! Webhook benchmark: `cargo bench -p plugboard --bench webhook`.
//!
//! In one run, on this machine:
//! 1. the plugin call alone: one `handle-webhook` of the bundled `twilio-sms` through the host's
//!    real plugin machinery (fresh store and instance per call), and one router `decide` with
//!    50 agents; median and p99 over many calls;
//! 2. a bare hyper server answering 200 to the same signed requests, loaded over loopback;
//! 3. the real `plugboard` binary ingesting signed Twilio webhooks from many distinct senders
//!    (signature check and parse in the plugin, durable store with group commit, routing, 200).
//!
//! The load generator is in this process: `CONNECTIONS` keep-alive HTTP/1.1 connections for
//! `SECONDS` seconds each (defaults 32 and 5). Figures are compared as ratios within the run.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use plugboard::bindings::wit;
use plugboard::config::LimitsConfig;
use plugboard::plugin::PluginSet;
use plugboard::sandbox::{Clock, Sandbox};

const AUTH_TOKEN: &str = "bench-auth-token";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sign(url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in &sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A realistic inbound SMS (field set of a real Twilio capture) from sender `n`.
fn sms_params(n: u64) -> Vec<(String, String)> {
    let sid = format!("SM{n:032x}");
    [
        ("ToCountry", "US".to_owned()),
        ("ToState", "District Of Columbia".to_owned()),
        ("SmsMessageSid", sid.clone()),
        ("NumMedia", "0".to_owned()),
        ("ToCity", String::new()),
        ("FromZip", "01022".to_owned()),
        ("SmsSid", sid.clone()),
        ("FromState", "MA".to_owned()),
        ("SmsStatus", "received".to_owned()),
        ("FromCity", "CHICOPEE".to_owned()),
        (
            "Body",
            format!("Hello, this is customer {n}; my order has not arrived yet."),
        ),
        ("FromCountry", "US".to_owned()),
        ("To", "+12028831111".to_owned()),
        ("ToZip", String::new()),
        ("NumSegments", "1".to_owned()),
        ("MessageSid", sid),
        ("AccountSid", "ACbench0000000000000000000000000".to_owned()),
        ("From", format!("+1{:010}", 4133000000u64 + n % 1_000_000)),
        ("ApiVersion", "2010-04-01".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn encode_form(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn plugin_call_bench(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(LimitsConfig::default(), Clock::System).unwrap());
    let plugins =
        PluginSet::load(&sandbox, plugboard_artifacts::BUNDLED, None, dir.path()).unwrap();
    let channel = plugins.channels["twilio-sms"].clone();
    let router = plugins.routers["ring-all"].clone();
    let url = "https://hooks.example.com/webhooks/sms".to_owned();
    let settings = Arc::new(vec![
        ("account_sid".to_owned(), "ACbench".to_owned()),
        ("auth_token".to_owned(), AUTH_TOKEN.to_owned()),
        ("from".to_owned(), "+12028831111".to_owned()),
    ]);
    let calls = env_num("PLUGIN_CALLS", 3000);
    let mut times = Vec::with_capacity(calls as usize);
    rt.block_on(async {
        for n in 0..calls + 200 {
            let params = sms_params(n);
            let req = wit::HttpRequest {
                method: "POST".into(),
                url: url.clone(),
                headers: vec![
                    (
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ),
                    ("x-twilio-signature".into(), sign(&url, &params)),
                ],
                body: encode_form(&params).into_bytes(),
            };
            let start = Instant::now();
            let out = channel
                .handle_webhook(&sandbox, "sms", req, settings.clone())
                .await
                .unwrap();
            let elapsed = start.elapsed();
            assert!(matches!(out, Ok(ref o) if o.events.len() == 1), "{out:?}");
            if n >= 200 {
                times.push(elapsed);
            }
        }
    });
    times.sort();
    println!(
        "plugin call  handle-webhook (twilio-sms, fresh instance)  median {:>8.1?}  p99 {:>8.1?}  ({} calls)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.len()
    );

    let agents: Vec<wit::AgentState> = (0..50)
        .map(|i| wit::AgentState {
            id: format!("agent-{i}"),
            presence: if i % 3 == 0 {
                wit::Presence::Away
            } else {
                wit::Presence::Online
            },
            active: i % 4,
            capacity: 3,
            idle_since: Some(1_700_000_000 + i as u64),
            last_offered: None,
            last_assigned: None,
            skills: vec!["billing".into()],
        })
        .collect();
    let mut times = Vec::new();
    rt.block_on(async {
        for n in 0..calls + 200 {
            let work = wit::WaitingWork {
                conversation: n.to_string(),
                queue: "support".into(),
                channel: "sms".into(),
                skills: vec![],
                waiting_since: 1_700_000_000,
                now: 1_700_000_100,
                tried: vec![],
            };
            let start = Instant::now();
            let d = router.decide(&sandbox, work, agents.clone()).await.unwrap();
            let elapsed = start.elapsed();
            assert!(matches!(d, wit::Decision::Offer(_)));
            if n >= 200 {
                times.push(elapsed);
            }
        }
    });
    times.sort();
    println!(
        "plugin call  decide (ring-all, 50 agents, fresh instance)     median {:>8.1?}  p99 {:>8.1?}  ({} calls)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.len()
    );
}

/// Builds request `n` as (path, headers, body).
type MakeRequest = Arc<dyn Fn(u64) -> (String, Vec<(String, String)>, String) + Send + Sync>;

/// The result of one load run.
struct LoadResult {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Drives `connections` keep-alive connections against `addr` for `seconds`, each request
/// built by `make(n)` as (path, headers, body); counts non-2xx answers as errors.
async fn load(
    addr: std::net::SocketAddr,
    connections: u64,
    seconds: u64,
    make: MakeRequest,
) -> LoadResult {
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (counter, stop, errors, make) =
            (counter.clone(), stop.clone(), errors.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let (path, headers, body) = make(n);
                let mut req = hyper::Request::post(path).header("host", addr.to_string());
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let req = req.body(Full::new(Bytes::from(body))).unwrap();
                let t = Instant::now();
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    LoadResult {
        requests: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies,
    }
}

fn report(name: &str, r: &LoadResult) -> f64 {
    let rps = r.requests as f64 / r.elapsed.as_secs_f64();
    println!(
        "{name:<44} {rps:>9.0} req/s  p50 {:>8.1?}  p99 {:>8.1?}  ({} requests, {} errors)",
        percentile(&r.latencies, 0.5),
        percentile(&r.latencies, 0.99),
        r.requests,
        r.errors
    );
    rps
}

async fn bare_hyper() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("webhook: bench");
        return;
    }
    let connections = env_num("CONNECTIONS", 32);
    let seconds = env_num("SECONDS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!("== plugin call alone (in-process) ==");
    plugin_call_bench(&rt);

    println!("== loopback load: {connections} connections, {seconds} s each ==");
    let bare_addr = rt.block_on(bare_hyper());
    let public = "http://bench.example".to_owned();
    let make_req = {
        let public = public.clone();
        Arc::new(move |n: u64| {
            let params = sms_params(n);
            let url = format!("{public}/webhooks/sms");
            let sig = sign(&url, &params);
            (
                "/webhooks/sms".to_owned(),
                vec![
                    (
                        "content-type".to_owned(),
                        "application/x-www-form-urlencoded".to_owned(),
                    ),
                    ("x-twilio-signature".to_owned(), sig),
                ],
                encode_form(&params),
            )
        }) as MakeRequest
    };
    let bare = rt.block_on(load(bare_addr, connections, seconds, make_req.clone()));
    let bare_rps = report("bare hyper 200 (limit)", &bare);

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{public}"
data_dir = "{data}"
[[queues]]
name = "support"
router = "ring-all"
[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "support"
[channels.settings]
account_sid = "ACbench0000000000000000000000000"
auth_token = "{AUTH_TOKEN}"
from = "+12028831111"
[[agents]]
id = "alice"
name = "Alice"
token = "alice-bench-token"
queues = ["support"]
"#,
        data = dir.path().join("data").display()
    );
    let config_path = dir.path().join("bench.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ready = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "plugboard did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ingest = rt.block_on(load(addr, connections, seconds, make_req));
    let ingest_rps = report("plugboard ingest (signed, durable, routed)", &ingest);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "ratio ingest / bare hyper: {:.1}%",
        100.0 * ingest_rps / bare_rps.max(1.0)
    );
}
