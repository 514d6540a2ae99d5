//! Builds Plugboard's bundled plugins and test guests for `wasm32-wasip2` and copies the
//! resulting components next to the workspace's build output, in the style of wasmtime's
//! `crates/test-programs/artifacts/build.rs`.
//!
//! * bundled plugins go to `<target dir>/plugins/<name>.wasm`;
//! * test guests go to `<target dir>/test-plugins/<name>.wasm`;
//!
//! where `<target dir>` is `$CARGO_TARGET_DIR` if set, else `<workspace root>/target`. The nested
//! `cargo build` uses `<target dir>/wasm` so it never contends for the outer build's lock.
//!
//! Which crates are components is read from their own manifests (through `cargo metadata`):
//!
//! ```toml
//! [package.metadata.plugboard]
//! artifact = "bundled"    # or "test-guest"
//! order = 40              # bundled only: the position in `BUNDLED` (ascending)
//! name = "line"           # optional: the artifact name (default: the package name for a
//!                         # bundled plugin, the directory name for a test guest)
//! ```
//!
//! Test guests are listed by name. Every crate under `tests/guests` must declare itself.
use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The WebAssembly target every plugin is built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Environment variables meant for the outer (host) build that must not leak into the nested
/// cargo commands; the wrapper set by `cargo clippy` would only slow them down.
const OUTER_BUILD_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// Where a component goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Embedded in the host (`BUNDLED`).
    Bundled,
    /// Built for the host's tests (`TEST_PLUGINS`).
    TestGuest,
}

/// One crate that is built as a component, as its `[package.metadata.plugboard]` declares.
#[derive(Debug)]
struct Artifact {
    /// The artifact name: the file is `<name>.wasm`.
    name: String,
    /// The Cargo package name.
    package: String,
    /// Bundled or test guest.
    kind: Kind,
    /// The position in `BUNDLED` (bundled plugins only).
    order: u64,
}

/// A workspace package as `cargo metadata` describes it.
struct Package {
    name: String,
    /// The directory holding its `Cargo.toml`.
    dir: PathBuf,
    /// `metadata.plugboard`, if declared.
    plugboard: Option<Value>,
}

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
    let packages = workspace_packages(&root);
    check_guests_declare_metadata(&root.join("tests/guests"), &packages);
    let (bundled, test_guests) = artifacts(&root, &packages);
    check_wasm_target_installed();

    let wasm_target_dir = target_dir.join("wasm");
    build_components(&root, &wasm_target_dir, bundled.iter().chain(&test_guests));

    let built = wasm_target_dir.join(WASM_TARGET).join("release");
    let plugins_dir = target_dir.join("plugins");
    let test_plugins_dir = target_dir.join("test-plugins");
    let mut bundled_files = Vec::new();
    for artifact in &bundled {
        let file = copy_component(&built, &artifact.package, &plugins_dir, &artifact.name);
        bundled_files.push((artifact.name.as_str(), file));
    }
    for artifact in &test_guests {
        copy_component(&built, &artifact.package, &test_plugins_dir, &artifact.name);
    }

    write_generated(
        &bundled_files,
        &test_guests,
        &plugins_dir,
        &test_plugins_dir,
    );
}

fn emit_rerun_if_changed(root: &Path) {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    // The whole of `plugins/` and `tests/guests/`: a new crate there may declare itself an
    // artifact, and shared library crates (`twilio-common`) are compiled into components.
    for dir in ["Cargo.toml", "wit", "sdk", "plugins", "tests/guests"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
}

/// The workspace's packages, from `cargo metadata --no-deps`.
fn workspace_packages(root: &Path) -> Vec<Package> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    for var in OUTER_BUILD_VARS {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    metadata["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("package name").to_string();
            let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest"));
            Package {
                name,
                dir: manifest
                    .parent()
                    .expect("a manifest has a directory")
                    .to_path_buf(),
                plugboard: package["metadata"].get("plugboard").cloned(),
            }
        })
        .collect()
}

