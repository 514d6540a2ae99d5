//! Plugboard's performance benchmark (issue 7): `cargo bench -p plugboard --bench webhook`, or
//! `host/benches/run.sh`. BENCHMARKS.md explains every line and records a run.
//!
//! In one run, on loopback, against the real `plugboard` binary where a server is involved:
//! 1. **limit**: a bare hyper server (a child process, like plugboard) answering 200 to the same
//!    signed requests; and the **durable limit**, a hyper server that answers 200 only once the
//!    request's body is appended to a file under a group `fdatasync`;
//! 2. **ingest**: signed Twilio SMS webhooks from many distinct senders with realistic bodies
//!    (signature check and parse in the plugin, durable store with group commit, routing, 200),
//!    with nobody online and again with the queue's agent online (every conversation offered);
//! 3. **plugin call alone** (in-process): one `handle-webhook` of the bundled `twilio-sms` and
//!    one `decide` of `ring-all` with 50 agents, through the host's real plugin machinery,
//!    with instance reuse and with a fresh instance per call, on the pooling and the on-demand
//!    instance allocators;
//! 4. **outbound**: agents' replies posted concurrently through the agent API
//!    (`POST /api/v1/conversations/{id}/messages`), drained through the outbox to a fake
//!    provider on loopback (answering 201 `{"sid": ...}`), counting the connections it accepts;
//! 5. **start-up**: process start to `/healthz` 200 with 20 plugins (the 9 bundled plus 11 distinct
//!    files in `plugins_dir`), cold (empty compiled-plugin cache) and warm (second start);
//! 6. **isolation** (issue 11): signed webhooks to a healthy channel, sequential, on an idle host
//!    and then while a hostile channel (the `sleeps` test guest, every call blocked in WASI
//!    until its deadline) has 64 requests in flight, in one host process;
//! 7. **storage** (issue 12, only with `BENCH_ONLY=storage`: minutes of loading): a data
//!    directory of 1,000,000 conversations loaded in-process through the real `Store`, then the
//!    real `plugboard` restarted on it (spawn to ready) and paged lists over HTTP, per
//!    `[storage] cache_mib`;
//! 8. **postgres** (issue 13, only with `BENCH_ONLY=postgres`, which needs Debian's
//!    `postgresql`): ingest on sled, on PostgreSQL with one host and with two hosts sharing
//!    the database, beside the durable limit, with the database's CPU (see `webhook/postgres.rs`);
//!
//! plus resident memory per loaded plugin and per idle channel instance. Server figures carry
//! the CPU time (utime + stime from `/proc/<pid>/stat`) per request and the peak resident size
//! (`VmHWM`) of the server process. One table is printed at the end.
//!
//! The load generator is in this process: `CONNECTIONS` keep-alive HTTP/1.1 connections for
//! `SECONDS` seconds (defaults 32 and 5); `PLUGIN_CALLS` (3000) calls per microbenchmark;
//! `OUTBOUND_MESSAGES` (4000) replies; `STARTUP_RUNS` (5) starts per start-up figure.
//! `ISOLATION_WEBHOOKS` (5000) healthy webhooks per isolation phase.
//! `BENCH_STORAGE_CONVERSATIONS` (1000000), `BENCH_STORAGE_REQUESTS` (2000 lists per view),
//! `BENCH_STORAGE_CACHES` (`64,256`) and `BENCH_STORAGE_DIR` (keep and reuse the data) shape
//! item 7.
//! `BENCH_ONLY=calls,ingest,outbound,startup,memory,isolation` runs a subset, and
//! `CALL_VARIANTS=reuse-pooling,fresh-pooling,reuse-on-demand,fresh-on-demand` narrows item 3
//! (to profile one variant).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "webhook/postgres.rs"]
mod postgres;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use plugboard::clock::Clock;
use plugboard::config::LimitsConfig;
use plugboard::runtime::bindings::wit;
use plugboard::runtime::engine::Allocator;
use plugboard::runtime::plugin::PluginSet;
use plugboard::runtime::sandbox::{InstanceReuse, Sandbox, SandboxOptions};

/// The metrics token of the metrics-on server of item 2m.
const METRICS_TOKEN: &str = "bench-metrics-token";
const AUTH_TOKEN: &str = "bench-auth-token";
const AGENT_TOKEN: &str = "alice-bench-token";
const PUBLIC_URL: &str = "http://bench.example";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether `BENCH_ONLY` names `section` (for the sections the default run leaves out).
fn named(section: &str) -> bool {
    std::env::var("BENCH_ONLY").is_ok_and(|only| only.split(',').any(|s| s.trim() == section))
}

fn wanted(section: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|s| s.trim() == section),
        _ => true,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

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

/// Signed webhook `n` for channel instance `channel`, as (path, headers, body).
fn webhook(channel: &str, n: u64) -> (String, Vec<(String, String)>, String) {
    let params = sms_params(n);
    let path = format!("/webhooks/{channel}");
    let sig = sign(&format!("{PUBLIC_URL}{path}"), &params);
    (
        path,
        vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("x-twilio-signature".to_owned(), sig),
        ],
        encode_form(&params),
    )
}

// ---------------------------------------------------------------------------------------------
// Figures and the final table

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One line of the final table; empty cells are `None`.
#[derive(Default)]
struct Row {
    item: &'static str,
    what: String,
    rate: Option<f64>,
    p50: Option<Duration>,
    p99: Option<Duration>,
    cpu: Option<Duration>,
    rss_kib: Option<u64>,
    note: String,
}

fn fmt_dur(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < Duration::from_millis(1) => format!("{:.1} µs", d.as_secs_f64() * 1e6),
        Some(d) if d < Duration::from_secs(1) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| # | measurement | rate /s | p50 | p99 | CPU per req | peak RSS | notes |\n|---|---|---:|---:|---:|---:|---:|---|"
    );
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.item,
            r.what,
            r.rate.map_or("-".into(), |v| format!("{v:.0}")),
            fmt_dur(r.p50),
            fmt_dur(r.p99),
            fmt_dur(r.cpu),
            r.rss_kib.map_or("-".into(), |k| if k < 4096 {
                format!("{k} KiB")
            } else {
                format!("{:.1} MiB", k as f64 / 1024.0)
            }),
            r.note
        );
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of process `pid`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
}

/// A `kB` line of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in KiB.
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// 3. The plugin call alone

fn agents50() -> Vec<wit::AgentState> {
    (0..50)
        .map(|i| wit::AgentState {
            index: i,
            presence: if i % 3 == 0 {
                wit::Presence::Away
            } else {
                wit::Presence::Online
            },
            active: i % 4,
            capacity: 3,
            idle_since: Some(1_700_000_000 + u64::from(i)),
            last_offered: None,
            last_assigned: None,
            skills: 0b1,
            tried: false,
        })
        .collect()
}

/// Times `calls` runs of `f` after a warm-up, sorted.
fn time_calls(calls: u64, mut f: impl FnMut(u64)) -> Vec<Duration> {
    let warmup = 200;
    let mut times = Vec::with_capacity(calls as usize);
    for n in 0..calls + warmup {
        let start = Instant::now();
        f(n);
        if n >= warmup {
            times.push(start.elapsed());
        }
    }
    times.sort();
    times
}

/// [`time_calls`] for an async call, awaited in the calling task.
async fn time_calls_async<F, Fut>(calls: u64, mut f: F) -> Vec<Duration>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let warmup = 200;
    let mut times = Vec::with_capacity(calls as usize);
    for n in 0..calls + warmup {
        let start = Instant::now();
        f(n).await;
        if n >= warmup {
            times.push(start.elapsed());
        }
    }
    times.sort();
    times
}

/// One plugin-call figure: median, p99, instantiations per call.
struct CallFigure {
    function: &'static str,
    path: &'static str,
    p50: Duration,
    p99: Duration,
    instantiations_per_call: f64,
}

