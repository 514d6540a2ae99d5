//! Provider fixtures: every recorded request in `plugins/<channel>/fixtures/*.json` is replayed
//! through the real `plugboard replay` binary against its plugin's component (bundled, or a test
//! guest such as the SDK's example `example-json`), and the printed JSON and the exit status are
//! compared with the fixture's expectation. (Each channel's own `cargo test` replays the same
//! fixtures natively with `plugboard_sdk::testing::run_fixtures`.)
//!
//! Every channel plugin under `plugins/` (a crate whose sources call `export_channel!`) must have
//! a non-empty `fixtures/` folder, and every file in a fixtures folder must be a fixture or a
//! body one of them uses.
//!
//! # Fixture format
//!
//! ```json
//! {
//!   "description": "Inbound SMS, signed",
//!   "source": "where the shape comes from",
//!   "now": 1735689600,
//!   "settings": {"auth_token": "..."},
//!   "request": {
//!     "method": "POST",
//!     "url": "https://hooks.example.com/webhooks/sms",
//!     "headers": [["X-Twilio-Signature", "..."]],
//!     "body": "inline UTF-8 body"
//!   },
//!   "expect": {"exit": 0, "output": {"ok": true, "events": [], "response": {"status": 200}}}
//! }
//! ```
//!
//! * `request.body_file` (a file next to the fixture) replaces `body` for bodies that are not
//!   UTF-8; `method` defaults to `POST`; `now` is optional (Unix seconds).
//! * `expect.output` is matched against the replay's JSON: objects by the keys the expectation
//!   lists (so `{"error": {"kind": "unauthorized"}}` ignores the message), arrays exactly
//!   (same length, element by element), everything else by equality.
//! * `expect.error_message_contains` optionally requires a substring of `error.message`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use plugboard_sdk::testing::matches;
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf()
}

/// Whether any `.rs` file under `dir` exports a channel.
fn exports_channel(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            exports_channel(&path)
        } else {
            path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path).is_ok_and(|src| src.contains("export_channel!("))
        }
    })
}

/// The crates under `plugins/` that are channel plugins, by directory name.
fn channel_plugins(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("plugins"))
        .expect("list plugins/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file() && exports_channel(&p.join("src")))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The fixture files (`*.json`) of a fixtures folder, sorted, and the files their
/// `request.body_file` entries name.
fn fixture_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn str_field<'a>(value: &'a Value, key: &str) -> Result<&'a str, String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{key}` must be a string"))
}

/// Replays one fixture with `plugboard replay` and checks the outcome.
fn check_fixture(
    wasm: &Path,
    fixture_path: &Path,
    scratch: &Path,
    cache: &Path,
    used_bodies: &mut BTreeSet<PathBuf>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(fixture_path).map_err(|e| format!("cannot read: {e}"))?;
    let fixture: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    str_field(&fixture, "description")?;
    let request = fixture.get("request").ok_or("no `request`")?;
    let expect = fixture.get("expect").ok_or("no `expect`")?;

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugboard"));
    cmd.arg("replay")
        .arg("--plugin")
        .arg(wasm)
        .arg("--url")
        .arg(str_field(request, "url")?)
        .arg("--method")
        .arg(
            request
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("POST"),
        )
        .arg("--cache-dir")
        .arg(cache);
    for header in request
        .get("headers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let pair = header
            .as_array()
            .filter(|p| p.len() == 2)
            .and_then(|p| Some((p[0].as_str()?, p[1].as_str()?)))
            .ok_or_else(|| format!("header {header} is not [name, value]"))?;
        cmd.arg("--header").arg(format!("{}: {}", pair.0, pair.1));
    }
    let settings = fixture
        .get("settings")
        .and_then(Value::as_object)
        .ok_or("`settings` must be an object")?;
    for (key, value) in settings {
        let value = value
            .as_str()
            .ok_or_else(|| format!("setting {key} must be a string"))?;
        cmd.arg("--setting").arg(format!("{key}={value}"));
    }
    let body_path = match (request.get("body"), request.get("body_file")) {
        (Some(Value::String(body)), None) => {
            let name = fixture_path.file_stem().unwrap().to_string_lossy();
            let path = scratch.join(format!("{name}.body"));
            std::fs::write(&path, body).map_err(|e| format!("cannot write body: {e}"))?;
            path
        }
        (None, Some(Value::String(file))) => {
            let path = fixture_path.parent().unwrap().join(file);
            if !path.is_file() {
                return Err(format!("body_file {} does not exist", path.display()));
            }
            used_bodies.insert(path.clone());
            path
        }
        _ => return Err("`request` needs exactly one of `body` and `body_file`".into()),
    };
    cmd.arg("--body-file").arg(&body_path);
    if let Some(now) = fixture.get("now") {
        let now = now.as_u64().ok_or("`now` must be Unix seconds")?;
        cmd.arg("--now").arg(now.to_string());
    }

    let out = cmd
        .output()
        .map_err(|e| format!("cannot run plugboard: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let output: Value = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "replay printed no JSON ({e}); status {}; stdout {stdout}; stderr {stderr}",
            out.status
        )
    })?;
    let want_exit = expect
        .get("exit")
        .and_then(Value::as_i64)
        .ok_or("`expect.exit` must be a number")?;
    if out.status.code() != Some(want_exit as i32) {
        return Err(format!(
            "exit status {:?}, want {want_exit}; output {output}",
            out.status.code()
        ));
    }
    let want = expect.get("output").ok_or("no `expect.output`")?;
    matches(want, &output, "$").map_err(|e| format!("{e}\n  output: {output}"))?;
    if let Some(needle) = expect.get("error_message_contains") {
        let needle = needle
            .as_str()
            .ok_or("`error_message_contains` must be a string")?;
        let message = output["error"]["message"].as_str().unwrap_or_default();
        if !message.contains(needle) {
            return Err(format!("error message {message:?} lacks {needle:?}"));
        }
    }
    Ok(())
}

