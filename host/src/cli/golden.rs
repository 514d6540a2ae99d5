//! Golden replay: `plugboard replay --corpus DIR|--channel NAME --plugin candidate.wasm
//! [--baseline current.wasm] [--accept FILE]` runs every recorded request (a channel's corpus,
//! see [`crate::services::corpus`]) through the candidate, and through the baseline when given,
//! each at the time it was recorded and with the channel's settings, and reports how they
//! differ: the counts, then each difference (the request's id and both outcomes).
//!
//! Exit 0 when every request agrees (or its difference is accepted), 1 when some differ;
//! without a baseline, 1 when the candidate fails or refuses a request. 3 when a plugin cannot
//! be loaded, 5 when replay itself cannot run (no corpus, an unreachable host).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::cli::replay::{
    EXIT_LOAD_ERROR, EXIT_OK, ReplayArgs, block_on, json_files, load_channel,
};
use crate::clock::Clock;
use crate::config::{Config, LimitsConfig};
use crate::runtime::bindings::wit;
use crate::runtime::sandbox::Sandbox;
use crate::services::golden::{Recorded, compare};

/// Exit status when the versions differ (or, alone, the candidate failed a request).
pub const EXIT_DIFFERENT: i32 = 1;

/// Runs the golden replay `args` asks for: the report and the exit status.
pub fn run(args: &ReplayArgs) -> anyhow::Result<(Value, i32)> {
    let (corpus, mut settings) = match (&args.corpus, &args.channel) {
        (Some(dir), _) => (read_dir(dir)?, Vec::new()),
        (None, Some(channel)) => {
            let config_path = args.config.as_ref().context("--channel needs --config")?;
            let config = Config::load(config_path)?;
            let settings = config
                .channel(channel)
                .with_context(|| format!("no channel named {channel:?} in the configuration"))?
                .settings
                .clone()
                .into_iter()
                .collect::<Vec<_>>();
            (fetch(&config, channel)?, settings)
        }
        (None, None) => anyhow::bail!("golden replay needs --corpus DIR or --channel NAME"),
    };
    // Settings given on the command line win over the configuration's.
    for (k, v) in &args.settings {
        settings.retain(|(name, _)| name != k);
        settings.push((k.clone(), v.clone()));
    }
    settings.sort();
    if corpus.is_empty() {
        anyhow::bail!("the corpus holds no recorded request");
    }
    let accepted = match &args.accept {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --accept {}", path.display()))?
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
        None => BTreeSet::new(),
    };
    let sandbox = Arc::new(Sandbox::new(LimitsConfig::default(), Clock::Replayed)?);
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let cache = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => work.path().join("cache"),
    };
    let load =
        |file: &Path, role: &str| load_channel(&sandbox, file, &work.path().join(role), &cache);
    let candidate = match load(&args.plugin, "candidate") {
        Ok(p) => p,
        Err(message) => return Ok((load_error("candidate", message), EXIT_LOAD_ERROR)),
    };
    let baseline = match args.baseline.as_deref().map(|f| load(f, "baseline")) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(message)) => return Ok((load_error("baseline", message), EXIT_LOAD_ERROR)),
    };
    let settings = Arc::new(settings);
    let (report, differ) = block_on(compare(
        &sandbox,
        &candidate,
        baseline.as_ref(),
        &corpus,
        &settings,
        &accepted,
    ))?;
    let code = if differ { EXIT_DIFFERENT } else { EXIT_OK };
    Ok((report, code))
}

fn load_error(role: &str, message: String) -> Value {
    json!({"ok": false, "error": {"kind": "load-error", "plugin": role, "message": message}})
}

/// The recorded requests in `dir`: each `*.json` a request or a corpus answer, in file-name
/// then recorded order.
fn read_dir(dir: &Path) -> anyhow::Result<Vec<Recorded>> {
    let mut out = Vec::new();
    for (file, doc) in json_files(dir, "--corpus")? {
        out.extend(parse(&doc).with_context(|| format!("in {}", file.display()))?);
    }
    Ok(out)
}

/// The requests of one document: `{"requests": [...]}` or one request.
fn parse(doc: &Value) -> anyhow::Result<Vec<Recorded>> {
    let list = match doc.get("requests").and_then(Value::as_array) {
        Some(list) => list.clone(),
        None => vec![doc.clone()],
    };
    list.iter()
        .map(|r| {
            let field = |name: &str| r.get(name).and_then(Value::as_str).unwrap_or_default();
            let headers = r
                .get("headers")
                .and_then(Value::as_array)
                .map(|hs| {
                    hs.iter()
                        .filter_map(|h| {
                            Some((
                                h.get(0)?.as_str()?.to_owned(),
                                h.get(1)?.as_str()?.to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = base64::engine::general_purpose::STANDARD
                .decode(field("body"))
                .context("`body` is not base64")?;
            let url = field("url");
            anyhow::ensure!(!url.is_empty(), "a recorded request has no `url`");
            Ok(Recorded {
                id: field("id").to_owned(),
                request: wit::HttpRequest {
                    method: match field("method") {
                        "" => "POST".to_owned(),
                        m => m.to_ascii_uppercase(),
                    },
                    url: url.to_owned(),
                    headers,
                    body,
                },
                at_ms: r.get("received_at").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect()
}

/// The corpus the running host of `config` records for `channel`.
fn fetch(config: &Config, channel: &str) -> anyhow::Result<Vec<Recorded>> {
    let path = format!("/api/v1/admin/channels/{channel}/corpus");
    let doc = block_on(crate::cli::admin::call(config, reqwest::Method::GET, &path))??;
    parse(&doc)
}