/// `handle-webhook` and `decide` (50 agents) on one sandbox setup, through the async API the
/// host uses (call slot + blocking thread) and in-thread (the machinery alone).
fn plugin_calls(
    rt: &tokio::runtime::Runtime,
    cache: &Path,
    allocator: Allocator,
    reuse: InstanceReuse,
    calls: u64,
) -> Vec<CallFigure> {
    let options = SandboxOptions { reuse, allocator };
    let sandbox =
        Arc::new(Sandbox::with_options(LimitsConfig::default(), Clock::System, options).unwrap());
    let plugins = PluginSet::load(&sandbox, plugboard_artifacts::BUNDLED, None, cache).unwrap();
    let channel = plugins.channels["twilio-sms"].clone();
    let router = plugins.routers["ring-all"].clone();
    let url = "https://hooks.example.com/webhooks/sms".to_owned();
    let settings = Arc::new(vec![
        ("account_sid".to_owned(), "ACbench".to_owned()),
        ("auth_token".to_owned(), AUTH_TOKEN.to_owned()),
        ("from".to_owned(), "+12028831111".to_owned()),
    ]);
    let req = |n: u64| {
        let params = sms_params(n);
        wit::HttpRequest {
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
        }
    };
    // Requests are built before timing so only the call is measured.
    let reqs: Arc<Vec<wit::HttpRequest>> = Arc::new((0..calls + 200).map(req).collect());
    let agents = agents50();
    fn work(n: u64) -> wit::WaitingWork {
        wit::WaitingWork {
            conversation: n.to_string(),
            queue: "support".into(),
            channel: "sms".into(),
            skills: vec![],
            waiting_since: 1_700_000_000,
            now: 1_700_000_100,
        }
    }
    let mut out = Vec::new();
    let mut figure = |function, path, times: Vec<Duration>, before: u64, after: u64| {
        out.push(CallFigure {
            function,
            path,
            p50: percentile(&times, 0.5),
            p99: percentile(&times, 0.99),
            instantiations_per_call: (after - before) as f64 / (times.len() + 200) as f64,
        });
    };

    let before = channel.instances().instantiations();
    let times = time_calls(calls, |n| {
        let out = channel
            .handle_webhook_blocking(&sandbox, "sms", &reqs[n as usize], &settings)
            .unwrap();
        assert!(matches!(out, Ok(ref o) if o.events.len() == 1), "{out:?}");
    });
    let after = channel.instances().instantiations();
    figure("handle-webhook", "in-thread", times, before, after);

    // The async API is timed from a task on a runtime worker, where the host calls it.
    let times = {
        let (channel, sandbox, reqs, settings) = (
            channel.clone(),
            sandbox.clone(),
            reqs.clone(),
            settings.clone(),
        );
        rt.block_on(rt.spawn(async move {
            time_calls_async(calls, |n| {
                let (channel, sandbox, settings) =
                    (channel.clone(), sandbox.clone(), settings.clone());
                let req = reqs[n as usize].clone();
                async move {
                    let out = channel
                        .handle_webhook(&sandbox, "sms", req, settings)
                        .await
                        .unwrap();
                    assert!(matches!(out, Ok(ref o) if o.events.len() == 1), "{out:?}");
                }
            })
            .await
        }))
        .unwrap()
    };
    let last = channel.instances().instantiations();
    figure("handle-webhook", "async API", times, after, last);

    let before = router.instances().instantiations();
    let times = time_calls(calls, |n| {
        let d = router.decide_blocking(&sandbox, &work(n), &agents).unwrap();
        assert!(matches!(d, wit::Decision::Offer(_)));
    });
    let after = router.instances().instantiations();
    figure("decide", "in-thread", times, before, after);

    let times = {
        let (router, sandbox, agents) = (router.clone(), sandbox.clone(), agents.clone());
        rt.block_on(rt.spawn(async move {
            time_calls_async(calls, |n| {
                let (router, sandbox, agents) = (router.clone(), sandbox.clone(), agents.clone());
                async move {
                    let d = router.decide(&sandbox, work(n), agents).await.unwrap();
                    assert!(matches!(d, wit::Decision::Offer(_)));
                }
            })
            .await
        }))
        .unwrap()
    };
    let last = router.instances().instantiations();
    figure("decide", "async API", times, after, last);
    out
}

fn plugin_call_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let calls = env_num("PLUGIN_CALLS", 3000);
    let cache = tempfile::tempdir().unwrap();
    println!("== 3. plugin call alone (in-process, {calls} calls each) ==");
    let variants = [
        (
            Allocator::Pooling,
            InstanceReuse::default(),
            "reuse",
            "pooling",
        ),
        (Allocator::Pooling, InstanceReuse::FRESH, "fresh", "pooling"),
        (
            Allocator::OnDemand,
            InstanceReuse::default(),
            "reuse",
            "on-demand",
        ),
        (
            Allocator::OnDemand,
            InstanceReuse::FRESH,
            "fresh",
            "on-demand",
        ),
    ];
    // `CALL_VARIANTS=reuse-pooling,...` narrows the variants (for profiling one of them).
    let only = std::env::var("CALL_VARIANTS").unwrap_or_default();
    for (allocator, reuse, mode, alloc) in variants {
        if !only.is_empty() && !only.split(',').any(|v| v == format!("{mode}-{alloc}")) {
            continue;
        }
        for f in plugin_calls(rt, cache.path(), allocator, reuse, calls) {
            let what = format!(
                "{} ({}), {mode}, {alloc}, {}",
                f.function,
                match f.function {
                    "decide" => "ring-all, 50 agents",
                    _ => "twilio-sms",
                },
                f.path
            );
            println!(
                "{what:<58} median {:>10}  p99 {:>10}  ({:.3} instantiations per call)",
                fmt_dur(Some(f.p50)),
                fmt_dur(Some(f.p99)),
                f.instantiations_per_call
            );
            // The table keeps every pooling figure and the on-demand in-thread ones.
            if allocator == Allocator::Pooling || f.path == "in-thread" {
                rows.push(Row {
                    item: "3",
                    what,
                    p50: Some(f.p50),
                    p99: Some(f.p99),
                    note: format!("{:.3} instantiations per call", f.instantiations_per_call),
                    ..Row::default()
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load generation

/// Builds request `n` as (path, headers, body).
type MakeRequest = Arc<dyn Fn(u64) -> (String, Vec<(String, String)>, String) + Send + Sync>;

/// When a load run ends.
#[derive(Clone, Copy)]
enum Until {
    /// After this long.
    Elapsed(Duration),
    /// After this many requests were sent.
    Requests(u64),
}

/// The result of one load run.
struct LoadResult {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Drives `connections` keep-alive connections against `addr` until `until`, each request
/// built by `make(n)`, a POST; counts non-2xx answers as errors.
async fn load(addr: SocketAddr, connections: u64, until: Until, make: MakeRequest) -> LoadResult {
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let limit = match until {
        Until::Requests(n) => n,
        Until::Elapsed(_) => u64::MAX,
    };
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
                if n >= limit {
                    break;
                }
                let (path, headers, body) = make(n);
                let mut req = hyper::Request::post(path).header("host", addr.to_string());
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let req = req.body(Full::new(Bytes::from(body))).unwrap();
                let t = Instant::now();
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await;
                        if !status.is_success() && errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            let body = body.map(|b| b.to_bytes()).unwrap_or_default();
                            eprintln!(
                                "first failed request: {status} {}",
                                String::from_utf8_lossy(&body)
                            );
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
    if let Until::Elapsed(d) = until {
        tokio::time::sleep(d).await;
        stop.store(true, Ordering::Relaxed);
    }
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

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: String,
) -> (u16, Bytes) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

// ---------------------------------------------------------------------------------------------
// Servers: the bare hyper limit, the fake provider, the plugboard process

/// Serves `200 ok` to everything on `listener` (the bare hyper limit).
async fn serve_bare(listener: tokio::net::TcpListener) {
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The bare hyper server as its own process (this binary with `--serve-bare`), so its CPU and
/// memory are measured the way plugboard's are. Prints its port on stdout.
fn bare_server_main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        serve_bare(listener).await;
    });
}

/// Serves `200 ok` to every request only once its body is appended to a file in `dir` and a
/// `fdatasync` covering it returned (the durable limit): one writer thread takes every body
/// waiting, writes them, syncs once and answers them all, the group commit any durable
/// acknowledgement needs.
async fn serve_durable(listener: tokio::net::TcpListener, dir: std::path::PathBuf) {
    type Ack = tokio::sync::oneshot::Sender<()>;
    let (tx, rx) = std::sync::mpsc::channel::<(Bytes, Ack)>();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("durable.log"))
            .unwrap();
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            for (body, _) in &batch {
                file.write_all(body).unwrap();
            }
            file.sync_data().unwrap();
            for (_, ack) in batch {
                let _ = ack.send(());
            }
        }
    });
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let (ack, acked) = tokio::sync::oneshot::channel();
                        tx.send((body, ack)).unwrap();
                        let _ = acked.await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The durable-limit server as its own process (this binary with `--serve-durable DIR`).
/// Prints its port on stdout.
fn durable_server_main(dir: std::path::PathBuf) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        serve_durable(listener, dir).await;
    });
}

