//! The running host's shared state: configuration resolved against the loaded plugins.
//!
//! Building an [`App`] is where a configuration meets its plugins: a channel naming a missing or
//! refused plugin, a queue naming an unknown router, or a channel leaving out a required
//! setting is an error naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::config::{AgentConfig, Config, Problems, StorageBackend};
use crate::runtime::plugin::PluginSet;
use crate::runtime::sandbox::Sandbox;
use crate::services::catalog::{
    Catalog, ChannelInstance, ChannelState, ReloadReport, check_classifiers, resolve_bots,
    resolve_channels, resolve_integrations, resolve_queues, unavailable_channels,
};
use crate::store::postgres::{PostgresOptions, PostgresStore};
use crate::store::sled::{SledOptions, SledStore};
use crate::store::{Store, StoreError};

/// Opens the storage `config` names: the sled database in `data_dir` (or in `scratch`, empty
/// throwaway data, when given), or the PostgreSQL database at `storage.url` with its schema
/// brought up to date. Opened first, so a second process on the same sled data (the database
/// is locked), a corrupt database or an unreachable PostgreSQL stops the start at once, before
/// any plugin is compiled or cached.
pub async fn open_storage(
    config: &Config,
    scratch: Option<&Path>,
) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.server.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data_dir {}: {e}",
            config.server.data_dir.display()
        )
    })?;
    let storage = &config.storage;
    if storage.backend == StorageBackend::Postgres && scratch.is_none() {
        let store: Arc<dyn Store> = PostgresStore::open(&postgres_options(config))
            .await
            .map_err(|e| anyhow::anyhow!("storage.url: {e}"))?;
        return Ok(store);
    }
    let db = match scratch {
        Some(dir) => dir.to_owned(),
        None => config.server.data_dir.join("db"),
    };
    let options = SledOptions {
        cache_bytes: storage.cache_mib << 20,
        zone: config.server.zone(),
    };
    let store: Arc<dyn Store> = SledStore::open(&db, options).map_err(|e| match e {
        // Named by the directory the operator configured.
        StoreError::Locked(_) => StoreError::Locked(config.server.data_dir.clone()),
        e => e,
    })?;
    Ok(store)
}

/// Brings the storage `config` names up to date without serving (`plugboard migrate`), and
/// says what it did.
pub async fn migrate_storage(config: &Config) -> anyhow::Result<String> {
    if config.storage.backend == StorageBackend::Postgres {
        let m = crate::store::postgres::migrate(&postgres_options(config))
            .await
            .map_err(|e| anyhow::anyhow!("storage.url: {e}"))?;
        return Ok(if m.from == m.to {
            format!("postgres schema is current (version {})", m.to)
        } else {
            format!(
                "postgres schema migrated from version {} to {}",
                m.from, m.to
            )
        });
    }
    let storage = open_storage(config, None).await?;
    storage.close().await?;
    Ok(format!(
        "sled data in {} is current (schema version {})",
        config.server.data_dir.join("db").display(),
        crate::store::sled::SCHEMA_VERSION
    ))
}

/// A name for this process among the hosts sharing a store (see [`App::host_id`]).
fn host_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!(
        "{}-{}-{:08x}",
        if host.is_empty() { "host" } else { &host },
        std::process::id(),
        rand::random::<u32>()
    )
}

