//! The WASI 0.2 a plugin gets: exactly the interfaces guest toolchains import, each wired to the
//! host or refused, and no call that can block past the plugin's deadline.
//!
//! Rust's `wasm32-wasip2` std, componentize-py and componentize-js all import WASI even when
//! a plugin uses none of it, so a host that linked only `plugboard:plugin/host` would refuse
//! every plugin those toolchains build. What is linked, and how it behaves:
//!
//! | interface | behaviour |
//! | --- | --- |
//! | `wasi:clocks/wall-clock` | the host's clock: under `plugboard replay --now` it reads the fixed instant, as `host.now-millis` does |
//! | `wasi:clocks/monotonic-clock` | real monotonic time; a constant under a fixed clock. Timers it makes end at the call's deadline |
//! | `wasi:io/poll` | bounded by the call's deadline: a poll or `pollable.block` still waiting then fails the call as a timeout |
//! | `wasi:io/streams`, `wasi:io/error` | the standard streams below |
//! | `wasi:random/*` | a CSPRNG seeded from the operating system, as `host.random-bytes`; at most 64 KiB a call |
//! | `wasi:cli/stdout`, `wasi:cli/stderr` | captured per call (16 KiB each) and logged with plugin and channel |
//! | `wasi:cli/stdin` | empty |
//! | `wasi:cli/environment` | no variables, no arguments, no working directory |
//! | `wasi:cli/exit` | ends the call as a trap |
//! | `wasi:cli/terminal-*` | no terminal |
//! | `wasi:filesystem/*` | no preopened directory, so every path operation fails with an error code |
//! | `wasi:sockets/*` | every network use refused (`access-denied` / `not-permitted`) |
//!
//! Anything else (`wasi:http`, `wasi:keyvalue`, ...) is not linked: a component importing it is
//! refused at load with the link error naming the import.
//!
//! Why a bounded poll: wasmtime's epoch deadline interrupts wasm code, not a host call, so a
//! guest parked in WASI's `poll` (Rust's `std::thread::sleep`) would hold its call slot for as
//! long as it asked. Timers are the only WASI source that can keep a poll waiting here (the
//! streams are in-memory and always ready, nothing else is granted), so bounding the poll by the
//! deadline bounds every call.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Trap;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiView};
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::poll::DynPollable;

use crate::clock::Clock;

/// The most bytes one `wasi:random` call returns.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// The most bytes of a plugin's stdout, and of its stderr, kept per call.
pub const OUTPUT_CAPTURE: usize = 16 * 1024;

/// What the WASI implementation needs from a store's state besides [`WasiView`].
pub trait CallDeadline {
    /// When the current call must end.
    fn deadline(&self) -> Instant;
}

/// Links the WASI interfaces listed in the module docs, with the bounded poll.
pub fn add_to_linker<T: WasiView + CallDeadline + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};

    let l = linker;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sync::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::network::add_to_linker::<T, WasiSockets>(l, &Default::default(), T::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sync::sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sync::sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sync::sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    sync::io::streams::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    sync_poll::add_to_linker::<T, BoundedPoll>(l, |t| {
        let deadline = t.deadline();
        BoundedPollView {
            table: t.ctx().table,
            deadline,
        }
    })?;
    Ok(())
}

/// A WASI context that grants nothing: no preopens, no environment, no network, stdout and
/// stderr into `output`, clocks from `clock`.
pub fn context(clock: Clock, output: &CallOutput) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(output.stdout.clone())
        .stderr(output.stderr.clone())
        .wall_clock(HostClock(clock))
        .monotonic_clock(HostClock(clock))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // One call's random bytes are built in host memory before the guest gets them.
        .max_random_size(MAX_RANDOM_BYTES);
    builder.build()
}

struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

struct BoundedPoll;

impl HasData for BoundedPoll {
    type Data<'a> = BoundedPollView<'a>;
}

/// The resource table plus the deadline the poll must not outlive.
struct BoundedPollView<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

/// Runs a WASI poll future to completion on this (blocking) thread, or fails the call as a
/// timeout when the deadline comes first.
fn until_deadline<R>(
    deadline: Instant,
    future: impl Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    wasmtime_wasi::runtime::in_tokio(async move {
        match tokio::time::timeout_at(deadline.into(), future).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Error::new(Trap::Interrupt)),
        }
    })
}

impl sync_poll::Host for BoundedPollView<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let deadline = self.deadline;
        until_deadline(deadline, async_poll::Host::poll(self.table, pollables))
    }
}

