//! Opening a data directory of an earlier release: the database records which layout it has
//! (`meta`/`schema_version`), and each step brings it one version forward, once.
//!
//! - 0 -> 1 (the 0.2 releases): conversation ids get a counter of their own, continuing after
//!   the largest stored id (they came from sled's id generator); the conversation index is
//!   built from the stored conversations, replacing the `queued` and `owned` trees. Records
//!   of version 0 (bare JSON) stay readable and are rewritten as they change.

use std::path::Path;

use super::codec::{SCHEMA_VERSION, decode, encode};
use super::intake::NEXT_CONVERSATION_ID;
use super::{INDEX_TREE, index};
use crate::model::Conversation;
use crate::store::StoreError;

const META_TREE: &str = "meta";
const VERSION_KEY: &[u8] = b"schema_version";

/// The layout version `db` has: 0 for a database without one (an earlier release's, or a
/// new one, which has nothing to migrate).
fn version(db: &sled::Db) -> Result<u32, StoreError> {
    let meta = db.open_tree(META_TREE).map_err(backend)?;
    Ok(match meta.get(VERSION_KEY).map_err(backend)? {
        Some(v) => decode::<u32>(META_TREE, &v)?,
        None => 0,
    })
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Brings `db` (in `dir`) to this release's layout; refuses a newer one. Returns the steps it
/// ran, for the log.
pub(super) fn migrate(db: &sled::Db, dir: &Path) -> Result<u32, StoreError> {
    let found = version(db)?;
    let supported = u32::from(SCHEMA_VERSION);
    if found > supported {
        return Err(StoreError::NewerSchema {
            dir: dir.to_owned(),
            found,
            supported,
        });
    }
    let mut steps = 0;
    if found < 1 {
        to_1(db)?;
        steps += 1;
    }
    if steps > 0 {
        let meta = db.open_tree(META_TREE).map_err(backend)?;
        meta.insert(VERSION_KEY, encode(&supported))
            .map_err(backend)?;
        db.flush().map_err(backend)?;
    }
    Ok(steps)
}

/// 0 -> 1: the conversation id counter and the conversation index. Safe to run again after a
/// crash halfway: each part starts from the conversations themselves.
fn to_1(db: &sled::Db) -> Result<(), StoreError> {
    let keys = db.open_tree("conversation_keys").map_err(backend)?;
    let conversations = db.open_tree("conversations").map_err(backend)?;
    if keys.get(NEXT_CONVERSATION_ID).map_err(backend)?.is_none() {
        let next = match conversations.last().map_err(backend)? {
            Some((key, _)) => super::codec::be_u64("conversations", &key)?.saturating_add(1),
            None => 1,
        };
        keys.insert(NEXT_CONVERSATION_ID, &next.to_be_bytes())
            .map_err(backend)?;
    }
    let tree = db.open_tree(INDEX_TREE).map_err(backend)?;
    tree.clear().map_err(backend)?;
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for item in conversations.iter() {
        let (_, v) = item.map_err(backend)?;
        let c: Conversation = decode("conversations", &v)?;
        for key in index::entries(&c) {
            batch.insert(key, &c.id.to_be_bytes());
            pending += 1;
        }
        if pending >= 10_000 {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(backend)?;
            pending = 0;
        }
    }
    tree.apply_batch(batch).map_err(backend)?;
    for old in ["queued", "owned"] {
        db.drop_tree(old).map_err(backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_layout_is_refused_naming_both_versions_and_a_migrated_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        assert_eq!(
            migrate(&db, dir.path()).unwrap(),
            1,
            "a new database is brought to 1"
        );
        assert_eq!(migrate(&db, dir.path()).unwrap(), 0, "and then left alone");
        let meta = db.open_tree(META_TREE).unwrap();
        meta.insert(VERSION_KEY, encode(&99u32)).unwrap();
        let err = migrate(&db, dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NewerSchema {
                    found: 99,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
