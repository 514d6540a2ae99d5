//! One plugin call: a fresh store with a memory cap, a deadline, captured stderr and the host
//! imports, and the mapping of whatever went wrong to a [`PluginError`].
//!
//! A fresh store per call is the safe default: nothing leaks between calls, and a trapped or
//! timed-out instance is dropped with its store (a trapped instance cannot be entered again).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Digest;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{channel, wit, wit_host};
use crate::config::LimitsConfig;
use crate::engine::PluginEngine;

/// The most bytes of a plugin's stderr kept per call.
const STDERR_CAPTURE: usize = 16 * 1024;
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
}

/// Where the host clock reads from: the real clock, or a fixed instant for replays.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant, in milliseconds since the epoch.
    Fixed(u64),
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_millis(self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Clock::Fixed(ms) => ms,
        }
    }
}

/// Caps the total linear memory and table sizes of one store, and remembers whether a growth was
/// refused so the resulting trap can be reported as a memory limit rather than a crash.
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

/// The state of one store: WASI with nothing granted, the limiter, captured stderr, and who is
/// calling (for log lines).
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    stderr: MemoryOutputPipe,
    plugin: Arc<str>,
    channel: Option<Arc<str>>,
    clock: Clock,
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

/// Runs plugin calls: owns the engine, the linker with the host imports, the limits and the
/// semaphore that bounds how many calls run at once (a full host waits, it does not fail).
pub struct Sandbox {
    engine: PluginEngine,
    linker: Linker<HostState>,
    limits: LimitsConfig,
    slots: Arc<Semaphore>,
    clock: Clock,
}

/// The most plugin calls running at once; the rest wait for a slot.
const MAX_CONCURRENT_CALLS: usize = 64;

impl Sandbox {
    /// Builds the engine and the linker: WASI with an empty context (no preopens, no
    /// environment, no sockets) plus the `host` interface.
    pub fn new(limits: LimitsConfig, clock: Clock) -> anyhow::Result<Sandbox> {
        let engine = PluginEngine::new()?;
        let mut linker = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        channel::Channel::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        Ok(Sandbox {
            engine,
            linker,
            limits,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
            clock,
        })
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

    /// A fresh store for one call, with its limits and deadline armed.
    pub fn new_store(&self, ctx: &CallContext) -> Store<HostState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: CallLimiter {
                cap: self.limits.memory_bytes(),
                used: 0,
                denied: false,
            },
            stderr,
            plugin: ctx.plugin.clone(),
            channel: ctx.channel.clone(),
            clock: self.clock,
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(PluginEngine::deadline_ticks(self.limits.call_timeout()));
        store.epoch_deadline_trap();
        store
    }

    /// Runs `call` in a fresh store on a blocking thread, waiting for a call slot first.
    /// `call` gets the store and instantiates the plugin itself.
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
        let _permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PluginError::Busy {
                plugin: ctx.plugin.to_string(),
            })?;
        let this = self.clone();
        let plugin = ctx.plugin.to_string();
        tokio::task::spawn_blocking(move || this.run_blocking(&ctx, function, call))
            .await
            .unwrap_or_else(|e| {
                Err(PluginError::Trap {
                    plugin,
                    function,
                    reason: format!("host task failed: {e}"),
                })
            })
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
        let result = call(&mut store);
        let stderr = store.data().stderr.contents();
        if !stderr.is_empty() {
            let text = String::from_utf8_lossy(&stderr);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::warn!(plugin = %ctx.plugin, channel = ctx.channel.as_deref().unwrap_or("-"), function, "plugin stderr: {line}");
            }
        }
        result.map_err(|err| self.classify(ctx, function, &store, err, &stderr))
    }

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
