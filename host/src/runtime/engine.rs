//! Engine policy: how wasmtime is configured for untrusted plugins, in one place.
//!
//! * Cranelift (not Winch) compiles plugins: the 2026 advisories hit Winch, not x86-64 Cranelift.
//! * Time is bounded by epoch interruption with one ticker thread per engine (a thread per call
//!   costs orders of magnitude of throughput, wasmtime #11814). The tick is 10 ms, as in Spin.
//! * Memory is bounded per store by a limiter ([`crate::runtime::sandbox`]); with the pooling allocator
//!   every linear memory is also capped by its pool slot, sized from the same limit.
//! * Component-model concurrency is off: every plugin call is synchronous and short, and the
//!   async machinery only adds overhead to each call.
//! * Instances come from the pooling allocator by default ([`Allocator`] explains the sizes and
//!   the measurement behind the choice). The other [`Config`] knobs keep wasmtime's defaults:
//!   copy-on-write memory images (`memory_init_cow`) so instantiation maps the data segments
//!   instead of copying them, a 4 GiB reservation plus guard pages per memory so Cranelift elides
//!   bounds checks (explicit checks cost 1.2x-1.8x), lazy table initialization, and parallel
//!   compilation (the cold start compiles every plugin once, then the on-disk cache serves it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; deadlines are rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest wasm stack a plugin may use.
const MAX_WASM_STACK: usize = 512 * 1024;

/// Component instances the pool holds: the calls that may run at once plus the idle instances
/// the sandbox keeps for reuse, plus headroom for calls made outside the call semaphore (the
/// `describe` at load, `plugboard replay`). [`crate::runtime::sandbox`] keeps its budgets below this, so
/// a full pool means waiting for a call slot, never an instantiation error.
pub const POOL_COMPONENT_INSTANCES: u32 = 384;

/// Core instances per component: a Rust `wasm32-wasip2` component has its main module plus a
/// few small shim and fix-up modules for lowered imports.
const POOL_CORE_INSTANCES_PER_COMPONENT: u32 = 8;

/// Linear memories and tables per component in the pool (the main module's memory and
/// function table, and the shim module's table).
const POOL_MEMORIES_PER_COMPONENT: u32 = 2;

/// How instance memory, tables and metadata are allocated.
///
/// Measured on the 2-core development machine with `host/benches/webhook.rs` (BENCHMARKS.md):
/// a fresh-instance `handle-webhook` of `twilio-sms` takes a median 47 µs (p99 142 µs) with
/// pooling against 60 µs (p99 up to 2.5 ms, the `mmap`/`munmap` and TLB shootdowns of
/// on-demand allocation) without; with instance reuse both are the same (~16 µs), since
/// nothing is allocated per call. Pooling's costs are a large *virtual* reservation (768 memory
/// slots of 4 GiB plus guard, never committed) and a hard instance ceiling, which the sandbox's
/// call semaphore and idle-instance budget keep the host below. So pooling is the default; it
/// is faster where instantiation still happens (first call per channel instance, after a trap,
/// at retirement, fresh mode) and no slower elsewhere. On-demand stays for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// `InstanceAllocationStrategy::Pooling`, sized by [`POOL_COMPONENT_INSTANCES`] and with every
    /// memory slot capped at the per-store memory limit.
    Pooling,
    /// `InstanceAllocationStrategy::OnDemand`: `mmap` per instance.
    OnDemand,
}

/// How [`PluginEngine`] is built.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// The instance allocator.
    pub allocator: Allocator,
    /// The most linear memory one store may use, in bytes (the sandbox's memory limit); a pool
    /// slot is never larger.
    pub memory_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            allocator: Allocator::Pooling,
            memory_bytes: 64 << 20,
        }
    }
}

/// The process's one wasmtime engine plus the ticker that drives its deadlines.
pub struct PluginEngine {
    engine: Engine,
    allocator: Allocator,
    ticker_stop: Arc<AtomicBool>,
}

impl PluginEngine {
    /// Builds the engine with the default options and starts its epoch ticker thread.
    pub fn new() -> anyhow::Result<PluginEngine> {
        PluginEngine::with_options(EngineOptions::default())
    }

    /// Builds the engine with `options` and starts its epoch ticker thread.
    pub fn with_options(options: EngineOptions) -> anyhow::Result<PluginEngine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .concurrency_support(false);
        if options.allocator == Allocator::Pooling {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
                options.memory_bytes,
            )));
        }
        let engine = Engine::new(&config)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("plugboard-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(PluginEngine {
            engine,
            allocator: options.allocator,
            ticker_stop,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The instance allocator this engine uses.
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    /// The number of ticks a deadline of `timeout` needs: rounded up, plus one for the tick
    /// already under way.
    pub fn deadline_ticks(timeout: Duration) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (timeout.as_nanos().div_ceil(tick) as u64) + 1
    }
}

/// The pool's sizes. Slots are reserved, not committed: memory a plugin never touches never
/// becomes resident, and `linear_memory_keep_resident` stays 0 so a freed slot's pages go back
/// to the kernel (an idle host's resident size does not grow with the number of slots).
fn pooling_config(memory_bytes: usize) -> PoolingAllocationConfig {
    let instances = POOL_COMPONENT_INSTANCES;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances * POOL_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances * POOL_MEMORIES_PER_COMPONENT)
        .total_tables(instances * POOL_MEMORIES_PER_COMPONENT * 2)
        .max_memory_size(memory_bytes.max(1 << 16))
        // Unused for synchronous calls; keep the pool from reserving stacks it never uses.
        .total_stacks(1);
    pool
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        assert_eq!(PluginEngine::deadline_ticks(Duration::from_millis(10)), 2);
        assert_eq!(PluginEngine::deadline_ticks(Duration::from_millis(11)), 3);
        assert_eq!(
            PluginEngine::deadline_ticks(Duration::from_millis(1000)),
            101
        );
    }

    #[test]
    fn both_allocators_build() {
        for allocator in [Allocator::Pooling, Allocator::OnDemand] {
            let engine = PluginEngine::with_options(EngineOptions {
                allocator,
                ..EngineOptions::default()
            })
            .unwrap();
            assert_eq!(engine.allocator(), allocator);
        }
    }
}
