//! The web chat widget on a customer's website, in a real headless Chromium: the widget runs on
//! a page served from another origin than the host (a static server started by
//! `tests/browser/widget.mjs`), a visitor message typed into it reaches the agent API, and the
//! agent's reply reaches the page. A page on an origin the channel does not allow is blocked.
//!
//! Needs Chromium, Node.js and the pinned `playwright-core` (`tests/browser/package-lock.json`):
//! `bash tests/setup.sh` as root installs them. Without them this test fails and says what to
//! install; it never skips.

mod support;

use std::ffi::OsString;
use std::time::Duration;

use serde_json::json;
use support::browser::{Driver, prerequisites};
use support::*;

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
    let (page_port, blocked_port) = (page_port.to_string(), blocked_port.to_string());
    let mut args = [
        "--host",
        host.base.as_str(),
        "--channel",
        "site",
        "--page-port",
        page_port.as_str(),
        "--blocked-port",
        blocked_port.as_str(),
        "--message",
        message,
        "--reply",
        reply,
    ]
    .map(OsString::from)
    .to_vec();
    args.extend([OsString::from("--chromium"), chromium.into_os_string()]);
    let mut driver = Driver::start(&node, "widget.mjs", args);

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
    let status = driver.wait();
    assert!(status.success(), "driver exited {status}");
    println!(
        "widget on {} talked to the host at {}; {} was {blocked}",
        done["page_origin"], host.base, done["blocked_origin"]
    );
}