/// The bundled plugins (in their declared order) and the test guests (by name), from the
/// packages' `[package.metadata.plugboard]`.
fn artifacts(root: &Path, packages: &[Package]) -> (Vec<Artifact>, Vec<Artifact>) {
    let mut bundled = Vec::new();
    let mut test_guests = Vec::new();
    for package in packages {
        let Some(plugboard) = &package.plugboard else {
            continue;
        };
        let manifest = package.dir.join("Cargo.toml");
        let manifest = manifest.strip_prefix(root).unwrap_or(&manifest).display();
        let kind = match plugboard.get("artifact").and_then(Value::as_str) {
            Some("bundled") => Kind::Bundled,
            Some("test-guest") => Kind::TestGuest,
            other => panic!(
                "{manifest}: [package.metadata.plugboard] artifact must be \"bundled\" or \
                 \"test-guest\", not {other:?}"
            ),
        };
        let name = match plugboard.get("name") {
            Some(name) => name
                .as_str()
                .unwrap_or_else(|| panic!("{manifest}: metadata.plugboard.name must be a string"))
                .to_string(),
            None if kind == Kind::Bundled => package.name.clone(),
            None => package
                .dir
                .file_name()
                .expect("a package directory has a name")
                .to_string_lossy()
                .into_owned(),
        };
        let order = match (kind, plugboard.get("order")) {
            (Kind::Bundled, Some(order)) => order.as_u64().unwrap_or_else(|| {
                panic!("{manifest}: metadata.plugboard.order must be a non-negative integer")
            }),
            (Kind::Bundled, None) => panic!(
                "{manifest}: a bundled plugin declares its position in BUNDLED with \
                 metadata.plugboard.order"
            ),
            (Kind::TestGuest, _) => 0,
        };
        let artifact = Artifact {
            name,
            package: package.name.clone(),
            kind,
            order,
        };
        match kind {
            Kind::Bundled => bundled.push(artifact),
            Kind::TestGuest => test_guests.push(artifact),
        }
    }
    bundled.sort_by_key(|a| a.order);
    test_guests.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in bundled.windows(2) {
        assert!(
            pair[0].order != pair[1].order,
            "bundled plugins {} and {} declare the same metadata.plugboard.order {}",
            pair[0].package,
            pair[1].package,
            pair[0].order
        );
    }
    for list in [&bundled, &test_guests] {
        let mut names = BTreeSet::new();
        for artifact in list.iter() {
            assert!(
                names.insert(artifact.name.as_str()),
                "two {:?} artifacts are named {}",
                artifact.kind,
                artifact.name
            );
        }
    }
    (bundled, test_guests)
}

/// Panics if a crate under `tests/guests` is not a workspace member or does not declare itself
/// an artifact, so every guest is built and shipped.
fn check_guests_declare_metadata(guests_dir: &Path, packages: &[Package]) {
    let entries = fs::read_dir(guests_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", guests_dir.display()));
    for entry in entries {
        let dir = entry.expect("directory entry").path();
        if !dir.join("Cargo.toml").is_file() {
            continue;
        }
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let package = packages.iter().find(|p| p.dir == dir).unwrap_or_else(|| {
            panic!("tests/guests/{name} is not a workspace member: add it to the workspace")
        });
        assert!(
            package
                .plugboard
                .as_ref()
                .is_some_and(|p| p.get("artifact").is_some()),
            "tests/guests/{name} declares no artifact: add `[package.metadata.plugboard]` with \
             `artifact = \"test-guest\"` to its Cargo.toml so it is built for {WASM_TARGET}"
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
fn build_components<'a>(
    root: &Path,
    wasm_target_dir: &Path,
    artifacts: impl Iterator<Item = &'a Artifact>,
) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--target-dir")
        .arg(wasm_target_dir);
    for artifact in artifacts {
        cmd.arg("-p").arg(&artifact.package);
    }
    // The jobserver (CARGO_MAKEFLAGS and its file descriptors) is inherited so the nested build
    // shares the outer build's job slots.
    for var in OUTER_BUILD_VARS {
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
fn write_generated(
    bundled: &[(&str, PathBuf)],
    test_guests: &[Artifact],
    plugins_dir: &Path,
    test_plugins_dir: &Path,
) {
    let names: Vec<String> = bundled
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    let mut src = format!(
        "/// The bundled plugins, name and component bytes: {}",
        names.join(", ")
    );
    src.push_str(".\npub const BUNDLED: &[(&str, &[u8])] = &[\n");
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
    for artifact in test_guests {
        src.push_str(&format!("{:?}, ", artifact.name));
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
