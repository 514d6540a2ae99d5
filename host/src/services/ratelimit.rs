//! Request rate limits: one token bucket per key (a channel's webhook, an API bearer token, a
//! client address's failed authentications, a web chat session), refilled continuously, with a
//! bounded number of buckets.
//!
//! A request takes one token; an empty bucket answers with how long until the next token, which
//! the server turns into `429 Too Many Requests` with `Retry-After`. Memory is bounded: beyond
//! [`MAX_BUCKETS`] keys, buckets that have refilled completely (indistinguishable from new ones)
//! are dropped first, then the least recently used half.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Authenticated requests per second one channel's webhook may take, sustained (override:
/// `PLUGBOARD_WEBHOOK_RATE`; `0` turns the limit off). Bursts of twice as many are allowed.
pub const DEFAULT_WEBHOOK_RATE: f64 = 2000.0;

/// Requests per second one API bearer token may make, sustained (override:
/// `PLUGBOARD_API_RATE`; `0` turns the limit off). Bursts of twice as many are allowed.
pub const DEFAULT_API_RATE: f64 = 200.0;

/// Failed authentications per second one client address may cause, sustained, counted apart
/// for webhooks, the API and web chat (override: `PLUGBOARD_AUTH_FAILURE_RATE`; `0` turns the
/// limit off). Bursts of twice as many are allowed; over it the address gets `429` before its
/// credentials are looked at.
pub const DEFAULT_AUTH_FAILURE_RATE: f64 = 10.0;

/// The burst a bucket holds, as a multiple of its rate.
pub const BURST_FACTOR: f64 = 2.0;

/// The most buckets one limiter keeps.
pub const MAX_BUCKETS: usize = 10_000;

/// A sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second (0: unlimited).
    pub per_second: f64,
    /// The most tokens a bucket holds.
    pub burst: f64,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_second: 0.0,
        burst: 0.0,
    };

    /// `per_second` sustained with bursts of [`BURST_FACTOR`] times as many; 0 (or less, or
    /// not finite) is unlimited.
    pub fn per_second(per_second: f64) -> Rate {
        if per_second.is_finite() && per_second > 0.0 {
            Rate {
                per_second,
                burst: (per_second * BURST_FACTOR).max(1.0),
            }
        } else {
            Rate::UNLIMITED
        }
    }

    /// `count` per minute, all of which may come at once; 0 is unlimited.
    pub fn per_minute(count: u32) -> Rate {
        if count == 0 {
            Rate::UNLIMITED
        } else {
            Rate {
                per_second: f64::from(count) / 60.0,
                burst: f64::from(count),
            }
        }
    }

    /// Whether this rate allows everything.
    pub fn is_unlimited(&self) -> bool {
        self.per_second == 0.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    rate: Rate,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.updated = now;
    }

    fn wait(&self) -> Duration {
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate.per_second)
    }
}

/// A token-bucket limiter; keys are hashed (with a per-limiter random seed) to 64 bits. Each
/// check names the rate it applies ([`RateLimiter::check`] uses the limiter's own), so one
/// limiter can hold buckets of differently configured channels.
pub struct RateLimiter {
    rate: Rate,
    max_buckets: usize,
    hasher: RandomState,
    buckets: Mutex<HashMap<u64, Bucket>>,
}