#[test]
fn every_channel_plugin_replays_its_fixtures() {
    let root = workspace_root();
    let channels = channel_plugins(&root);
    for expected in ["telesign-sms", "twilio-sms", "twilio-whatsapp"] {
        assert!(
            channels.iter().any(|c| c == expected),
            "{expected} is not found as a channel plugin: {channels:?}"
        );
    }
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let mut failures = Vec::new();
    let mut count = 0;
    for plugin in &channels {
        let dir = root.join("plugins").join(plugin).join("fixtures");
        assert!(
            dir.is_dir(),
            "channel plugin {plugin} has no fixtures: add recorded requests to {}",
            dir.display()
        );
        let fixtures = fixture_files(&dir);
        assert!(
            !fixtures.is_empty(),
            "{} holds no fixtures (*.json)",
            dir.display()
        );
        // A channel is bundled or, like the SDK's example `example-json`, a test guest.
        let bundled = plugboard_artifacts::bundled_dir().join(format!("{plugin}.wasm"));
        let wasm = if bundled.is_file() {
            bundled
        } else {
            plugboard_artifacts::test_plugin(plugin)
        };
        assert!(
            wasm.is_file(),
            "channel plugin {plugin} is neither bundled nor a test guest ({} missing): declare \
             `[package.metadata.plugboard] artifact = \"bundled\"` (or `\"test-guest\"`) in its \
             Cargo.toml",
            wasm.display()
        );
        let mut used_bodies = BTreeSet::new();
        for fixture in &fixtures {
            count += 1;
            if let Err(e) = check_fixture(&wasm, fixture, scratch.path(), &cache, &mut used_bodies)
            {
                failures.push(format!("{}: {e}", fixture.display()));
            }
        }
        for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            let is_fixture = path.extension().is_some_and(|e| e == "json");
            if !is_fixture && !used_bodies.contains(&path) {
                failures.push(format!(
                    "{}: neither a fixture (*.json) nor a body_file a fixture uses",
                    path.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fixtures_folder_holds_fixtures() {
    let root = workspace_root();
    for entry in std::fs::read_dir(root.join("plugins")).unwrap() {
        let dir = entry.unwrap().path().join("fixtures");
        if dir.is_dir() {
            assert!(
                !fixture_files(&dir).is_empty(),
                "{} holds no fixtures (*.json)",
                dir.display()
            );
        }
    }
}

/// Runs `plugboard replay` with `plugin` on an empty POST and returns the JSON and exit status.
fn replay_plugin(plugin: &Path) -> (Value, Option<i32>) {
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args([
            "replay",
            "--url",
            "https://hooks.example.com/webhooks/x",
            "--plugin",
        ])
        .arg(plugin)
        .args(["--now", "1735689600"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {stdout}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.code())
}

#[test]
fn replay_reports_load_errors_and_plugin_failures() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("garbage.wasm");
    std::fs::write(&not_wasm, b"not a component").unwrap();
    let missing = dir.path().join("missing.wasm");
    let router = plugboard_artifacts::bundled_dir().join("ring-all.wasm");
    for plugin in [&not_wasm, &missing, &router] {
        let (json, code) = replay_plugin(plugin);
        assert_eq!(code, Some(3), "{}: {json}", plugin.display());
        assert_eq!(json["ok"], false);
        assert_eq!(json["error"]["kind"], "load-error", "{json}");
    }
    let (json, code) = replay_plugin(&plugboard_artifacts::test_plugin("trap"));
    assert_eq!(code, Some(4), "{json}");
    assert_eq!(json["error"]["kind"], "plugin-failure", "{json}");
    let (json, code) = replay_plugin(&plugboard_artifacts::test_plugin("infinite-loop"));
    assert_eq!(code, Some(4), "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deadline")),
        "{json}"
    );
}

/// The componentize-py that `tests/setup.sh` installs (`tests/python/requirements.txt` pins
/// it), or `PLUGBOARD_COMPONENTIZE_PY`.
fn componentize_py() -> PathBuf {
    if let Some(path) = std::env::var_os("PLUGBOARD_COMPONENTIZE_PY") {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join("tests/python/.venv/bin/componentize-py");
    assert!(
        venv.is_file(),
        "componentize-py is not installed at {}: run `bash tests/setup.sh` (it creates that \
         virtual environment and pip-installs tests/python/requirements.txt), or set \
         PLUGBOARD_COMPONENTIZE_PY",
        venv.display()
    );
    venv
}

/// The example channel in Python (`tests/python/echo`), built with the pinned componentize-py
/// against `wit/`, loads in the host and replays its fixtures like the bundled channels.
#[test]
fn the_python_example_channel_builds_and_replays_its_fixtures() {
    let root = workspace_root();
    let source = root.join("tests/python/echo");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-echo.wasm");
    let built = Command::new(componentize_py())
        .args(["-d"])
        .arg(root.join("wit"))
        .args(["-w", "channel", "componentize", "app", "-o"])
        .arg(&out)
        .current_dir(&source)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run componentize-py");
    assert!(
        built.status.success(),
        "componentize-py failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let fixtures = fixture_files(&source.join("fixtures"));
    assert!(fixtures.len() >= 2, "{fixtures:?}");
    let mut used_bodies = BTreeSet::new();
    let failures: Vec<String> = fixtures
        .iter()
        .filter_map(|f| {
            check_fixture(&out, f, scratch.path(), &cache, &mut used_bodies)
                .err()
                .map(|e| format!("{}: {e}", f.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