/// Starts this binary with `args` as a server process and reads the port it prints.
fn spawn_limit_server(args: &[&std::ffi::OsStr]) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let port: u16 = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().parse().unwrap()
    };
    (child, format!("127.0.0.1:{port}").parse().unwrap())
}

/// A fake SMS provider: answers every request `201 {"sid": ...}` and counts requests and
/// accepted connections.
struct FakeProvider {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

async fn fake_provider() -> FakeProvider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let (req_count, conn_count) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            conn_count.fetch_add(1, Ordering::Relaxed);
            let req_count = req_count.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let req_count = req_count.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            let n = req_count.fetch_add(1, Ordering::Relaxed);
                            let body = format!(
                                r#"{{"sid":"SM{n:032x}","status":"queued","num_segments":"1"}}"#
                            );
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = hyper::StatusCode::CREATED;
                            resp.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    FakeProvider {
        addr,
        requests,
        connections,
    }
}

/// The agent API headers of the benchmark's agent.
fn agent_auth() -> Vec<(String, String)> {
    vec![
        ("authorization".to_owned(), format!("Bearer {AGENT_TOKEN}")),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a plugboard configuration for the benchmark holds.
struct Setup<'a> {
    port: u16,
    data_dir: &'a Path,
    plugins_dir: Option<&'a Path>,
    /// Channel instance names (all `twilio-sms`).
    channels: Vec<String>,
    provider: SocketAddr,
}

fn write_config(dir: &Path, s: &Setup<'_>) -> PathBuf {
    let mut config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{PUBLIC_URL}"
data_dir = "{data}"
{plugins}
[[queues]]
name = "support"
router = "ring-all"

[[agents]]
id = "alice"
name = "Alice"
token = "{AGENT_TOKEN}"
queues = ["support"]
"#,
        port = s.port,
        data = s.data_dir.display(),
        plugins = s
            .plugins_dir
            .map(|p| format!("plugins_dir = \"{}\"", p.display()))
            .unwrap_or_default(),
    );
    for name in &s.channels {
        config.push_str(&format!(
            r#"
[[channels]]
name = "{name}"
plugin = "twilio-sms"
queue = "support"
[channels.settings]
account_sid = "ACbench0000000000000000000000000"
auth_token = "{AUTH_TOKEN}"
from = "+12028831111"
api_base = "http://{provider}"
"#,
            provider = s.provider
        ));
    }
    let path = dir.join(format!("bench-{}.toml", s.port));
    std::fs::write(&path, config).unwrap();
    path
}

/// A running plugboard process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Process start to `/healthz` 200.
    startup: Duration,
}

impl Server {
    /// A server with one `twilio-sms` channel named `sms` sending to `provider`, its data in
    /// `dir/data`.
    fn start_sms(dir: &Path, data: &str, provider: SocketAddr) -> Server {
        let data = dir.join(data);
        Server::start(
            dir,
            &Setup {
                port: free_port(),
                data_dir: &data,
                plugins_dir: None,
                channels: vec!["sms".into()],
                provider,
            },
        )
    }

    fn start(dir: &Path, setup: &Setup<'_>) -> Server {
        let config = write_config(dir, setup);
        Server::start_config(&config, setup.port, &[], Stdio::inherit())
    }

