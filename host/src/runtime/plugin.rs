//! Loading plugins: compile (through an on-disk cache), check the contract version, link once
//! into an `InstancePre`, and ask channels to describe themselves.
//!
//! Loading is where every expensive step happens, once; a refused plugin is reported with the
//! reason and the others still load.
//!
//! Calls go through [`Sandbox::run_pooled`]: each loaded plugin owns an [`InstancePool`] whose
//! key is the channel instance's name (channels) or the queue's name (routers), so an instance
//! is only ever reused by the same channel instance or queue, and never after a failed call.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::Digest;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Engine, Store};

use crate::runtime::bindings::channel::{Channel, ChannelPre};
use crate::runtime::bindings::compat::{lift, optional};
use crate::runtime::bindings::router::{Router, RouterPre};
use crate::runtime::bindings::{v0_2, wit};
pub use crate::runtime::bot::BotPlugin;
pub use crate::runtime::classifier::ClassifierPlugin;
pub use crate::runtime::integration::IntegrationPlugin;
use crate::runtime::sandbox::{CallContext, HostState, InstancePool, PluginError, Sandbox};

/// The contract version this host implements (see [`crate::runtime::bindings`]).
pub use crate::runtime::bindings::CONTRACT_VERSION;

const CHANNEL_EXPORT: &str = "plugboard:plugin/messaging@";
const ROUTER_EXPORT: &str = "plugboard:plugin/routing@";
const BOT_EXPORT: &str = "plugboard:plugin/chat-bot@";
const CLASSIFIER_EXPORT: &str = "plugboard:plugin/classification@";
const INTEGRATION_EXPORT: &str = "plugboard:plugin/crm@";

/// Which world a component implements, from the interface it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum World {
    /// A provider channel (`messaging`).
    Channel,
    /// A routing strategy (`routing`).
    Router,
    /// A bot (`chat-bot`).
    Bot,
    /// A custom classifier (`classification`).
    Classifier,
    /// A CRM integration (`crm`).
    Integration,
}

impl World {
    /// The world's name in the contract.
    pub fn name(self) -> &'static str {
        match self {
            World::Channel => "channel",
            World::Router => "router",
            World::Bot => "bot",
            World::Classifier => "classifier",
            World::Integration => "integration",
        }
    }

    /// The contract version that introduced the world.
    fn since(self) -> semver::Version {
        match self {
            World::Channel | World::Router => semver::Version::new(0, 1, 0),
            World::Bot | World::Classifier | World::Integration => semver::Version::new(0, 3, 0),
        }
    }
}

/// Why a plugin file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component exports neither contract interface.
    #[error(
        "not a Plugboard plugin: it exports none of `{CHANNEL_EXPORT}…`, `{ROUTER_EXPORT}…`, `{BOT_EXPORT}…`, `{CLASSIFIER_EXPORT}…` (its exports: {0})"
    )]
    NotAPlugin(String),
    /// The component was built against a contract version this host cannot serve.
    #[error(
        "built against contract plugboard:plugin@{plugin}, but this host implements plugboard:plugin@{host} (and serves 0.2.0); rebuild it with plugboard-sdk {host_line} (or a host that implements {plugin})"
    )]
    IncompatibleContract {
        /// The plugin's contract version.
        plugin: semver::Version,
        /// The host's contract version.
        host: semver::Version,
        /// The SDK line to rebuild with, e.g. `0.1`.
        host_line: String,
    },
    /// The component imports something the host does not provide.
    #[error("cannot be linked: {0}")]
    Link(String),
    /// `describe` failed.
    #[error("describe failed: {0}")]
    Describe(PluginError),
    /// The component's memories at start are more than a call may use.
    #[error(
        "needs {needs_mib:.1} MiB of memory as soon as it starts, more than the {memory_mib} MiB a plugin call may use; raise [limits] memory_mib to at least {at_least} or shrink the plugin's initial memory"
    )]
    MemoryAtStart {
        /// What the component's memories need at instantiation, MiB.
        needs_mib: f64,
        /// The limit.
        memory_mib: u64,
        /// The smallest limit that fits, MiB.
        at_least: u64,
    },
    /// A bot or classifier built against a contract version that predates its world.
    #[error(
        "built against contract plugboard:plugin@{plugin}, which has no {world} world (it is new in 0.3.0); rebuild it with plugboard-sdk 0.3"
    )]
    WorldTooOld {
        /// The plugin's contract version.
        plugin: semver::Version,
        /// The world's name.
        world: &'static str,
    },
}

/// Where a plugin came from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginSource {
    /// Built into the host binary.
    Bundled,
    /// A file from the plugins directory.
    File(PathBuf),
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Bundled => f.write_str("bundled"),
            PluginSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What every loaded plugin carries.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The plugin's name (its file name without `.wasm`).
    pub name: String,
    /// Where it came from.
    pub source: PluginSource,
    /// Hex SHA-256 of the component bytes.
    pub sha256: String,
    /// The contract version it was built against.
    pub contract: String,
}

/// A channel's manifest, as the host keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelManifest {
    /// The plugin's self-declared name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The channel kind (`sms`, `whatsapp`, ...).
    pub kind: String,
    /// Settings it takes.
    pub settings: Vec<SettingSpec>,
    /// Provider API hosts it talks to.
    pub api_hosts: Vec<String>,
    /// Whether it handles attachments.
    pub attachments: bool,
    /// Whether it sends templates.
    pub templates: bool,
    /// Whether it reports delivery status.
    pub delivery_receipts: bool,
    /// Whether visitors reach it through the host's chat endpoints, not `/webhooks`.
    pub hosted_chat: bool,
    /// What the host enforces for it.
    pub rules: ChannelRules,
}

/// The rules a channel's manifest declares and the host enforces (see the contract's
/// `channel-rules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelRules {
    /// How customers are addressed.
    pub address: AddressForm,
    /// The longest text one message may carry, characters.
    pub max_text_chars: usize,
    /// Whether texts count in SMS segments.
    pub segments: bool,
    /// Whether STOP/START keywords opt customers out and in.
    pub opt_out_keywords: bool,
    /// Hours after the customer's last message within which free text may go out.
    pub reply_window_hours: Option<u32>,
}

