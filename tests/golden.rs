//! A corpus of real traffic and golden replay, against the real binary: a channel with
//! `record = N` keeps its latest authentic webhooks (admins read them); `plugboard replay
//! --corpus` runs them through a candidate and the current plugin at their recorded time and
//! agrees when they agree, catches a candidate that changes one field (exit 1, each difference
//! listed), takes accepted differences, and reads the corpus from the running host with
//! `--channel`. A candidate attached in shadow to the live channel sees every webhook; its
//! divergences are counted and shown while the live answers stay the live plugin's.

mod support;

use serde_json::{Value, json};
use support::*;

const SECRET: &str = "json-webhook-secret";

fn signed(body: &str) -> String {
    json_signature(SECRET, body)
}

async fn webhook(host: &Host, id: &str, text: &str, signature: Option<&str>) -> u16 {
    let body =
        json!({"id": id, "from": "+14155550171", "to": "+15005550006", "text": text}).to_string();
    host.http
        .post(host.url("/webhooks/json"))
        .header("content-type", "application/json")
        .header(
            "x-signature",
            signature.map_or_else(|| signed(&body), str::to_owned),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `plugboard replay` with `args`: the report and the exit status.
fn replay(args: &[&str]) -> (Value, i32) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .arg("replay")
        .args(args)
        .env("TEST_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_corpus_catches_a_candidate_that_changes_one_field() {
    let host = Host::start(Setup {
        plugins: vec!["example-json", "changed-json"],
        extra: format!(
            "\n[[channels]]\nname = \"json\"\nplugin = \"example-json\"\nqueue = \"support\"\nrecord = 3\n[channels.settings]\nsecret = \"{SECRET}\"\napi_key = \"k\"\napi_base = \"http://127.0.0.1:9\"\n"
        ),
        ..Setup::default()
    });
    for (n, text) in ["hello", "order 42", "thanks", "one more"]
        .iter()
        .enumerate()
    {
        assert_eq!(webhook(&host, &format!("m-{n}"), text, None).await, 200);
    }
    assert_eq!(webhook(&host, "forged", "x", Some("00")).await, 403);
    // The latest 3 authentic ones are kept (the forged one never reached the corpus).
    let corpus = eventually("the corpus trimmed to 3", || async {
        let (status, body) = host
            .get_json("/api/v1/admin/channels/json/corpus", ADMIN)
            .await;
        assert_eq!(status, 200, "{body}");
        let bodies: Vec<Value> = body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                use base64::Engine as _;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(r["body"].as_str().unwrap())
                    .unwrap();
                serde_json::from_slice::<Value>(&raw).unwrap()
            })
            .collect();
        let texts: Vec<&str> = bodies.iter().map(|b| b["text"].as_str().unwrap()).collect();
        (texts == ["order 42", "thanks", "one more"]).then_some(body.clone())
    })
    .await;
    let (status, _) = host
        .get_json("/api/v1/admin/channels/json/corpus", ALICE)
        .await;
    assert_eq!(status, 401, "admins only");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corpus.json"), corpus.to_string()).unwrap();
    let corpus_dir = dir.path().to_str().unwrap();
    let current = plugboard_artifacts::test_plugin("example-json");
    let candidate = plugboard_artifacts::test_plugin("changed-json");
    let secret = format!("secret={SECRET}");
    let base = [
        "--setting",
        &secret,
        "--setting",
        "api_key=k",
        "--corpus",
        corpus_dir,
    ];

    // The same version agrees with itself.
    let mut args = base.to_vec();
    args.extend([
        "--plugin",
        current.to_str().unwrap(),
        "--baseline",
        current.to_str().unwrap(),
    ]);
    let (report, code) = replay(&args);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["agree"], 3);

    // A candidate that upper-cases the text is caught, each difference listed.
    let mut args = base.to_vec();
    args.extend([
        "--plugin",
        candidate.to_str().unwrap(),
        "--baseline",
        current.to_str().unwrap(),
    ]);
    let (report, code) = replay(&args);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["differ"], 3, "{report}");
    let first = &report["differences"][0];
    assert_eq!(first["baseline"]["events"][0]["text"], "order 42");
    assert_eq!(first["candidate"]["events"][0]["text"], "ORDER 42");

    // Accepted differences pass.
    let accept = dir.path().join("accepted.txt");
    let ids: Vec<String> = corpus["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    std::fs::write(
        &accept,
        format!("# upper-case is intended\n{}\n", ids.join("\n")),
    )
    .unwrap();
    let mut args = base.to_vec();
    args.extend([
        "--plugin",
        candidate.to_str().unwrap(),
        "--baseline",
        current.to_str().unwrap(),
        "--accept",
        accept.to_str().unwrap(),
    ]);
    let (report, code) = replay(&args);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["accepted"], 3);

    // From the running host: its corpus and the channel's settings from its configuration.
    let config = host.config_path().to_str().unwrap().to_owned();
    let (report, code) = replay(&[
        "--channel",
        "json",
        "--config",
        &config,
        "--plugin",
        candidate.to_str().unwrap(),
        "--baseline",
        current.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["requests"], 3);
    assert_eq!(report["differ"], 3);

    // The admin API does the same inside the running host, on its corpus and loaded plugins,
    // against the plugin serving the channel unless told otherwise.
    let (status, report) = host
        .post_json(
            "/api/v1/admin/channels/json/replay",
            ADMIN,
            json!({"plugin": "changed-json"}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["agree"], &report["differ"], &report["baseline"]),
        (&json!(false), &json!(3), &json!("example-json")),
        "{report}"
    );
    assert_eq!(
        report["differences"][0]["candidate"]["events"][0]["text"],
        "ORDER 42"
    );
    let (status, report) = host
        .post_json(
            "/api/v1/admin/channels/json/replay",
            ADMIN,
            json!({"plugin": "changed-json", "accept": ids}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["agree"], &report["accepted"]),
        (&json!(true), &json!(3))
    );
    let (status, report) = host
        .post_json(
            "/api/v1/admin/channels/json/replay",
            ADMIN,
            json!({"plugin": "example-json"}),
        )
        .await;
    assert_eq!((status, &report["agree"]), (200, &json!(true)), "{report}");
    for (channel, body, expected) in [
        ("json", json!({"plugin": "no-such-plugin"}), 422),
        ("json", json!({"plugins": "changed-json"}), 400),
        ("sms", json!({"plugin": "changed-json"}), 422),
        ("nowhere", json!({"plugin": "changed-json"}), 404),
    ] {
        let (status, report) = host
            .post_json(
                &format!("/api/v1/admin/channels/{channel}/replay"),
                ADMIN,
                body,
            )
            .await;
        assert_eq!(status, expected, "{channel}: {report}");
        assert!(report["error"].is_string(), "{report}");
    }
    let (status, _) = host
        .post_json(
            "/api/v1/admin/channels/json/replay",
            ALICE,
            json!({"plugin": "changed-json"}),
        )
        .await;
    assert_eq!(status, 401, "admins only");

    // Alone, a candidate that fails every request fails the replay.
    let broken = plugboard_artifacts::test_plugin("broken-json");
    let mut args = base.to_vec();
    args.extend(["--plugin", broken.to_str().unwrap()]);
    let (report, code) = replay(&args);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["failed"], 3);
    assert_eq!(
        report["differences"][0]["candidate"]["error"]["kind"],
        "plugin-failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_candidate_is_compared_on_live_traffic_and_changes_nothing() {
    let host = Host::start(Setup {
        plugins: vec!["example-json", "changed-json"],
        extra: format!(
            "\n[[channels]]\nname = \"json\"\nplugin = \"example-json\"\nqueue = \"support\"\n[channels.settings]\nsecret = \"{SECRET}\"\napi_key = \"k\"\napi_base = \"http://127.0.0.1:9\"\n"
        ),
        ..Setup::default()
    });
    let shadow = "/api/v1/admin/channels/json/shadow";
    let attach = |plugin: &'static str| {
        let host = &host;
        async move {
            let resp = host
                .http
                .put(host.url(shadow))
                .bearer_auth(ADMIN)
                .json(&json!({"plugin": plugin}))
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    assert_eq!(attach("nope").await, 404);
    assert_eq!(attach("changed-json").await, 200);
    for (n, text) in ["hello", "order 42", "thanks"].iter().enumerate() {
        assert_eq!(webhook(&host, &format!("s-{n}"), text, None).await, 200);
    }
    assert_eq!(webhook(&host, "forged", "x", Some("00")).await, 403);
    let report = eventually("4 webhooks compared", || async {
        let (_, r) = host.get_json(shadow, ADMIN).await;
        (r["compared"] == 4).then_some(r)
    })
    .await;
    assert_eq!(report["diverged"]["events"], 3, "{report}");
    assert_eq!(report["agreed"], 1, "both refuse the forged one: {report}");
    let first = report["first"][0]["candidate"].as_str().unwrap();
    assert!(first.contains("HELLO"), "{first}");
    assert!(
        report["first"][0]["live"]
            .as_str()
            .unwrap()
            .contains("hello")
    );
    // The live plugin's reading is what was stored.
    let conv = &host.conversations(ALICE).await[0];
    let texts: Vec<String> = host
        .messages(conv["id"].as_str().unwrap(), ALICE)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["hello", "order 42", "thanks"]);

    // The same release in shadow agrees; detaching ends it.
    assert_eq!(attach("example-json").await, 200);
    assert_eq!(webhook(&host, "s-9", "same", None).await, 200);
    eventually("agreed", || async {
        let (_, r) = host.get_json(shadow, ADMIN).await;
        (r["compared"] == 1 && r["agreed"] == 1).then_some(())
    })
    .await;
    let resp = host
        .http
        .delete(host.url(shadow))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _) = host.get_json(shadow, ADMIN).await;
    assert_eq!(status, 404);
    let (status, _) = host.get_json(shadow, ALICE).await;
    assert_eq!(status, 401);
}
