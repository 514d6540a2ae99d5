//! Per-channel circuit breaker: a channel whose plugin keeps failing (traps, deadlines, memory)
//! is quarantined for a cool-down, during which its webhook answers 503 with the reason instead
//! of burning a plugin call per request; after the cool-down one call is let through to try it.
//! And the host's own health, for `/healthz` ([`host_problem`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Why the host as a whole cannot do its job, if it cannot: storage is out of service (on sled,
/// after a failed disk write, until a restart; on PostgreSQL, while the database cannot be
/// reached), so `/healthz` answers `503` with the backend's reason.
pub fn host_problem(storage: &dyn crate::store::Store) -> Option<String> {
    storage.failure()
}

/// Consecutive plugin failures that quarantine a channel.
pub const FAILURES_BEFORE_QUARANTINE: u32 = 5;
/// How long a quarantine lasts (override: `PLUGBOARD_QUARANTINE_SECS`).
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone)]
struct Health {
    failures: u32,
    last_error: Option<String>,
    quarantined_until: Option<Instant>,
}

/// What the plugins API shows for one channel.
#[derive(Debug, Clone, Serialize)]
pub struct HealthView {
    /// The channel instance.
    pub channel: String,
    /// `healthy`, `failing` or `quarantined`.
    pub state: &'static str,
    /// Plugin failures in a row.
    pub consecutive_failures: u32,
    /// The last plugin failure.
    pub last_error: Option<String>,
    /// Seconds until the quarantine ends.
    pub quarantine_seconds_left: Option<u64>,
}

/// Every channel's failure record.
pub struct ChannelHealth {
    channels: Mutex<HashMap<String, Health>>,
    cool_down: Duration,
}

impl Default for ChannelHealth {
    fn default() -> Self {
        let cool_down = std::env::var("PLUGBOARD_QUARANTINE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_COOL_DOWN);
        ChannelHealth {
            channels: Mutex::new(HashMap::new()),
            cool_down,
        }
    }
}

impl ChannelHealth {
    /// `Err((reason, seconds left))` while the channel is quarantined.
    pub fn check(&self, channel: &str) -> Result<(), (String, u64)> {
        let map = self.channels.lock().expect("health lock");
        let Some(h) = map.get(channel) else {
            return Ok(());
        };
        match h.quarantined_until {
            Some(until) if Instant::now() < until => {
                let left = until.saturating_duration_since(Instant::now()).as_secs() + 1;
                Err((
                    format!(
                        "channel {channel} is quarantined after {} plugin failures in a row (last: {}); it is tried again in {left}s",
                        h.failures,
                        h.last_error.as_deref().unwrap_or("unknown")
                    ),
                    left,
                ))
            }
            _ => Ok(()),
        }
    }

    /// Records a successful plugin call: the channel is healthy again.
    pub fn succeeded(&self, channel: &str) {
        let mut map = self.channels.lock().expect("health lock");
        if let Some(h) = map.get_mut(channel) {
            if h.quarantined_until.is_some() {
                tracing::info!(channel, "channel recovered; quarantine lifted");
            }
            h.failures = 0;
            h.quarantined_until = None;
        }
    }

    /// Records a failed plugin call; quarantines the channel once it keeps failing.
    pub fn failed(&self, channel: &str, error: &str) {
        let mut map = self.channels.lock().expect("health lock");
        let h = map.entry(channel.to_owned()).or_default();
        h.failures += 1;
        h.last_error = Some(error.to_owned());
        if h.failures >= FAILURES_BEFORE_QUARANTINE {
            h.quarantined_until = Some(Instant::now() + self.cool_down);
            tracing::error!(
                channel,
                failures = h.failures,
                cool_down = ?self.cool_down,
                "channel quarantined: its plugin keeps failing"
            );
        }
    }

    /// Whether `channel` is quarantined now.
    pub fn is_quarantined(&self, channel: &str) -> bool {
        self.check(channel).is_err()
    }

    /// Every channel that has failed at least once.
    pub fn views(&self) -> Vec<HealthView> {
        let now = Instant::now();
        let map = self.channels.lock().expect("health lock");
        let mut out: Vec<HealthView> = map
            .iter()
            .map(|(channel, h)| {
                let left = h
                    .quarantined_until
                    .filter(|u| now < *u)
                    .map(|u| u.saturating_duration_since(now).as_secs() + 1);
                HealthView {
                    channel: channel.clone(),
                    state: match (left, h.failures) {
                        (Some(_), _) => "quarantined",
                        (None, 0) => "healthy",
                        (None, _) => "failing",
                    },
                    consecutive_failures: h.failures,
                    last_error: h.last_error.clone(),
                    quarantine_seconds_left: left,
                }
            })
            .collect();
        out.sort_by(|a, b| a.channel.cmp(&b.channel));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantines_after_repeated_failures_and_recovers_on_success() {
        let h = ChannelHealth {
            channels: Mutex::new(HashMap::new()),
            cool_down: Duration::from_secs(60),
        };
        for _ in 0..FAILURES_BEFORE_QUARANTINE - 1 {
            h.failed("a", "trap");
        }
        assert!(h.check("a").is_ok());
        h.failed("a", "trap");
        let (reason, left) = h.check("a").unwrap_err();
        assert!(reason.contains("trap") && left > 0, "{reason}");
        assert!(h.check("b").is_ok(), "other channels are unaffected");
        h.succeeded("a");
        assert!(h.check("a").is_ok());
        assert_eq!(h.views()[0].state, "healthy");
    }
}