/// How a channel's customers are addressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressForm {
    /// Any non-empty string.
    Opaque,
    /// An E.164 number after `prefix`.
    E164 {
        /// What comes before the number (`whatsapp:`), maybe nothing.
        prefix: String,
    },
}

impl AddressForm {
    /// Whether customers are phone numbers.
    pub fn is_phone(&self) -> bool {
        matches!(self, AddressForm::E164 { .. })
    }

    /// The phone number inside `address` (`whatsapp:+1...` -> `+1...`).
    pub fn phone_of<'a>(&self, address: &'a str) -> &'a str {
        match self {
            AddressForm::E164 { prefix } => {
                address.strip_prefix(prefix.as_str()).unwrap_or(address)
            }
            AddressForm::Opaque => address,
        }
    }

    /// The customer address `given` stands for (an E.164 number, with or without the prefix,
    /// for a phone channel; any non-empty text otherwise), or why it is none.
    pub fn parse_customer(&self, given: &str) -> Result<String, String> {
        let given = given.trim();
        match self {
            AddressForm::E164 { .. } => {
                let number = plugboard_sdk::E164::parse(self.phone_of(given))
                    .map_err(|e| format!("an E.164 number like +14155550100 is needed: {e}"))?;
                Ok(self.address_for(number.as_str()))
            }
            AddressForm::Opaque if given.is_empty() || given.len() > 256 => {
                Err("must be 1 to 256 characters".into())
            }
            AddressForm::Opaque => Ok(given.to_owned()),
        }
    }

    /// The address of the E.164 `number`.
    pub fn address_for(&self, number: &str) -> String {
        match self {
            AddressForm::E164 { prefix } => format!("{prefix}{number}"),
            AddressForm::Opaque => number.to_owned(),
        }
    }
}

/// The most characters a channel may declare for one text: what the host stores and shows.
pub const MAX_DECLARED_TEXT_CHARS: usize = 100_000;

impl From<wit::ChannelRules> for ChannelRules {
    fn from(r: wit::ChannelRules) -> Self {
        ChannelRules {
            address: match r.address {
                wit::AddressForm::Opaque => AddressForm::Opaque,
                wit::AddressForm::E164(prefix) => AddressForm::E164 { prefix },
            },
            // Zero would refuse every text: read it as the host's default for plain text.
            max_text_chars: match r.max_text {
                0 => 5000,
                n => (n as usize).min(MAX_DECLARED_TEXT_CHARS),
            },
            segments: r.segments,
            opt_out_keywords: r.opt_out_keywords,
            reply_window_hours: r.reply_window_hours,
        }
    }
}

/// One setting a channel takes.
#[derive(Debug, Clone, Serialize)]
pub struct SettingSpec {
    /// The name.
    pub name: String,
    /// Whether a channel instance must set it.
    pub required: bool,
    /// Whether it is a credential (never logged or shown).
    pub secret: bool,
    /// What it is.
    pub description: String,
}

impl From<wit::SettingSpec> for SettingSpec {
    fn from(s: wit::SettingSpec) -> Self {
        SettingSpec {
            name: s.name,
            required: s.required,
            secret: s.secret,
            description: s.description,
        }
    }
}

impl From<wit::Manifest> for ChannelManifest {
    fn from(m: wit::Manifest) -> Self {
        ChannelManifest {
            name: m.name,
            version: m.version,
            kind: m.kind,
            settings: m.settings.into_iter().map(SettingSpec::from).collect(),
            api_hosts: m.api_hosts,
            attachments: m.capabilities.contains(wit::Capabilities::ATTACHMENTS),
            templates: m.capabilities.contains(wit::Capabilities::TEMPLATES),
            delivery_receipts: m
                .capabilities
                .contains(wit::Capabilities::DELIVERY_RECEIPTS),
            hosted_chat: m.capabilities.contains(wit::Capabilities::HOSTED_CHAT),
            rules: m.rules.into(),
        }
    }
}

/// A loaded channel plugin, ready to instantiate, with its idle instances per channel instance.
pub struct ChannelPlugin {
    /// Identity and provenance.
    pub info: PluginInfo,
    /// What `describe` returned.
    pub manifest: ChannelManifest,
    pre: ChannelComponent,
    pool: Arc<InstancePool<ChannelGuest>>,
}

/// A linked channel component, by the contract version it was built against.
#[derive(Clone)]
enum ChannelComponent {
    Current(ChannelPre<HostState>),
    V0_2(v0_2::channel::ChannelPre<HostState>),
}

impl ChannelComponent {
    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<ChannelGuest> {
        Ok(match self {
            ChannelComponent::Current(pre) => ChannelGuest::Current(pre.instantiate(store)?),
            ChannelComponent::V0_2(pre) => ChannelGuest::V0_2(pre.instantiate(store)?),
        })
    }
}

/// Calls one `messaging` export on a [`ChannelGuest`] of either version: the current one with
/// `args`, a 0.2.0 one with the `old(...)` arguments and its result mapped by the last closure.
macro_rules! messaging {
    ($guest:expr, $store:expr, $call:ident($($arg:expr),*), old($($old:expr),*) => $lift:expr) => {
        match $guest {
            ChannelGuest::Current(c) => c.plugboard_plugin_messaging().$call($store, $($arg),*),
            ChannelGuest::V0_2(c) => c
                .plugboard_plugin_messaging()
                .$call($store, $($old),*)
                .map($lift),
        }
    };
}

/// One instance of a channel component.
pub enum ChannelGuest {
    /// Built against the host's own contract version.
    Current(Channel),
    /// Built against 0.2.0: calls convert through [`crate::runtime::bindings::compat`].
    V0_2(v0_2::channel::Channel),
}

impl ChannelGuest {
    fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<wit::Manifest> {
        match self {
            ChannelGuest::Current(c) => c.plugboard_plugin_messaging().call_describe(store),
            ChannelGuest::V0_2(c) => c
                .plugboard_plugin_messaging()
                .call_describe(store)
                .map(Into::into),
        }
    }

