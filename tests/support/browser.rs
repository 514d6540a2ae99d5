//! What the browser tests share: finding Node.js, Chromium and the pinned `playwright-core`
//! (failing with what to install, never skipping), and a Node.js driver process
//! (`tests/browser/*.mjs`) that prints one JSON line per stage and may read one line per
//! answer on its stdin.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The folder of the Node.js drivers and their lock file.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Node.js and Chromium, or a failure naming what to install.
pub fn prerequisites() -> (PathBuf, PathBuf) {
    let node = on_path(&["node", "nodejs"]);
    let chromium = std::env::var_os("PLUGBOARD_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromium", "chromium-browser"]));
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    let mut missing = Vec::new();
    if node.is_none() {
        missing.push("Node.js (`apt-get install -y nodejs npm`)");
    }
    if chromium.is_none() {
        missing.push("Chromium (`apt-get install -y chromium`, or set PLUGBOARD_CHROMIUM)");
    }
    if !playwright.is_file() {
        missing.push("the node modules (`npm ci --prefix tests/browser`)");
    }
    assert!(
        missing.is_empty(),
        "the browser test needs {}; `bash tests/setup.sh` as root installs all of them",
        missing.join(", ")
    );
    (node.unwrap(), chromium.unwrap())
}

/// A driver process in `tests/browser`, killed if the test ends early.
pub struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Driver {
    /// Starts `node <script> <args...>` in the drivers' folder with piped stdin, stdout and
    /// stderr; stdout is read line by line on a thread of its own.
    pub fn start<I, S>(node: &Path, script: &str, args: I) -> Driver
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(node)
            .current_dir(browser_dir())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driver {
            child,
            stdin,
            lines,
        }
    }

    /// The next JSON line the driver prints, waiting up to `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Value {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(timeout));
        match line {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("driver printed {line:?}: {e}")),
            Err(e) => panic!(
                "no word from the browser driver within {timeout:?} ({e}); stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Writes one line to the driver's stdin (its go-ahead for the next stage).
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the driver's stdin is open");
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!(
                "writing to the browser driver failed ({e}); stderr:\n{}",
                self.stderr()
            );
        }
    }

    /// Closes its stdin and waits for the driver to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.stdin = None;
        tokio::task::block_in_place(|| self.child.wait()).expect("wait for the driver")
    }

    /// Kills the driver and returns what it wrote to stderr.
    pub fn stderr(&mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