    /// Starts plugboard on the configuration file `config` (listening on `port`), with `env`
    /// set on top of the benchmark's defaults and its log going to `stderr`.
    fn start_config(config: &Path, port: u16, env: &[(&str, &str)], stderr: Stdio) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let start = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_plugboard"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            // The edge's per-channel and per-token request-rate limits are off: the benchmark
            // measures capacity, not the limiter.
            .env("PLUGBOARD_WEBHOOK_RATE", "0")
            .env("PLUGBOARD_API_RATE", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            addr,
            startup: Duration::ZERO,
        };
        while !healthy(addr) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "plugboard did not become ready"
            );
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("plugboard exited during start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        server.startup = start.elapsed();
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it the way an operator would (SIGTERM, a clean shutdown), killing it after 60 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("plugboard did not stop within 60 s of SIGTERM; killed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /healthz` answers 200.
fn healthy(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"HTTP/1.1 200")
}

/// CPU time and peak RSS of a server over a load run.
fn server_row(
    item: &'static str,
    what: &str,
    pid: u32,
    cpu_before: Duration,
    r: &LoadResult,
    note: String,
) -> Row {
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    println!(
        "{what:<44} {:>9.0} /s  p50 {:>10}  p99 {:>10}  CPU/req {:>10}  peak RSS {:>6} KiB  ({} requests, {} errors)",
        r.rate(),
        fmt_dur(Some(percentile(&r.latencies, 0.5))),
        fmt_dur(Some(percentile(&r.latencies, 0.99))),
        fmt_dur(Some(cpu / r.requests.max(1) as u32)),
        status_kib(pid, "VmHWM"),
        r.requests,
        r.errors
    );
    Row {
        item,
        what: what.to_owned(),
        rate: Some(r.rate()),
        p50: Some(percentile(&r.latencies, 0.5)),
        p99: Some(percentile(&r.latencies, 0.99)),
        cpu: Some(cpu / r.requests.max(1) as u32),
        rss_kib: Some(status_kib(pid, "VmHWM")),
        note: if r.errors > 0 {
            format!("{note}; {} errors", r.errors)
        } else {
            note
        },
    }
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: limit and ingest

/// Warms `server` up for 0.5 s on senders the measured window does not reuse, then runs the
/// window; returns its result and the server's CPU time at its start.
fn warm_then_measure(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    connections: u64,
    window: Until,
    make: MakeRequest,
) -> (LoadResult, Duration) {
    let warm: MakeRequest = Arc::new(|n| webhook("sms", 5_000_000 + n));
    rt.block_on(load(
        server.addr,
        connections,
        Until::Elapsed(Duration::from_millis(500)),
        warm,
    ));
    let before = cpu_time(server.pid());
    (
        rt.block_on(load(server.addr, connections, window, make)),
        before,
    )
}

/// Runs one limit server (this binary with `args`, a process of its own): a short warm-up so it
/// starts the window with its threads and buffers up, then the `window` of load, then stops
/// it. Returns the load and its table row (`item`, `what`, and `note` of the load).
fn measure_limit(
    rt: &tokio::runtime::Runtime,
    args: &[&std::ffi::OsStr],
    (item, what): (&'static str, &str),
    (connections, window, make): (u64, Until, &MakeRequest),
    note: impl Fn(&LoadResult) -> String,
) -> (LoadResult, Row) {
    let (mut server, addr) = spawn_limit_server(args);
    let pid = server.id();
    let warm_up = Until::Elapsed(Duration::from_millis(500));
    rt.block_on(load(addr, connections, warm_up, make.clone()));
    let before = cpu_time(pid);
    let result = rt.block_on(load(addr, connections, window, make.clone()));
    let row = server_row(item, what, pid, before, &result, note(&result));
    let _ = server.kill();
    let _ = server.wait();
    (result, row)
}

fn ingest_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let connections = env_num("CONNECTIONS", 32);
    let seconds = env_num("SECONDS", 5);
    let window = Until::Elapsed(Duration::from_secs(seconds));
    println!("== 1, 2. loopback load: {connections} connections, {seconds} s each ==");
    let make: MakeRequest = Arc::new(|n| webhook("sms", n));

    let (limit, limit_row) = measure_limit(
        rt,
        &["--serve-bare".as_ref()],
        ("1", "bare hyper 200 (limit)"),
        (connections, window, &make),
        |_| String::new(),
    );
    // The durable limit: every request appended to a file and acknowledged after a group
    // fdatasync covering it, the fastest a durable acknowledgement can be here.
    let dir = tempfile::tempdir().unwrap();
    let (durable_limit, durable_row) = measure_limit(
        rt,
        &["--serve-durable".as_ref(), dir.path().as_os_str()],
        ("1b", "durable limit (append + group fdatasync, 200)"),
        (connections, window, &make),
        |r| {
            format!(
                "{:.1}% of the bare limit",
                100.0 * r.rate() / limit.rate().max(1.0)
            )
        },
    );

    let provider = rt.block_on(fake_provider());
    let server = Server::start_sms(dir.path(), "data", provider.addr);
    let (ingest, before) = warm_then_measure(rt, &server, connections, window, make.clone());
    let ratio = 100.0 * ingest.rate() / limit.rate().max(1.0);
    let durable_ratio = 100.0 * ingest.rate() / durable_limit.rate().max(1.0);
    let ingest_row = server_row(
        "2",
        "plugboard ingest (signed, durable, routed)",
        server.pid(),
        before,
        &ingest,
        format!(
            "{durable_ratio:.1}% of the durable limit (target ≥ 50%), {ratio:.1}% of the bare limit (target ≥ 25%)"
        ),
    );
    println!("ratio ingest / bare hyper: {ratio:.1}%; ingest / durable limit: {durable_ratio:.1}%");
    drop(server);

    // The same with the queue's agent online: every new conversation is also offered (a router
    // `decide`, the offer stored, an `offered` event).
    let server = Server::start_sms(dir.path(), "data-online", provider.addr);
    let auth = agent_auth();
    let (status, body) = rt.block_on(request(
        server.addr,
        "PUT",
        "/api/v1/agents/me/presence",
        &auth,
        r#"{"presence":"online"}"#.to_owned(),
    ));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (online, before) = warm_then_measure(rt, &server, connections, window, make);
    let online_ratio = 100.0 * online.rate() / limit.rate().max(1.0);
    let online_row = server_row(
        "2",
        "… with the agent online (each one offered)",
        server.pid(),
        before,
        &online,
        format!("{online_ratio:.1}% of the limit"),
    );
    rows.push(limit_row);
    rows.push(durable_row);
    rows.push(ingest_row);
    rows.push(online_row);
}

// ---------------------------------------------------------------------------------------------
// 2m. Ingest with metrics on against off (issue 15)

/// Two servers at once, metrics off and on (scraped every second while measured), measured in
/// turn `METRICS_ROUNDS` times each, so the machine's drift falls on both alike.
fn metrics_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let connections = env_num("CONNECTIONS", 32);
    let seconds = env_num("SECONDS", 5);
    let rounds = env_num("METRICS_ROUNDS", 2);
    let window = Until::Elapsed(Duration::from_secs(seconds));
    println!("== 2m. ingest, metrics off and on: {rounds} rounds of {seconds} s each ==");
    let provider = rt.block_on(fake_provider());
    let dir = tempfile::tempdir().unwrap();
    let off = Server::start_sms(dir.path(), "data-m-off", provider.addr);
    let on = {
        let data = dir.path().join("data-m-on");
        let port = free_port();
        let config = write_config(
            dir.path(),
            &Setup {
                port,
                data_dir: &data,
                plugins_dir: None,
                channels: vec!["sms".into()],
                provider: provider.addr,
            },
        );
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "[server]\n",
            &format!("[server]\nmetrics_token = \"{METRICS_TOKEN}\"\n"),
            1,
        );
        std::fs::write(&config, text).unwrap();
        Server::start_config(&config, port, &[], Stdio::inherit())
    };
    let mut totals = [Totals::default(), Totals::default()];
    for round in 0..rounds {
        for (i, server) in [&off, &on].into_iter().enumerate() {
            let base = 20_000_000 * (round + 1) + 10_000_000 * i as u64;
            let make: MakeRequest = Arc::new(move |n| webhook("sms", base + n));
            let scraping = (i == 1).then(|| {
                let addr = server.addr;
                rt.spawn(async move {
                    let auth = vec![(
                        "authorization".to_owned(),
                        format!("Bearer {METRICS_TOKEN}"),
                    )];
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let (status, _) =
                            request(addr, "GET", "/metrics", &auth, String::new()).await;
                        assert_eq!(status, 200, "scraping /metrics");
                    }
                })
            });
            let (result, before) = warm_then_measure(rt, server, connections, window, make);
            if let Some(task) = scraping {
                task.abort();
            }
            totals[i].add(result, cpu_time(server.pid()).saturating_sub(before));
        }
    }
    let ratio = 100.0 * totals[1].rate() / totals[0].rate().max(1.0);
    let cpu_more = 100.0 * (totals[1].cpu_per() / totals[0].cpu_per().max(f64::MIN_POSITIVE) - 1.0);
    println!("metrics on: rate {ratio:.1}% of off, CPU/req {cpu_more:+.1}%");
    rows.push(totals[0].row(
        &format!("ingest, metrics off ({rounds} rounds)"),
        off.pid(),
        String::new(),
    ));
    rows.push(totals[1].row(
        "… metrics on, scraped every 1 s",
        on.pid(),
        format!("rate {ratio:.1}% of off, CPU/req {cpu_more:+.1}% (target: rate ≥ 95%)"),
    ));
}

/// Load windows of one server added up.
#[derive(Default)]
struct Totals {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    cpu: Duration,
    latencies: Vec<Duration>,
}

