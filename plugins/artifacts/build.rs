//! Builds Plugboard's bundled plugins and test guests for `wasm32-wasip2` and copies the
//! resulting components next to the workspace's build output, in the style of wasmtime's
//! `crates/test-programs/artifacts/build.rs`.
//!
//! * bundled plugins go to `<target dir>/plugins/<name>.wasm`;
//! * test guests go to `<target dir>/test-plugins/<name>.wasm`;
//!
//! where `<target dir>` is `$CARGO_TARGET_DIR` if set, else `<workspace root>/target`. The nested
//! `cargo build` uses `<target dir>/wasm` so it never contends for the outer build's lock.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target every plugin is built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Bundled plugins: (artifact name, Cargo package name).
const BUNDLED: &[(&str, &str)] = &[
    ("twilio-sms", "twilio-sms"),
    ("twilio-whatsapp", "twilio-whatsapp"),
    ("telesign-sms", "telesign-sms"),
    ("line", "line"),
    ("messenger", "messenger"),
    ("lineworks", "lineworks"),
    ("mailgun-email", "mailgun-email"),
    ("webchat", "webchat"),
    ("ring-all", "ring-all"),
    ("longest-idle", "longest-idle"),
    ("round-robin", "round-robin"),
    ("random", "random"),
    ("least-busy", "least-busy"),
    ("skills", "skills"),
    ("faq", "faq"),
];

/// Test guests: (artifact name, Cargo package name, directory under `tests/guests`).
const TEST_GUESTS: &[(&str, &str, &str)] = &[
    ("trap", "guest-trap", "trap"),
    ("infinite-loop", "guest-infinite-loop", "infinite-loop"),
    ("memory-bomb", "guest-memory-bomb", "memory-bomb"),
    ("old-contract", "guest-old-contract", "old-contract"),
    ("huge-output", "guest-huge-output", "huge-output"),
    ("outbound-probe", "guest-outbound-probe", "outbound-probe"),
    ("sleeps", "guest-sleeps", "sleeps"),
    (
        "describe-panics",
        "guest-describe-panics",
        "describe-panics",
    ),
    (
        "describe-sleeps",
        "guest-describe-sleeps",
        "describe-sleeps",
    ),
    ("wasi-probe", "guest-wasi-probe", "wasi-probe"),
    ("aliased-output", "guest-aliased-output", "aliased-output"),
    ("contract-0-2", "guest-contract-0-2", "contract-0-2"),
    ("router-0-2", "guest-router-0-2", "router-0-2"),
    ("bot-probe", "guest-bot-probe", "bot-probe"),
    (
        "classifier-probe",
        "guest-classifier-probe",
        "classifier-probe",
    ),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("plugins/artifacts sits two levels below the workspace root")
        .to_path_buf();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"));

    emit_rerun_if_changed(&root);
    check_guests_are_wired_in(&root.join("tests/guests"));
    check_wasm_target_installed();

    let wasm_target_dir = target_dir.join("wasm");
    build_components(&root, &wasm_target_dir);

    let built = wasm_target_dir.join(WASM_TARGET).join("release");
    let plugins_dir = target_dir.join("plugins");
    let test_plugins_dir = target_dir.join("test-plugins");
    let mut bundled = Vec::new();
    for (name, package) in BUNDLED {
        bundled.push((*name, copy_component(&built, package, &plugins_dir, name)));
    }
    for (name, package, _) in TEST_GUESTS {
        copy_component(&built, package, &test_plugins_dir, name);
    }

    write_generated(&bundled, &plugins_dir, &test_plugins_dir);
}