    fn check_settings(
        &self,
        store: &mut Store<HostState>,
        settings: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            ChannelGuest::Current(c) => c
                .plugboard_plugin_messaging()
                .call_check_settings(store, settings),
            ChannelGuest::V0_2(_) => Ok(Ok(())),
        }
    }

    fn handle_webhook(
        &self,
        store: &mut Store<HostState>,
        req: &wit::HttpRequest,
        settings: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::WebhookOutcome, wit::WebhookError>> {
        messaging!(
            self,
            store,
            call_handle_webhook(req, settings),
            old(&req.clone().into(), settings) => lift
        )
    }

    fn prepare_send(
        &self,
        store: &mut Store<HostState>,
        msg: &wit::OutboundMessage,
        settings: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::HttpRequest, wit::SendError>> {
        messaging!(
            self,
            store,
            call_prepare_send(msg, settings),
            old(&msg.clone().into(), settings) => lift
        )
    }

    fn read_send_response(
        &self,
        store: &mut Store<HostState>,
        resp: &wit::HttpResponse,
        settings: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<String, wit::SendError>> {
        messaging!(
            self,
            store,
            call_read_send_response(resp, settings),
            old(&resp.clone().into(), settings) => lift
        )
    }

    fn prepare_token(
        &self,
        store: &mut Store<HostState>,
        settings: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<Option<wit::HttpRequest>, wit::SendError>> {
        messaging!(
            self,
            store,
            call_prepare_token(settings),
            old(settings) => optional
        )
    }

    fn read_token_response(
        &self,
        store: &mut Store<HostState>,
        resp: &wit::HttpResponse,
        settings: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::TokenGrant, wit::SendError>> {
        messaging!(
            self,
            store,
            call_read_token_response(resp, settings),
            old(&resp.clone().into(), settings) => lift
        )
    }

    fn prepare_check(
        &self,
        store: &mut Store<HostState>,
        settings: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<Option<wit::HttpRequest>, wit::SendError>> {
        messaging!(
            self,
            store,
            call_prepare_check(settings),
            old(settings) => optional
        )
    }

    fn read_check_response(
        &self,
        store: &mut Store<HostState>,
        resp: &wit::HttpResponse,
        settings: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), wit::SendError>> {
        messaging!(
            self,
            store,
            call_read_check_response(resp, settings),
            old(&resp.clone().into(), settings) => |r| r.map_err(Into::into)
        )
    }
}

/// A loaded router plugin, ready to instantiate, with its idle instances per queue.
pub struct RouterPlugin {
    /// Identity and provenance.
    pub info: PluginInfo,
    pre: RouterComponent,
    pool: Arc<InstancePool<RouterGuest>>,
}

/// A linked router component, by the contract version it was built against.
#[derive(Clone)]
enum RouterComponent {
    Current(RouterPre<HostState>),
    V0_2(v0_2::router::RouterPre<HostState>),
}

impl RouterComponent {
    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<RouterGuest> {
        Ok(match self {
            RouterComponent::Current(pre) => RouterGuest::Current(pre.instantiate(store)?),
            RouterComponent::V0_2(pre) => RouterGuest::V0_2(pre.instantiate(store)?),
        })
    }
}

/// One instance of a router component.
pub enum RouterGuest {
    /// Built against the host's own contract version.
    Current(Router),
    /// Built against 0.2.0: calls convert through [`crate::runtime::bindings::compat`].
    V0_2(v0_2::router::Router),
}

impl RouterGuest {
    fn decide(
        &self,
        store: &mut Store<HostState>,
        work: &wit::WaitingWork,
        agents: &[wit::AgentState],
    ) -> wasmtime::Result<wit::Decision> {
        match self {
            RouterGuest::Current(r) => r
                .plugboard_plugin_routing()
                .call_decide(store, work, agents),
            RouterGuest::V0_2(r) => {
                let agents: Vec<_> = agents.iter().map(Into::into).collect();
                r.plugboard_plugin_routing()
                    .call_decide(store, &work.clone().into(), &agents)
                    .map(Into::into)
            }
        }
    }
}

/// A plugin file that was not loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedPlugin {
    /// The plugin's name (file stem).
    pub name: String,
    /// Where it came from.
    pub source: PluginSource,
    /// The reason, for operators.
    pub error: String,
}

/// Every plugin the host knows, by name.
#[derive(Default)]
pub struct PluginSet {
    /// Channel plugins.
    pub channels: BTreeMap<String, Arc<ChannelPlugin>>,
    /// Router plugins.
    pub routers: BTreeMap<String, Arc<RouterPlugin>>,
    /// Bot plugins.
    pub bots: BTreeMap<String, Arc<BotPlugin>>,
    /// Classifier plugins.
    pub classifiers: BTreeMap<String, Arc<ClassifierPlugin>>,
    /// Integration plugins.
    pub integrations: BTreeMap<String, Arc<IntegrationPlugin>>,
    /// Plugins refused at load.
    pub refused: Vec<RefusedPlugin>,
}

impl PluginSet {
    /// Loads the bundled plugins, then every `*.wasm` in `dir` (a file overrides a bundled
    /// plugin of the same name). Refusals are logged and kept in `refused`.
    pub fn load(
        sandbox: &Sandbox,
        bundled: &[(&str, &[u8])],
        dir: Option<&Path>,
        cache_dir: &Path,
    ) -> std::io::Result<PluginSet> {
        let mut set = PluginSet::default();
        for (name, bytes) in bundled {
            set.add(sandbox, name, PluginSource::Bundled, bytes, cache_dir);
        }
        if let Some(dir) = dir {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
                .collect();
            files.sort();
            for path in files {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        set.add(sandbox, &name, PluginSource::File(path), &bytes, cache_dir)
                    }
                    Err(source) => set.refuse(
                        &name,
                        PluginSource::File(path.clone()),
                        LoadError::Read { path, source },
                    ),
                }
            }
        }
        Ok(set)
    }

    /// Whether `name` was refused and no loaded plugin (of any world) has that name.
    pub fn is_refused_channel(&self, name: &str) -> bool {
        !self.is_loaded(name) && self.refused.iter().any(|r| r.name == name)
    }

    /// Whether a plugin of any world is loaded as `name`.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.channels.contains_key(name)
            || self.routers.contains_key(name)
            || self.bots.contains_key(name)
            || self.classifiers.contains_key(name)
            || self.integrations.contains_key(name)
    }

    /// Forgets the plugin loaded as `name`, whatever its world (a later file of the same
    /// name replaces it).
    fn forget(&mut self, name: &str) {
        self.channels.remove(name);
        self.routers.remove(name);
        self.bots.remove(name);
        self.classifiers.remove(name);
        self.integrations.remove(name);
    }

    fn add(
        &mut self,
        sandbox: &Sandbox,
        name: &str,
        source: PluginSource,
        bytes: &[u8],
        cache_dir: &Path,
    ) {
        let loaded = load_one(sandbox, name, source.clone(), bytes, cache_dir);
        if loaded.is_ok() {
            self.forget(name);
        }
        match loaded {
            Ok(Loaded::Channel(p)) => {
                tracing::info!(plugin = name, source = %p.info.source, kind = %p.manifest.kind, version = %p.manifest.version, "loaded channel plugin");
                warn_on_other_name(name, &p.manifest.name);
                self.channels.insert(name.to_owned(), Arc::from(p));
            }
            Ok(Loaded::Router(p)) => {
                tracing::info!(plugin = name, source = %p.info.source, "loaded router plugin");
                self.routers.insert(name.to_owned(), Arc::new(p));
            }
            Ok(Loaded::Bot(p)) => {
                tracing::info!(plugin = name, source = %p.info.source, version = %p.manifest.version, "loaded bot plugin");
                warn_on_other_name(name, &p.manifest.name);
                self.bots.insert(name.to_owned(), Arc::new(p));
            }
            Ok(Loaded::Classifier(p)) => {
                tracing::info!(plugin = name, source = %p.info.source, "loaded classifier plugin");
                self.classifiers.insert(name.to_owned(), Arc::new(p));
            }
            Ok(Loaded::Integration(p)) => {
                tracing::info!(plugin = name, source = %p.info.source, version = %p.manifest.version, "loaded integration plugin");
                warn_on_other_name(name, &p.manifest.name);
                self.integrations.insert(name.to_owned(), Arc::new(p));
            }
            Err(e) => self.refuse(name, source, e),
        }
    }

    fn refuse(&mut self, name: &str, source: PluginSource, error: LoadError) {
        tracing::error!(plugin = name, source = %source, "plugin refused: {error}");
        self.refused.push(RefusedPlugin {
            name: name.to_owned(),
            source,
            error: error.to_string(),
        });
    }
}

/// Warns when a plugin's manifest calls it something other than its file name (the name the
/// configuration uses).
fn warn_on_other_name(name: &str, manifest_name: &str) {
    if manifest_name != name {
        tracing::warn!(
            plugin = name,
            manifest_name,
            "the plugin's manifest calls it `{manifest_name}`, but it is loaded by its file name `{name}` (what the configuration names)"
        );
    }
}

/// One plugin file, loaded.
pub enum Loaded {
    /// A channel plugin.
    Channel(Box<ChannelPlugin>),
    /// A router plugin.
    Router(RouterPlugin),
    /// A bot plugin.
    Bot(BotPlugin),
    /// A classifier plugin.
    Classifier(ClassifierPlugin),
    /// An integration plugin.
    Integration(IntegrationPlugin),
}

impl Loaded {
    /// Identity and provenance.
    pub fn info(&self) -> &PluginInfo {
        match self {
            Loaded::Channel(p) => &p.info,
            Loaded::Router(p) => &p.info,
            Loaded::Bot(p) => &p.info,
            Loaded::Classifier(p) => &p.info,
            Loaded::Integration(p) => &p.info,
        }
    }
}

/// What the bytes of a component are, before anything runs: its world and contract version,
/// its imports and exports, and the memory its core modules declare at start.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentFacts {
    /// The world it implements, if it is a Plugboard plugin.
    pub world: Option<World>,
    /// The contract version it was built against.
    pub contract: Option<String>,
    /// Why it is not a plugin, when it is not.
    pub not_a_plugin: Option<String>,
    /// Its imports, by name.
    pub imports: Vec<String>,
    /// Its exports, by name.
    pub exports: Vec<String>,
    /// The bytes its memories take as soon as it is instantiated.
    pub initial_memory_bytes: u64,
}

