//! Change without downtime: replacing a plugin file, or `POST /api/v1/admin/reload`, swaps in
//! the new version while webhooks keep flowing; a broken or incompatible file is refused and the
//! previous version keeps serving.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

const CUSTOM: &str = "\n[[channels]]\nname = \"custom\"\nplugin = \"custom\"\nqueue = \"support\"\n[channels.settings]\naccount_sid = \"ACtest000000000000000000000000000\"\nauth_token = \"test-auth-token-0123456789\"\nfrom = \"+15005550006\"\n";

fn bundled(name: &str) -> PathBuf {
    plugboard_artifacts::bundled_dir().join(format!("{name}.wasm"))
}

/// Replaces a file the way deploy tools do: write aside, then rename over.
fn replace(target: &Path, bytes: &[u8]) {
    let tmp = target.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, target).unwrap();
}

fn start_with_custom() -> (Host, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("plugboard-reload-")
        .tempdir()
        .unwrap()
        .keep();
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    std::fs::copy(bundled("twilio-sms"), dir.join("plugins/custom.wasm")).unwrap();
    let host = Host::start_in(
        dir.clone(),
        Setup {
            extra: CUSTOM.to_owned(),
            ..Setup::default()
        },
    );
    (host, dir.join("plugins/custom.wasm"))
}