impl Totals {
    fn add(&mut self, r: LoadResult, cpu: Duration) {
        self.requests += r.requests;
        self.errors += r.errors;
        self.elapsed += r.elapsed;
        self.cpu += cpu;
        self.latencies.extend(r.latencies);
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per(&self) -> f64 {
        self.cpu.as_secs_f64() / self.requests.max(1) as f64
    }

    fn row(&self, what: &str, pid: u32, note: String) -> Row {
        Row {
            item: "2m",
            what: what.to_owned(),
            rate: Some(self.rate()),
            p50: Some(percentile(&self.latencies, 0.5)),
            p99: Some(percentile(&self.latencies, 0.99)),
            cpu: Some(self.cpu / self.requests.max(1) as u32),
            rss_kib: Some(status_kib(pid, "VmHWM")),
            note: if self.errors > 0 {
                format!("{note}; {} errors", self.errors)
            } else {
                note
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Outbound

fn outbound_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let connections = env_num("CONNECTIONS", 32);
    let messages = env_num("OUTBOUND_MESSAGES", 4000);
    let conversations = 64;
    println!(
        "== 4. outbound: {messages} replies over {conversations} conversations, {connections} API connections =="
    );
    let dir = tempfile::tempdir().unwrap();
    let provider = rt.block_on(fake_provider());
    let server = Server::start_sms(dir.path(), "data", provider.addr);
    let auth = agent_auth();
    let ids: Vec<String> = rt.block_on(async {
        for n in 0..conversations {
            let (path, headers, body) = webhook("sms", 7_000_000 + n);
            let (status, _) = request(server.addr, "POST", &path, &headers, body).await;
            assert_eq!(status, 200, "webhook for conversation {n}");
        }
        let (status, body) = request(
            server.addr,
            "GET",
            "/api/v1/conversations",
            &auth,
            String::new(),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
        list["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    });
    assert!(!ids.is_empty(), "no conversation to reply to");
    let ids = Arc::new(ids);
    let make = |offset: u64| -> MakeRequest {
        let (ids, auth) = (ids.clone(), auth.clone());
        Arc::new(move |n| {
            let n = n + offset;
            let id = &ids[n as usize % ids.len()];
            (
                format!("/api/v1/conversations/{id}/messages"),
                auth.clone(),
                format!(r#"{{"text":"Thanks for waiting, your reference is R-{n:06}."}}"#),
            )
        })
    };
    // Warm-up: one reply per conversation (the first reply also assigns it).
    let warm = rt.block_on(load(
        server.addr,
        connections,
        Until::Requests(ids.len() as u64),
        make(1_000_000),
    ));
    assert_eq!(warm.errors, 0, "warm-up replies failed");
    let sent_before = provider.requests.load(Ordering::Relaxed);
    let before = cpu_time(server.pid());
    let start = Instant::now();
    let r = rt.block_on(load(
        server.addr,
        connections,
        Until::Requests(messages),
        make(0),
    ));
    let elapsed = start.elapsed();
    let delivered = provider.requests.load(Ordering::Relaxed) - sent_before;
    let rate = delivered as f64 / elapsed.as_secs_f64();
    let conns = provider.connections.load(Ordering::Relaxed);
    let mut row = server_row(
        "4",
        "outbound replies → fake provider",
        server.pid(),
        before,
        &r,
        format!("{delivered} delivered; {conns} provider connections in all (target ≥ 1,000/s)"),
    );
    row.rate = Some(rate);
    println!(
        "delivered {delivered} in {elapsed:?}: {rate:.0} messages/s over {conns} provider connections"
    );
    rows.push(row);
}

// ---------------------------------------------------------------------------------------------
// 5. Start-up, and memory

/// `bytes` (a component) with a custom section appended, so each copy has its own hash and
/// its own compiled-cache entry, as distinct plugins would.
fn distinct_copy(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"plugboard-bench";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    let mut len = payload.len() as u32;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

/// A plugins directory that brings the total to `total` plugins (bundled included).
fn plugins_dir(dir: &Path, total: usize) -> PathBuf {
    let path = dir.join("plugins");
    std::fs::create_dir_all(&path).unwrap();
    let bundled = plugboard_artifacts::BUNDLED;
    for i in 0..total.saturating_sub(bundled.len()) {
        let (name, bytes) = bundled[i % bundled.len()];
        std::fs::write(
            path.join(format!("{name}-copy{i:02}.wasm")),
            distinct_copy(bytes, &format!("copy {i}")),
        )
        .unwrap();
    }
    path
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn startup_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let runs = env_num("STARTUP_RUNS", 5).max(1);
    let total = 20;
    println!("== 5. start-up with {total} plugins, {runs} runs each ==");
    let dir = tempfile::tempdir().unwrap();
    let provider = rt.block_on(fake_provider());
    let plugins = plugins_dir(dir.path(), total);
    let (mut cold, mut warm, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let data = dir.path().join(format!("data-{run}"));
        let setup = Setup {
            port: free_port(),
            data_dir: &data,
            plugins_dir: Some(&plugins),
            channels: vec!["sms".into()],
            provider: provider.addr,
        };
        let first = Server::start(dir.path(), &setup);
        cold.push(first.startup);
        drop(first);
        let second = Server::start(dir.path(), &setup);
        warm.push(second.startup);
        rss.push(status_kib(second.pid(), "VmRSS"));
    }
    for (what, times, note) in [
        (
            "start-up, cold (no compiled cache)",
            cold,
            format!("{total} plugins, median of {runs}"),
        ),
        (
            "start-up, warm (compiled cache)",
            warm,
            format!("{total} plugins, median of {runs} (target ≤ 200 ms)"),
        ),
    ] {
        let (p50, max) = (median(times.clone()), *times.iter().max().unwrap());
        println!(
            "{what:<44} median {:>10}  max {:>10}  ({:?})",
            fmt_dur(Some(p50)),
            fmt_dur(Some(max)),
            times
        );
        rows.push(Row {
            item: "5",
            what: what.to_owned(),
            p50: Some(p50),
            rss_kib: Some(rss.iter().copied().max().unwrap_or(0)),
            note,
            ..Row::default()
        });
    }
}

/// Resident memory per loaded plugin and per idle channel instance, from `VmRSS` after
/// start-up (warm) in configurations that differ in one dimension.
fn memory_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    println!("== memory ==");
    let dir = tempfile::tempdir().unwrap();
    let provider = rt.block_on(fake_provider());
    let plugins = plugins_dir(dir.path(), 29);
    let empty = dir.path().join("no-plugins");
    std::fs::create_dir_all(&empty).unwrap();
    let data = dir.path().join("data");
    let settle = || std::thread::sleep(Duration::from_millis(300));
    let rss_with = |plugins_dir: &Path, channels: Vec<String>| {
        let setup = Setup {
            port: free_port(),
            data_dir: &data,
            plugins_dir: Some(plugins_dir),
            channels,
            provider: provider.addr,
        };
        drop(Server::start(dir.path(), &setup)); // fills the compiled cache
        let server = Server::start(dir.path(), &setup);
        settle();
        status_kib(server.pid(), "VmRSS")
    };
    let base = rss_with(&empty, vec!["sms".into()]);
    let more = rss_with(&plugins, vec!["sms".into()]);
    let per_plugin = more.saturating_sub(base) / 20;
    println!(
        "RSS with 9 plugins {base} KiB, with 29 plugins {more} KiB: {per_plugin} KiB per plugin"
    );
    rows.push(Row {
        item: "mem",
        what: "resident memory per loaded plugin".into(),
        rss_kib: Some(per_plugin),
        note: format!("(VmRSS with 29 plugins − with 9) / 20; {base} KiB with 9"),
        ..Row::default()
    });

    let n = 40u64;
    let names: Vec<String> = (0..n).map(|i| format!("sms{i}")).collect();
    let one = base;
    let setup = Setup {
        port: free_port(),
        data_dir: &data,
        plugins_dir: Some(&empty),
        channels: names.clone(),
        provider: provider.addr,
    };
    let server = Server::start(dir.path(), &setup);
    settle();
    let configured = status_kib(server.pid(), "VmRSS");
    rt.block_on(async {
        for (i, name) in names.iter().enumerate() {
            let (path, headers, body) = webhook(name, 9_000_000 + i as u64);
            let (status, _) = request(server.addr, "POST", &path, &headers, body).await;
            assert_eq!(status, 200, "webhook to {name}");
        }
    });
    settle();
    let called = status_kib(server.pid(), "VmRSS");
    let never_called = configured.saturating_sub(one) / (n - 1);
    let warm_instance = called.saturating_sub(configured) / n;
    println!(
        "RSS with 1 channel {one} KiB, {n} channels {configured} KiB, after one webhook each {called} KiB"
    );
    rows.push(Row {
        item: "mem",
        what: "resident memory per idle channel instance, never called".into(),
        rss_kib: Some(never_called),
        note: format!("(VmRSS with {n} channels − with 1) / {}", n - 1),
        ..Row::default()
    });
    rows.push(Row {
        item: "mem",
        what: "… plus its kept warm instance after a call".into(),
        rss_kib: Some(warm_instance),
        note: format!("VmRSS growth after one webhook to each of {n} channels / {n} (includes the stored conversation)"),
        ..Row::default()
    });
}

// ---------------------------------------------------------------------------------------------
// 6. Isolation: a healthy channel while a hostile one is hammered

/// Requests kept in flight on the hostile channel: as many as the host has call slots.
const HOSTILE_IN_FLIGHT: usize = plugboard::runtime::sandbox::MAX_CONCURRENT_CALLS;

/// The plugin-call deadline of the isolation host (`[limits] call_timeout_ms`, the default).
const ISOLATION_CALL_TIMEOUT_MS: u64 = 1000;

/// One hostile caller: posts to `/webhooks/hostile` on a fresh connection, again as soon as it
/// is answered, until `stop`; returns each answer's (status, latency) and counts answers in
/// `answered`.
async fn hostile_caller(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> Vec<(u16, Duration)> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let (status, _) = request(addr, "POST", "/webhooks/hostile", &[], "x=1".to_owned()).await;
        out.push((status, t.elapsed()));
        answered.fetch_add(1, Ordering::Relaxed);
    }
    out
}

/// Issue 11 item 1: `ISOLATION_WEBHOOKS` sequential signed webhooks to the healthy `sms`
/// channel on an idle host, then the same while `HOSTILE_IN_FLIGHT` requests are kept in flight
/// to a channel whose every call sleeps in WASI until its deadline, in one host process.
fn isolation_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let webhooks = env_num("ISOLATION_WEBHOOKS", 5000).max(1);
    println!(
        "== 6. isolation: {webhooks} sequential webhooks to `sms`, idle, then while {HOSTILE_IN_FLIGHT} requests hammer `hostile` (sleeps guest) =="
    );
    let dir = tempfile::tempdir().unwrap();
    let provider = rt.block_on(fake_provider());
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let guest = plugboard_artifacts::test_plugin("sleeps");
    std::fs::copy(&guest, plugins.join("sleeps.wasm"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", guest.display()));
    let data = dir.path().join("data");
    let setup = Setup {
        port: free_port(),
        data_dir: &data,
        plugins_dir: Some(&plugins),
        channels: vec!["sms".into()],
        provider: provider.addr,
    };
    let config = write_config(dir.path(), &setup);
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&format!(
        r#"
[[channels]]
name = "hostile"
plugin = "sleeps"
queue = "support"

[limits]
call_timeout_ms = {ISOLATION_CALL_TIMEOUT_MS}
"#
    ));
    std::fs::write(&config, toml).unwrap();
    let log_path = dir.path().join("plugboard.log");
    // Quarantine off (a 0 s cool-down): after five failures in a row the hostile channel would
    // otherwise answer 503 without calling its plugin, and its calls would stop holding slots.
    let server = Server::start_config(
        &config,
        setup.port,
        &[("PLUGBOARD_QUARANTINE_SECS", "0")],
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let (addr, pid) = (server.addr, server.pid());
    let healthy = |offset: u64| -> MakeRequest { Arc::new(move |n| webhook("sms", offset + n)) };

    // Warm-up on senders neither phase reuses.
    let warm = rt.block_on(load(addr, 1, Until::Requests(200), healthy(900_000)));
    assert_eq!(warm.errors, 0, "warm-up webhooks failed");

    let before = cpu_time(pid);
    let idle = rt.block_on(load(addr, 1, Until::Requests(webhooks), healthy(0)));
    let idle_row = server_row(
        "6",
        "healthy webhook (sms), idle host",
        pid,
        before,
        &idle,
        format!("{webhooks} sequential, one keep-alive connection"),
    );

    let (hammered, before, mut hostile, window) = rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let callers: Vec<_> = (0..HOSTILE_IN_FLIGHT)
            .map(|_| tokio::spawn(hostile_caller(addr, stop.clone(), answered.clone())))
            .collect();
        // The first hostile answer comes at the first deadline: by then the hostile calls hold
        // every slot their channel may have and the rest wait for one.
        while answered.load(Ordering::Relaxed) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no hostile call was answered within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = cpu_time(pid);
        let r = load(addr, 1, Until::Requests(webhooks), healthy(500_000)).await;
        stop.store(true, Ordering::Relaxed);
        let mut hostile = Vec::new();
        for caller in callers {
            hostile.extend(caller.await.unwrap());
        }
        (r, before, hostile, started.elapsed())
    });
    let ratio = |p: f64| {
        percentile(&hammered.latencies, p).as_secs_f64()
            / percentile(&idle.latencies, p).as_secs_f64().max(1e-9)
    };
    let (p50_ratio, p99_ratio) = (ratio(0.5), ratio(0.99));
    let hammered_row = server_row(
        "6",
        &format!("… while {HOSTILE_IN_FLIGHT} requests hammer a sleeping channel"),
        pid,
        before,
        &hammered,
        format!("hammered / idle: p50 ×{p50_ratio:.2}, p99 ×{p99_ratio:.2}"),
    );
    println!("ratio hammered / idle: p50 ×{p50_ratio:.2}, p99 ×{p99_ratio:.2}");

    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for (status, _) in &hostile {
        *statuses.entry(*status).or_default() += 1;
    }
    hostile.sort_by_key(|&(_, latency)| latency);
    let latencies: Vec<Duration> = hostile.iter().map(|&(_, latency)| latency).collect();
    // A call that waited 10 s for a slot and failed as busy would be logged so.
    let busy = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("no call slot free"))
        .count();
    let statuses = statuses
        .iter()
        .map(|(s, n)| format!("{n} × {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "hostile channel: {} answers in {window:?} ({statuses}), p50 {}, p99 {}; {busy} calls failed for want of a slot",
        hostile.len(),
        fmt_dur(Some(percentile(&latencies, 0.5))),
        fmt_dur(Some(percentile(&latencies, 0.99))),
    );
    let hostile_row = Row {
        item: "6",
        what: format!(
            "… the hostile channel's answers (sleeps guest, {HOSTILE_IN_FLIGHT} in flight)"
        ),
        rate: Some(hostile.len() as f64 / window.as_secs_f64()),
        p50: Some(percentile(&latencies, 0.5)),
        p99: Some(percentile(&latencies, 0.99)),
        note: format!(
            "{statuses} in {window:.1?}; {busy} without a slot; {ISOLATION_CALL_TIMEOUT_MS} ms deadline, {} slots per channel",
            plugboard::runtime::sandbox::MAX_CALLS_PER_KEY
        ),
        ..Row::default()
    };
    rows.push(idle_row);
    rows.push(hammered_row);
    rows.push(hostile_row);
}

// ---------------------------------------------------------------------------------------------
// 7. Storage at scale (issue 12): a big data directory, the restart on it, lists over HTTP

/// The queues of the storage section's data: conversation `i` is in `STORAGE_QUEUES[i % 4]`.
const STORAGE_QUEUES: [&str; 4] = ["support", "sales", "billing", "returns"];

/// Its agents: every one works every queue; `alice` (the measuring agent) manages them all.
const STORAGE_AGENTS: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

/// The time between two conversations' creation in the loaded data, ms.
const STORAGE_STEP_MS: u64 = 1000;

/// The file in a kept data directory that says what it holds (so a later run reuses it).
const STORAGE_MANIFEST: &str = "bench-storage.manifest";

/// The manifest's first line: the data's mix of states (a kept directory of another is rebuilt).
const STORAGE_LAYOUT: &str = "layout 2";

/// Where conversation `i` of the loaded data stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Waiting in its queue: 90% of the newest `STORAGE_OPEN`.
    Queued,
    /// Owned by an agent: the other 10% of them (25 per agent, a console's worth).
    Assigned,
    /// Closed by the agent who owned it: every older one.
    Closed,
}

/// How many of the newest conversations are still open (queued or assigned).
const STORAGE_OPEN: u64 = 2000;

/// Where conversation `i` of `n` stands: the newest are open, the rest the archive.
fn standing(i: u64, n: u64) -> Standing {
    if n - i > STORAGE_OPEN {
        Standing::Closed
    } else if i.is_multiple_of(10) {
        Standing::Assigned
    } else {
        Standing::Queued
    }
}

/// The agent who owns or closed conversation `i` (each agent gets every queue's share).
fn storage_agent(i: u64) -> &'static str {
    STORAGE_AGENTS[((i / 4) % STORAGE_AGENTS.len() as u64) as usize]
}

/// What a loaded data directory holds.
struct StorageData {
    conversations: u64,
    messages: u64,
    /// Creation time of conversation 0, Unix ms (later ones follow every `STORAGE_STEP_MS`).
    base: u64,
    /// How long the load took (intake, then the updates), or none when reused.
    load: Option<(Duration, Duration)>,
}

impl StorageData {
    fn read(dir: &Path) -> Option<StorageData> {
        let text = std::fs::read_to_string(dir.join(STORAGE_MANIFEST)).ok()?;
        if !text.lines().any(|l| l == STORAGE_LAYOUT) {
            return None;
        }
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        };
        Some(StorageData {
            conversations: field("conversations")?,
            messages: field("messages")?,
            base: field("base")?,
            load: None,
        })
    }

    fn write(&self, dir: &Path) {
        let text = format!(
            "{STORAGE_LAYOUT}\nconversations {}\nmessages {}\nbase {}\n",
            self.conversations, self.messages, self.base
        );
        std::fs::write(dir.join(STORAGE_MANIFEST), text).unwrap();
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs `work(i)` for `i` in `0..count` from `tasks` concurrent tasks on `rt`.
fn run_concurrently<F, Fut>(rt: &tokio::runtime::Runtime, count: u64, tasks: u64, work: F)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (work, next) = (work.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        work(i).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
}

/// Fills `data_dir/db` with `conversations` conversations of one inbound message each, through
/// the real `Store` (`SledStore::intake` from many tasks, so the intake thread batches them),
/// then assigns and closes all but the newest `STORAGE_OPEN` (`store::update`, as taking and
/// closing do), and 10% of those newest.
/// Returns once the database is closed and its lock released.
fn load_storage(data_dir: &Path, conversations: u64, cache_mib: u64) -> StorageData {
    use plugboard::model::{ConversationState, ConversationTarget, InboundEvent};
    use plugboard::store::Store;
    use plugboard::store::sled::{SledOptions, SledStore};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = data_dir.join("db");
    let store = {
        let _in_runtime = rt.enter();
        SledStore::open(
            &db,
            SledOptions {
                cache_bytes: cache_mib << 20,
                ..SledOptions::default()
            },
        )
        .unwrap()
    };
    // Old enough that every update below is in the past.
    let base = now_millis() - (conversations + 86_400) * STORAGE_STEP_MS;
    let ids: Arc<Vec<AtomicU64>> =
        Arc::new((0..conversations).map(|_| AtomicU64::new(0)).collect());
    let tasks = 512;

    let start = Instant::now();
    {
        let (store, ids) = (store.clone(), ids.clone());
        run_concurrently(&rt, conversations, tasks, move |i| {
            let (store, ids) = (store.clone(), ids.clone());
            async move {
                let q = (i % STORAGE_QUEUES.len() as u64) as usize;
                let target = ConversationTarget::Queue {
                    queue: STORAGE_QUEUES[q].to_owned(),
                    skills: Vec::new(),
                    priority: 0,
                    bot: None,
                };
                let event = InboundEvent::Message {
                    provider_id: format!("SM{i:032x}"),
                    from: format!("+1{:010}", 4_133_000_000u64 + i),
                    text: Some(format!(
                        "Hello, this is customer {i}; my order has not arrived yet."
                    )),
                    attachments: Vec::new(),
                    contact_name: None,
                    thread: vec![("To".to_owned(), "+12028831111".to_owned())],
                    note: None,
                };
                let channel = format!("sms{q}");
                let report = store
                    .intake(&channel, &target, vec![event], base + i * STORAGE_STEP_MS)
                    .await
                    .unwrap();
                assert_eq!(report.created.len(), 1, "conversation {i} not created");
                ids[i as usize].store(report.created[0], Ordering::Relaxed);
            }
        });
    }
    let intake = start.elapsed();
    println!(
        "intake: {conversations} conversations in {intake:.1?} ({:.0}/s)",
        conversations as f64 / intake.as_secs_f64()
    );

    let start = Instant::now();
    {
        let (store, ids) = (store.clone(), ids.clone());
        run_concurrently(&rt, conversations, tasks, move |i| {
            let (store, ids) = (store.clone(), ids.clone());
            async move {
                let standing = standing(i, conversations);
                if standing == Standing::Queued {
                    return;
                }
                let id = ids[i as usize].load(Ordering::Relaxed);
                let agent = storage_agent(i);
                // Taken a minute after it arrived, later ones a little later still.
                let at = base + i * STORAGE_STEP_MS + 60_000 + (i % 7) * 1000;
                plugboard::store::update(store.as_ref(), id, move |c| {
                    c.assign(agent);
                    c.updated_at = at;
                    if standing == Standing::Closed {
                        c.state = ConversationState::Closed;
                    }
                    Ok(())
                })
                .await
                .unwrap();
            }
        });
    }
    let updates = start.elapsed();
    let updated = (0..conversations)
        .filter(|&i| standing(i, conversations) != Standing::Queued)
        .count();
    println!(
        "updates: {updated} assigned or closed in {updates:.1?} ({:.0}/s)",
        updated as f64 / updates.as_secs_f64()
    );
    rt.block_on(store.close()).unwrap();
    drop(store);
    // The flusher task and the intake thread hold the database until the runtime and the
    // store are gone; sled's lock (an flock on `db/db`) is free once they are.
    rt.shutdown_timeout(Duration::from_secs(10));
    let lock = std::fs::File::open(db.join("db")).unwrap();
    let waited = Instant::now();
    while lock.try_lock().is_err() {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the loaded database stayed locked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(lock);
    StorageData {
        conversations,
        messages: conversations,
        base,
        load: Some((intake, updates)),
    }
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += dir_bytes(&entry.path()),
            Ok(_) => total += entry.metadata().map_or(0, |m| m.len()),
            Err(_) => {}
        }
    }
    total
}

/// A configuration whose agents work and manage the loaded data's queues, on `data_dir`.
fn storage_config(dir: &Path, port: u16, data_dir: &Path, cache_mib: u64) -> PathBuf {
    let mut config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{PUBLIC_URL}"
data_dir = "{data}"

[storage]
cache_mib = {cache_mib}
"#,
        data = data_dir.display(),
    );
    let queues = STORAGE_QUEUES
        .iter()
        .map(|q| format!("\"{q}\""))
        .collect::<Vec<_>>()
        .join(", ");
    for q in STORAGE_QUEUES {
        config.push_str(&format!(
            "\n[[queues]]\nname = \"{q}\"\nrouter = \"ring-all\"\nmanagers = [\"alice\"]\n"
        ));
    }
    for a in STORAGE_AGENTS {
        config.push_str(&format!(
            "\n[[agents]]\nid = \"{a}\"\nname = \"{a}\"\ntoken = \"{a}-bench-token\"\nqueues = [{queues}]\n"
        ));
    }
    for (q, queue) in STORAGE_QUEUES.iter().enumerate() {
        config.push_str(&format!(
            r#"
[[channels]]
name = "sms{q}"
plugin = "twilio-sms"
queue = "{queue}"
[channels.settings]
account_sid = "ACbench0000000000000000000000000"
auth_token = "{AUTH_TOKEN}"
from = "+12028831111"
api_base = "http://127.0.0.1:9"
"#
        ));
    }
    let path = dir.join(format!("storage-{cache_mib}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

/// The sequential answers of one list: latencies (sorted), conversations per answer (min).
struct ListRun {
    latencies: Vec<Duration>,
    elapsed: Duration,
    fewest: usize,
    errors: u64,
}

/// `GET`s each of `paths` in turn on one keep-alive connection as `alice`; each answer must
/// be 200 with a `conversations` array (checked after its latency is taken).
async fn get_sequential(addr: SocketAddr, paths: &[String]) -> ListRun {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut run = ListRun {
        latencies: Vec::with_capacity(paths.len()),
        elapsed: Duration::ZERO,
        fewest: usize::MAX,
        errors: 0,
    };
    let started = Instant::now();
    for path in paths {
        let req = hyper::Request::get(path.as_str())
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {AGENT_TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.ready().await.unwrap();
        let t = Instant::now();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        run.latencies.push(t.elapsed());
        let listed = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["conversations"].as_array().map(Vec::len));
        match (status.is_success(), listed) {
            (true, Some(n)) => run.fewest = run.fewest.min(n),
            _ => {
                if run.errors == 0 {
                    eprintln!(
                        "first failed list: {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                run.errors += 1;
            }
        }
    }
    run.elapsed = started.elapsed();
    run.latencies.sort();
    run
}

/// Issue 12's storage targets: a data directory of `BENCH_STORAGE_CONVERSATIONS` conversations
/// (default 1,000,000, one inbound message each) loaded in-process through the `Store`, then
/// for each `cache_mib` of `BENCH_STORAGE_CACHES` (64,256): the real `plugboard` started on it
/// (spawn to ready), and `BENCH_STORAGE_REQUESTS` (2000) sequential list requests per view.
/// `BENCH_STORAGE_DIR` keeps the data directory there and reuses it on a later run.
fn storage_section(rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    let conversations = env_num("BENCH_STORAGE_CONVERSATIONS", 1_000_000).clamp(10_000, 5_000_000);
    let requests = env_num("BENCH_STORAGE_REQUESTS", 2000).clamp(100, 100_000);
    let caches: Vec<u64> = std::env::var("BENCH_STORAGE_CACHES")
        .unwrap_or_else(|_| "64,256".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .map(|c: u64| c.clamp(8, 65_536))
        .collect();
    println!(
        "== 7. storage: {conversations} conversations, {requests} sequential lists per view, cache_mib {caches:?} =="
    );
    let scratch = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("BENCH_STORAGE_DIR").map(PathBuf::from);
    let data_dir = kept.clone().unwrap_or_else(|| scratch.path().join("data"));
    let data = match StorageData::read(&data_dir) {
        Some(d) if d.conversations == conversations => {
            println!("reusing the data in {}", data_dir.display());
            d
        }
        _ => {
            if data_dir.exists() {
                std::fs::remove_dir_all(&data_dir).unwrap();
            }
            std::fs::create_dir_all(&data_dir).unwrap();
            let d = load_storage(&data_dir, conversations, 256);
            d.write(&data_dir);
            d
        }
    };
    let size = dir_bytes(&data_dir.join("db"));
    let size_text = format!("{:.2} GiB", size as f64 / (1u64 << 30) as f64);
    println!(
        "data dir: {size_text} ({size} bytes) in {}",
        data_dir.display()
    );
    if let Some((intake, updates)) = data.load {
        let total = intake + updates;
        rows.push(Row {
            item: "7",
            what: format!(
                "load {conversations} conversations in-process (Store::intake, then update)"
            ),
            rate: Some(conversations as f64 / total.as_secs_f64()),
            note: format!(
                "{:.1} s: intake {:.1} s, then assign or close all but {} {:.1} s; data dir {size_text}",
                total.as_secs_f64(),
                intake.as_secs_f64(),
                STORAGE_OPEN * 9 / 10,
                updates.as_secs_f64()
            ),
            ..Row::default()
        });
    }

    // Cursors at random depths of alice's archive: a page boundary at a random time, the
    // oldest 5% left out so every page is full.
    let last = data.base + data.conversations * STORAGE_STEP_MS;
    let span = last - data.base;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let deep: Vec<String> = (0..requests)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = data.base + span / 20 + seed % (span - span / 20);
            let cursor = plugboard::store::ConversationCursor {
                updated_at: at,
                id: u64::MAX,
            };
            format!(
                "/api/v1/conversations?view=archived&limit=50&cursor={}",
                cursor.encode()
            )
        })
        .collect();
    let views: [(&str, Vec<String>); 4] = [
        (
            "recent",
            vec!["/api/v1/conversations?view=recent&limit=50".to_owned(); requests as usize],
        ),
        (
            "monitor",
            vec!["/api/v1/conversations?view=monitor&limit=50".to_owned(); requests as usize],
        ),
        (
            "archived",
            vec!["/api/v1/conversations?view=archived&limit=50".to_owned(); requests as usize],
        ),
        ("archived, cursor at a random depth", deep),
    ];

    // A restart finds the compiled plugins of the previous run in the data directory: one
    // start first fills that cache (cold, ~2 s of Cranelift).
    if !data_dir.join("plugin-cache").exists() {
        let port = free_port();
        let config = storage_config(scratch.path(), port, &data_dir, 256);
        let first = Server::start_config(&config, port, &[], Stdio::inherit());
        println!(
            "first start (compiles the plugins): ready in {}",
            fmt_dur(Some(first.startup))
        );
        first.stop();
    }
    for cache_mib in caches {
        let port = free_port();
        let config = storage_config(scratch.path(), port, &data_dir, cache_mib);
        let log_path = scratch.path().join(format!("storage-{cache_mib}.log"));
        let server = Server::start_config(
            &config,
            port,
            &[("RUST_LOG", "warn,plugboard::http::server=info")],
            Stdio::from(std::fs::File::create(&log_path).unwrap()),
        );
        let pid = server.pid();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(
            log.contains("plugboard ready"),
            "healthy without the ready line; log:\n{log}"
        );
        let rss = status_kib(pid, "VmRSS");
        println!(
            "cache_mib {cache_mib}: restart with {} messages stored: ready in {} (VmRSS {rss} KiB)",
            data.messages,
            fmt_dur(Some(server.startup))
        );
        rows.push(Row {
            item: "7",
            what: format!(
                "restart with {} messages stored, cache_mib {cache_mib}",
                data.messages
            ),
            p50: Some(server.startup),
            rss_kib: Some(rss),
            note: format!(
                "spawn to /healthz 200 and the ready line; {} conversations, data dir {size_text}; VmRSS after ready (target ≤ 10 s)",
                data.conversations
            ),
            ..Row::default()
        });
        for (view, paths) in &views {
            let warm: Vec<String> = paths.iter().take(100).cloned().collect();
            let w = rt.block_on(get_sequential(server.addr, &warm));
            assert_eq!(w.errors, 0, "warm-up lists of {view} failed");
            let before = cpu_time(pid);
            let r = rt.block_on(get_sequential(server.addr, paths));
            let cpu = cpu_time(pid).saturating_sub(before) / r.latencies.len().max(1) as u32;
            let (p50, p99) = (
                percentile(&r.latencies, 0.5),
                percentile(&r.latencies, 0.99),
            );
            let max = r.latencies.last().copied().unwrap_or_default();
            let hwm = status_kib(pid, "VmHWM");
            println!(
                "cache_mib {cache_mib}: view={view:<36} p50 {:>10}  p99 {:>10}  max {:>10}  CPU/req {:>10}  peak RSS {hwm} KiB  ({} requests, fewest listed {}, {} errors)",
                fmt_dur(Some(p50)),
                fmt_dur(Some(p99)),
                fmt_dur(Some(max)),
                fmt_dur(Some(cpu)),
                r.latencies.len(),
                r.fewest,
                r.errors
            );
            let mut note = format!(
                "50 of {}, sequential, one connection; max {} (target p99 ≤ 5 ms)",
                data.conversations,
                fmt_dur(Some(max))
            );
            if r.errors > 0 || r.fewest < 50 {
                note.push_str(&format!(
                    "; {} errors, fewest listed {}",
                    r.errors, r.fewest
                ));
            }
            rows.push(Row {
                item: "7",
                what: format!("list view={view}, cache_mib {cache_mib}"),
                rate: Some(r.latencies.len() as f64 / r.elapsed.as_secs_f64()),
                p50: Some(p50),
                p99: Some(p99),
                cpu: Some(cpu),
                rss_kib: Some(hwm),
                note,
            });
        }
        server.stop();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("webhook: bench");
        return;
    }
    if args.iter().any(|a| a == "--serve-bare") {
        bare_server_main();
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--serve-durable") {
        durable_server_main(args[at + 1].clone().into());
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    if wanted("calls") {
        plugin_call_section(&rt, &mut rows);
    }
    if wanted("ingest") {
        ingest_section(&rt, &mut rows);
    }
    if wanted("metrics") {
        metrics_section(&rt, &mut rows);
    }
    if wanted("outbound") {
        outbound_section(&rt, &mut rows);
    }
    if wanted("startup") {
        startup_section(&rt, &mut rows);
    }
    if wanted("memory") {
        memory_section(&rt, &mut rows);
    }
    if wanted("isolation") {
        isolation_section(&rt, &mut rows);
    }
    // Minutes of loading: only when asked for by name.
    if named("storage") {
        storage_section(&rt, &mut rows);
    }
    // Needs PostgreSQL installed: only when asked for by name.
    if named("postgres") {
        postgres::postgres_section(&rt, &mut rows);
    }
    rows.sort_by_key(|r| r.item);
    print_table(&rows);
}
