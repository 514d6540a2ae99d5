//! The host's clock: the system's, or a fixed instant (`plugboard replay`), read by plugin
//! calls through WASI and by the services.

use std::time::{SystemTime, UNIX_EPOCH};

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
