//! The plugin author's commands through the real binary: `plugins list` shows every plugin a
//! configuration loads (world, kind, version, contract, SHA-256, settings with the secret ones
//! marked, what uses each) and the files it refuses; `plugins inspect` says what a component
//! is and whether this host loads it, and why not in one sentence; `new channel` and
//! `new router` start crates that test, build to components that load, and (channels) pass
//! their own fixture through `plugboard replay`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::*;

fn plugboard(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn plugin<'a>(listing: &'a Value, name: &str) -> &'a Value {
    listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {listing}"))
}

fn config(dir: &Path, limits: &str) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for guest in ["bot-probe", "old-contract"] {
        std::fs::copy(
            plugboard_artifacts::test_plugin(guest),
            plugins.join(format!("{guest}.wasm")),
        )
        .unwrap();
    }
    // A file named otherwise than its manifest says: loaded by its file name.
    std::fs::copy(
        plugboard_artifacts::test_plugin("pager"),
        plugins.join("beeper.wasm"),
    )
    .unwrap();
    let path = dir.join("plugboard.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"
data_dir = "data"
plugins_dir = "{plugins}"
[limits]
{limits}
[[queues]]
name = "support"
router = "ring-all"
bot = "probe"
[[channels]]
name = "sms"
plugin = "twilio-sms"
queue = "support"
[channels.settings]
account_sid = "AC1"
auth_token = "secret"
from = "+15005550006"
[[bots]]
name = "probe"
plugin = "bot-probe"
"#,
            plugins = plugins.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn plugins_list_shows_what_loads_what_is_refused_and_who_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let out = plugboard(
        &[
            "plugins",
            "list",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = json_of(&out);
    let sms = plugin(&listing, "twilio-sms");
    assert_eq!(
        (sms["world"].as_str(), sms["kind"].as_str()),
        (Some("channel"), Some("sms"))
    );
    assert_eq!(sms["contract"], "0.3.0");
    assert_eq!(sms["source"], "bundled");
    assert_eq!(sms["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(sms["used_by"], serde_json::json!(["channel sms"]));
    let auth = sms["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "auth_token")
        .unwrap();
    assert_eq!(
        (auth["secret"].as_bool(), auth["required"].as_bool()),
        (Some(true), Some(true))
    );
    let ring = plugin(&listing, "ring-all");
    assert_eq!(ring["world"], "router");
    assert_eq!(ring["used_by"], serde_json::json!(["queue support"]));
    assert_eq!(plugin(&listing, "faq")["world"], "bot");
    let probe = plugin(&listing, "bot-probe");
    assert_eq!(probe["world"], "bot");
    assert!(
        probe["source"]
            .as_str()
            .unwrap()
            .ends_with("bot-probe.wasm")
    );
    assert_eq!(probe["used_by"], serde_json::json!(["bot probe"]));
    assert!(probe.get("manifest_name").is_none(), "{probe}");
    let beeper = plugin(&listing, "beeper");
    assert_eq!(
        (beeper["manifest_name"].as_str(), beeper["kind"].as_str()),
        (Some("pager"), Some("pager"))
    );
    let refused = listing["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["name"], "old-contract");
    assert!(refused[0]["error"].as_str().unwrap().contains("0.3.0"));

    let text = plugboard(
        &["plugins", "list", "--config", config.to_str().unwrap()],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("auth_token (required, secret)") && text.contains("used by: channel sms"),
        "{text}"
    );
    assert!(
        text.contains("manifest name: pager (the configuration uses beeper)"),
        "{text}"
    );
}

#[test]
fn plugins_inspect_says_what_a_component_is_and_why_it_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let sms = plugboard_artifacts::bundled_dir().join("twilio-sms.wasm");
    let out = plugboard(
        &["plugins", "inspect", "--json", sms.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts = json_of(&out);
    assert_eq!(facts["world"], "channel");
    assert_eq!(facts["contract"], "0.3.0");
    assert_eq!(facts["loadable"], true);
    assert_eq!(facts["manifest"]["kind"], "sms");
    assert!(facts["size_bytes"].as_u64().unwrap() > 10_000);
    let memory = facts["initial_memory_bytes"].as_u64().unwrap();
    assert!(memory > 0, "{facts}");
    assert!(
        facts["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "plugboard:plugin/messaging@0.3.0"),
        "{facts}"
    );
    assert!(
        facts["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "plugboard:plugin/host@0.3.0"),
        "{facts}"
    );

    let old = plugboard_artifacts::test_plugin("old-contract");
    let out = plugboard(&["plugins", "inspect", old.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("loadable: no. This host cannot load it: built against contract"),
        "{text}"
    );

    // A memory limit below what the component needs at start: said in plain words, by
    // inspect and at start-up alike.
    let config = config(dir.path(), "memory_mib = 1");
    let out = plugboard(
        &[
            "plugins",
            "inspect",
            "--json",
            "--config",
            config.to_str().unwrap(),
            sms.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let why = json_of(&out)["refused_because"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        why.contains("MiB of memory as soon as it starts")
            && why.contains("memory_mib to at least"),
        "{why}"
    );
    let (ok, stderr) = run_check(dir.path(), &std::fs::read_to_string(&config).unwrap());
    assert!(!ok);
    assert!(stderr.contains("memory as soon as it starts"), "{stderr}");
}

/// Runs `cargo` in `dir` with the target directory shared by the scaffold tests.
fn cargo(dir: &Path, args: &[&str]) {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffolds");
    let out = Command::new(env!("CARGO"))
        .args(args)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn component(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/scaffolds/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

#[test]
fn new_channel_and_router_build_test_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let new = |what: &str, name: &str| {
        plugboard(
            &[
                "new",
                what,
                name,
                "--dir",
                dir.path().to_str().unwrap(),
                "--sdk",
                sdk.to_str().unwrap(),
            ],
            dir.path(),
        )
    };
    let out = new("channel", "Bad_Name");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a plugin name"));

    for (what, name) in [("channel", "acme-sms"), ("router", "fewest-first")] {
        let out = new(what, name);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = dir.path().join(name);
        assert!(
            !new(what, name).status.success(),
            "an existing directory is refused"
        );
        cargo(&root, &["test", "--quiet"]);
        cargo(
            &root,
            &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
        );
        let wasm = component(name);
        let out = plugboard(
            &["plugins", "inspect", "--json", wasm.to_str().unwrap()],
            dir.path(),
        );
        let facts = json_of(&out);
        assert_eq!(facts["loadable"], true, "{facts}");
        assert_eq!(facts["world"], what);
    }

    // The channel's own fixture passes through the real component.
    let root = dir.path().join("acme-sms");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("fixtures/inbound.json")).unwrap())
            .unwrap();
    let wasm = component("acme-sms");
    let mut args = vec![
        "replay".to_owned(),
        "--plugin".to_owned(),
        wasm.display().to_string(),
        "--url".to_owned(),
        fixture["request"]["url"].as_str().unwrap().to_owned(),
        "--body-file".to_owned(),
        root.join("fixtures/inbound.body").display().to_string(),
    ];
    for (k, v) in fixture["settings"].as_object().unwrap() {
        args.extend([
            "--setting".to_owned(),
            format!("{k}={}", v.as_str().unwrap()),
        ]);
    }
    for h in fixture["request"]["headers"].as_array().unwrap() {
        args.extend([
            "--header".to_owned(),
            format!("{}: {}", h[0].as_str().unwrap(), h[1].as_str().unwrap()),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = plugboard(&args, dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let output = json_of(&out);
    let expected = &fixture["expect"]["output"];
    assert_eq!(output["ok"], true);
    let event = &output["events"][0];
    for (k, v) in expected["events"][0].as_object().unwrap() {
        assert_eq!(&event[k], v, "{k}: {output}");
    }
    assert_eq!(output["response"]["status"], expected["response"]["status"]);
    assert_eq!(output["response"]["body"], expected["response"]["body"]);
}
