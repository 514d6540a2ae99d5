//! How records and keys are laid out in sled: every record is one schema-version byte and its
//! JSON; keys are big-endian numbers and NUL-separated names, so sled's byte order is the
//! order lists need.

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// The schema version of the records this release writes. Version 0 (the 0.2 releases) wrote
/// bare JSON: its records start with `{`, which no version byte is, and read the same way.
pub(super) const SCHEMA_VERSION: u8 = 1;

/// `a`, NUL, `b`: a key in a tree indexed by two names (channel and address, ...).
pub(super) fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

/// A message's key: conversation id and sequence number, so a conversation's messages are one
/// range in order.
pub(super) fn message_key(conversation: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&conversation.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// A big-endian `u64` read back from a key or value of `tree`.
pub(super) fn be_u64(tree: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            tree,
            reason: format!("{} bytes where a number of 8 belongs", bytes.len()),
        })
}

/// A record as stored: the schema version, then JSON.
pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(SCHEMA_VERSION);
    serde_json::to_writer(&mut out, v).expect("storage records serialize");
    out
}

/// Reads a record of `tree` written by this release or an earlier one.
pub(super) fn decode<T: for<'a> Deserialize<'a>>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let json = match bytes.first() {
        Some(b'{') => bytes,
        Some(&v) if v <= SCHEMA_VERSION => &bytes[1..],
        Some(&v) => {
            return Err(StoreError::Corrupt {
                tree,
                reason: format!(
                    "schema version {v}, newer than this release's {SCHEMA_VERSION}: run the release that wrote it"
                ),
            });
        }
        None => {
            return Err(StoreError::Corrupt {
                tree,
                reason: "an empty record".into(),
            });
        }
    };
    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_version_and_bare_json_of_version_0_still_reads() {
        let bytes = encode(&vec![1u8, 2]);
        assert_eq!(bytes[0], SCHEMA_VERSION);
        assert_eq!(decode::<Vec<u8>>("t", &bytes).unwrap(), vec![1, 2]);
        let legacy = br#"{"a":1}"#;
        let v: serde_json::Value = decode("t", legacy).unwrap();
        assert_eq!(v["a"], 1);
        let newer = [SCHEMA_VERSION + 1, b'{', b'}'];
        let err = decode::<serde_json::Value>("t", &newer).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
