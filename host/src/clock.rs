//! The host's clock: the system's, or a fixed instant (`plugboard replay`), read by plugin
//! calls through WASI and by the services.
//!
//! For rehearsals (business hours, a night shift), `PLUGBOARD_CLOCK_START` set to an RFC 3339
//! instant (`2026-12-01T08:59:50+09:00`) makes the host's clock start there when the process
//! starts and run on at the system's pace; timers and deadlines are unaffected.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// What `PLUGBOARD_CLOCK_START` moves the system clock by, in milliseconds (0 when unset).
fn offset_millis() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let Ok(start) = std::env::var("PLUGBOARD_CLOCK_START") else {
            return 0;
        };
        match start.trim().parse::<jiff::Timestamp>() {
            Ok(at) => {
                let offset = at.as_millisecond() - system_millis() as i64;
                tracing::warn!(%start, offset_ms = offset, "PLUGBOARD_CLOCK_START: the host's clock is moved for a rehearsal");
                offset
            }
            Err(e) => {
                tracing::error!(%start, "PLUGBOARD_CLOCK_START is not an RFC 3339 instant ({e}); the system clock is used");
                0
            }
        }
    })
}

fn system_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The instant [`Clock::Replayed`] reads, set before each call of a corpus replay.
static REPLAYED_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where the host clock reads from: the real clock, or a fixed instant for replays.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant, in milliseconds since the epoch.
    Fixed(u64),
    /// The instant of the recorded request a corpus replay runs now ([`Clock::replay_at`]):
    /// one clock for a whole corpus, each request at its own time.
    Replayed,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_millis(self) -> u64 {
        match self {
            Clock::System => system_millis().saturating_add_signed(offset_millis()),
            Clock::Fixed(ms) => ms,
            Clock::Replayed => REPLAYED_AT.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// Sets the instant [`Clock::Replayed`] reads (process-wide: one replay at a time).
    pub fn replay_at(ms: u64) {
        REPLAYED_AT.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}