fn postgres_options(config: &Config) -> PostgresOptions {
    let storage = &config.storage;
    PostgresOptions {
        url: storage.url.clone().unwrap_or_default(),
        pool_size: storage.pool_size,
        connect_timeout: Duration::from_millis(storage.connect_timeout_ms),
        ca_file: storage.ca_file.clone(),
        zone: config.server.zone(),
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file has problems (each one named); the running one keeps serving.
    #[error("the configuration file is refused, the running configuration keeps serving: {0}")]
    File(#[source] crate::config::ConfigError),
    /// The configuration does not resolve against the plugins (a channel's plugin gone, a
    /// setting a new version refuses), or the plugins directory cannot be read.
    #[error("reload refused, the previous configuration and plugins keep serving: {0:#}")]
    Refused(anyhow::Error),
}

/// Everything request handlers and workers share.
pub struct App {
    /// The file the configuration is re-read from at a reload (`None`: the embedded default).
    config_file: Option<PathBuf>,
    /// Runs plugin calls.
    pub sandbox: Arc<Sandbox>,
    /// The metric families (off unless the configuration serves them).
    pub metrics: crate::metrics::Metrics,
    /// The plugins and what the configuration built from them; swapped whole by a reload.
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// Serializes reloads.
    reloading: std::sync::Mutex<()>,
    /// Durable state.
    pub storage: Arc<dyn Store>,
    /// This process among the hosts sharing the store: host name, process id and a random
    /// part (a restarted process is a new host; its predecessor's claims and streams lapse).
    pub host_id: String,
    /// Channels whose plugin keeps failing.
    pub health: crate::services::health::ChannelHealth,
    /// The bounded recordings: channels' corpora, queues' routing decisions.
    pub recordings: crate::services::recording::Recorder,
    /// Candidate plugins attached to live channels in shadow.
    pub shadows: crate::services::shadow::Shadows,
    /// Access tokens of channels that need one.
    pub tokens: crate::services::tokens::TokenCache,
    /// Channels that are disabled or deleted (absent: enabled).
    channel_states: std::sync::RwLock<BTreeMap<String, ChannelState>>,
    /// Orders administrative state changes: a check and its durable write happen together.
    channel_writes: tokio::sync::Mutex<()>,
}

impl App {
    /// Loads the plugins and resolves `config` against them, with the data in `data_dir`.
    /// Must run inside a tokio runtime.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let storage = open_storage(&config, None).await?;
        App::build_with_storage(config, storage).await
    }

    /// Like [`App::build`], but with empty throwaway data in `scratch`: for command-line tools
    /// (`check`, `channel test`) that must work while a server holds the real database.
    pub async fn build_detached(config: Config, scratch: &Path) -> anyhow::Result<App> {
        let storage = open_storage(&config, Some(scratch)).await?;
        App::build_with_storage(config, storage).await
    }

    async fn build_with_storage(config: Config, storage: Arc<dyn Store>) -> anyhow::Result<App> {
        let metrics = if config.server.metrics_on() {
            crate::metrics::Metrics::on()
        } else {
            crate::metrics::Metrics::off()
        };
        storage.observe(metrics.clone());
        let sandbox = Arc::new(
            Sandbox::new(config.limits.clone(), Clock::System)?.with_metrics(metrics.clone()),
        );
        let cache_dir = config.server.data_dir.join("plugin-cache");
        let plugins = PluginSet::load(
            &sandbox,
            plugboard_artifacts::BUNDLED,
            config.server.plugins_dir.as_deref(),
            &cache_dir,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read plugins_dir {}: {e}",
                config
                    .server
                    .plugins_dir
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display()
            )
        })?;
        let mut unavailable = unavailable_channels(&config, &plugins);
        let mut problems = Problems::default();
        let mut channels = resolve_channels(
            &config,
            &plugins,
            &sandbox,
            &BTreeMap::new(),
            &mut unavailable,
            &mut problems,
        );
        let queues = resolve_queues(&config, &plugins, &mut problems);
        let bots = resolve_bots(&config, &plugins, &sandbox, &mut problems);
        let integrations = resolve_integrations(&config, &plugins, &sandbox, &mut problems);
        check_classifiers(&config, &plugins, &mut problems);
        problems.finish()?;
        let catalog = Catalog {
            plugins,
            channels: BTreeMap::new(),
            unavailable,
            queues,
            bots,
            integrations,
            rules: Arc::new(crate::services::classify::compile(&config)),
            config: Arc::new(config.clone()),
        };
        for contact in &config.contacts {
            storage
                .put_contact(&crate::model::Contact {
                    address: contact.address.clone(),
                    name: contact.name.clone(),
                })
                .await?;
        }
        let mut channel_states = BTreeMap::new();
        for (name, state) in storage.channel_states().await? {
            let state = ChannelState::parse(&state);
            if state == ChannelState::Deleted && channels.remove(&name).is_some() {
                tracing::error!(
                    channel = %name,
                    "channel was deleted through the admin API; it stays deleted: remove it and its settings from the configuration"
                );
            }
            channel_states.insert(name, state);
        }
        Ok(App {
            config_file: None,
            sandbox,
            metrics,
            catalog: std::sync::RwLock::new(Arc::new(Catalog {
                channels,
                ..catalog
            })),
            reloading: std::sync::Mutex::new(()),
            storage,
            host_id: host_id(),
            tokens: crate::services::tokens::TokenCache::default(),
            health: crate::services::health::ChannelHealth::default(),
            recordings: crate::services::recording::Recorder::default(),
            shadows: crate::services::shadow::Shadows::default(),
            channel_states: std::sync::RwLock::new(channel_states),
            channel_writes: tokio::sync::Mutex::new(()),
        })
    }

    /// A channel's administrative state.
    pub fn channel_state(&self, name: &str) -> ChannelState {
        self.channel_states
            .read()
            .expect("channel states lock")
            .get(name)
            .copied()
            .unwrap_or(ChannelState::Enabled)
    }

    /// The current plugins, channels and queues.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// The channel instance if it takes traffic (configured, not disabled, not deleted).
    pub fn live_channel(&self, name: &str) -> Option<Arc<ChannelInstance>> {
        (self.channel_state(name) == ChannelState::Enabled)
            .then(|| self.catalog().channels.get(name).cloned())
            .flatten()
    }

    /// The configuration in force. A request takes one snapshot and keeps it, so a reload
    /// never changes the rules under it.
    pub fn config(&self) -> Arc<Config> {
        self.catalog().config.clone()
    }

    /// Makes reloads re-read the configuration from `path` (the file `serve --config` read).
    pub fn with_config_file(mut self, path: PathBuf) -> App {
        self.config_file = Some(path);
        self
    }

    /// Reloads the plugins directory and swaps the catalog: changed files are loaded aside
    /// and checked, unchanged ones are kept (warm instances included), and a plugin whose new
    /// file is refused keeps its previous version. Calls in flight finish on what they started
    /// with. A configuration that no longer resolves (a channel's plugin missing) refuses the
    /// whole reload and nothing changes. Blocking: compiles changed components.
    pub fn reload_plugins(&self) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reloading.lock().expect("reload lock");
        self.rebuild(self.config()).map_err(ReloadError::Refused)
    }

    /// Re-reads the configuration file and the plugins directory, and swaps both in: agents,
    /// tokens, queues, channels and their settings change in place. A file with any problem
    /// is refused whole (every problem named) and the running configuration keeps serving.
    /// Keys that only a restart applies (listeners, directories, storage, limits, the log
    /// format, metrics on or off) keep their running values and are named in the report.
    /// Blocking: reads the file and compiles changed components.
    pub fn reload_config(&self) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reloading.lock().expect("reload lock");
        let old = self.config();
        let Some(path) = &self.config_file else {
            let mut report = self.rebuild(old).map_err(ReloadError::Refused)?;
            report.config = Some(crate::services::catalog::ConfigChanges::embedded());
            return Ok(report);
        };
        let mut fresh = Config::load(path).map_err(ReloadError::File)?;
        let restart_required = keep_restart_only(&old, &mut fresh);
        let fresh = Arc::new(fresh);
        let mut report = self.rebuild(fresh.clone()).map_err(ReloadError::Refused)?;
        let mut changes =
            crate::services::catalog::ConfigChanges::between(&old, &fresh, restart_required);
        changes.source = path.display().to_string();
        tracing::info!(
            file = %path.display(),
            agents_added = ?changes.agents_added,
            agents_removed = ?changes.agents_removed,
            agents_changed = ?changes.agents_changed,
            channels_added = ?changes.channels_added,
            channels_changed = ?changes.channels_changed,
            channels_removed = ?changes.channels_removed,
            queues_added = ?changes.queues_added,
            queues_removed = ?changes.queues_removed,
            restart_required = ?changes.restart_required,
            "configuration reloaded"
        );
        report.config = Some(changes);
        Ok(report)
    }

    /// Loads the plugins directory, resolves `config` against it and swaps both in (the
    /// caller holds the reload lock).
    fn rebuild(&self, config: Arc<Config>) -> anyhow::Result<ReloadReport> {
        let old = self.catalog();
        let cache_dir = config.server.data_dir.join("plugin-cache");
        let fresh = PluginSet::load(
            &self.sandbox,
            plugboard_artifacts::BUNDLED,
            config.server.plugins_dir.as_deref(),
            &cache_dir,
        )?;
        let mut report = ReloadReport::default();
        let mut merged = PluginSet {
            refused: fresh.refused.clone(),
            ..PluginSet::default()
        };
        keep_unchanged(
            &fresh.channels,
            &old.plugins.channels,
            &mut merged.channels,
            &mut report,
            |p| &p.info,
        );
        keep_unchanged(
            &fresh.routers,
            &old.plugins.routers,
            &mut merged.routers,
            &mut report,
            |p| &p.info,
        );
        keep_unchanged(
            &fresh.bots,
            &old.plugins.bots,
            &mut merged.bots,
            &mut report,
            |p| &p.info,
        );
        keep_unchanged(
            &fresh.classifiers,
            &old.plugins.classifiers,
            &mut merged.classifiers,
            &mut report,
            |p| &p.info,
        );
        keep_unchanged(
            &fresh.integrations,
            &old.plugins.integrations,
            &mut merged.integrations,
            &mut report,
            |p| &p.info,
        );
        for refused in &fresh.refused {
            let name = &refused.name;
            if merged.is_loaded(name) {
                continue;
            }
            let kept = keep_previous(name, &old.plugins.channels, &mut merged.channels)
                || keep_previous(name, &old.plugins.routers, &mut merged.routers)
                || keep_previous(name, &old.plugins.bots, &mut merged.bots)
                || keep_previous(name, &old.plugins.classifiers, &mut merged.classifiers)
                || keep_previous(name, &old.plugins.integrations, &mut merged.integrations);
            if kept {
                report.kept_previous.push(name.clone());
            }
        }
        report.refused = fresh.refused;
        let mut unavailable = unavailable_channels(&config, &merged);
        let mut problems = Problems::default();
        let mut channels = resolve_channels(
            &config,
            &merged,
            &self.sandbox,
            &old.channels,
            &mut unavailable,
            &mut problems,
        );
        let queues = resolve_queues(&config, &merged, &mut problems);
        let bots = resolve_bots(&config, &merged, &self.sandbox, &mut problems);
        let integrations = resolve_integrations(&config, &merged, &self.sandbox, &mut problems);
        check_classifiers(&config, &merged, &mut problems);
        problems.finish()?;
        for (name, state) in self
            .channel_states
            .read()
            .expect("channel states lock")
            .iter()
        {
            if *state == ChannelState::Deleted {
                channels.remove(name);
            }
        }
        // Channels that did not change keep their instance (and its warm plugin pool).
        for (name, instance) in channels.iter_mut() {
            if let Some(prev) = old.channels.get(name)
                && prev.same_as(instance)
            {
                *instance = prev.clone();
            }
        }
        // Invalidated on both sides of the swap: no new instance starts from a token taken
        // with the settings it replaces.
        let renewed: Vec<String> = channels
            .iter()
            .filter(|(name, instance)| {
                old.channels
                    .get(*name)
                    .is_some_and(|prev| !Arc::ptr_eq(prev, instance))
            })
            .map(|(name, _)| name.clone())
            .chain(
                old.channels
                    .keys()
                    .filter(|n| !channels.contains_key(*n))
                    .cloned(),
            )
            .collect();
        for name in &renewed {
            self.tokens.invalidate(name);
        }
        *self.catalog.write().expect("catalog lock") = Arc::new(Catalog {
            plugins: merged,
            channels,
            unavailable,
            queues,
            bots,
            integrations,
            rules: Arc::new(crate::services::classify::compile(&config)),
            config,
        });
        for name in &renewed {
            self.tokens.invalidate(name);
        }
        tracing::info!(
            loaded = ?report.loaded,
            kept_previous = ?report.kept_previous,
            refused = report.refused.len(),
            "plugins reloaded"
        );
        Ok(report)
    }

    /// Disables, enables or deletes a channel durably. A deleted channel cannot come back.
    pub async fn set_channel_state(&self, name: &str, state: ChannelState) -> Result<(), String> {
        let _order = self.channel_writes.lock().await;
        let current = self.channel_state(name);
        if current == ChannelState::Deleted {
            return Err(format!("channel {name} was deleted; that cannot be undone"));
        }
        self.storage
            .set_channel_state(name, state.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let mut states = self.channel_states.write().expect("channel states lock");
        if state == ChannelState::Enabled {
            states.remove(name);
        } else {
            states.insert(name.to_owned(), state);
        }
        Ok(())
    }

    /// Takes in the channels' administrative states as stored, for a host whose store other
    /// hosts share (one of them may have disabled, enabled or deleted a channel); returns the
    /// channels whose state changed here.
    pub async fn refresh_channel_states(&self) -> Result<Vec<String>, StoreError> {
        let _order = self.channel_writes.lock().await;
        let stored: BTreeMap<String, ChannelState> = self
            .storage
            .channel_states()
            .await?
            .into_iter()
            .map(|(name, state)| (name, ChannelState::parse(&state)))
            .collect();
        let mut states = self.channel_states.write().expect("channel states lock");
        let changed: Vec<String> = states
            .keys()
            .chain(stored.keys())
            .filter(|name| states.get(*name) != stored.get(*name))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        *states = stored;
        Ok(changed)
    }

    /// The agent whose token this is, compared in constant time against every agent's.
    pub fn agent_by_token(&self, token: &str) -> Option<AgentConfig> {
        let config = self.config();
        let mut found = None;
        for agent in &config.agents {
            if bool::from(agent.token.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(agent);
            }
        }
        found.cloned()
    }
}

