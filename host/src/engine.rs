//! Engine policy: how wasmtime is configured for untrusted plugins, in one place.
//!
//! * Cranelift (not Winch) compiles plugins: the 2026 advisories hit Winch, not x86-64 Cranelift.
//! * Time is bounded by epoch interruption with one ticker thread per engine (a thread per call
//!   costs orders of magnitude of throughput, wasmtime #11814). The tick is 10 ms, as in Spin.
//! * Memory is bounded per call by a store limiter ([`crate::sandbox`]), not by the engine.
//! * Component-model concurrency is off: every plugin call is synchronous and short, and the
//!   async machinery only adds overhead to each call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the epoch advances; deadlines are rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest wasm stack a plugin may use.
const MAX_WASM_STACK: usize = 512 * 1024;

/// The process's one wasmtime engine plus the ticker that drives its deadlines.
pub struct PluginEngine {
    engine: Engine,
    ticker_stop: Arc<AtomicBool>,
}

impl PluginEngine {
    /// Builds the engine and starts its epoch ticker thread.
    pub fn new() -> anyhow::Result<PluginEngine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .concurrency_support(false);
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
            ticker_stop,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The number of ticks a deadline of `timeout` needs: rounded up, plus one for the tick
    /// already under way.
    pub fn deadline_ticks(timeout: Duration) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (timeout.as_nanos().div_ceil(tick) as u64) + 1
    }
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
}