/// Compiles `bytes` through the cache, after refusing in plain words a component whose memory
/// at start exceeds the limit (wasmtime refuses it in its own words); with the bytes' SHA-256.
fn compile_checked(
    sandbox: &Sandbox,
    bytes: &[u8],
    cache_dir: &Path,
) -> Result<(String, Component), LoadError> {
    check_memory_at_start(sandbox, bytes)?;
    let sha256 = hex::encode(sha2::Sha256::digest(bytes));
    let component = compile_cached(sandbox.engine(), bytes, &sha256, cache_dir)?;
    Ok((sha256, component))
}

/// Compiles `bytes` (through the cache) and reads [`ComponentFacts`] from it.
pub fn component_facts(
    sandbox: &Sandbox,
    bytes: &[u8],
    cache_dir: &Path,
) -> Result<ComponentFacts, LoadError> {
    let engine = sandbox.engine();
    let (_, component) = compile_checked(sandbox, bytes, cache_dir)?;
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let (world, contract, not_a_plugin) = match contract_of(engine, &component) {
        Ok((w, v)) => (Some(w), Some(v.to_string()), None),
        Err(e) => (None, None, Some(e.to_string())),
    };
    Ok(ComponentFacts {
        world,
        contract,
        not_a_plugin,
        imports,
        exports,
        initial_memory_bytes: initial_memory(bytes)?,
    })
}