impl RateLimiter {
    /// A limiter allowing `rate` requests per second per key, bursts of `rate *`
    /// [`BURST_FACTOR`], keeping at most `max_buckets` keys. A rate of 0 (or less, or not
    /// finite) allows everything.
    pub fn new(rate: f64, max_buckets: usize) -> RateLimiter {
        RateLimiter {
            rate: Rate::per_second(rate),
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

    /// Whether the limiter's own rate is off.
    pub fn is_unlimited(&self) -> bool {
        self.rate.is_unlimited()
    }

    /// The limiter's own sustained rate, requests per second (0: unlimited).
    pub fn rate(&self) -> f64 {
        self.rate.per_second
    }

    /// How many keys have a bucket.
    pub fn len(&self) -> usize {
        self.buckets.lock().expect("rate limiter lock").len()
    }

    /// Whether no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a token for `key` at the limiter's rate: `Ok` if the request may go ahead, else
    /// how long until it may.
    pub fn check(&self, key: impl Hash) -> Result<(), Duration> {
        self.check_with_at(key, self.rate, Instant::now())
    }

    /// [`RateLimiter::check`] at a given instant (for tests).
    pub fn check_at(&self, key: impl Hash, now: Instant) -> Result<(), Duration> {
        self.check_with_at(key, self.rate, now)
    }

    /// Takes a token for `key` at `rate`.
    pub fn check_with(&self, key: impl Hash, rate: Rate) -> Result<(), Duration> {
        self.check_with_at(key, rate, Instant::now())
    }

    /// [`RateLimiter::check_with`] at a given instant (for tests).
    pub fn check_with_at(&self, key: impl Hash, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.with_bucket(key, rate, now, |bucket| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                Ok(())
            } else {
                Err(bucket.wait())
            }
        })
    }

    /// Whether `key` has a token left at the limiter's rate, without taking it: for limits
    /// spent only by some outcomes (a failed authentication), checked before the work.
    pub fn peek(&self, key: impl Hash) -> Result<(), Duration> {
        self.peek_at(key, Instant::now())
    }

    /// [`RateLimiter::peek`] at a given instant (for tests).
    pub fn peek_at(&self, key: impl Hash, now: Instant) -> Result<(), Duration> {
        if self.is_unlimited() {
            return Ok(());
        }
        let id = self.hasher.hash_one(key);
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        match buckets.get_mut(&id) {
            None => Ok(()),
            Some(bucket) => {
                bucket.rate = self.rate;
                bucket.refill(now);
                if bucket.tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(bucket.wait())
                }
            }
        }
    }

    fn with_bucket<T>(
        &self,
        key: impl Hash,
        rate: Rate,
        now: Instant,
        f: impl FnOnce(&mut Bucket) -> Result<(), T>,
    ) -> Result<(), T> {
        if rate.is_unlimited() {
            return Ok(());
        }
        let id = self.hasher.hash_one(key);
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if !buckets.contains_key(&id) && buckets.len() >= self.max_buckets {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(id).or_insert(Bucket {
            tokens: rate.burst,
            updated: now,
            rate,
        });
        bucket.rate = rate;
        bucket.refill(now);
        f(bucket)
    }

    /// Makes room: drops full buckets, then the least recently used half.
    fn evict(&self, buckets: &mut HashMap<u64, Bucket>, now: Instant) {
        buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * b.rate.per_second < b.rate.burst
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

/// The key a client address is limited under: an IPv4 address (or an IPv4-mapped IPv6 one) as
/// it is, an IPv6 address by its /64 network, the smallest block one subscriber usually holds.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
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

    #[test]
    fn peek_takes_nothing() {
        let l = RateLimiter::new(1.0, 100);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.peek_at("a", t0).is_ok());
        }
        assert!(l.check_at("a", t0).is_ok());
        assert!(l.check_at("a", t0).is_ok());
        assert!(
            l.peek_at("a", t0).is_err(),
            "two failures spent the burst of 2"
        );
        assert!(l.peek_at("a", t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn per_minute_rates_allow_the_whole_count_at_once() {
        let l = RateLimiter::new(0.0, 100);
        let rate = Rate::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_with_at("s", rate, t0).is_ok());
        }
        let wait = l.check_with_at("s", rate, t0).unwrap_err();
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        assert!(l.check_with_at("s", Rate::per_minute(0), t0).is_ok());
        assert!(
            l.check_with_at("s", rate, t0 + Duration::from_secs(20))
                .is_ok()
        );
    }

    #[test]
    fn ipv6_addresses_share_their_64_block() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(address_key(mapped), "127.0.0.2".parse::<IpAddr>().unwrap());
    }
}
