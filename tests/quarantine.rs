//! Quarantine instead of loss, against the real binary: a broken release of a channel plugin
//! (it traps on every webhook) gets webhooks; each is kept durably and answered 200, nothing is
//! stored; a redrive while it is still broken keeps them; once the good release is dropped in,
//! `plugboard redrive` stores what they carry, a provider's retry of one message only once.

mod support;

use serde_json::{Value, json};
use support::*;

const SECRET: &str = "json-webhook-secret";

fn signed(body: &str) -> String {
    json_signature(SECRET, body)
}

async fn webhook(host: &Host, id: &str, from: &str, text: &str) -> reqwest::Response {
    let body = json!({"id": id, "from": from, "to": "+15005550006", "text": text}).to_string();
    host.http
        .post(host.url("/webhooks/json"))
        .header("content-type", "application/json")
        .header("x-signature", signed(&body))
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_a_broken_plugin_fails_on_are_kept_and_redriven_once_it_is_fixed() {
    let dir = tempfile::Builder::new()
        .prefix("plugboard-e2e-")
        .tempdir()
        .unwrap()
        .keep();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    // The broken release, under the name the configuration uses.
    std::fs::copy(
        plugboard_artifacts::test_plugin("broken-json"),
        plugins.join("example-json.wasm"),
    )
    .unwrap();
    let host = Host::start_in(
        dir,
        Setup {
            extra: format!(
                "\n[[channels]]\nname = \"json\"\nplugin = \"example-json\"\nqueue = \"support\"\n[channels.settings]\nsecret = \"{SECRET}\"\napi_key = \"k\"\napi_base = \"http://127.0.0.1:9\"\n"
            ),
            ..Setup::default()
        },
    );
    let sent = [
        ("m-1", "+14155550161", "first"),
        ("m-2", "+14155550162", "second"),
        ("m-3", "+14155550161", "third"),
        // The provider's retry of m-2.
        ("m-2", "+14155550162", "second"),
    ];
    let mut kept_ids = Vec::new();
    for (id, from, text) in sent {
        let resp = webhook(&host, id, from, text).await;
        assert_eq!(resp.status(), 200, "kept, so the provider is answered 200");
        let kept = resp.headers()["x-plugboard-kept"]
            .to_str()
            .unwrap()
            .to_owned();
        kept_ids.push(kept);
    }
    assert!(
        host.conversations(ALICE).await.is_empty(),
        "nothing stored yet"
    );
    let (status, body) = host
        .get_json("/api/v1/admin/channels/json/kept", ADMIN)
        .await;
    assert_eq!(status, 200, "{body}");
    let kept = body["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 4);
    let listed: Vec<&str> = kept.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(listed, kept_ids, "in arrival order");
    assert!(
        kept[0]["error"].as_str().unwrap().contains("trapped"),
        "{}",
        kept[0]
    );
    let (status, _) = host
        .get_json("/api/v1/admin/channels/json/kept", ALICE)
        .await;
    assert_eq!(status, 401, "admins only");

    // Still broken: a redrive keeps them, with the new error.
    let (status, report) = host
        .post_json("/api/v1/admin/channels/json/redrive", ADMIN, json!({}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["redriven"], 0);
    assert_eq!(report["still_failing"].as_array().unwrap().len(), 4);
    let (_, body) = host
        .get_json("/api/v1/admin/channels/json/kept", ADMIN)
        .await;
    assert!(
        body["kept"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["redrives"] == 1)
    );

    // The good release is dropped in; the CLI redrives through the running host.
    std::fs::copy(
        plugboard_artifacts::test_plugin("example-json"),
        host.dir.join("plugins/example-json.wasm"),
    )
    .unwrap();
    let (status, body) = host
        .post_json("/api/v1/admin/reload", ADMIN, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["redrive", "--channel", "json", "--config"])
        .arg(host.config_path())
        .env("TEST_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["redriven"], 4, "{report}");
    assert_eq!(report["still_failing"], json!([]));

    // Stored once each: m-2's retry is a duplicate.
    let conversations = host.conversations(ALICE).await;
    assert_eq!(conversations.len(), 2);
    let mut texts = Vec::new();
    for c in &conversations {
        for m in host.messages(c["id"].as_str().unwrap(), ALICE).await {
            texts.push(m["text"].as_str().unwrap().to_owned());
        }
    }
    texts.sort();
    assert_eq!(texts, ["first", "second", "third"]);
    let (_, body) = host
        .get_json("/api/v1/admin/channels/json/kept", ADMIN)
        .await;
    assert_eq!(body["kept"], json!([]), "nothing left kept");
    // Redriving again finds nothing; an unknown channel is named.
    let (status, report) = host
        .post_json("/api/v1/admin/channels/json/redrive", ADMIN, json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["redriven"], 0);
    let (status, body) = host
        .post_json("/api/v1/admin/channels/nope/redrive", ADMIN, json!({}))
        .await;
    assert_eq!(status, 404, "{body}");
}
