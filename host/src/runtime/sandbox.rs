//! One plugin call: a store with a memory cap, a deadline, a bound on what the host lifts out of
//! it, captured stdout and stderr and the host imports, and the mapping of whatever went wrong
//! to a [`PluginError`].
//!
//! Calls wait for a slot: at most [`MAX_CONCURRENT_CALLS`] run at once in the host, and at most
//! [`MAX_CALLS_PER_KEY`] of them for one channel instance (or one router plugin), so a channel
//! whose plugin hangs until its deadline on every call cannot take the slots other channels
//! need.
//!
//! Two ways to get the store and instance a call runs in:
//!
//! * **fresh** ([`Sandbox::run`], [`Sandbox::run_blocking`]): a new store and instance per call.
//!   Nothing leaks between calls; it costs one instantiation (tens of µs) per call.
//! * **bounded reuse** ([`Sandbox::run_pooled`], the default for plugin calls): an
//!   [`InstancePool`] per plugin keeps a few idle (store, instance) pairs per key (the channel
//!   instance's name, or the queue for routers), never shared between keys. A call takes one
//!   or instantiates; the pair goes back only if the call returned without a trap, a deadline
//!   hit or a refused memory growth, and it is retired after [`InstanceReuse::max_calls`]
//!   calls. Before each reuse the deadline is re-armed, the output captures are empty and
//!   the limiter's "denied" flag is clear; the limiter keeps counting the memory the store
//!   already holds, so the cap still bounds growth. Guest globals persist between calls on one
//!   key. [`InstanceReuse::FRESH`] turns reuse off.
//!
//! A trapped or timed-out instance is always dropped with its store (a trapped instance cannot
//! be entered again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Digest;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::clock::Clock;
use crate::config::LimitsConfig;
use crate::metrics::{CallOutcome, Metrics};
use crate::runtime::bindings::{channel, wit, wit_host};
use crate::runtime::engine::{Allocator, EngineOptions, POOL_COMPONENT_INSTANCES, PluginEngine};
use crate::runtime::wasi::{CallDeadline, CallOutput};
/// The most bytes one `log` call may carry.
const MAX_LOG_BYTES: usize = 4096;
/// The most random bytes one `random-bytes` call returns.
const MAX_RANDOM_BYTES: u32 = 1024;

/// Why a plugin call failed (as opposed to the plugin answering with an error of the contract).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The plugin trapped: a panic, `unreachable`, an out-of-bounds access.
    #[error("plugin {plugin} trapped in {function}: {reason}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The export called.
        function: &'static str,
        /// The trap and the tail of the plugin's stderr (a Rust panic message lands there).
        reason: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin {plugin} exceeded its {deadline:?} deadline in {function}")]
    Timeout {
        /// The plugin's name.
        plugin: String,
        /// The export called.
        function: &'static str,
        /// The deadline it had.
        deadline: Duration,
    },
    /// The call tried to grow memory past the cap.
    #[error("plugin {plugin} tried to use more than {cap_mib} MiB of memory in {function}")]
    OutOfMemory {
        /// The plugin's name.
        plugin: String,
        /// The export called.
        function: &'static str,
        /// The cap.
        cap_mib: u64,
    },
    /// Too many calls are already running and none finished in time.
    #[error("plugin {plugin}: host busy, no call slot free")]
    Busy {
        /// The plugin's name.
        plugin: String,
    },
    /// The call's results (or one host import's arguments) were larger than the host lifts
    /// from one call.
    #[error(
        "plugin {plugin} returned more than the {limit_mib} MiB the host takes from one call in {function}"
    )]
    OutputTooLarge {
        /// The plugin's name.
        plugin: String,
        /// The export called.
        function: &'static str,
        /// The bound, in MiB.
        limit_mib: usize,
    },
}

