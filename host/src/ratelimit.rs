//! Request rate limits: one token bucket per key (a channel's webhook, an API bearer token),
//! refilled continuously, with a bounded number of buckets.
//!
//! A request takes one token; an empty bucket answers with how long until the next token, which
//! the server turns into `429 Too Many Requests` with `Retry-After`. Memory is bounded: beyond
//! [`MAX_BUCKETS`] keys, buckets that have refilled completely (indistinguishable from new ones)
//! are dropped first, then the least recently used half.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests per second one channel's webhook may take, sustained (override:
/// `PLUGBOARD_WEBHOOK_RATE`; `0` turns the limit off). Bursts of twice as many are allowed.
pub const DEFAULT_WEBHOOK_RATE: f64 = 2000.0;

/// Requests per second one API bearer token may make, sustained (override:
/// `PLUGBOARD_API_RATE`; `0` turns the limit off). Bursts of twice as many are allowed.
pub const DEFAULT_API_RATE: f64 = 200.0;

/// The burst a bucket holds, as a multiple of its rate.
pub const BURST_FACTOR: f64 = 2.0;

/// The most buckets one limiter keeps.
pub const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A token-bucket limiter; keys are hashed (with a per-limiter random seed) to 64 bits.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_buckets: usize,
    hasher: RandomState,
    buckets: Mutex<HashMap<u64, Bucket>>,
}

impl RateLimiter {
    /// A limiter allowing `rate` requests per second per key, bursts of `rate *`
    /// [`BURST_FACTOR`], keeping at most `max_buckets` keys. A rate of 0 (or less, or not
    /// finite) allows everything.
    pub fn new(rate: f64, max_buckets: usize) -> RateLimiter {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.0
        };
        RateLimiter {
            rate,
            burst: (rate * BURST_FACTOR).max(1.0),
            max_buckets: max_buckets.max(1),
            hasher: RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A limiter whose rate is the environment variable `var` (requests per second) when it
    /// holds a number, else `default`.
    pub fn from_env(var: &str, default: f64) -> RateLimiter {
        let rate = std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(default);
        RateLimiter::new(rate, MAX_BUCKETS)
    }

    /// Whether the limiter is off.
    pub fn is_unlimited(&self) -> bool {
        self.rate == 0.0
    }

    /// The sustained rate, requests per second (0: unlimited).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// How many keys have a bucket.
    pub fn len(&self) -> usize {
        self.buckets.lock().expect("rate limiter lock").len()
    }

    /// Whether no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a token for `key`: `Ok` if the request may go ahead, else how long until it may.
    pub fn check(&self, key: impl Hash) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// [`RateLimiter::check`] at a given instant (for tests).
    pub fn check_at(&self, key: impl Hash, now: Instant) -> Result<(), Duration> {
        if self.is_unlimited() {
            return Ok(());
        }
        let id = self.hasher.hash_one(key);
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if !buckets.contains_key(&id) && buckets.len() >= self.max_buckets {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(id).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Makes room: drops full buckets, then the least recently used half.
    fn evict(&self, buckets: &mut HashMap<u64, Bucket>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        if buckets.len() >= self.max_buckets {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.updated).collect();
            let mid = ages.len() / 2;
            let (_, cutoff, _) = ages.select_nth_unstable(mid);
            let cutoff = *cutoff;
            buckets.retain(|_, b| b.updated > cutoff);
        }
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = RateLimiter::new(10.0, 100);
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(l.check_at("a", t0).is_ok());
        }
        let wait = l.check_at("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(l.check_at("b", t0).is_ok(), "keys are independent");
        assert!(l.check_at("a", t0 + Duration::from_millis(100)).is_ok());
        assert!(l.check_at("a", t0 + Duration::from_millis(100)).is_err());
        assert_eq!(retry_after_secs(wait), 1);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let l = RateLimiter::new(0.0, 10);
        for _ in 0..10_000 {
            assert!(l.check("a").is_ok());
        }
        assert!(l.is_empty());
    }

    #[test]
    fn bucket_count_stays_bounded() {
        let l = RateLimiter::new(1.0, 1000);
        let t0 = Instant::now();
        for i in 0..50_000u32 {
            let _ = l.check_at(i, t0 + Duration::from_micros(u64::from(i)));
            assert!(l.len() <= 1000);
        }
        // A busy key used recently keeps its (empty) bucket through evictions.
        let t1 = t0 + Duration::from_millis(100);
        let _ = l.check_at("hot", t1);
        let _ = l.check_at("hot", t1);
        assert!(l.check_at("hot", t1).is_err());
    }
}