/// The bytes the memories of `bytes`' core modules take at instantiation (each memory's
/// minimum size), whatever the nesting.
pub fn initial_memory(bytes: &[u8]) -> Result<u64, LoadError> {
    let mut total: u64 = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::Compile(e.to_string()))?;
        if let wasmparser::Payload::MemorySection(memories) = payload {
            for memory in memories {
                let memory = memory.map_err(|e| LoadError::Compile(e.to_string()))?;
                let page = memory.page_size_log2.map_or(65_536, |log2| 1u64 << log2);
                total = total.saturating_add(memory.initial.saturating_mul(page));
            }
        }
    }
    Ok(total)
}

/// Refuses a component whose memories at start exceed what a call may use, in plain words
/// (wasmtime's own error names its pooling allocator).
fn check_memory_at_start(sandbox: &Sandbox, bytes: &[u8]) -> Result<(), LoadError> {
    let needs = initial_memory(bytes)?;
    let memory_mib = sandbox.limits().memory_mib;
    if needs > memory_mib.saturating_mul(1 << 20) {
        return Err(LoadError::MemoryAtStart {
            needs_mib: needs as f64 / f64::from(1u32 << 20),
            memory_mib,
            at_least: needs.div_ceil(1 << 20),
        });
    }
    Ok(())
}

/// Loads one plugin file's bytes as `name`, as start-up does: compile (cached), check the
/// contract and the memory at start, link, and describe.
pub fn load_plugin(
    sandbox: &Sandbox,
    name: &str,
    source: PluginSource,
    bytes: &[u8],
    cache_dir: &Path,
) -> Result<Loaded, LoadError> {
    load_one(sandbox, name, source, bytes, cache_dir)
}

fn load_one(
    sandbox: &Sandbox,
    name: &str,
    source: PluginSource,
    bytes: &[u8],
    cache_dir: &Path,
) -> Result<Loaded, LoadError> {
    let engine = sandbox.engine();
    let (sha256, component) = compile_checked(sandbox, bytes, cache_dir)?;
    let (world, contract) = contract_of(engine, &component)?;
    let current = check_contract(&contract)?;
    if contract < world.since() {
        return Err(LoadError::WorldTooOld {
            plugin: contract,
            world: world.name(),
        });
    }
    let info = PluginInfo {
        name: name.to_owned(),
        source,
        sha256,
        contract: contract.to_string(),
    };
    let instance_pre = sandbox
        .linker()
        .instantiate_pre(&component)
        .map_err(|e| LoadError::Link(format!("{e:#}")))?;
    let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
    match world {
        World::Bot => {
            return Ok(Loaded::Bot(BotPlugin::link(sandbox, info, instance_pre)?));
        }
        World::Classifier => {
            return Ok(Loaded::Classifier(ClassifierPlugin::link(
                info,
                instance_pre,
            )?));
        }
        World::Integration => {
            return Ok(Loaded::Integration(IntegrationPlugin::link(
                sandbox,
                info,
                instance_pre,
            )?));
        }
        World::Channel | World::Router => {}
    }
    if world == World::Channel {
        let pre = if current {
            ChannelComponent::Current(ChannelPre::new(instance_pre).map_err(link)?)
        } else {
            ChannelComponent::V0_2(v0_2::channel::ChannelPre::new(instance_pre).map_err(link)?)
        };
        let ctx = CallContext {
            plugin: name.into(),
            channel: None,
        };
        let manifest = off_runtime(&ctx, "describe", || {
            sandbox.run_blocking(&ctx, "describe", |store| {
                pre.instantiate(&mut *store)?.describe(store)
            })
        })
        .map_err(LoadError::Describe)?;
        Ok(Loaded::Channel(Box::new(ChannelPlugin {
            info,
            manifest: manifest.into(),
            pre,
            pool: Arc::new(InstancePool::new()),
        })))
    } else {
        let pre = if current {
            RouterComponent::Current(RouterPre::new(instance_pre).map_err(link)?)
        } else {
            RouterComponent::V0_2(v0_2::router::RouterPre::new(instance_pre).map_err(link)?)
        };
        Ok(Loaded::Router(RouterPlugin {
            info,
            pre,
            pool: Arc::new(InstancePool::new()),
        }))
    }
}

/// Runs a plugin call made outside the call slots (at load, while the configuration is
/// resolved) on a thread of its own: WASI's blocking calls (a write to stderr, a sleep) run a
/// future to completion, which a thread of the async runtime may not do, and whatever the guest
/// does, the host never panics for it.
pub(crate) fn off_runtime<R: Send>(
    ctx: &CallContext,
    function: &'static str,
    call: impl FnOnce() -> Result<R, PluginError> + Send,
) -> Result<R, PluginError> {
    let failed = |reason: String| PluginError::Trap {
        plugin: ctx.plugin.to_string(),
        function,
        reason,
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(format!("plugboard-{function}"))
            .spawn_scoped(scope, call)
            .map_err(|e| failed(format!("cannot start a thread for the call: {e}")))?
            .join()
            .map_err(|_| failed("the host's call panicked".into()))?
    })
}

/// Reads the contract version from the component's exported interface names
/// (`plugboard:plugin/messaging@0.1.0`): this works for plugins written in any language and
/// before anything is linked, so a mismatch gets a clear message instead of a link error.
fn contract_of(
    engine: &Engine,
    component: &Component,
) -> Result<(World, semver::Version), LoadError> {
    let ty = component.component_type();
    let mut names = Vec::new();
    for (export, item) in ty.exports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            names.push(export.to_owned());
            continue;
        }
        for (prefix, world) in [
            (CHANNEL_EXPORT, World::Channel),
            (ROUTER_EXPORT, World::Router),
            (BOT_EXPORT, World::Bot),
            (CLASSIFIER_EXPORT, World::Classifier),
            (INTEGRATION_EXPORT, World::Integration),
        ] {
            if let Some(version) = export.strip_prefix(prefix) {
                let version = semver::Version::parse(version)
                    .map_err(|e| LoadError::NotAPlugin(format!("{export} (bad version: {e})")))?;
                return Ok((world, version));
            }
        }
        names.push(export.to_owned());
    }
    Err(LoadError::NotAPlugin(if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }))
}