/// The metrics outcome of a failed call.
fn outcome_of(e: &PluginError) -> CallOutcome {
    match e {
        PluginError::Trap { .. } => CallOutcome::Trap,
        PluginError::Timeout { .. } => CallOutcome::Timeout,
        PluginError::OutOfMemory { .. } => CallOutcome::OutOfMemory,
        PluginError::Busy { .. } => CallOutcome::Busy,
        PluginError::OutputTooLarge { .. } => CallOutcome::OutputTooLarge,
    }
}

impl PluginError {
    /// A short reason fit to show a caller who is not an operator: the kind of failure, none of
    /// the guest's own text (panic messages, backtraces, stderr stay in the log).
    pub fn public_reason(&self) -> &'static str {
        match self {
            PluginError::Trap { .. } => "the channel's plugin failed",
            PluginError::Timeout { .. } => "the channel's plugin timed out",
            PluginError::OutOfMemory { .. } => "the channel's plugin ran out of memory",
            PluginError::Busy { .. } => "the host is busy; retry later",
            PluginError::OutputTooLarge { .. } => "the channel's plugin answered too much",
        }
    }
}

/// The most WASI resources (pollables, streams) one store may hold at once.
const MAX_HANDLES: usize = 1024;

/// The most bytes the host lifts out of a plugin per call: the results of one export call, or
/// the arguments of one host import (wasmtime's host-call fuel). It bounds what a plugin can
/// make the host allocate, whatever its results alias (a list of 4,096 strings that all point at
/// one 1 MiB buffer would otherwise lift as 4 GiB).
pub const MAX_LIFTED_BYTES: usize = 4 << 20;

/// Caps the total linear memory and table sizes of one store, and remembers whether a growth was
/// refused so the resulting trap can be reported as a memory limit rather than a crash. `used`
/// is the memory the store holds, so it carries over when the store is reused; `denied` is
/// per call.
struct CallLimiter {
    cap: usize,
    used: usize,
    denied: bool,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        if self.used.saturating_add(grow) > self.cap {
            self.denied = true;
            return Ok(false);
        }
        self.used += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The state of one store: WASI with nothing granted, the limiter, captured output, the call's
/// deadline, and who is calling (for log lines).
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    output: CallOutput,
    deadline: Instant,
    plugin: Arc<str>,
    channel: Option<Arc<str>>,
    clock: Clock,
}

impl CallDeadline for HostState {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for HostState {}

impl wit_host::Host for HostState {
    fn log(&mut self, level: wit_host::Level, message: String, fields: Vec<(String, String)>) {
        let mut line = truncate(&message, MAX_LOG_BYTES).to_owned();
        for (k, v) in &fields {
            if line.len() >= MAX_LOG_BYTES {
                break;
            }
            line.push_str(&format!(" {k}={v:?}"));
        }
        let plugin = &*self.plugin;
        let channel = self.channel.as_deref().unwrap_or("-");
        match level {
            wit_host::Level::Trace => tracing::trace!(plugin, channel, "{line}"),
            wit_host::Level::Debug => tracing::debug!(plugin, channel, "{line}"),
            wit_host::Level::Info => tracing::info!(plugin, channel, "{line}"),
            wit_host::Level::Warn => tracing::warn!(plugin, channel, "{line}"),
            wit_host::Level::Error => tracing::error!(plugin, channel, "{line}"),
        }
    }

    fn hmac_sha1(&mut self, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(&data);
        mac.finalize().into_bytes().to_vec()
    }

    fn hmac_sha256(&mut self, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(&data);
        mac.finalize().into_bytes().to_vec()
    }

    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        sha2::Sha256::digest(&data).to_vec()
    }

    fn now_millis(&mut self) -> u64 {
        self.clock.now_millis()
    }

    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        let mut out = vec![0u8; len.min(MAX_RANDOM_BYTES) as usize];
        rand::rng().fill_bytes(&mut out);
        out
    }
}

impl crate::runtime::bindings::v0_2::wit::Host for HostState {}