/// Carries over from `old` to `fresh` the keys a running host cannot change (what it
/// listens on, where its data is, its storage, the sandbox's limits, the log format, whether
/// metrics are recorded), and names those that differed.
fn keep_restart_only(old: &Config, fresh: &mut Config) -> Vec<String> {
    let mut differ = Vec::new();
    let metrics_switch = old.server.metrics_on() != fresh.server.metrics_on();
    macro_rules! keep {
        ($key:literal, $($field:tt)+) => {
            if old.$($field)+ != fresh.$($field)+ {
                differ.push($key.to_owned());
                fresh.$($field)+ = old.$($field)+.clone();
            }
        };
    }
    keep!("server.listen", server.listen);
    keep!("server.data_dir", server.data_dir);
    keep!("server.plugins_dir", server.plugins_dir);
    keep!("server.max_body_bytes", server.max_body_bytes);
    keep!("server.metrics_listen", server.metrics_listen);
    keep!("server.log_format", server.log_format);
    keep!("server.timezone", server.timezone);
    keep!("limits.memory_mib", limits.memory_mib);
    keep!("limits.call_timeout_ms", limits.call_timeout_ms);
    keep!("limits.provider_timeout_ms", limits.provider_timeout_ms);
    keep!("storage", storage);
    if metrics_switch {
        differ.push("server.metrics_token (metrics on or off)".to_owned());
        fresh.server.metrics_token = old.server.metrics_token.clone();
    }
    differ
}