/// Whether a plugin built against `plugin` can run on this host: the same major (the same
/// minor for 0.x, the same patch for 0.0.x, as wasmtime's linker matches), and not newer than
/// what the host implements. Pre-releases match only themselves.
pub fn compatible(host: &semver::Version, plugin: &semver::Version) -> bool {
    if !plugin.pre.is_empty() || !host.pre.is_empty() {
        return plugin == host;
    }
    let same_track = match (host.major, host.minor) {
        (0, 0) => plugin.major == 0 && plugin.minor == 0 && plugin.patch == host.patch,
        (0, minor) => plugin.major == 0 && plugin.minor == minor,
        (major, _) => plugin.major == major,
    };
    same_track && plugin <= host
}

/// Which bindings serve a plugin built against `plugin`: the host's own (`true`) or the
/// frozen 0.2.0 ones (`false`); any other version is refused naming both.
fn check_contract(plugin: &semver::Version) -> Result<bool, LoadError> {
    let host = semver::Version::parse(CONTRACT_VERSION).expect("valid contract version");
    if compatible(&host, plugin) {
        return Ok(true);
    }
    let frozen = semver::Version::new(0, 2, 0);
    if compatible(&frozen, plugin) {
        return Ok(false);
    }
    let host_line = if host.major == 0 {
        format!("{}.{}", host.major, host.minor)
    } else {
        host.major.to_string()
    };
    Err(LoadError::IncompatibleContract {
        plugin: plugin.clone(),
        host,
        host_line,
    })
}

/// Compiles a component, or loads it from the cache keyed by the bytes' SHA-256 and the
/// engine's compatibility hash. Each entry ends with the SHA-256 of what precedes it, checked
/// before wasmtime sees a byte: deserializing is only sound for bytes wasmtime wrote itself, and
/// a flipped bit in native code is a crash, not an error. A stale, truncated or corrupt entry is
/// rebuilt from the `.wasm`, with a warning.
fn compile_cached(
    engine: &Engine,
    bytes: &[u8],
    sha256: &str,
    cache_dir: &Path,
) -> Result<Component, LoadError> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let path = cache_dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
    match std::fs::read(&path) {
        Ok(entry) => match verified_entry(&entry) {
            Some(compiled) => match deserialize_bytes(engine, compiled) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "compiled-plugin cache entry unusable, rebuilding: {e:#}")
                }
            },
            None => {
                tracing::warn!(path = %path.display(), "compiled-plugin cache entry fails its checksum, rebuilding")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read compiled-plugin cache entry, rebuilding: {e}")
        }
    }
    let compiled = engine
        .precompile_component(bytes)
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
    let mut entry = compiled.clone();
    entry.extend_from_slice(&sha2::Sha256::digest(&compiled));
    if let Err(e) = write_atomically(cache_dir, &path, &entry) {
        tracing::warn!(path = %path.display(), "cannot write compiled-plugin cache: {e}");
    }
    deserialize_bytes(engine, &compiled).map_err(|e| LoadError::Compile(format!("{e:#}")))
}

/// The compiled bytes of a cache entry whose trailing SHA-256 matches them.
fn verified_entry(entry: &[u8]) -> Option<&[u8]> {
    let split = entry.len().checked_sub(32)?;
    let (compiled, digest) = entry.split_at(split);
    (sha2::Sha256::digest(compiled).as_slice() == digest).then_some(compiled)
}

