//! `plugboard simulate --router candidate.wasm --snapshots DIR|--queue NAME [--baseline
//! current.wasm]`: gives a candidate router every recorded routing decision's snapshot (what a
//! queue's dispatcher gave `decide`, see [`crate::services::decisions`]) and reports how its
//! decisions differ from the baseline's: the recorded answers, or another router's on the same
//! snapshots.
//!
//! The report, as JSON: the counts (snapshots, conversations, agree, differ), then per side who
//! would have been offered what (`offers_per_agent`, the fairness), how often it offered,
//! waited or overflowed, and the time to the first offer of each conversation (`now -
//! waiting_since` at the first snapshot it offered in; a conversation offered on neither side
//! within the recording counts as `not_offered`), then each difference.
//!
//! A snapshot replays what one call saw, not what would have happened after a different
//! answer: the later snapshots are those of the recorded run. So the figures compare decisions
//! on the same situations, which is what routers, being pure, can be compared on.
//!
//! Exit 0 when every decision agrees, 1 when some differ, 3 when a router cannot be loaded, 5
//! when the simulation cannot run (no snapshots, an unreachable host).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::cli::golden::EXIT_DIFFERENT;
use crate::cli::replay::{EXIT_LOAD_ERROR, EXIT_OK, block_on, json_files};
use crate::clock::Clock;
use crate::config::{Config, LimitsConfig};
use crate::runtime::plugin::{Loaded, PluginSource, RouterPlugin, load_plugin};
use crate::runtime::sandbox::Sandbox;
use crate::services::decisions::{Decision, Snapshot};

/// The arguments of `plugboard simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The candidate router: a component file, or a bundled router's name (`round-robin`).
    #[arg(long, value_name = "FILE.wasm|NAME")]
    pub router: String,
    /// The router compared with; without it, the decisions as recorded.
    #[arg(long, value_name = "FILE.wasm|NAME")]
    pub baseline: Option<String>,
    /// Every recorded snapshot in DIR (`*.json`, each a snapshot or a list as
    /// `GET /api/v1/admin/queues/{name}/decisions` answers).
    #[arg(long, value_name = "DIR", required_unless_present = "queue")]
    pub snapshots: Option<PathBuf>,
    /// The decisions queue NAME records, read from the running host of `--config`.
    #[arg(
        long,
        value_name = "NAME",
        requires = "config",
        conflicts_with = "snapshots"
    )]
    pub queue: Option<String>,
    /// The configuration of the running host (`--queue`).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where compiled routers are cached between runs; without it a temporary directory is
    /// used and removed.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// The most differences listed one by one (the counts cover them all).
const MAX_LISTED: usize = 1000;

/// Runs the simulation `args` asks for: the report and the exit status.
pub fn run(args: &SimulateArgs) -> anyhow::Result<(Value, i32)> {
    let snapshots = match (&args.snapshots, &args.queue) {
        (Some(dir), _) => read_dir(dir)?,
        (None, Some(queue)) => {
            let config_path = args.config.as_ref().context("--queue needs --config")?;
            let config = Config::load(config_path)?;
            let path = format!("/api/v1/admin/queues/{queue}/decisions");
            let doc = block_on(crate::cli::admin::call(
                &config,
                reqwest::Method::GET,
                &path,
            ))??;
            parse(&doc)?
        }
        (None, None) => anyhow::bail!("simulate needs --snapshots DIR or --queue NAME"),
    };
    if snapshots.is_empty() {
        anyhow::bail!("no recorded decision to simulate (set `record_decisions` on the queue)");
    }
    let sandbox = Sandbox::new(LimitsConfig::default(), Clock::Replayed)?;
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| work.path().join("cache"));
    let candidate = match load_router(&sandbox, &args.router, &cache) {
        Ok(r) => r,
        Err(message) => return Ok((load_error("candidate", message), EXIT_LOAD_ERROR)),
    };
    let baseline = match args
        .baseline
        .as_deref()
        .map(|b| load_router(&sandbox, b, &cache))
    {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(message)) => return Ok((load_error("baseline", message), EXIT_LOAD_ERROR)),
    };
    let cand: Vec<Value> = snapshots
        .iter()
        .map(|s| decide(&sandbox, &candidate, s))
        .collect();
    let base: Vec<Value> = match &baseline {
        Some(router) => snapshots
            .iter()
            .map(|s| decide(&sandbox, router, s))
            .collect(),
        None => snapshots
            .iter()
            .map(|s| serde_json::to_value(&s.decision).unwrap_or(Value::Null))
            .collect(),
    };
    let mut differences = Vec::new();
    for (s, (b, c)) in snapshots.iter().zip(base.iter().zip(&cand)) {
        if b != c {
            differences.push(json!({
                "id": s.id,
                "conversation": s.work.conversation,
                "queue": s.work.queue,
                "now": s.work.now,
                "baseline": b,
                "candidate": c,
            }));
        }
    }
    let baseline_name = match &baseline {
        Some(r) => r.info.name.clone(),
        None => "recorded".to_owned(),
    };
    let differ = differences.len();
    let conversations: std::collections::BTreeSet<&str> = snapshots
        .iter()
        .map(|s| s.work.conversation.as_str())
        .collect();
    differences.truncate(MAX_LISTED);
    let report = json!({
        "snapshots": snapshots.len(),
        "conversations": conversations.len(),
        "agree": snapshots.len() - differ,
        "differ": differ,
        "baseline": summary(&baseline_name, &snapshots, &base),
        "candidate": summary(&candidate.info.name, &snapshots, &cand),
        "differences": differences,
    });
    let code = if differ == 0 { EXIT_OK } else { EXIT_DIFFERENT };
    Ok((report, code))
}