impl sync_poll::HostPollable for BoundedPollView<'_> {
    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let deadline = self.deadline;
        until_deadline(
            deadline,
            async_poll::HostPollable::block(self.table, pollable),
        )
    }

    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        wasmtime_wasi::runtime::in_tokio(async_poll::HostPollable::ready(self.table, pollable))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}

/// WASI's clocks read through the host's [`Clock`].
struct HostClock(Clock);

/// The process's monotonic origin, so monotonic readings are small and increasing.
fn monotonic_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl HostWallClock for HostClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_millis())
    }
}

impl HostMonotonicClock for HostClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        match self.0 {
            Clock::System => monotonic_origin().elapsed().as_nanos() as u64,
            Clock::Fixed(_) | Clock::Replayed => self.0.now_millis().saturating_mul(1_000_000),
        }
    }
}

/// A store's captured stdout and stderr.
#[derive(Clone)]
pub struct CallOutput {
    /// What the guest wrote to stdout this call.
    pub stdout: Capture,
    /// What the guest wrote to stderr this call.
    pub stderr: Capture,
}

impl CallOutput {
    /// Empty captures.
    pub fn new() -> CallOutput {
        CallOutput {
            stdout: Capture::new(),
            stderr: Capture::new(),
        }
    }
}

impl Default for CallOutput {
    fn default() -> Self {
        CallOutput::new()
    }
}

/// One output stream of a plugin, kept in memory for one call at a time: at most
/// [`OUTPUT_CAPTURE`] bytes per call (a write past that traps, as wasmtime's
/// `MemoryOutputPipe` does), emptied by [`Capture::take`] after each call so a reused store
/// starts the next call with an empty capture. Every stream the guest opens on it shares the
/// one buffer.
#[derive(Clone)]
pub struct Capture {
    buffer: Arc<Mutex<bytes::BytesMut>>,
}

impl Capture {
    fn new() -> Capture {
        Capture {
            buffer: Arc::new(Mutex::new(bytes::BytesMut::new())),
        }
    }

    /// What the guest wrote since the last `take`, leaving the capture empty.
    pub fn take(&self) -> bytes::Bytes {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.split().freeze()
    }

    /// Appends up to `bytes.len()` bytes that fit; returns how many did.
    fn append(&self, bytes: &[u8]) -> usize {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let n = bytes.len().min(OUTPUT_CAPTURE.saturating_sub(buffer.len()));
        buffer.extend_from_slice(&bytes[..n]);
        n
    }

    fn room(&self) -> usize {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        OUTPUT_CAPTURE.saturating_sub(buffer.len())
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        if self.append(&bytes) < bytes.len() {
            return Err(StreamError::trap(
                "plugin wrote more to stdout or stderr than one call may",
            ));
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        match self.room() {
            0 => Err(StreamError::Closed),
            room => Ok(room),
        }
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(self.append(buf)))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_is_per_call() {
        let capture = Capture::new();
        let mut stream = capture.clone();
        OutputStream::write(&mut stream, bytes::Bytes::from_static(b"first call\n")).unwrap();
        assert_eq!(&capture.take()[..], b"first call\n");
        assert!(capture.take().is_empty(), "taking empties the capture");

        // Each call may write up to the cap, however much earlier calls wrote.
        for _ in 0..3 {
            let full = bytes::Bytes::from(vec![b'x'; OUTPUT_CAPTURE]);
            OutputStream::write(&mut stream, full).unwrap();
            assert!(matches!(stream.check_write(), Err(StreamError::Closed)));
            assert!(OutputStream::write(&mut stream, bytes::Bytes::from_static(b"y")).is_err());
            assert_eq!(capture.take().len(), OUTPUT_CAPTURE);
        }
        assert_eq!(stream.check_write().unwrap(), OUTPUT_CAPTURE);
    }

    #[test]
    fn a_fixed_clock_fixes_both_wasi_clocks() {
        let clock = HostClock(Clock::Fixed(1_700_000_000_123));
        assert_eq!(
            HostWallClock::now(&clock),
            Duration::from_millis(1_700_000_000_123)
        );
        assert_eq!(
            HostMonotonicClock::now(&clock),
            HostMonotonicClock::now(&clock)
        );
    }

    #[test]
    fn an_elapsed_deadline_ends_a_wait_as_a_timeout() {
        let pending = std::future::pending::<wasmtime::Result<()>>();
        let err = until_deadline(Instant::now() + Duration::from_millis(20), pending).unwrap_err();
        assert_eq!(err.downcast_ref::<Trap>(), Some(&Trap::Interrupt));
    }
}