/// Moves each plugin of one world from a fresh load into `merged`, keeping the running one
/// (warm instances included) where the bytes did not change; records which in `report`.
fn keep_unchanged<P>(
    fresh: &BTreeMap<String, Arc<P>>,
    old: &BTreeMap<String, Arc<P>>,
    merged: &mut BTreeMap<String, Arc<P>>,
    report: &mut ReloadReport,
    info: impl Fn(&P) -> &crate::runtime::plugin::PluginInfo,
) {
    for (name, plugin) in fresh {
        match old.get(name) {
            Some(prev) if info(prev).sha256 == info(plugin).sha256 => {
                report.unchanged.push(name.clone());
                merged.insert(name.clone(), prev.clone());
            }
            _ => {
                report.loaded.push(name.clone());
                merged.insert(name.clone(), plugin.clone());
            }
        }
    }
}

/// Keeps the running version of `name` from `old` when its new file was refused and nothing
/// else loaded under that name; whether it did.
fn keep_previous<P>(
    name: &str,
    old: &BTreeMap<String, Arc<P>>,
    merged: &mut BTreeMap<String, Arc<P>>,
) -> bool {
    match old.get(name) {
        Some(prev) if !merged.contains_key(name) => {
            merged.insert(name.to_owned(), prev.clone());
            true
        }
        _ => false,
    }
}
