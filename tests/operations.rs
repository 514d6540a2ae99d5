//! Operations that must not surprise, against the real binary: SIGHUP reloads plugins and never
//! stops the server; a full disk turns `/healthz` to `503` with the reason (and a restart,
//! once space is back, serves everything acknowledged); a corrupt database or a data
//! directory another process holds stops `serve` with a clear line, never a panic; error
//! answers are JSON even when axum makes them (`405`, a malformed query string); the offline
//! message goes out once per conversation across overflow; `replay`'s exit codes never
//! collide with the usage error (2).

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// Carol's bearer token (queues `night` and `last` in the overflow test).
const CAROL: &str = "carol-token-123";

/// An inbound SMS from `from` with `body`, signed; returns the HTTP status.
async fn inbound(host: &Host, sid: &str, from: &str, body: &str) -> u16 {
    let params = inbound_sms(sid, from, body);
    host.post_twilio("sms", &pairs(&params), Some(AUTH_TOKEN))
        .await
        .status()
        .as_u16()
}

/// `GET /healthz`: status and body.
async fn healthz(host: &Host) -> (u16, String) {
    let resp = host.http.get(host.url("/healthz")).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A tmpfs mounted for the life of the value (unmounted on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size_mib: u32) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test fills a real disk: it mounts a {size_mib} MiB tmpfs at {}, which needs root \
             (CI runs as root); mount failed: {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file in `dir` until the file system is full (ENOSPC), first in large chunks and
/// then in small ones, so no whole page is left.
fn fill_up(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    for size in [1 << 20, 4096, 512] {
        let chunk = vec![0xA5u8; size];
        loop {
            match file.write(&chunk) {
                Ok(n) if n == chunk.len() => {}
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", dir.display()),
            }
        }
    }
    path
}

/// How a `plugboard` process started by a test ended.
enum Ended {
    /// It exited with this status and stderr.
    Exited(ExitStatus, String),
    /// It answered `/healthz` instead of exiting (killed); its stderr.
    Served(String),
}

/// Runs `plugboard serve --config CONFIG` (the test configuration's environment set) until it
/// exits or answers `/healthz` on `addr`, for at most 120 s.
fn serve_until_exit_or_ready(config: &Path, addr: &str, stderr_file: &Path) -> Ended {
    let stderr = std::fs::File::create(stderr_file).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["serve", "--config"])
        .arg(config)
        .env("TEST_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn plugboard");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ended::Exited(status, std::fs::read_to_string(stderr_file).unwrap());
        }
        if health_answers(addr) || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ended::Served(std::fs::read_to_string(stderr_file).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something answers `GET /healthz` on `addr` with an HTTP status.
fn health_answers(addr: &str) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 ")
}

fn addr(host: &Host) -> String {
    host.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_plugins_and_the_server_keeps_serving() {
    let mut host = Host::start(Setup::default());
    assert_eq!(
        inbound(&host, "SM-hup-1", "+14155550101", "before").await,
        200
    );
    let pid = host.pid().unwrap().to_string();
    let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(sent.success(), "kill -HUP failed");

    // The log line, then the same reload `POST /api/v1/admin/reload` does.
    eventually("the SIGHUP log line and the plugin reload after it", || {
        let log = host.log();
        async move {
            let at = log.find("SIGHUP received")?;
            log[at..].contains("plugins reloaded").then_some(())
        }
    })
    .await;
    assert_eq!(healthz(&host).await.0, 200, "{}", host.log());
    assert_eq!(
        inbound(&host, "SM-hup-2", "+14155550101", "after").await,
        200
    );
    let conversation = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let texts: Vec<Value> = host
        .messages(&conversation, ALICE)
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, ["before", "after"]);

    // A second SIGHUP is handled the same way, and SIGTERM still drains and exits 0.
    let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(sent.success());
    eventually("the second SIGHUP log line", || {
        let log = host.log();
        async move { (log.matches("SIGHUP received").count() == 2).then_some(()) }
    })
    .await;
    let exit = tokio::task::block_in_place(|| host.terminate());
    assert!(exit.success(), "{exit}; log:\n{}", host.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_turns_healthz_unhealthy_and_a_restart_serves_everything_acknowledged() {
    let dir = tempfile::Builder::new()
        .prefix("plugboard-diskfull-")
        .tempdir()
        .unwrap()
        .keep();
    // The data directory (database and compiled-plugin cache, ~7 MiB) on a small disk of its
    // own; declared before the host, so the host is stopped before it is unmounted.
    let disk = Tmpfs::mount(&dir.join("data"), 48);
    let mut host = Host::start_in(dir, Setup::default());
    let from = "+14155550123";
    let text = |i: usize| format!("message {i:04} {}", "x".repeat(1400));
    assert_eq!(inbound(&host, "SM-full-0000", from, &text(0)).await, 200);
    assert_eq!(healthz(&host).await.0, 200);

    let filler = fill_up(&disk.0);
    let mut acknowledged = vec![text(0)];
    let mut refused = None;
    for i in 1..=400 {
        let status = inbound(&host, &format!("SM-full-{i:04}"), from, &text(i)).await;
        if status == 200 {
            acknowledged.push(text(i));
        } else {
            refused = Some(status);
            break;
        }
    }
    let refused = refused.expect("400 webhooks of 1.4 KB each were all stored on a full disk");
    assert!(refused >= 500, "a webhook on a full disk got {refused}");

    let (status, body) = healthz(&host).await;
    assert_eq!(status, 503, "healthz on a full disk: {body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let reason = body["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("out of service") && reason.contains("No space left on device"),
        "{body}"
    );
    assert!(host.log().contains("storage is out of service"));
    // Nothing more is acknowledged, even once space is back: sled keeps the write error, so
    // storage stays out of service until a restart (what `/healthz` tells a supervisor).
    std::fs::remove_file(&filler).unwrap();
    assert!(inbound(&host, "SM-full-late", from, "late").await >= 500);
    assert_eq!(healthz(&host).await.0, 503);

    // The supervisor's restart: healthy again, every acknowledged message there, new ones stored.
    host.restart();
    assert_eq!(healthz(&host).await.0, 200, "{}", host.log());
    assert_eq!(
        inbound(&host, "SM-full-next", from, "after restart").await,
        200
    );
    let conversation = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored: Vec<String> = host
        .messages(&conversation, ALICE)
        .await
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    for text in &acknowledged {
        assert!(stored.contains(text), "acknowledged {} lost", &text[..12]);
    }
    assert!(stored.iter().any(|t| t == "after restart"));
    println!(
        "disk full after {} acknowledged webhooks; the next got {refused}",
        acknowledged.len()
    );
    host.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_database_stops_serve_with_a_clear_message_not_a_panic() {
    let mut host = Host::start(Setup::default());
    for i in 0..20 {
        let sid = format!("SM-corrupt-{i:02}");
        assert_eq!(inbound(&host, &sid, "+14155550124", "keep me").await, 200);
    }
    let exit = tokio::task::block_in_place(|| host.terminate());
    assert!(exit.success(), "{exit}");

    // Overwrite bytes in the middle of sled's database file.
    let db_dir = host.dir.join("data").join("db");
    let db_file = db_dir.join("db");
    let len = std::fs::metadata(&db_file).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&db_file)
        .unwrap();
    file.seek(SeekFrom::Start(len / 2)).unwrap();
    file.write_all(&[0x5A; 512]).unwrap();
    drop(file);

    let ended = tokio::task::block_in_place(|| {
        serve_until_exit_or_ready(
            host.config_path(),
            &addr(&host),
            &host.dir.join("corrupt.log"),
        )
    });
    let (status, stderr) = match ended {
        Ended::Exited(status, stderr) => (status, stderr),
        Ended::Served(stderr) => {
            panic!(
                "plugboard started on a damaged database (silently without its data); log:\n{stderr}"
            )
        }
    };
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("plugboard: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        line.contains(&format!("the database in {} is corrupt", db_dir.display()))
            && line.contains("restore that directory from a backup, or move it aside"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_serve_on_a_held_data_dir_names_the_other_process() {
    let host = Host::start(Setup::default());
    let ended = tokio::task::block_in_place(|| {
        serve_until_exit_or_ready(
            host.config_path(),
            "127.0.0.1:9",
            &host.dir.join("second.log"),
        )
    });
    let Ended::Exited(status, stderr) = ended else {
        panic!("a second plugboard served on the same data directory");
    };
    assert!(!status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let data_dir = host.dir.join("data");
    let want = format!("another plugboard process holds {}", data_dir.display());
    assert_eq!(stderr.matches(&want).count(), 1, "{stderr}");
    assert!(!stderr.contains("WouldBlock"), "{stderr}");
    // The first one never noticed.
    assert_eq!(healthz(&host).await.0, 200);
    assert_eq!(inbound(&host, "SM-held-1", "+14155550125", "hi").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn method_and_query_string_errors_are_json() {
    let host = Host::start(Setup::default());
    let json_error = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let allow = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{status} {content_type}: {text:?}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        let error = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
        (status, allow, error.to_owned())
    };

    let resp = host.http.post(host.url("/healthz")).send().await.unwrap();
    let (status, allow, error) = json_error(resp).await;
    assert_eq!(status, 405);
    assert!(allow.is_some_and(|a| a.contains("GET")));
    assert!(
        error.contains("POST") && error.contains("/healthz"),
        "{error}"
    );

    let resp = host
        .http
        .delete(host.url("/api/v1/conversations"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    let (status, _, error) = json_error(resp).await;
    assert_eq!(status, 405);
    assert!(error.contains("DELETE"), "{error}");

    let resp = host
        .http
        .get(host.url("/api/v1/events?last_event_id=abc"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    let (status, _, error) = json_error(resp).await;
    assert_eq!(status, 400);
    assert!(error.contains("query string"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_offline_message_goes_out_once_even_when_work_overflows() {
    let host = Host::start(Setup {
        support: "max_wait = 1\noverflow = \"night\"\noffline_message = \"SUPPORT is closed\""
            .into(),
        extra: format!(
            r#"
[[queues]]
name = "night"
router = "ring-all"
max_wait = 2
overflow = "last"
offline_message = "NIGHT is closed"

[[queues]]
name = "last"
router = "ring-all"

[[agents]]
id = "carol"
name = "Carol"
token = "{CAROL}"
queues = ["night", "last"]
"#
        ),
        ..Setup::default()
    });
    let mut events = SseStream::open(&host, CAROL, None).await;
    assert_eq!(
        inbound(&host, "SM-off-1", "+14155550126", "anyone?").await,
        200
    );
    // support -> night, then night -> last: the conversation waited in `night`, with nobody
    // online, before it moved on.
    loop {
        let e = events.next_of("overflowed").await;
        if e.data["data"]["to"] == "last" {
            break;
        }
    }
    let conversation = host.conversations(CAROL).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent: Vec<Value> = host
        .messages(&conversation, CAROL)
        .await
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(sent, ["SUPPORT is closed"]);
}

#[test]
fn replay_exit_codes_do_not_collide_with_the_usage_error() {
    let replay = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
            .arg("replay")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let kind = |stdout: &str| -> String {
        let json: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        json["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let url = "https://hooks.example.com/webhooks/sms";
    let twilio = plugboard_artifacts::bundled_dir().join("twilio-sms.wasm");
    let twilio = twilio.to_str().unwrap();
    let trap = plugboard_artifacts::test_plugin("trap");
    let trap = trap.to_str().unwrap();

    // clap's usage error: a required argument missing.
    let (usage, stdout, stderr) = replay(&["--plugin", twilio]);
    assert_eq!(usage, Some(2), "{stderr}");
    assert!(stdout.is_empty() && stderr.contains("--url"), "{stderr}");

    let settings = [
        "--setting",
        "account_sid=AC123",
        "--setting",
        "auth_token=secret",
        "--setting",
        "from=+15005550006",
    ];
    let (refused, stdout, _) =
        replay(&[&["--plugin", twilio, "--url", url][..], &settings].concat());
    assert_eq!(refused, Some(1), "{stdout}");
    assert_eq!(kind(&stdout), "unauthorized");

    let (load, stdout, _) = replay(&["--plugin", "/nonexistent/missing.wasm", "--url", url]);
    assert_eq!(load, Some(3), "{stdout}");
    assert_eq!(kind(&stdout), "load-error");

    let (failure, stdout, _) = replay(&["--plugin", trap, "--url", url]);
    assert_eq!(failure, Some(4), "{stdout}");
    assert_eq!(kind(&stdout), "plugin-failure");

    let (cannot_run, stdout, stderr) = replay(&[
        "--plugin",
        twilio,
        "--url",
        url,
        "--body-file",
        "/nonexistent/body.txt",
    ]);
    assert_eq!(cannot_run, Some(5), "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("--body-file"),
        "{stderr}"
    );

    let mut codes = vec![usage, refused, load, failure, cannot_run];
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 5, "every outcome has its own exit code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_an_audit_line_for_every_agent_and_admin_action() {
    let host = Host::start(Setup {
        server: "log_format = \"json\"".into(),
        ..Setup::default()
    });
    host.presence(ALICE, "online").await;
    assert_eq!(
        inbound(
            &host,
            "SMlog0000000000000000000000000001",
            "+14155550100",
            "hi"
        )
        .await,
        200
    );
    let id = host.conversations(ALICE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id_num: u64 = id.parse().unwrap();
    for action in ["take", "close"] {
        let (status, _) = host.act(&id, action, ALICE, json!({})).await;
        assert_eq!(status, 200, "{action}");
    }
    let (status, _) = host
        .post_json("/api/v1/admin/channels/sms/disable", ADMIN, json!({}))
        .await;
    assert_eq!(status, 200);
    // The audit lines are written before the answers: they are in the log now.
    let lines: Vec<serde_json::Value> = host
        .log()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l:?}"))
        })
        .collect();
    let audit: Vec<(String, String, Option<u64>)> = lines
        .iter()
        .filter(|l| l["target"] == "plugboard::audit")
        .map(|l| {
            (
                l["who"].as_str().unwrap_or_default().to_owned(),
                l["action"].as_str().unwrap_or_default().to_owned(),
                l["conversation"].as_u64(),
            )
        })
        .collect();
    for want in [
        ("alice".to_owned(), "presence".to_owned(), None),
        ("alice".to_owned(), "take".to_owned(), Some(id_num)),
        ("alice".to_owned(), "close".to_owned(), Some(id_num)),
        ("admin".to_owned(), "channel.disabled".to_owned(), None),
    ] {
        assert!(
            audit.contains(&want),
            "{want:?} missing from the audit lines {audit:?}"
        );
    }
    assert!(
        lines.iter().any(|l| l["message"] == "plugboard ready"),
        "the ready line is JSON too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_logs_carry_no_colour_codes_when_not_on_a_terminal() {
    let host = Host::start(Setup::default());
    host.presence(ALICE, "online").await;
    let log = host.log();
    assert!(log.contains("plugboard ready"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    assert!(
        log.contains("plugboard::audit"),
        "the audit line of the presence change:\n{log}"
    );
}
