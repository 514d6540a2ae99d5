//! The web chat widget on a customer's website, in a real headless Chromium: the widget runs on
//! a page served from another origin than the host (a static server started by
//! `tests/browser/widget.mjs`), a visitor message typed into it reaches the agent API, and the
//! agent's reply reaches the page. A page on an origin the channel does not allow is blocked.
//!
//! Needs Chromium, Node.js and the pinned `playwright-core` (`tests/browser/package-lock.json`):
//! `bash tests/setup.sh` as root installs them. Without them this test fails and says what to
//! install; it never skips.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// The folder of the Node.js driver and its lock file.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Node.js and Chromium, or a failure naming what to install.
fn prerequisites() -> (PathBuf, PathBuf) {
    let node = on_path(&["node", "nodejs"]);
    let chromium = std::env::var_os("PLUGBOARD_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromium", "chromium-browser"]));
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    let mut missing = Vec::new();
    if node.is_none() {
        missing.push("Node.js (`apt-get install -y nodejs npm`)");
    }
    if chromium.is_none() {
        missing.push("Chromium (`apt-get install -y chromium`, or set PLUGBOARD_CHROMIUM)");
    }
    if !playwright.is_file() {
        missing.push("the node modules (`npm ci --prefix tests/browser`)");
    }
    assert!(
        missing.is_empty(),
        "the browser test needs {}; `bash tests/setup.sh` as root installs all of them",
        missing.join(", ")
    );
    (node.unwrap(), chromium.unwrap())
}

/// The driver process, killed if the test ends early.
struct Driver {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Driver {
    /// The next JSON line the driver prints, waiting up to `timeout`.
    async fn next(&mut self, timeout: Duration) -> Value {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(timeout));
        match line {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("driver printed {line:?}: {e}")),
            Err(e) => panic!(
                "no word from the browser driver within {timeout:?} ({e}); stderr:\n{}",
                self.stderr()
            ),
        }
    }

    fn stderr(&mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_on_another_origin_talks_to_an_agent_in_chromium() {
    let (node, chromium) = prerequisites();
    let page_port = free_port();
    let blocked_port = free_port();
    let host = Host::start(Setup {
        extra: format!(
            r##"
[[channels]]
name = "site"
plugin = "webchat"
queue = "support"
allowed_origins = ["http://127.0.0.1:{page_port}"]
[channels.settings]
title = "Talk to Acme"
"##
        ),
        ..Setup::default()
    });
    host.presence(ALICE, "online").await;

    let message = "Do you ship to Osaka?";
    let reply = "Yes, in two days.";
    let mut child = Command::new(node)
        .current_dir(browser_dir())
        .arg("widget.mjs")
        .args(["--host", &host.base, "--channel", "site"])
        .args(["--page-port", &page_port.to_string()])
        .args(["--blocked-port", &blocked_port.to_string()])
        .arg("--chromium")
        .arg(&chromium)
        .args(["--message", message, "--reply", reply])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut driver = Driver { child, lines };

    let sent = driver.next(Duration::from_secs(90)).await;
    assert_eq!(sent["stage"], "sent", "{sent}; host log:\n{}", host.log());

    // The visitor's message reached the agent API.
    let convs = host.conversations(ALICE).await;
    let conv = convs
        .iter()
        .find(|c| c["kind"] == "webchat")
        .unwrap_or_else(|| panic!("no web chat conversation: {convs:?}"));
    let id = conv["id"].as_str().unwrap().to_owned();
    let messages = host.messages(&id, ALICE).await;
    assert_eq!(messages[0]["text"], message, "{messages:?}");
    let (status, body) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            ALICE,
            json!({ "text": reply }),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The reply reached the page, and a page on another origin was blocked.
    let done = driver.next(Duration::from_secs(60)).await;
    assert_eq!(done["stage"], "done", "{done}; host log:\n{}", host.log());
    let blocked = done["blocked"].as_str().unwrap_or_default();
    assert!(
        blocked.starts_with("blocked"),
        "a page on an origin not in allowed_origins reached the host: {blocked}"
    );
    let status = tokio::task::block_in_place(|| driver.child.wait()).unwrap();
    assert!(status.success(), "driver exited {status}");
    println!(
        "widget on {} talked to the host at {}; {} was {blocked}",
        done["page_origin"], host.base, done["blocked_origin"]
    );
}
