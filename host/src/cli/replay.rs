//! `plugboard replay`: runs one channel plugin's `handle-webhook` on one recorded provider
//! request, without a server, storage or configuration, and reports the outcome as JSON.
//!
//! It is how provider fixtures are checked and how an operator reproduces a refused webhook: the
//! plugin file is loaded through the same machinery as at start-up ([`PluginSet::load`]), in a
//! fresh [`Sandbox`] with the default limits, and the host clock can be fixed (`--now`) so
//! timestamped signatures verify deterministically.
//!
//! The JSON and exit status:
//!
//! | outcome | JSON | exit |
//! |---|---|---|
//! | success | `{"ok": true, "events": [...], "response": {"status", "headers", "body"}}` | 0 |
//! | the plugin refused the call | `{"ok": false, "error": {"kind": "unauthorized" \| "bad-request" \| "misconfigured", "message"}}` | 1 |
//! | the plugin could not be loaded | kind `load-error` | 3 |
//! | the plugin trapped, timed out or ran out of memory | kind `plugin-failure` | 4 |
//! | replay itself could not run (an unreadable `--body-file`, say) | none: an error of [`run`], on stderr | 5 |
//!
//! Exit 2 is never an outcome: it is clap's usage error (a missing or malformed argument), so a
//! script can tell a wrong command line from a plugin's verdict. Events are objects tagged by
//! `type` (`message`, `status`, `opt-out`, `opt-in`) with the contract's field names in snake
//! case; the response body is the UTF-8 text, or Base64 when the bytes are not UTF-8.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::LimitsConfig;
use crate::runtime::bindings::wit;
use crate::runtime::plugin::PluginSet;
use crate::runtime::sandbox::Sandbox;

/// Exit status of a successful call.
pub const EXIT_OK: i32 = 0;
/// Exit status when the plugin refused the call (`unauthorized`, `bad-request`,
/// `misconfigured`).
pub const EXIT_REFUSED: i32 = 1;
/// Exit status when the plugin could not be loaded.
pub const EXIT_LOAD_ERROR: i32 = 3;
/// Exit status when the plugin trapped, timed out or ran out of memory (not 2: that is clap's
/// usage error).
pub const EXIT_PLUGIN_FAILURE: i32 = 4;
/// Exit status when replay itself could not run (an error of [`run`]: an unreadable
/// `--body-file`, no temporary directory).
pub const EXIT_CANNOT_RUN: i32 = 5;

/// The arguments of `plugboard replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The channel plugin component to run.
    #[arg(long, value_name = "FILE.wasm")]
    pub plugin: PathBuf,
    /// A setting of the channel instance (repeatable).
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// The public URL the provider called, query string included (what URL signatures cover).
    #[arg(long, required_unless_present_any = ["corpus", "channel"])]
    pub url: Option<String>,
    /// The HTTP method of the call.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// A request header (repeatable, in the order received).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// The file holding the raw request body; without it the body is empty.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Fixes the host clock at these Unix seconds; without it the system clock is used.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<u64>,
    /// Where compiled plugins are cached between runs; without it a temporary directory is used
    /// and removed. Only give a directory that no one else can write to.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Golden replay: every recorded request in DIR (`*.json`, each a request or a corpus as
    /// `GET /api/v1/admin/channels/{name}/corpus` answers), each at its recorded time.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["url", "channel"])]
    pub corpus: Option<PathBuf>,
    /// Golden replay of the corpus channel NAME records, read from the running host of
    /// `--config` (its settings are the channel's too).
    #[arg(long, value_name = "NAME", requires = "config", conflicts_with = "url")]
    pub channel: Option<String>,
    /// The configuration of the running host (`--channel`).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Golden replay: the version `--plugin` is compared with; the differences are listed.
    #[arg(long, value_name = "FILE.wasm")]
    pub baseline: Option<PathBuf>,
    /// Golden replay: the ids of recorded requests whose differences are accepted (one per
    /// line, `#` comments).
    #[arg(long, value_name = "FILE")]
    pub accept: Option<PathBuf>,
}

/// Parses `KEY=VALUE` (the value may contain `=`).
fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Parses `Name: value` (leading spaces of the value are dropped, as HTTP does).
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() && !name.contains(char::is_whitespace) => {
            Ok((name.to_owned(), value.trim_start().to_owned()))
        }
        _ => Err(format!("expected 'Name: value', got {s:?}")),
    }
}

