//! `plugboard plugins list` and `plugboard plugins inspect`: which plugins a host would load
//! (bundled and from `plugins_dir`), what each one declares, who uses it, and, for one file,
//! whether this host can load it and if not why, in one sentence.
//!
//! Plugins are loaded exactly as at start-up ([`PluginSet::load`], [`load_plugin`]), in a
//! fresh [`Sandbox`] with the configuration's limits (the defaults without one) and a
//! throwaway compilation cache, so nothing of a running host's data is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::clock::Clock;
use crate::config::{Config, LimitsConfig};
use crate::runtime::plugin::{
    ComponentFacts, Loaded, PluginInfo, PluginSet, PluginSource, SettingSpec, component_facts,
    initial_memory, load_plugin,
};
use crate::runtime::sandbox::Sandbox;

/// One loaded plugin, as `plugins list` shows it.
#[derive(Debug, Serialize)]
pub struct PluginRow {
    /// Its name: the file name without `.wasm` (what the configuration names).
    pub name: String,
    /// The name its manifest declares, when it differs from `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_name: Option<String>,
    /// `channel`, `router`, `bot` or `classifier`.
    pub world: &'static str,
    /// A channel's kind (`sms`, `whatsapp`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The plugin's own version, where its manifest says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The contract version it was built against.
    pub contract: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// `bundled` or the file's path.
    pub source: String,
    /// The settings it takes.
    pub settings: Vec<SettingSpec>,
    /// What in the configuration uses it (`channel sms`, `queue support`, `bot helpdesk`,
    /// `rules[0]`).
    pub used_by: Vec<String>,
}

/// A plugin file that was refused.
#[derive(Debug, Serialize)]
pub struct RefusedRow {
    /// Its name.
    pub name: String,
    /// Its path (or `bundled`).
    pub source: String,
    /// Why.
    pub error: String,
}

/// What `plugins list` prints.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// Loaded plugins by name.
    pub plugins: Vec<PluginRow>,
    /// Refused files.
    pub refused: Vec<RefusedRow>,
}

/// What `plugins inspect` prints.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The file.
    pub file: PathBuf,
    /// Its size, bytes.
    pub size_bytes: u64,
    /// What its bytes say (world, contract, imports, exports, memory at start).
    #[serde(flatten)]
    pub facts: ComponentFacts,
    /// Whether this host loads it.
    pub loadable: bool,
    /// Why not, in one sentence, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_because: Option<String>,
    /// What its `describe` says (channels, bots and integrations), when it loads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
}

/// A sandbox with `limits` and a compilation cache that is removed on drop.
struct Scratch {
    sandbox: Sandbox,
    cache: tempfile::TempDir,
}

impl Scratch {
    fn new(limits: LimitsConfig) -> anyhow::Result<Scratch> {
        Ok(Scratch {
            sandbox: Sandbox::new(limits, Clock::System)?,
            cache: tempfile::Builder::new()
                .prefix("plugboard-plugins-")
                .tempdir()
                .context("no temporary directory for the compilation cache")?,
        })
    }
}

/// Every plugin a host with `config` would load (bundled ones only without a configuration).
pub fn list(config: Option<&Config>) -> anyhow::Result<Listing> {
    let limits = config.map(|c| c.limits.clone()).unwrap_or_default();
    let scratch = Scratch::new(limits)?;
    let dir = config.and_then(|c| c.server.plugins_dir.as_deref());
    let set = PluginSet::load(
        &scratch.sandbox,
        plugboard_artifacts::BUNDLED,
        dir,
        scratch.cache.path(),
    )
    .with_context(|| {
        format!(
            "cannot read plugins_dir {}",
            dir.unwrap_or(Path::new("")).display()
        )
    })?;
    let used = config.map(used_by).unwrap_or_default();
    let mut plugins = Vec::new();
    let row = |info: &PluginInfo, world: &'static str| PluginRow {
        name: info.name.clone(),
        manifest_name: None,
        world,
        kind: None,
        version: None,
        contract: info.contract.clone(),
        sha256: info.sha256.clone(),
        source: info.source.to_string(),
        settings: Vec::new(),
        used_by: used.get(&info.name).cloned().unwrap_or_default(),
    };
    for p in set.channels.values() {
        plugins.push(PluginRow {
            manifest_name: (p.manifest.name != p.info.name).then(|| p.manifest.name.clone()),
            kind: Some(p.manifest.kind.clone()),
            version: Some(p.manifest.version.clone()),
            settings: p.manifest.settings.clone(),
            ..row(&p.info, "channel")
        });
    }
    for p in set.routers.values() {
        plugins.push(row(&p.info, "router"));
    }
    for p in set.bots.values() {
        plugins.push(PluginRow {
            manifest_name: (p.manifest.name != p.info.name).then(|| p.manifest.name.clone()),
            version: Some(p.manifest.version.clone()),
            settings: p.manifest.settings.clone(),
            ..row(&p.info, "bot")
        });
    }
    for p in set.classifiers.values() {
        plugins.push(row(&p.info, "classifier"));
    }
    for p in set.integrations.values() {
        plugins.push(PluginRow {
            manifest_name: (p.manifest.name != p.info.name).then(|| p.manifest.name.clone()),
            version: Some(p.manifest.version.clone()),
            settings: p.manifest.settings.clone(),
            ..row(&p.info, "integration")
        });
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    let refused = set
        .refused
        .iter()
        .map(|r| RefusedRow {
            name: r.name.clone(),
            source: r.source.to_string(),
            error: r.error.clone(),
        })
        .collect();
    Ok(Listing { plugins, refused })
}

