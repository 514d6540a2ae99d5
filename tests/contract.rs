//! The plugin contract across versions, against the real binary: a channel and a router built
//! against the frozen `plugboard:plugin@0.2.0` keep loading and working on a 0.3.0 host, and
//! 0.3.0's `check-settings` refuses settings that can never work when the configuration loads.

mod support;

use std::process::Command;

use serde_json::json;
use support::*;

const LEE: &str = "lee-token-12345";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_and_a_router_built_against_0_2_0_keep_working() {
    let provider = ScriptedProvider::start(vec![
        Reply::new(200, json!("old-1")),
        Reply::new(200, json!("old-2")),
    ])
    .await;
    let host = Host::start(Setup {
        plugins: vec!["contract-0-2", "router-0-2"],
        extra: format!(
            r#"
[[queues]]
name = "legacy"
router = "router-0-2"

[[channels]]
name = "old"
plugin = "contract-0-2"
queue = "legacy"
[channels.settings]
api_base = "{}"

[[agents]]
id = "lee"
name = "Lee"
token = "{LEE}"
queues = ["legacy"]
"#,
            provider.base
        ),
        ..Setup::default()
    });
    let (status, plugins) = host.get_json("/api/v1/admin/plugins", ADMIN).await;
    assert_eq!(status, 200);
    let text = plugins.to_string();
    assert!(
        !text.contains("\"refused\":[{"),
        "nothing refused: {plugins}"
    );

    host.presence(LEE, "online").await;
    let mut events = SseStream::open(&host, LEE, None).await;
    let webhook = |body: &'static str| {
        host.http
            .post(host.url("/webhooks/old"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let resp = webhook("id=M1&from=%2B14155550500&text=hello")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The 0.2.0 router is the legacy queue's only router: an offer to Lee is its decision.
    events.next_of("offered").await;
    let id = host.conversations(LEE).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = host
        .post_json(&format!("/api/v1/conversations/{id}/take"), LEE, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    // The 0.2.0 channel sends through its provider.
    let (status, body) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            LEE,
            json!({"text": "hi there"}),
        )
        .await;
    assert!(status == 201 || status == 202, "{status} {body}");
    let hits = eventually("the send to reach the provider", || async {
        let hits = provider.hits();
        (!hits.is_empty()).then_some(hits)
    })
    .await;
    assert_eq!(
        String::from_utf8_lossy(&hits[0].request.body),
        "+14155550500:hi there"
    );

    // Its opt-out (a plain address in 0.2.0) still applies.
    let resp = webhook("id=M2&from=%2B14155550500&text=STOP")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = host
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            LEE,
            json!({"text": "still there?"}),
        )
        .await;
    assert_eq!(status, 422, "opted out: {body}");
    assert_eq!(provider.hits().len(), 1, "nothing sent after STOP");
}

/// Writes a configuration with one TeleSign channel whose `api_key` is `key`.
fn telesign_config(dir: &std::path::Path, key: &str) -> std::path::PathBuf {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
data_dir = "{data}"

[[queues]]
name = "support"
router = "ring-all"

[[channels]]
name = "ts"
plugin = "telesign-sms"
queue = "support"
[channels.settings]
customer_id = "FFFFFFFF-EEEE-DDDD-1234-AB1234567890"
api_key = "{key}"
from = "+15005550006"

[[agents]]
id = "alice"
name = "Alice"
token = "{ALICE}"
queues = ["support"]
"#,
        port = free_port(),
        data = dir.join("data").display(),
    );
    let path = dir.join("plugboard.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn a_telesign_key_that_decodes_to_nothing_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["check", "serve"] {
        let config = telesign_config(dir.path(), "!!!! ----");
        let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
            .args([command, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("channels[0].settings") && stderr.contains("api_key"),
            "{command}: {stderr}"
        );
    }
    let good = telesign_config(
        dir.path(),
        "EXAMPLE----TE8sTgg45yusumoN6BYsBVkh+yRJ5czgsnCehZaOYldPJdmFh6NeX8kunZ2zU1YWaUw/0wV6xfw==",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