/// Runs the replay and returns the JSON to print and the exit status (see the module
/// documentation). It runs its own short-lived async runtime on a separate thread, so it may be
/// called from any thread, inside a Tokio runtime or not.
///
/// # Errors
///
/// Only for problems outside the plugin: an unreadable `--body-file`, a temporary directory or
/// runtime that cannot be created.
pub fn run(args: &ReplayArgs) -> anyhow::Result<(Value, i32)> {
    if args.corpus.is_some() || args.channel.is_some() {
        return crate::cli::golden::run(args);
    }
    let body = match &args.body_file {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read --body-file {}", path.display()))?,
        None => Vec::new(),
    };
    let request = wit::HttpRequest {
        method: args.method.to_ascii_uppercase(),
        url: args.url.clone().unwrap_or_default(),
        headers: args.headers.clone(),
        body,
    };
    let clock = match args.now {
        Some(seconds) => Clock::Fixed(seconds.saturating_mul(1000)),
        None => Clock::System,
    };
    let work = TempDir::new()?;
    let cache_dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => work.path().join("cache"),
    };
    let sandbox = Arc::new(Sandbox::new(LimitsConfig::default(), clock)?);

    let plugin = match load_channel(&sandbox, &args.plugin, work.path(), &cache_dir) {
        Ok(plugin) => plugin,
        Err(message) => return Ok(failure("load-error", message, EXIT_LOAD_ERROR)),
    };
    let settings = Arc::new(args.settings.clone());
    let channel = plugin.info.name.clone();
    let outcome = block_on(plugin.handle_webhook(&sandbox, &channel, request, settings))?;
    Ok(outcome_json(outcome))
}

/// The JSON and exit status of one `handle-webhook` outcome (see the module documentation).
pub(crate) fn outcome_json(
    outcome: Result<
        Result<wit::WebhookOutcome, wit::WebhookError>,
        crate::runtime::sandbox::PluginError,
    >,
) -> (Value, i32) {
    let code = match &outcome {
        Ok(Ok(_)) => EXIT_OK,
        Ok(Err(_)) => EXIT_REFUSED,
        Err(_) => EXIT_PLUGIN_FAILURE,
    };
    (crate::services::golden::outcome_value(&outcome), code)
}

fn failure(kind: &str, message: String, exit: i32) -> (Value, i32) {
    (
        json!({"ok": false, "error": {"kind": kind, "message": message}}),
        exit,
    )
}

/// Loads the one plugin file through [`PluginSet::load`] from a directory holding only a copy
/// of it, and returns it if it is a channel; otherwise the reason, for a `load-error`.
pub(crate) fn load_channel(
    sandbox: &Sandbox,
    file: &Path,
    work: &Path,
    cache_dir: &Path,
) -> Result<Arc<crate::runtime::plugin::ChannelPlugin>, String> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "plugin".to_owned());
    let dir = work.join("plugins");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::copy(file, dir.join(format!("{name}.wasm")))
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut set = PluginSet::load(sandbox, &[], Some(&dir), cache_dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    if let Some(refused) = set.refused.pop() {
        return Err(refused.error);
    }
    if set.routers.contains_key(&name) {
        return Err(format!(
            "{} is a router plugin; replay runs channel plugins",
            file.display()
        ));
    }
    set.channels
        .remove(&name)
        .ok_or_else(|| format!("{} was not loaded as a channel plugin", file.display()))
}

/// Every `*.json` file in `dir`, parsed, in file-name order (`flag` names the option in errors:
/// `--corpus`, `--snapshots`).
pub(crate) fn json_files(dir: &Path, flag: &str) -> anyhow::Result<Vec<(PathBuf, Value)>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {flag} {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let doc: Value = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            Ok((file, doc))
        })
        .collect()
}

/// Drives `future` to completion on a current-thread runtime of its own, on a separate thread,
/// so this works whether or not the caller is inside a runtime.
pub(crate) fn block_on<F>(future: F) -> anyhow::Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<F::Output> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the replay runtime")?;
                Ok(runtime.block_on(future))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the replay thread panicked"))?
    })
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "plugboard-replay-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // `create_dir` fails if the path exists, so no one else's directory is ever used.
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_headers_parse() {
        assert_eq!(
            parse_setting("api_key=a=b").unwrap(),
            ("api_key".into(), "a=b".into())
        );
        assert!(parse_setting("novalue").is_err());
        assert!(parse_setting("=x").is_err());
        assert_eq!(
            parse_header("X-Twilio-Signature:  abc= ").unwrap(),
            ("X-Twilio-Signature".into(), "abc= ".into())
        );
        assert_eq!(
            parse_header("Authorization: TSA id:sig").unwrap(),
            ("Authorization".into(), "TSA id:sig".into())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
    }
}