/// What in `config` names each plugin.
fn used_by(config: &Config) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |plugin: &str, user: String| out.entry(plugin.to_owned()).or_default().push(user);
    for c in &config.channels {
        add(&c.plugin, format!("channel {}", c.name));
    }
    for q in &config.queues {
        add(&q.router, format!("queue {}", q.name));
    }
    for b in &config.bots {
        add(&b.plugin, format!("bot {}", b.name));
    }
    for i in &config.integrations {
        add(&i.plugin, format!("integration {}", i.name));
    }
    for (i, r) in config.rules.iter().enumerate() {
        if let Some(c) = &r.classifier {
            add(c, format!("rules[{i}]"));
        }
    }
    out
}

/// Inspects one component file: its facts, and whether a host with `limits` loads it.
pub fn inspect(file: &Path, limits: LimitsConfig) -> anyhow::Result<Inspection> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let scratch = Scratch::new(limits)?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let facts = match component_facts(&scratch.sandbox, &bytes, scratch.cache.path()) {
        Ok(facts) => facts,
        Err(e) => {
            // Too big a memory at start is refused before anything else can be read; it says
            // nothing of whether the bytes are a plugin.
            let too_big = matches!(e, crate::runtime::plugin::LoadError::MemoryAtStart { .. });
            return Ok(Inspection {
                file: file.to_owned(),
                size_bytes: bytes.len() as u64,
                facts: ComponentFacts {
                    world: None,
                    contract: None,
                    not_a_plugin: (!too_big).then(|| e.to_string()),
                    imports: Vec::new(),
                    exports: Vec::new(),
                    initial_memory_bytes: initial_memory(&bytes).unwrap_or(0),
                },
                loadable: false,
                refused_because: Some(sentence(&e.to_string())),
                manifest: None,
            });
        }
    };
    let source = PluginSource::File(file.to_owned());
    let (loadable, refused_because, manifest) = match load_plugin(
        &scratch.sandbox,
        &name,
        source,
        &bytes,
        scratch.cache.path(),
    ) {
        Ok(Loaded::Channel(p)) => (true, None, serde_json::to_value(&p.manifest).ok()),
        Ok(Loaded::Bot(p)) => (true, None, serde_json::to_value(&p.manifest).ok()),
        Ok(Loaded::Integration(p)) => (true, None, serde_json::to_value(&p.manifest).ok()),
        Ok(Loaded::Router(_) | Loaded::Classifier(_)) => (true, None, None),
        Err(e) => (false, Some(sentence(&e.to_string())), None),
    };
    Ok(Inspection {
        file: file.to_owned(),
        size_bytes: bytes.len() as u64,
        facts,
        loadable,
        refused_because,
        manifest,
    })
}

/// `reason` as one sentence: the first line, ending with a full stop.
fn sentence(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or(reason).trim();
    let mut out = format!("This host cannot load it: {line}");
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// `listing` as lines for a terminal.
pub fn print_listing(listing: &Listing) {
    for p in &listing.plugins {
        let what = match (&p.kind, &p.version) {
            (Some(kind), Some(v)) => format!("{} ({kind}) {v}", p.world),
            (None, Some(v)) => format!("{} {v}", p.world),
            _ => p.world.to_owned(),
        };
        println!(
            "{}  {what}  contract {}  sha256 {}  {}",
            p.name,
            p.contract,
            &p.sha256[..p.sha256.len().min(16)],
            p.source
        );
        if let Some(m) = &p.manifest_name {
            println!("  manifest name: {m} (the configuration uses {})", p.name);
        }
        if !p.settings.is_empty() {
            let settings: Vec<String> = p
                .settings
                .iter()
                .map(|s| {
                    let mut flags = Vec::new();
                    if s.required {
                        flags.push("required");
                    }
                    if s.secret {
                        flags.push("secret");
                    }
                    match flags.is_empty() {
                        true => s.name.clone(),
                        false => format!("{} ({})", s.name, flags.join(", ")),
                    }
                })
                .collect();
            println!("  settings: {}", settings.join(", "));
        }
        if !p.used_by.is_empty() {
            println!("  used by: {}", p.used_by.join(", "));
        }
    }
    for r in &listing.refused {
        println!("refused {} ({}): {}", r.name, r.source, r.error);
    }
}

/// `inspection` as lines for a terminal.
pub fn print_inspection(i: &Inspection) {
    println!("file: {} ({} bytes)", i.file.display(), i.size_bytes);
    match (&i.facts.world, &i.facts.contract) {
        (Some(w), Some(c)) => println!("world: {} (contract plugboard:plugin@{c})", w.name()),
        _ => println!(
            "world: none ({})",
            i.facts.not_a_plugin.as_deref().unwrap_or("not a plugin")
        ),
    }
    println!(
        "memory at start: {:.2} MiB",
        i.facts.initial_memory_bytes as f64 / f64::from(1u32 << 20)
    );
    println!("imports: {}", i.facts.imports.join(", "));
    println!("exports: {}", i.facts.exports.join(", "));
    if let Some(m) = &i.manifest {
        println!("manifest: {m}");
    }
    match &i.refused_because {
        None => println!("loadable: yes"),
        Some(why) => println!("loadable: no. {why}"),
    }
}