#[allow(unsafe_code)]
fn deserialize_bytes(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `bytes` was produced by `precompile_component`, either on this engine a moment
    // ago or by this host into the cache, where its checksum was verified just now; wasmtime
    // also checks the version and configuration recorded in the artifact.
    unsafe { Component::deserialize(engine, bytes) }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl ChannelPlugin {
    /// `check-settings` for one channel instance, at load: a fresh instance on a thread of its
    /// own, outside the call slots. `Ok(Err(reason))` when the plugin refuses the settings.
    pub fn check_settings(
        &self,
        sandbox: &Sandbox,
        channel: &str,
        settings: &Vec<(String, String)>,
    ) -> Result<Result<(), String>, PluginError> {
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(channel.into()),
        };
        off_runtime(&ctx, "check-settings", || {
            sandbox.run_blocking(&ctx, "check-settings", |store| {
                self.pre
                    .instantiate(&mut *store)?
                    .check_settings(store, settings)
            })
        })
    }

    /// The instances calls of this plugin have created and keep idle, per channel instance.
    pub fn instances(&self) -> &InstancePool<ChannelGuest> {
        &self.pool
    }

    /// Calls one export on an instance for `channel` (an idle one of that channel instance, or
    /// a new one).
    async fn call<R, F>(
        &self,
        sandbox: &Arc<Sandbox>,
        channel: &str,
        function: &'static str,
        f: F,
    ) -> Result<R, PluginError>
    where
        R: Send + 'static,
        F: FnOnce(&ChannelGuest, &mut Store<HostState>) -> wasmtime::Result<R> + Send + 'static,
    {
        let pre = self.pre.clone();
        let channel: Arc<str> = channel.into();
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(channel.clone()),
        };
        sandbox
            .run_pooled(
                &self.pool,
                channel,
                ctx,
                function,
                move |store| pre.instantiate(store),
                f,
            )
            .await
    }

    /// `handle-webhook` on this thread, without waiting for a call slot: for callers that are
    /// already on a blocking thread (the benchmarks measure the call machinery with it).
    pub fn handle_webhook_blocking(
        &self,
        sandbox: &Sandbox,
        channel: &str,
        req: &wit::HttpRequest,
        settings: &Arc<Vec<(String, String)>>,
    ) -> Result<Result<wit::WebhookOutcome, wit::WebhookError>, PluginError> {
        let channel: Arc<str> = channel.into();
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(channel.clone()),
        };
        sandbox.run_pooled_blocking(
            &self.pool,
            &channel,
            &ctx,
            "handle-webhook",
            |store| self.pre.instantiate(store),
            |i: &ChannelGuest, s| i.handle_webhook(s, req, settings),
        )
    }

    /// `handle-webhook`.
    pub async fn handle_webhook(
        &self,
        sandbox: &Arc<Sandbox>,
        channel: &str,
        req: wit::HttpRequest,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<wit::WebhookOutcome, wit::WebhookError>, PluginError> {
        self.call(sandbox, channel, "handle-webhook", move |i, s| {
            i.handle_webhook(s, &req, &settings)
        })
        .await
    }

    /// `prepare-send`.
    pub async fn prepare_send(
        &self,
        sandbox: &Arc<Sandbox>,
        channel: &str,
        msg: wit::OutboundMessage,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<wit::HttpRequest, wit::SendError>, PluginError> {
        self.call(sandbox, channel, "prepare-send", move |i, s| {
            i.prepare_send(s, &msg, &settings)
        })
        .await
    }

    /// `read-send-response`.
    pub async fn read_send_response(
        &self,
        sandbox: &Arc<Sandbox>,
        channel: &str,
        resp: wit::HttpResponse,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<String, wit::SendError>, PluginError> {
        self.call(sandbox, channel, "read-send-response", move |i, s| {
            i.read_send_response(s, &resp, &settings)
        })
        .await
    }
}

impl ChannelPlugin {
    /// `prepare-token`.
    pub async fn prepare_token(
        &self,
        sandbox: &Arc<Sandbox>,
        channel: &str,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<Option<wit::HttpRequest>, wit::SendError>, PluginError> {
        self.call(sandbox, channel, "prepare-token", move |i, s| {
            i.prepare_token(s, &settings)
        })
        .await
    }

    /// `read-token-response`.
    pub async fn read_token_response(
        &self,
        sandbox: &Arc<Sandbox>,
        channel: &str,
        resp: wit::HttpResponse,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<wit::TokenGrant, wit::SendError>, PluginError> {
        self.call(sandbox, channel, "read-token-response", move |i, s| {
            i.read_token_response(s, &resp, &settings)
        })
        .await
    }

    /// `prepare-check`.
    pub async fn prepare_check(
        &self,
        sandbox: &Arc<Sandbox>,
        channel: &str,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<Option<wit::HttpRequest>, wit::SendError>, PluginError> {
        self.call(sandbox, channel, "prepare-check", move |i, s| {
            i.prepare_check(s, &settings)
        })
        .await
    }

    /// `read-check-response`.
    pub async fn read_check_response(
        &self,
        sandbox: &Arc<Sandbox>,
        channel: &str,
        resp: wit::HttpResponse,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<(), wit::SendError>, PluginError> {
        self.call(sandbox, channel, "read-check-response", move |i, s| {
            i.read_check_response(s, &resp, &settings)
        })
        .await
    }
}

impl RouterPlugin {
    /// The instances calls of this plugin have created and keep idle, per queue.
    pub fn instances(&self) -> &InstancePool<RouterGuest> {
        &self.pool
    }

    /// [`RouterPlugin::decide`] on this thread, without waiting for a call slot: for callers
    /// that are already on a blocking thread (the benchmarks measure the call machinery with it).
    pub fn decide_blocking(
        &self,
        sandbox: &Sandbox,
        work: &wit::WaitingWork,
        agents: &[wit::AgentState],
    ) -> Result<wit::Decision, PluginError> {
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: None,
        };
        let queue: Arc<str> = work.queue.as_str().into();
        sandbox.run_pooled_blocking(
            &self.pool,
            &queue,
            &ctx,
            "decide",
            |store| self.pre.instantiate(store),
            |instance: &RouterGuest, store| instance.decide(store, work, agents),
        )
    }

    /// `decide`, on an instance kept for the work's queue (or a new one).
    pub async fn decide(
        &self,
        sandbox: &Arc<Sandbox>,
        work: wit::WaitingWork,
        agents: Vec<wit::AgentState>,
    ) -> Result<wit::Decision, PluginError> {
        let pre = self.pre.clone();
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: None,
        };
        let queue: Arc<str> = work.queue.as_str().into();
        sandbox
            .run_pooled(
                &self.pool,
                queue,
                ctx,
                "decide",
                move |store| pre.instantiate(store),
                move |instance: &RouterGuest, store| instance.decide(store, &work, &agents),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn contract_compatibility_follows_semver_tracks() {
        assert!(compatible(&v("0.1.0"), &v("0.1.0")));
        assert!(compatible(&v("0.1.3"), &v("0.1.0")));
        assert!(
            !compatible(&v("0.1.0"), &v("0.1.3")),
            "newer patch than the host"
        );
        assert!(!compatible(&v("0.1.0"), &v("0.0.1")));
        assert!(!compatible(&v("0.1.0"), &v("0.2.0")));
        assert!(!compatible(&v("0.1.0"), &v("1.0.0")));
        assert!(compatible(&v("1.4.0"), &v("1.2.7")));
        assert!(!compatible(&v("1.4.0"), &v("2.0.0")));
        assert!(!compatible(&v("0.1.0"), &v("0.1.0-rc1")));
    }

    #[test]
    fn wit_declares_the_host_contract_version() {
        let wit = include_str!("../../../wit/plugin.wit");
        assert!(wit.contains(&format!("package plugboard:plugin@{CONTRACT_VERSION};")));
    }

    mod reuse {
        use super::super::*;
        use crate::clock::Clock;
        use crate::config::LimitsConfig;
        use crate::runtime::sandbox::{InstanceReuse, SandboxOptions};

        fn sandbox(reuse: InstanceReuse) -> Arc<Sandbox> {
            let limits = LimitsConfig {
                call_timeout_ms: 100,
                memory_mib: 32,
                ..LimitsConfig::default()
            };
            let options = SandboxOptions {
                reuse,
                ..SandboxOptions::default()
            };
            Arc::new(Sandbox::with_options(limits, Clock::System, options).unwrap())
        }

        fn channel(sandbox: &Sandbox, name: &str, bytes: &[u8]) -> Arc<ChannelPlugin> {
            let cache = tempfile::tempdir().unwrap();
            match load_one(sandbox, name, PluginSource::Bundled, bytes, cache.path()) {
                Ok(Loaded::Channel(p)) => Arc::from(p),
                _ => panic!("{name} is not a channel plugin"),
            }
        }

        fn bundled(name: &str) -> &'static [u8] {
            plugboard_artifacts::BUNDLED
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
        }

        fn guest(name: &str) -> Vec<u8> {
            std::fs::read(plugboard_artifacts::test_plugin(name)).unwrap()
        }

        fn request() -> wit::HttpRequest {
            wit::HttpRequest {
                method: "POST".into(),
                url: "https://hooks.example.com/webhooks/sms".into(),
                headers: vec![],
                body: b"From=%2B14155550100&Body=hi".to_vec(),
            }
        }

        async fn webhook(
            plugin: &ChannelPlugin,
            sandbox: &Arc<Sandbox>,
            channel: &str,
        ) -> Result<Result<wit::WebhookOutcome, wit::WebhookError>, PluginError> {
            plugin
                .handle_webhook(sandbox, channel, request(), Arc::new(vec![]))
                .await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_instance_serves_many_calls_of_one_channel_instance() {
            let sandbox = sandbox(InstanceReuse::default());
            let plugin = channel(&sandbox, "twilio-sms", bundled("twilio-sms"));
            for _ in 0..5 {
                // No signature: the plugin answers with a contract error, a successful call.
                assert!(webhook(&plugin, &sandbox, "a").await.unwrap().is_err());
            }
            assert_eq!(plugin.instances().instantiations(), 1);
            assert_eq!(plugin.instances().idle("a"), 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_channel_instances_never_share_an_instance() {
            let sandbox = sandbox(InstanceReuse::default());
            let plugin = channel(&sandbox, "twilio-sms", bundled("twilio-sms"));
            for round in 0..3 {
                for name in ["a", "b"] {
                    webhook(&plugin, &sandbox, name).await.unwrap().unwrap_err();
                }
                assert_eq!(plugin.instances().instantiations(), 2, "round {round}");
            }
            assert_eq!(plugin.instances().idle("a"), 1);
            assert_eq!(plugin.instances().idle("b"), 1);
            assert_eq!(plugin.instances().idle("c"), 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fresh_mode_instantiates_for_every_call() {
            let sandbox = sandbox(InstanceReuse::FRESH);
            let plugin = channel(&sandbox, "twilio-sms", bundled("twilio-sms"));
            for _ in 0..3 {
                webhook(&plugin, &sandbox, "a").await.unwrap().unwrap_err();
            }
            assert_eq!(plugin.instances().instantiations(), 3);
            assert_eq!(plugin.instances().idle("a"), 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_instance_is_retired_after_max_calls() {
            let sandbox = sandbox(InstanceReuse {
                max_calls: 3,
                ..InstanceReuse::default()
            });
            let plugin = channel(&sandbox, "twilio-sms", bundled("twilio-sms"));
            for _ in 0..7 {
                webhook(&plugin, &sandbox, "a").await.unwrap().unwrap_err();
            }
            assert_eq!(plugin.instances().instantiations(), 3);
        }

        /// `describe` succeeds on the trap guest and every other export traps, so one pooled
        /// instance can serve calls and then trap.
        #[test]
        fn a_trapped_instance_is_dropped_and_never_reused() {
            let sandbox = sandbox(InstanceReuse::default());
            let plugin = channel(&sandbox, "trap", &guest("trap"));
            let pool = InstancePool::<ChannelGuest>::new();
            let key: Arc<str> = "t".into();
            let ctx = CallContext {
                plugin: "trap".into(),
                channel: Some(key.clone()),
            };
            let describe = || {
                sandbox.run_pooled_blocking(
                    &pool,
                    &key,
                    &ctx,
                    "describe",
                    |s| plugin.pre.instantiate(s),
                    |i: &ChannelGuest, s| i.describe(s),
                )
            };
            describe().unwrap();
            describe().unwrap();
            assert_eq!(pool.instantiations(), 1, "reused while healthy");
            assert_eq!(pool.idle("t"), 1);

            let settings: Vec<(String, String)> = vec![];
            let err = sandbox
                .run_pooled_blocking(
                    &pool,
                    &key,
                    &ctx,
                    "handle-webhook",
                    |s| plugin.pre.instantiate(s),
                    |i: &ChannelGuest, s| i.handle_webhook(s, &request(), &settings),
                )
                .unwrap_err();
            assert!(matches!(err, PluginError::Trap { .. }), "{err}");
            assert!(err.to_string().contains("deliberate panic"), "{err}");
            assert_eq!(pool.idle("t"), 0, "the trapped instance is gone");

            describe().unwrap();
            assert_eq!(pool.instantiations(), 2, "a new instance after the trap");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn failed_calls_keep_no_instance_and_healthy_channels_go_on() {
            let sandbox = sandbox(InstanceReuse::default());
            let healthy = channel(&sandbox, "twilio-sms", bundled("twilio-sms"));
            for (name, check) in [
                (
                    "trap",
                    (|e: &PluginError| matches!(e, PluginError::Trap { .. })) as fn(&_) -> bool,
                ),
                ("infinite-loop", |e| {
                    matches!(e, PluginError::Timeout { .. })
                }),
                ("memory-bomb", |e| {
                    matches!(e, PluginError::OutOfMemory { .. })
                }),
            ] {
                let plugin = channel(&sandbox, name, &guest(name));
                for _ in 0..2 {
                    let err = webhook(&plugin, &sandbox, name).await.unwrap_err();
                    assert!(check(&err), "{name}: {err}");
                    assert_eq!(plugin.instances().idle(name), 0, "{name}");
                    webhook(&healthy, &sandbox, "sms")
                        .await
                        .unwrap()
                        .unwrap_err();
                }
                assert_eq!(plugin.instances().instantiations(), 2, "{name}");
            }
            assert_eq!(healthy.instances().instantiations(), 1);
        }
    }

    #[test]
    fn incompatible_error_names_both_versions() {
        let err = check_contract(&v("0.0.1")).unwrap_err().to_string();
        assert!(err.contains("plugboard:plugin@0.0.1"), "{err}");
        assert!(
            err.contains(&format!("plugboard:plugin@{CONTRACT_VERSION}")),
            "{err}"
        );
    }
}
