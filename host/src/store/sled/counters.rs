//! Statistics counters in their own tree, written inside the transaction of the change they
//! count. A key is the scope, the day, the name and the metric, so a report over a range of
//! days reads that range of keys and nothing else; a value is the count (big-endian `u64`).

use jiff::tz::TimeZone;
use sled::Tree;
use sled::transaction::TransactionalTree;

use super::intake::TxResult;
use crate::stats::{Counter, Scope, Tally, by_counter};
use crate::store::StoreError;

/// The counter tree of a transaction and the zone whose local days it counts in.
#[derive(Clone, Copy)]
pub(super) struct Counts<'a> {
    /// The `counters` tree.
    pub(super) tree: &'a TransactionalTree,
    /// The deployment's time zone.
    pub(super) zone: &'a TimeZone,
}

impl Counts<'_> {
    /// Adds `tallies`, each counter once.
    pub(super) fn add(&self, tallies: &[Tally]) -> TxResult<()> {
        if tallies.is_empty() {
            return Ok(());
        }
        for ((scope, name, day, metric), amount) in by_counter(tallies, self.zone) {
            let key = key(scope, day, &name, &metric);
            let now = self
                .tree
                .get(&key)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map_or(0, u64::from_be_bytes);
            self.tree
                .insert(key, &now.saturating_add(amount).to_be_bytes())?;
        }
        Ok(())
    }
}

fn scope_byte(scope: Scope) -> u8 {
    match scope {
        Scope::Channel => b'c',
        Scope::Agent => b'a',
        Scope::Queue => b'q',
    }
}

/// Days in key order: the sign bit flipped, so earlier days sort first.
fn day_bytes(day: i32) -> [u8; 4] {
    ((day as u32) ^ 0x8000_0000).to_be_bytes()
}

fn key(scope: Scope, day: i32, name: &str, metric: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + name.len() + metric.len());
    k.push(scope_byte(scope));
    k.extend_from_slice(&day_bytes(day));
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(metric.as_bytes());
    k
}

/// Every counter of `scope` on the days `from..=to`.
pub(super) fn read(
    tree: &Tree,
    scope: Scope,
    from: i32,
    to: i32,
) -> Result<Vec<Counter>, StoreError> {
    let mut start = vec![scope_byte(scope)];
    start.extend_from_slice(&day_bytes(from));
    let mut end = vec![scope_byte(scope)];
    end.extend_from_slice(&day_bytes(to.saturating_add(1)));
    let corrupt = |reason: &str| StoreError::Corrupt {
        tree: "statistics",
        reason: reason.to_owned(),
    };
    let mut out = Vec::new();
    for item in tree.range(start..end) {
        let (k, v) = item.map_err(|e| StoreError::Backend(e.to_string()))?;
        let day = <[u8; 4]>::try_from(&k[1..5]).map_err(|_| corrupt("short key"))?;
        let day = (u32::from_be_bytes(day) ^ 0x8000_0000) as i32;
        let rest = &k[5..];
        let split = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| corrupt("key without a metric"))?;
        let value = <[u8; 8]>::try_from(v.as_ref()).map_err(|_| corrupt("value not 8 bytes"))?;
        out.push(Counter {
            name: String::from_utf8_lossy(&rest[..split]).into_owned(),
            day,
            metric: String::from_utf8_lossy(&rest[split + 1..]).into_owned(),
            value: u64::from_be_bytes(value),
        });
    }
    Ok(out)
}