fn load_error(role: &str, message: String) -> Value {
    json!({"ok": false, "error": {"kind": "load-error", "plugin": role, "message": message}})
}

/// The router `spec` names: a component file, else a bundled router of that name.
fn load_router(sandbox: &Sandbox, spec: &str, cache: &Path) -> Result<RouterPlugin, String> {
    let path = Path::new(spec);
    let (name, source, bytes) = if path.is_file() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "router".to_owned());
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        (name, PluginSource::File(path.to_owned()), bytes)
    } else if let Some((name, bytes)) = plugboard_artifacts::BUNDLED
        .iter()
        .find(|(name, _)| *name == spec)
    {
        ((*name).to_owned(), PluginSource::Bundled, bytes.to_vec())
    } else {
        return Err(format!(
            "{spec} is neither a file nor a bundled router ({})",
            plugboard_artifacts::BUNDLED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    match load_plugin(sandbox, &name, source, &bytes, cache) {
        Ok(Loaded::Router(r)) => Ok(r),
        Ok(other) => Err(format!(
            "{spec} is a {} plugin, not a router",
            match other {
                Loaded::Channel(_) => "channel",
                Loaded::Bot(_) => "bot",
                Loaded::Classifier(_) => "classifier",
                Loaded::Integration(_) => "integration",
                Loaded::Router(_) => "router",
            }
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// One snapshot through `router`: its decision, agents by id, or `{"error"}` when it failed.
fn decide(sandbox: &Sandbox, router: &RouterPlugin, snapshot: &Snapshot) -> Value {
    let (work, agents) = snapshot.call();
    match router.decide_blocking(sandbox, &work, &agents) {
        Ok(d) => serde_json::to_value(Decision::from_wit(&d, &snapshot.ids())).unwrap_or_default(),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// One side's figures over every snapshot: its decisions by kind, offers per agent (every
/// agent seen, so one never offered shows 0), and each conversation's time to its first offer.
fn summary(router: &str, snapshots: &[Snapshot], decisions: &[Value]) -> Value {
    let mut per_agent: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut offers, mut waits, mut overflows, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut first_offer: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    for (s, d) in snapshots.iter().zip(decisions) {
        for a in &s.agents {
            per_agent.entry(a.id.as_str()).or_default();
        }
        let first = first_offer.entry(s.work.conversation.as_str()).or_default();
        match serde_json::from_value::<Decision>(d.clone()) {
            Ok(Decision::Offer(ids)) if !ids.is_empty() => {
                offers += 1;
                for id in &ids {
                    if let Some(n) = per_agent.get_mut(id.as_str()) {
                        *n += 1;
                    }
                }
                if first.is_none() {
                    *first = Some(s.work.now.saturating_sub(s.work.waiting_since));
                }
            }
            Ok(Decision::Offer(_)) | Ok(Decision::Wait) => waits += 1,
            Ok(Decision::Overflow) => overflows += 1,
            Err(_) => errors += 1,
        }
    }
    let mut waited: Vec<u64> = first_offer.values().filter_map(|t| *t).collect();
    waited.sort_unstable();
    let not_offered = first_offer.values().filter(|t| t.is_none()).count();
    let total: u64 = per_agent.values().sum();
    json!({
        "router": router,
        "offers": offers,
        "waits": waits,
        "overflows": overflows,
        "errors": errors,
        "offers_per_agent": per_agent,
        "largest_share": match total {
            0 => 0.0,
            t => per_agent.values().copied().max().unwrap_or(0) as f64 / t as f64,
        },
        "first_offer_after_secs": {
            "offered": waited.len(),
            "not_offered": not_offered,
            "median": waited.get(waited.len() / 2),
            "max": waited.last(),
        },
    })
}

/// The snapshots in `dir`: each `*.json` a snapshot or a list, in file-name then recorded order.
fn read_dir(dir: &Path) -> anyhow::Result<Vec<Snapshot>> {
    let mut out = Vec::new();
    for (file, doc) in json_files(dir, "--snapshots")? {
        out.extend(parse(&doc).with_context(|| format!("in {}", file.display()))?);
    }
    Ok(out)
}

/// The snapshots of one document: `{"decisions": [...]}` or one snapshot.
fn parse(doc: &Value) -> anyhow::Result<Vec<Snapshot>> {
    let list = match doc.get("decisions") {
        Some(list) => list.clone(),
        None => Value::Array(vec![doc.clone()]),
    };
    serde_json::from_value(list).context("not a recorded routing decision")
}