/// The 0.2.0 `host` interface: the same functions as the current one.
impl crate::runtime::bindings::v0_2::channel::plugboard::plugin::host::Host for HostState {
    fn log(
        &mut self,
        level: crate::runtime::bindings::v0_2::channel::plugboard::plugin::host::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        use crate::runtime::bindings::v0_2::channel::plugboard::plugin::host::Level as Old;
        let level = match level {
            Old::Trace => wit_host::Level::Trace,
            Old::Debug => wit_host::Level::Debug,
            Old::Info => wit_host::Level::Info,
            Old::Warn => wit_host::Level::Warn,
            Old::Error => wit_host::Level::Error,
        };
        wit_host::Host::log(self, level, message, fields)
    }

    fn hmac_sha1(&mut self, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        wit_host::Host::hmac_sha1(self, key, data)
    }

    fn hmac_sha256(&mut self, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        wit_host::Host::hmac_sha256(self, key, data)
    }

    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        wit_host::Host::sha256(self, data)
    }

    fn now_millis(&mut self) -> u64 {
        wit_host::Host::now_millis(self)
    }

    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        wit_host::Host::random_bytes(self, len)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Who a call is for, for limits and log lines.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// The channel instance, when the call serves one.
    pub channel: Option<Arc<str>>,
}

/// Whether and how plugin instances are reused between calls (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Whether pooled calls reuse idle instances; `false` gives every call a fresh store and
    /// instance.
    pub enabled: bool,
    /// Calls one instance serves before it is retired.
    pub max_calls: u32,
    /// Idle instances kept per key (per channel instance, or per queue for routers).
    pub max_idle: usize,
}

impl InstanceReuse {
    /// A fresh store and instance for every call.
    pub const FRESH: InstanceReuse = InstanceReuse {
        enabled: false,
        max_calls: 1,
        max_idle: 0,
    };
}

impl Default for InstanceReuse {
    /// Reuse on: up to 1,000 calls per instance and 4 idle instances per key.
    fn default() -> Self {
        InstanceReuse {
            enabled: true,
            max_calls: 1000,
            max_idle: 4,
        }
    }
}

/// How a [`Sandbox`] is built, beyond its limits and clock.
#[derive(Debug, Clone, Copy)]
pub struct SandboxOptions {
    /// Instance reuse for [`Sandbox::run_pooled`].
    pub reuse: InstanceReuse,
    /// The engine's instance allocator.
    pub allocator: Allocator,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            reuse: InstanceReuse::default(),
            allocator: Allocator::Pooling,
        }
    }
}

/// An idle store with its instance, and how many calls it has served.
struct Warm<I> {
    store: Store<HostState>,
    instance: I,
    calls: u32,
    budget: IdleBudgetToken,
}

/// One unit of the sandbox-wide idle-instance budget, given back when the idle instance is
/// dropped (retired, evicted, or taken for a call and then dropped).
struct IdleBudgetToken(Option<Arc<AtomicUsize>>);

