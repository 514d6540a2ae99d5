//! The host's functions (`plugboard:plugin/host`) for native builds: a plugin's own `cargo test`
//! runs its code outside any host, so the SDK implements them itself, with the same signatures
//! as the contract's imports a component calls.
//!
//! HMAC and SHA-256 are the real algorithms. The clock, the random bytes and the log are per
//! thread (each test runs on its own) and controlled through [`crate::testing`]: the clock reads
//! the system time unless a test fixes it, the random bytes are a deterministic sequence (not a
//! CSPRNG: a native build never serves traffic), and log lines are kept for the test to read.

use hmac::{Hmac, Mac};
use sha2::Digest;

pub use crate::bindings::channel::plugboard::plugin::host::Level;

/// The most random bytes one `random_bytes` call returns, as in the host.
const MAX_RANDOM_BYTES: u32 = 1024;

/// Records a log line for [`testing::take_logs`](crate::testing::take_logs) and writes it to
/// stderr (which the test harness shows for failing tests).
pub fn log(level: Level, message: &str, fields: &[(String, String)]) {
    eprintln!("[{level:?}] {message} {fields:?}");
    crate::testing::record_log(level, message, fields);
}

/// HMAC-SHA1 of `data` under `key` (20 bytes).
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `data` under `key` (32 bytes).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SHA-256 digest of `data` (32 bytes).
pub fn sha256(data: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(data).to_vec()
}

/// Milliseconds since the Unix epoch: the time fixed with
/// [`testing::set_now_millis`](crate::testing::set_now_millis) on this thread, else the system
/// clock.
pub fn now_millis() -> u64 {
    crate::testing::fixed_now_millis().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// `len` bytes (at most 1024, as in the host) of this thread's deterministic sequence; see
/// [`testing::seed_random`](crate::testing::seed_random).
pub fn random_bytes(len: u32) -> Vec<u8> {
    crate::testing::next_random_bytes(len.min(MAX_RANDOM_BYTES) as usize)
}
