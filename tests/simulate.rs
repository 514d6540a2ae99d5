//! Router simulation against the real binary: a queue with `record_decisions = N` keeps its
//! latest N routing decisions (what its router was given, what it answered; admins read them);
//! `plugboard simulate` gives a candidate router the same snapshots and reports how its
//! decisions differ: agrees (exit 0) when the candidate is the router that decided, differs
//! (exit 1) with the fairness figures when it is another. The shipped scenario
//! (`tests/fixtures/routing`) shows the known difference between `ring-all` and `round-robin`.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::*;

/// `plugboard simulate` with `args`: the report and the exit status.
fn simulate(args: &[&str]) -> (Value, i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .arg("simulate")
        .args(args)
        // The host's configuration reads it (`--config`).
        .env("TEST_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (report, out.status.code().unwrap(), stderr)
}

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/routing")
}

/// The decisions the admin API lists for `queue`.
async fn decisions(host: &Host, queue: &str) -> Vec<Value> {
    let (status, body) = host
        .get_json(&format!("/api/v1/admin/queues/{queue}/decisions"), ADMIN)
        .await;
    assert_eq!(status, 200, "{body}");
    body["decisions"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_records_its_decisions_and_a_candidate_router_is_simulated_on_them() {
    let host = Host::start(Setup {
        support: "record_decisions = 3".to_owned(),
        extra: console_team(),
        ..Setup::default()
    });
    host.presence(ALICE, "online").await;
    host.presence(DANA, "online").await;
    for i in 1..=4 {
        host.sms(
            &format!("SM{i:032}"),
            &format!("+1415555017{i}"),
            "where is my order?",
        )
        .await;
    }
    // Bounded: the latest three of the four decisions are kept, oldest first.
    let kept = eventually("the fourth decision to be recorded", || async {
        let list = decisions(&host, "support").await;
        (list.len() == 3 && list[2]["work"]["conversation"] == "4").then_some(list)
    })
    .await;
    let conversations: Vec<&Value> = kept.iter().map(|d| &d["work"]["conversation"]).collect();
    assert_eq!(conversations, [&json!("2"), &json!("3"), &json!("4")]);
    let first = &kept[0];
    assert_eq!(first["work"]["queue"], "support");
    assert_eq!(first["work"]["channel"], "sms");
    let ids: Vec<&Value> = first["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["id"])
        .collect();
    assert_eq!(ids, [&json!("alice"), &json!("dana")], "{first}");
    assert_eq!(first["agents"][0]["presence"], "online");
    assert_eq!(
        first["decision"],
        json!({"offer": ["alice", "dana"]}),
        "ring-all offers both"
    );
    assert!(
        first["router"]
            .as_str()
            .unwrap()
            .starts_with("ring-all sha256:"),
        "{first}"
    );

    // Only admins read them; an unknown queue is named.
    let (status, _) = host
        .get_json("/api/v1/admin/queues/support/decisions", ALICE)
        .await;
    assert!(status == 401 || status == 403, "{status}");
    let (status, body) = host
        .get_json("/api/v1/admin/queues/nowhere/decisions", ADMIN)
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("nowhere"),
        "{body}"
    );

    let config = host.config_path().to_str().unwrap().to_owned();
    let live = ["--queue", "support", "--config", config.as_str()];
    // The router that decided agrees with what it decided.
    let (report, code, stderr) = simulate(&[&live[..], &["--router", "ring-all"]].concat());
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(
        (report["snapshots"].as_u64(), report["agree"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(report["baseline"]["router"], "recorded");
    // Another offers one agent at a time: every decision differs, each listed.
    let (report, code, stderr) = simulate(&[&live[..], &["--router", "round-robin"]].concat());
    assert_eq!(code, 1, "{report} {stderr}");
    assert_eq!(report["differ"], 3, "{report}");
    assert_eq!(report["differences"].as_array().unwrap().len(), 3);
    assert_eq!(
        report["baseline"]["offers_per_agent"],
        json!({"alice": 3, "dana": 3})
    );
    let per_agent = report["candidate"]["offers_per_agent"].as_object().unwrap();
    let offered: u64 = per_agent.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(offered, 3, "one agent per decision: {report}");
    let d = &report["differences"][0];
    assert_eq!(d["baseline"], json!({"offer": ["alice", "dana"]}), "{d}");
    assert_eq!(d["candidate"]["offer"].as_array().unwrap().len(), 1, "{d}");

    // The admin answer saved to a directory is a set of snapshots too, and a router can be a
    // component file.
    let dir = tempfile::tempdir().unwrap();
    let (_, body) = host
        .get_json("/api/v1/admin/queues/support/decisions", ADMIN)
        .await;
    std::fs::write(dir.path().join("support.json"), body.to_string()).unwrap();
    let ring_all = plugboard_artifacts::bundled_dir().join("ring-all.wasm");
    let (report, code, stderr) = simulate(&[
        "--snapshots",
        dir.path().to_str().unwrap(),
        "--router",
        ring_all.to_str().unwrap(),
        "--baseline",
        "round-robin",
    ]);
    assert_eq!(code, 1, "{report} {stderr}");
    assert_eq!(report["baseline"]["router"], "round-robin");
    assert_eq!(report["candidate"]["router"], "ring-all");

    // What cannot run says so.
    let (report, code, _) = simulate(&[&live[..], &["--router", "no-such-router"]].concat());
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["error"]["kind"], "load-error");
    let (report, code, _) = simulate(&[&live[..], &["--router", "twilio-sms"]].concat());
    assert_eq!(code, 3, "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a router"),
        "{report}"
    );
    let (_, code, stderr) = simulate(&[
        "--queue",
        "nowhere",
        "--config",
        config.as_str(),
        "--router",
        "ring-all",
    ]);
    assert_eq!(code, 5);
    assert!(stderr.contains("nowhere"), "{stderr}");
}

/// The shipped scenario: ten conversations of one queue with three agents of capacities 2, 3
/// and 1, two offers left to lapse, recorded from `ring-all` (`tests/fixtures/routing/record.py`).
#[test]
fn the_shipped_scenario_shows_how_round_robin_differs_from_ring_all() {
    let dir = scenario_dir();
    let dir = dir.to_str().unwrap();
    // Replayed through the router that recorded it, every decision is reproduced.
    let (report, code, stderr) = simulate(&["--snapshots", dir, "--router", "ring-all"]);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(
        (
            report["snapshots"].as_u64(),
            report["conversations"].as_u64(),
            report["agree"].as_u64()
        ),
        (Some(14), Some(10), Some(14))
    );

    let (report, code, stderr) = simulate(&[
        "--snapshots",
        dir,
        "--router",
        "round-robin",
        "--baseline",
        "ring-all",
    ]);
    assert_eq!(code, 1, "{report} {stderr}");
    // The two waits (every eligible agent had let the offer lapse) agree; every offer differs:
    // ring-all offers everyone with room, round-robin one agent in turn.
    assert_eq!(
        (report["agree"].as_u64(), report["differ"].as_u64()),
        (Some(2), Some(12))
    );
    let base = &report["baseline"];
    let cand = &report["candidate"];
    assert_eq!(
        base["offers_per_agent"],
        json!({"alice": 12, "dana": 12, "erin": 3})
    );
    assert_eq!(
        cand["offers_per_agent"],
        json!({"alice": 6, "dana": 5, "erin": 1})
    );
    assert_eq!(
        (base["offers"].as_u64(), cand["offers"].as_u64()),
        (Some(12), Some(12))
    );
    assert_eq!(
        (base["waits"].as_u64(), cand["waits"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        cand["first_offer_after_secs"]["offered"], 10,
        "round-robin offers every conversation as soon as ring-all did"
    );
    for d in report["differences"].as_array().unwrap() {
        assert_eq!(
            d["candidate"]["offer"].as_array().map(Vec::len),
            Some(1),
            "{d}"
        );
    }
}