async fn custom_kind(host: &Host) -> String {
    let (_, plugins) = host.get_json("/api/v1/admin/plugins", ADMIN).await;
    plugins["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["info"]["name"] == "custom")
        .map(|c| c["manifest"]["kind"].as_str().unwrap().to_owned())
        .unwrap()
}

async fn reload(host: &Host) -> (u16, Value) {
    let resp = host
        .http
        .post(host.url("/api/v1/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn webhook(host: &Host, n: u32) -> u16 {
    let params = inbound_sms(
        &format!("SMr{n:031}"),
        &format!("+1415556{:04}", n % 10_000),
        "hi",
    );
    host.post_twilio("custom", &pairs(&params), Some(AUTH_TOKEN))
        .await
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_swaps_the_plugin_without_failing_a_request() {
    let (host, file) = start_with_custom();
    assert_eq!(custom_kind(&host).await, "sms");
    let host = std::sync::Arc::new(host);
    let mut senders = Vec::new();
    for t in 0..4u32 {
        let host = host.clone();
        senders.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..60u32 {
                statuses.push(webhook(&host, t * 1000 + i).await);
            }
            statuses
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    replace(&file, &std::fs::read(bundled("twilio-whatsapp")).unwrap());
    let (status, body) = reload(&host).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["report"]["loaded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "custom"),
        "{body}"
    );
    assert!(
        body["report"]["unchanged"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "twilio-sms"),
        "{body}"
    );
    let mut all = Vec::new();
    for s in senders {
        all.extend(s.await.unwrap());
    }
    assert_eq!(all.len(), 240);
    assert!(
        all.iter().all(|s| *s == 200),
        "every request during the swap succeeded: {all:?}"
    );
    assert_eq!(
        custom_kind(&host).await,
        "whatsapp",
        "the new version serves"
    );
    let stored: usize = {
        let convs = host.conversations(ALICE).await;
        let mut n = 0;
        for c in &convs {
            n += host.messages(c["id"].as_str().unwrap(), ALICE).await.len();
        }
        n
    };
    assert_eq!(stored, 240, "nothing lost across the swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_or_incompatible_files_are_refused_and_the_previous_version_keeps_serving() {
    let (host, file) = start_with_custom();
    replace(
        &file,
        &std::fs::read(plugboard_artifacts::test_plugin("old-contract")).unwrap(),
    );
    let (status, body) = reload(&host).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["report"]["kept_previous"],
        serde_json::json!(["custom"]),
        "{body}"
    );
    let refused = body["report"]["refused"][0]["error"].as_str().unwrap();
    assert!(
        refused.contains("0.0.1") && refused.contains("0.3.0"),
        "{refused}"
    );
    assert_eq!(webhook(&host, 1).await, 200);
    assert_eq!(custom_kind(&host).await, "sms");

    replace(&file, b"\0asm garbage, not a component");
    let (status, body) = reload(&host).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["report"]["kept_previous"],
        serde_json::json!(["custom"]),
        "{body}"
    );
    assert_eq!(webhook(&host, 2).await, 200);

    // Without the file at all the channel's plugin is gone: the reload is refused whole.
    std::fs::remove_file(&file).unwrap();
    let (status, body) = reload(&host).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("custom"), "{body}");
    assert_eq!(
        webhook(&host, 3).await,
        200,
        "the previous plugins keep serving"
    );
    let (status, _) = host.get_json("/api/v1/admin/plugins", ALICE).await;
    assert_eq!(status, 401, "reload and plugins are admin-only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_file_is_picked_up_without_a_call() {
    let (host, file) = start_with_custom();
    replace(&file, &std::fs::read(bundled("twilio-whatsapp")).unwrap());
    eventually("the watcher reloads the replaced file", || async {
        (custom_kind(&host).await == "whatsapp").then_some(())
    })
    .await;
    assert_eq!(webhook(&host, 4).await, 200);
    assert!(host.log().contains("plugin files changed; reloading"));
}

/// The new file of the configuration test: `legacy` removed, `fresh` added, agent `carol`
/// added, `bob`'s token changed, and a restart-only key changed.
fn reconfigured(original: &str) -> String {
    let mut text = original
        .replace(BOB, "bob-new-token-678")
        .replace("memory_mib = 32", "memory_mib = 48");
    let legacy = text.find("\n[[channels]]\nname = \"legacy\"").unwrap();
    let end = text[legacy + 1..]
        .find("\n[[")
        .map_or(text.len(), |e| legacy + 1 + e);
    text.replace_range(legacy..end, "");
    text.push_str(&LEGACY.replace("legacy", "fresh"));
    text.push_str(
        "\n[[agents]]\nid = \"carol\"\nname = \"Carol\"\ntoken = \"carol-token-123\"\nqueues = [\"support\"]\n",
    );
    text
}

const LEGACY: &str = "\n[[channels]]\nname = \"legacy\"\nplugin = \"twilio-sms\"\nqueue = \"support\"\n[channels.settings]\naccount_sid = \"ACtest000000000000000000000000000\"\nauth_token = \"test-auth-token-0123456789\"\nfrom = \"+15005550006\"\n";

async fn webhook_to(host: &Host, channel: &str, sid: &str) -> u16 {
    let params = inbound_sms(sid, "+14155550199", "hi");
    host.post_twilio(channel, &pairs(&params), Some(AUTH_TOKEN))
        .await
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_under_load_changes_agents_and_channels_without_failing_a_request() {
    let host = Host::start(Setup {
        extra: LEGACY.to_owned(),
        env: vec![("PLUGBOARD_SESSION_RECHECK_MS".into(), "200".into())],
        ..Setup::default()
    });
    let original = std::fs::read_to_string(host.config_path()).unwrap();
    assert_eq!(webhook_to(&host, "legacy", "SMlegacy-before").await, 200);
    let bob_stream = host
        .http
        .get(host.url("/api/v1/events"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(bob_stream.status(), 200);

    let host = std::sync::Arc::new(host);
    // The load runs until both reloads are done (and at least 20 rounds per task), so it
    // spans them whatever the machine's speed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for t in 0..3u32 {
        let (host, stop) = (host.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut i = 0u32;
            while i < 20 || !stop.load(std::sync::atomic::Ordering::SeqCst) {
                statuses.push(webhook_to(&host, "sms", &format!("SMload-{t}-{i}")).await);
                let (status, _) = host.get_json("/api/v1/conversations", ALICE).await;
                statuses.push(status);
                i += 1;
            }
            (i, statuses)
        }));
    }

    // A file with problems is refused whole, every problem named; the old one keeps serving.
    let broken = original
        .replace("queue = \"support\"\n[channels.settings]\naccount_sid = \"ACtest000000000000000000000000000\"\nauth_token = \"test-auth-token-0123456789\"", "queue = \"nowhere\"\n[channels.settings]\naccount_sid = \"ACtest000000000000000000000000000\"\nauth_token = \"test-auth-token-0123456789\"")
        .replace(BOB, "short");
    std::fs::write(host.config_path(), &broken).unwrap();
    let (status, body) = reload(&host).await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("2 problems")
            && error.contains("channels[1].queue")
            && error.contains("agents[1].token"),
        "{error}"
    );
    assert_eq!(webhook_to(&host, "legacy", "SMlegacy-refused").await, 200);
    assert_eq!(host.get_json("/api/v1/agents/me", BOB).await.0, 200);

    // The good file, by SIGHUP.
    std::fs::write(host.config_path(), reconfigured(&original)).unwrap();
    let pid = host.pid().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    eventually("the SIGHUP reload to apply", || async {
        (host
            .get_json("/api/v1/agents/me", "carol-token-123")
            .await
            .0
            == 200)
            .then_some(())
    })
    .await;
    assert_eq!(host.get_json("/api/v1/agents/me", BOB).await.0, 401);
    assert_eq!(
        host.get_json("/api/v1/agents/me", "bob-new-token-678")
            .await
            .0,
        200
    );
    assert_eq!(webhook_to(&host, "legacy", "SMlegacy-after").await, 404);
    assert_eq!(webhook_to(&host, "fresh", "SMfresh-1").await, 200);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), bob_stream.bytes()).await;
    assert!(
        matches!(ended, Ok(Ok(_))),
        "the stream opened with bob's old token ends: {ended:?}"
    );
    // Carol, added by the reload, goes online and is offered the waiting work of her queue.
    let mut carol = SseStream::open(&host, "carol-token-123", None).await;
    host.presence("carol-token-123", "online").await;
    let offered = carol.next_of("offered").await;
    assert_eq!(
        offered.data["data"]["queue"], "support",
        "{:?}",
        offered.data
    );

    let mut statuses = Vec::new();
    let mut webhooks = 0;
    let mut load_done = Vec::new();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for l in load {
        let (rounds, s) = l.await.unwrap();
        load_done.push(rounds);
        webhooks += rounds as usize;
        statuses.extend(s);
    }
    assert_eq!(statuses.len(), webhooks * 2);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no request failed across the reloads: {statuses:?}"
    );

    // The same file again changes nothing but still names the key only a restart applies.
    let (status, body) = reload(&host).await;
    assert_eq!(status, 200, "{body}");
    let changes = &body["report"]["config"];
    for list in [
        "agents_added",
        "agents_removed",
        "agents_changed",
        "channels_added",
        "channels_removed",
        "channels_changed",
        "queues_added",
        "queues_removed",
        "queues_changed",
    ] {
        assert_eq!(changes[list], serde_json::json!([]), "{list}: {body}");
    }
    assert_eq!(
        changes["restart_required"],
        serde_json::json!(["limits.memory_mib"]),
        "{body}"
    );
    let log = host.log();
    assert!(
        log.contains("configuration reloaded") && log.contains("carol"),
        "{log}"
    );

    // Nothing accepted was lost: every webhook's message is stored, the legacy channel's too.
    let conversations = host.conversations(ALICE).await;
    let mut stored = 0;
    for c in &conversations {
        stored += host.messages(c["id"].as_str().unwrap(), ALICE).await.len();
    }
    assert_eq!(
        stored,
        webhooks + 3,
        "every load webhook ({load_done:?} per task), two on legacy, one on fresh"
    );
}