impl Drop for IdleBudgetToken {
    fn drop(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Idle (store, instance) pairs of one plugin, by key. Keys are channel-instance names (or
/// queue names for routers), so two channel instances of one plugin never share an instance.
pub struct InstancePool<I> {
    idle: Mutex<HashMap<Arc<str>, Vec<Warm<I>>>>,
    instantiations: AtomicU64,
}

impl<I> Default for InstancePool<I> {
    fn default() -> Self {
        InstancePool {
            idle: Mutex::new(HashMap::new()),
            instantiations: AtomicU64::new(0),
        }
    }
}

impl<I> InstancePool<I> {
    /// An empty pool.
    pub fn new() -> InstancePool<I> {
        InstancePool::default()
    }

    /// How many instances calls through this pool have created.
    pub fn instantiations(&self) -> u64 {
        self.instantiations.load(Ordering::Relaxed)
    }

    /// How many idle instances `key` has.
    pub fn idle(&self, key: &str) -> usize {
        self.lock().get(key).map_or(0, Vec::len)
    }

    /// Drops every idle instance.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Vec<Warm<I>>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, key: &str) -> Option<Warm<I>> {
        self.lock().get_mut(key).and_then(Vec::pop)
    }
}

/// Runs plugin calls: owns the engine, the linker with the host imports, the limits and the
/// semaphore that bounds how many calls run at once (a full host waits, it does not fail).
pub struct Sandbox {
    engine: PluginEngine,
    linker: Linker<HostState>,
    limits: LimitsConfig,
    slots: Arc<Semaphore>,
    key_slots: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
    clock: Clock,
    reuse: InstanceReuse,
    idle_total: Arc<AtomicUsize>,
    metrics: Metrics,
}

/// The most plugin calls running at once; the rest wait for a slot.
pub const MAX_CONCURRENT_CALLS: usize = 64;

/// The most calls running at once for one channel instance (or router plugin): a quarter of
/// the host's slots, so one channel whose every call runs to its deadline leaves the others
/// three quarters.
pub const MAX_CALLS_PER_KEY: usize = MAX_CONCURRENT_CALLS / 4;

/// How long a call waits for a slot before it fails as [`PluginError::Busy`].
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// The most idle instances kept across all pools of one sandbox. With the running calls and
/// headroom for calls outside the semaphore it stays below the engine's instance pool.
const MAX_IDLE_TOTAL: usize = POOL_COMPONENT_INSTANCES as usize - MAX_CONCURRENT_CALLS - 64;
const _: () = assert!(MAX_IDLE_TOTAL + MAX_CONCURRENT_CALLS < POOL_COMPONENT_INSTANCES as usize);

impl Sandbox {
    /// Builds the engine and the linker: WASI with an empty context (no preopens, no
    /// environment, no sockets) plus the `host` interface. Instance reuse is on and the
    /// pooling allocator is used ([`SandboxOptions::default`]).
    pub fn new(limits: LimitsConfig, clock: Clock) -> anyhow::Result<Sandbox> {
        Sandbox::with_options(limits, clock, SandboxOptions::default())
    }

    /// [`Sandbox::new`] with explicit reuse and allocator choices (the benchmarks compare
    /// them; tests turn reuse off to check the fresh path).
    pub fn with_options(
        limits: LimitsConfig,
        clock: Clock,
        options: SandboxOptions,
    ) -> anyhow::Result<Sandbox> {
        let engine = PluginEngine::with_options(EngineOptions {
            allocator: options.allocator,
            memory_bytes: limits.memory_bytes(),
        })?;
        let mut linker = Linker::new(engine.engine());
        crate::runtime::wasi::add_to_linker(&mut linker)?;
        channel::Channel::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        crate::runtime::bindings::v0_2::channel::Channel::add_to_linker::<_, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        Ok(Sandbox {
            engine,
            linker,
            limits,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
            key_slots: Mutex::new(HashMap::new()),
            clock,
            reuse: options.reuse,
            idle_total: Arc::new(AtomicUsize::new(0)),
            metrics: Metrics::off(),
        })
    }

    /// This sandbox recording its calls, instantiations and memory into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Sandbox {
        self.metrics = metrics;
        self
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        self.engine.engine()
    }

    /// The linker plugins are instantiated with.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// The per-call limits.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// The instance-reuse policy of [`Sandbox::run_pooled`].
    pub fn reuse(&self) -> InstanceReuse {
        self.reuse
    }

    /// The engine's instance allocator.
    pub fn allocator(&self) -> Allocator {
        self.engine.allocator()
    }

    /// A fresh store for one call, with its limits and deadline armed.
    pub fn new_store(&self, ctx: &CallContext) -> Store<HostState> {
        let output = CallOutput::new();
        let wasi = crate::runtime::wasi::context(self.clock, &output);
        let mut table = ResourceTable::new();
        // Handles a guest opens (pollables, streams) live in host memory the memory cap does
        // not see: a guest that never drops them must run out of handles, not the host of memory.
        table.set_max_capacity(MAX_HANDLES);
        let state = HostState {
            wasi,
            table,
            limiter: CallLimiter {
                cap: self.limits.memory_bytes(),
                used: 0,
                denied: false,
            },
            output,
            deadline: Instant::now() + self.limits.call_timeout(),
            plugin: ctx.plugin.clone(),
            channel: ctx.channel.clone(),
            clock: self.clock,
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(MAX_LIFTED_BYTES);
        store.set_epoch_deadline(PluginEngine::deadline_ticks(self.limits.call_timeout()));
        store.epoch_deadline_trap();
        store
    }

    /// Waits for a call slot, then runs `f` where it may block without stalling the runtime
    /// ([`Sandbox::slotted`]), and records the call's outcome and time in the metrics.
    async fn on_call_slot<R, F>(
        self: &Arc<Self>,
        ctx: CallContext,
        function: &'static str,
        f: F,
    ) -> Result<R, PluginError>
    where
        R: Send + 'static,
        F: FnOnce(&Sandbox, &CallContext) -> Result<R, PluginError> + Send + 'static,
    {
        let busy = || PluginError::Busy {
            plugin: ctx.plugin.to_string(),
        };
        let key = ctx.channel.clone().unwrap_or_else(|| ctx.plugin.clone());
        let key_slots = self.key_slots(key);
        let permits = tokio::time::timeout(SLOT_WAIT, async {
            let key = key_slots.acquire_owned().await;
            let host = self.slots.clone().acquire_owned().await;
            (key, host)
        })
        .await;
        let _permits = match permits {
            Ok((Ok(key), Ok(host))) => (key, host),
            _ => {
                tracing::warn!(plugin = %ctx.plugin, channel = ctx.channel.as_deref().unwrap_or("-"), function, "no call slot free within {SLOT_WAIT:?}");
                self.metrics
                    .plugin_call(&ctx.plugin, function, CallOutcome::Busy, None);
                return Err(busy());
            }
        };
        let plugin = ctx.plugin.clone();
        let started = Instant::now();
        let result = self.slotted(ctx, function, f).await;
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(e) => outcome_of(e),
        };
        self.metrics
            .plugin_call(&plugin, function, outcome, Some(started.elapsed()));
        result
    }

    /// The call of [`Sandbox::on_call_slot`] once it holds its slots, where it may block.
    ///
    /// On a multi-thread runtime that is this thread, through `block_in_place`: tokio hands
    /// this worker's queue to another thread and the call starts at once, with no thread
    /// hand-off on the call's path (the hand-off through `spawn_blocking` added a median of
    /// about 50 µs per call measured from a worker on the 2-core machine, against under 1 µs
    /// this way; see BENCHMARKS.md). Elsewhere (a current-thread runtime, as `plugboard replay` and
    /// tests use) it is a `spawn_blocking` thread. Either way a long call (up to its deadline)
    /// never holds up other tasks.
    async fn slotted<R, F>(
        self: &Arc<Self>,
        ctx: CallContext,
        function: &'static str,
        f: F,
    ) -> Result<R, PluginError>
    where
        R: Send + 'static,
        F: FnOnce(&Sandbox, &CallContext) -> Result<R, PluginError> + Send + 'static,
    {
        let plugin = ctx.plugin.to_string();
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            return tokio::task::block_in_place(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self, &ctx)))
            })
            .unwrap_or_else(|_| {
                Err(PluginError::Trap {
                    plugin,
                    function,
                    reason: "host task panicked".into(),
                })
            });
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this, &ctx))
            .await
            .unwrap_or_else(|e| {
                Err(PluginError::Trap {
                    plugin,
                    function,
                    reason: format!("host task failed: {e}"),
                })
            })
    }

    /// The semaphore that bounds the calls of one channel instance (or router plugin).
    fn key_slots(&self, key: Arc<str>) -> Arc<Semaphore> {
        let mut slots = self.key_slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_CALLS_PER_KEY)))
            .clone()
    }

    /// Runs `call` in a fresh store where it may block (see `on_call_slot`), waiting for a call
    /// slot first. `call` gets the store and instantiates the plugin itself.
    pub async fn run<R, F>(
        self: &Arc<Self>,
        ctx: CallContext,
        function: &'static str,
        call: F,
    ) -> Result<R, PluginError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Store<HostState>) -> wasmtime::Result<R> + Send + 'static,
    {
        self.on_call_slot(ctx, function, move |this, ctx| {
            this.run_blocking(ctx, function, call)
        })
        .await
    }

    /// Runs `call` in a fresh store on this thread.
    pub fn run_blocking<R, F>(
        &self,
        ctx: &CallContext,
        function: &'static str,
        call: F,
    ) -> Result<R, PluginError>
    where
        F: FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    {
        let mut store = self.new_store(ctx);
        // A fresh store always instantiates the plugin inside `call`.
        self.metrics.plugin_instantiated(&ctx.plugin);
        let result = call(&mut store);
        self.metrics
            .plugin_memory(&ctx.plugin, store.data().limiter.used);
        let stderr = self.drain_stderr(ctx, function, &store);
        result.map_err(|err| self.classify(ctx, function, &store, err, &stderr))
    }

    /// Runs `call` on an instance of `pool` for `key` where it may block (as [`Sandbox::run`]
    /// does), waiting for a call slot first: an idle instance of that key when there is one (and reuse is on), else a new
    /// one from `instantiate`. See the module docs for when the instance goes back.
    pub async fn run_pooled<I, R, N, F>(
        self: &Arc<Self>,
        pool: &Arc<InstancePool<I>>,
        key: Arc<str>,
        ctx: CallContext,
        function: &'static str,
        instantiate: N,
        call: F,
    ) -> Result<R, PluginError>
    where
        I: Send + 'static,
        R: Send + 'static,
        N: FnOnce(&mut Store<HostState>) -> wasmtime::Result<I> + Send + 'static,
        F: FnOnce(&I, &mut Store<HostState>) -> wasmtime::Result<R> + Send + 'static,
    {
        let pool = pool.clone();
        self.on_call_slot(ctx, function, move |this, ctx| {
            this.run_pooled_blocking(&pool, &key, ctx, function, instantiate, call)
        })
        .await
    }

    /// [`Sandbox::run_pooled`] on this thread, without waiting for a call slot.
    pub fn run_pooled_blocking<I, R, N, F>(
        &self,
        pool: &InstancePool<I>,
        key: &Arc<str>,
        ctx: &CallContext,
        function: &'static str,
        instantiate: N,
        call: F,
    ) -> Result<R, PluginError>
    where
        N: FnOnce(&mut Store<HostState>) -> wasmtime::Result<I>,
        F: FnOnce(&I, &mut Store<HostState>) -> wasmtime::Result<R>,
    {
        let reused = if self.reuse.enabled {
            pool.take(key)
        } else {
            None
        };
        let mut warm = match reused {
            Some(mut warm) => {
                self.rearm(&mut warm.store);
                warm
            }
            None => {
                let mut store = self.new_store(ctx);
                pool.instantiations.fetch_add(1, Ordering::Relaxed);
                self.metrics.plugin_instantiated(&ctx.plugin);
                match instantiate(&mut store) {
                    Ok(instance) => Warm {
                        store,
                        instance,
                        calls: 0,
                        budget: IdleBudgetToken(None),
                    },
                    Err(err) => {
                        let stderr = self.drain_stderr(ctx, function, &store);
                        return Err(self.classify(ctx, function, &store, err, &stderr));
                    }
                }
            }
        };
        let result = call(&warm.instance, &mut warm.store);
        warm.calls += 1;
        self.metrics
            .plugin_memory(&ctx.plugin, warm.store.data().limiter.used);
        let stderr = self.drain_stderr(ctx, function, &warm.store);
        match result {
            Ok(value) => {
                // A refused growth the guest survived still leaves it in an unknown state.
                if !warm.store.data().limiter.denied {
                    self.put_back(pool, key, warm);
                }
                Ok(value)
            }
            // The trapped, interrupted or out-of-memory instance is dropped here, with its store.
            Err(err) => Err(self.classify(ctx, function, &warm.store, err, &stderr)),
        }
    }

    /// Makes a reused store ready for its next call: a full deadline from now and a clear
    /// "denied" flag (the output captures were emptied after the previous call).
    fn rearm(&self, store: &mut Store<HostState>) {
        store.set_epoch_deadline(PluginEngine::deadline_ticks(self.limits.call_timeout()));
        store.data_mut().deadline = Instant::now() + self.limits.call_timeout();
        store.data_mut().limiter.denied = false;
    }

    /// Returns a healthy instance to its key's idle list, unless it is due for retirement or
    /// the key or the sandbox already keeps as many idle instances as allowed.
    fn put_back<I>(&self, pool: &InstancePool<I>, key: &Arc<str>, mut warm: Warm<I>) {
        if !self.reuse.enabled || warm.calls >= self.reuse.max_calls {
            return;
        }
        if warm.budget.0.is_none() {
            if self.idle_total.fetch_add(1, Ordering::Relaxed) >= MAX_IDLE_TOTAL {
                self.idle_total.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            warm.budget = IdleBudgetToken(Some(self.idle_total.clone()));
        }
        let mut idle = pool.lock();
        let list = idle.entry(key.clone()).or_default();
        if list.len() < self.reuse.max_idle {
            list.push(warm);
        }
    }

    /// Takes what the plugin wrote to stdout and stderr during the call and logs it, line by
    /// line; returns the stderr part (a Rust panic message lands there).
    fn drain_stderr(
        &self,
        ctx: &CallContext,
        function: &'static str,
        store: &Store<HostState>,
    ) -> bytes::Bytes {
        let output = &store.data().output;
        let channel = ctx.channel.as_deref().unwrap_or("-");
        let stdout = output.stdout.take();
        for line in String::from_utf8_lossy(&stdout).lines() {
            if !line.trim().is_empty() {
                tracing::info!(plugin = %ctx.plugin, channel, function, "plugin stdout: {line}");
            }
        }
        let stderr = output.stderr.take();
        for line in String::from_utf8_lossy(&stderr).lines() {
            if !line.trim().is_empty() {
                tracing::warn!(plugin = %ctx.plugin, channel, function, "plugin stderr: {line}");
            }
        }
        stderr
    }

    /// Sorts a failed call into a [`PluginError`] and logs it in full.
    fn classify(
        &self,
        ctx: &CallContext,
        function: &'static str,
        store: &Store<HostState>,
        err: wasmtime::Error,
        stderr: &[u8],
    ) -> PluginError {
        let plugin = ctx.plugin.to_string();
        let error = if store.data().limiter.denied {
            PluginError::OutOfMemory {
                plugin,
                function,
                cap_mib: self.limits.memory_mib,
            }
        } else if format!("{err:#}").contains(HOSTCALL_FUEL_EXHAUSTED) {
            PluginError::OutputTooLarge {
                plugin,
                function,
                limit_mib: MAX_LIFTED_BYTES >> 20,
            }
        } else if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            PluginError::Timeout {
                plugin,
                function,
                deadline: self.limits.call_timeout(),
            }
        } else {
            let mut reason = match err.downcast_ref::<Trap>() {
                Some(trap) => trap.to_string(),
                None => format!("{err:#}"),
            };
            let tail = String::from_utf8_lossy(stderr);
            let tail = tail.trim();
            if !tail.is_empty() {
                let start = tail.len().saturating_sub(512);
                let start = (start..tail.len())
                    .find(|i| tail.is_char_boundary(*i))
                    .unwrap_or(tail.len());
                reason.push_str(&format!("; stderr: {}", &tail[start..]));
            }
            PluginError::Trap {
                plugin,
                function,
                reason,
            }
        };
        tracing::error!(plugin = %ctx.plugin, channel = ctx.channel.as_deref().unwrap_or("-"), function, "{error}");
        error
    }
}

/// Part of wasmtime's message when lifting ran out of host-call fuel (its error type is private).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_defaults_are_bounded() {
        let reuse = InstanceReuse::default();
        assert!(reuse.enabled);
        assert!(reuse.max_calls > 1 && reuse.max_idle > 0);
    }
}