fn emit_rerun_if_changed(root: &Path) {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let mut paths = vec![
        root.join("wit"),
        root.join("sdk"),
        root.join("tests/guests"),
        root.join("plugins/twilio-common"),
    ];
    for (_, package) in BUNDLED {
        let dir = root.join("plugins").join(package);
        paths.push(dir.join("src"));
        paths.push(dir.join("Cargo.toml"));
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Panics if a crate under `tests/guests` is missing from [`TEST_GUESTS`], so every guest is
/// built and shipped.
fn check_guests_are_wired_in(guests_dir: &Path) {
    let known: BTreeSet<&str> = TEST_GUESTS.iter().map(|(_, _, dir)| *dir).collect();
    let entries = fs::read_dir(guests_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", guests_dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        if !entry.path().join("Cargo.toml").is_file() {
            continue;
        }
        let dir = entry.file_name().to_string_lossy().into_owned();
        assert!(
            known.contains(dir.as_str()),
            "tests/guests/{dir} is not wired into plugins/artifacts/build.rs: add it to TEST_GUESTS \
             (and to the workspace members) so it is built for {WASM_TARGET}"
        );
    }
    for (_, _, dir) in TEST_GUESTS {
        assert!(
            guests_dir.join(dir).join("Cargo.toml").is_file(),
            "TEST_GUESTS lists tests/guests/{dir}, which does not exist"
        );
    }
}

/// Fails the build with instructions when the `wasm32-wasip2` standard library is missing.
fn check_wasm_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.to_string_lossy()));
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let libdir = Path::new(&sysroot).join("lib/rustlib").join(WASM_TARGET);
    assert!(
        libdir.is_dir(),
        "the {WASM_TARGET} target is not installed (no {}): plugins are built for it. \
         Run `rustup target add {WASM_TARGET}` and build again.",
        libdir.display()
    );
}

/// Runs the nested `cargo build --release --target wasm32-wasip2` of every plugin and guest.
fn build_components(root: &Path, wasm_target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--target-dir")
        .arg(wasm_target_dir);
    for package in BUNDLED
        .iter()
        .map(|(_, p)| *p)
        .chain(TEST_GUESTS.iter().map(|(_, p, _)| *p))
    {
        cmd.arg("-p").arg(package);
    }
    // Flags meant for the outer (host) build must not leak into the wasm build; the wrapper set
    // by `cargo clippy` would only slow it down. The jobserver (CARGO_MAKEFLAGS and its file
    // descriptors) is inherited so the nested build shares the outer build's job slots.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    // Plugins ship without DWARF (it triples their size and their compile time in the host);
    // the name section stays, so traps still show function names.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        status.success(),
        "building the plugins for {WASM_TARGET} failed ({status}); see the output above. \
         Command: {cmd:?}. If the target is missing, run `rustup target add {WASM_TARGET}`."
    );
}

/// Copies `<built>/<package>.wasm` to `<dest_dir>/<name>.wasm` (only when the bytes changed, so
/// mtimes stay stable) and returns the destination.
fn copy_component(built: &Path, package: &str, dest_dir: &Path, name: &str) -> PathBuf {
    let src = built.join(format!("{}.wasm", package.replace('-', "_")));
    let bytes = fs::read(&src).unwrap_or_else(|e| panic!("cannot read {}: {e}", src.display()));
    assert!(
        bytes.starts_with(b"\0asm\x0d\x00\x01\x00"),
        "{} is not a WebAssembly component",
        src.display()
    );
    fs::create_dir_all(dest_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dest_dir.display()));
    let dest = dest_dir.join(format!("{name}.wasm"));
    if fs::read(&dest).ok().as_deref() != Some(bytes.as_slice()) {
        fs::write(&dest, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
    }
    dest
}

/// Writes `$OUT_DIR/artifacts.rs`, included by `src/lib.rs`.
fn write_generated(bundled: &[(&str, PathBuf)], plugins_dir: &Path, test_plugins_dir: &Path) {
    let mut src = String::new();
    src.push_str(
        "/// The bundled plugins: name and component bytes (`twilio-sms`,\n\
         /// `twilio-whatsapp`, `telesign-sms`, `line`, `messenger`, `lineworks`, `mailgun-email`,\n\
         /// `webchat`, `ring-all`, `longest-idle`, `round-robin`, `random`, `least-busy`, `skills`,\n\
         /// `faq`).\n\
         pub const BUNDLED: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in bundled {
        src.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    src.push_str("];\n\n");
    src.push_str(
        "/// The names of the test guests, each at [`test_plugin`]`(name)`.\n\
         pub const TEST_PLUGINS: &[&str] = &[",
    );
    for (name, _, _) in TEST_GUESTS {
        src.push_str(&format!("{name:?}, "));
    }
    src.push_str("];\n\n");
    src.push_str(&format!(
        "const BUNDLED_DIR: &str = {:?};\nconst TEST_PLUGINS_DIR: &str = {:?};\n",
        plugins_dir.display().to_string(),
        test_plugins_dir.display().to_string()
    ));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("artifacts.rs");
    if fs::read_to_string(&out).ok().as_deref() != Some(src.as_str()) {
        fs::write(&out, src).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    }
}
