//! What a web chat visitor may do, apart from HTTP: the per-address and per-session rate limits
//! of a channel's `[channels.webchat]` table and the idle expiry of sessions.
//!
//! Limits are token buckets in the edge's web chat limiter ([`RateLimiter`]), keyed by channel,
//! so channels configured differently never share a bucket.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::WebchatConfig;
use crate::model::Visitor;
use crate::services::ratelimit::{Rate, RateLimiter};

/// Why a visitor's request is refused before it does anything.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// Over one of the channel's limits; retry after `wait`.
    #[error("{what}; retry after {}s", crate::services::ratelimit::retry_after_secs(*wait))]
    Limited {
        /// Which limit, in words.
        what: String,
        /// How long until the next request may go ahead.
        wait: Duration,
    },
}

fn limited(wait: Duration, what: impl Into<String>) -> Refusal {
    Refusal::Limited {
        what: what.into(),
        wait,
    }
}

/// A new session from `client` on `channel`.
pub fn session_started(
    limiter: &RateLimiter,
    config: &WebchatConfig,
    channel: &str,
    client: IpAddr,
) -> Result<(), Refusal> {
    let n = config.sessions_per_minute;
    limiter
        .check_with(("session", channel, client), Rate::per_minute(n))
        .map_err(|w| {
            limited(
                w,
                format!("more than {n} new chat sessions a minute from your address"),
            )
        })
}

/// A message (or offline form) from `visitor` at `client` on `channel`: the session's limit,
/// then the address's.
pub fn message(
    limiter: &RateLimiter,
    config: &WebchatConfig,
    channel: &str,
    visitor: &Visitor,
    client: IpAddr,
) -> Result<(), Refusal> {
    let n = config.messages_per_minute;
    limiter
        .check_with(
            ("message", channel, visitor.id.as_str()),
            Rate::per_minute(n),
        )
        .map_err(|w| limited(w, format!("more than {n} messages a minute in this chat")))?;
    let n = config.address_messages_per_minute;
    limiter
        .check_with(("address message", channel, client), Rate::per_minute(n))
        .map_err(|w| {
            limited(
                w,
                format!("more than {n} chat messages a minute from your address"),
            )
        })
}

/// A poll for new messages by `visitor` on `channel`.
pub fn poll(
    limiter: &RateLimiter,
    config: &WebchatConfig,
    channel: &str,
    visitor: &Visitor,
) -> Result<(), Refusal> {
    let n = config.polls_per_minute;
    limiter
        .check_with(("poll", channel, visitor.id.as_str()), Rate::per_minute(n))
        .map_err(|w| limited(w, format!("more than {n} polls a minute in this chat")))
}

/// The idle time after which `config`'s sessions expire.
pub fn idle_limit(config: &WebchatConfig) -> Duration {
    Duration::from_secs(config.session_idle_secs)
}

/// When `visitor` was last used, Unix milliseconds.
fn last_used(visitor: &Visitor) -> u64 {
    visitor.last_seen.max(visitor.created_at)
}

/// Whether `visitor`'s session has been unused longer than the channel allows at `now`.
pub fn expired(visitor: &Visitor, config: &WebchatConfig, now: u64) -> bool {
    now.saturating_sub(last_used(visitor)) > idle_limit(config).as_millis() as u64
}

/// Whether `visitor`'s last use should be written again at `now`: often enough that expiry is
/// accurate to a quarter of the idle limit (at most a minute), rarely enough that polling does
/// not write on every request.
pub fn needs_touch(visitor: &Visitor, config: &WebchatConfig, now: u64) -> bool {
    let every = (idle_limit(config) / 4).min(Duration::from_secs(60));
    now.saturating_sub(last_used(visitor)) >= every.as_millis() as u64
}

/// How often expired sessions of a channel are swept from storage.
pub fn sweep_rate(config: &WebchatConfig) -> Rate {
    let every = idle_limit(config)
        .min(Duration::from_secs(60))
        .as_secs_f64();
    Rate {
        per_second: 1.0 / every.max(1.0),
        burst: 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(created_at: u64, last_seen: u64) -> Visitor {
        Visitor {
            id: "v1".into(),
            channel: "site".into(),
            created_at,
            last_seen,
        }
    }

    #[test]
    fn sessions_expire_after_the_idle_limit_since_their_last_use() {
        let config = WebchatConfig {
            session_idle_secs: 10,
            ..WebchatConfig::default()
        };
        assert!(!expired(&visitor(1_000, 0), &config, 11_000));
        assert!(expired(&visitor(1_000, 0), &config, 11_001));
        assert!(!expired(&visitor(1_000, 9_000), &config, 19_000));
        assert!(!needs_touch(&visitor(1_000, 9_000), &config, 11_000));
        assert!(needs_touch(&visitor(1_000, 9_000), &config, 11_500));
    }

    #[test]
    fn a_session_and_an_address_have_their_own_message_limits() {
        let limiter = RateLimiter::new(0.0, 100);
        let config = WebchatConfig {
            messages_per_minute: 2,
            address_messages_per_minute: 3,
            ..WebchatConfig::default()
        };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (a, b) = (
            visitor(0, 0),
            Visitor {
                id: "v2".into(),
                ..visitor(0, 0)
            },
        );
        assert!(message(&limiter, &config, "site", &a, ip).is_ok());
        assert!(message(&limiter, &config, "site", &a, ip).is_ok());
        let err = message(&limiter, &config, "site", &a, ip).unwrap_err();
        assert!(err.to_string().contains("2 messages a minute"), "{err}");
        assert!(message(&limiter, &config, "site", &b, ip).is_ok());
        let err = message(&limiter, &config, "site", &b, ip).unwrap_err();
        assert!(err.to_string().contains("3 chat messages"), "{err}");
    }
}
