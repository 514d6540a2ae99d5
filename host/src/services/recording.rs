//! A bounded recording: the latest N records of one kind (a channel's webhooks, a queue's
//! routing decisions), each a stored document under a space of its own, oldest dropped first.
//! Each space's keys are read from the store at its first recording after a start, then kept
//! in memory, so a recording costs one write (and one delete once full).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::services::app::App;
use crate::store::{Store, StoreError};

/// The keys each recorded space holds, oldest first.
#[derive(Default)]
pub struct Recorder {
    keys: Mutex<HashMap<String, VecDeque<String>>>,
    /// Serializes recordings, so the count and the trimming stay right.
    writing: tokio::sync::Mutex<()>,
}

/// A new record's key: its time, then a random part, so keys sort oldest first.
pub fn record_id() -> String {
    format!(
        "{:015}-{:08x}",
        Clock::System.now_millis(),
        rand::random::<u32>()
    )
}

impl Recorder {
    /// Stores `bytes` under `id` in `space`, then drops the oldest records past `keep`.
    pub async fn add(
        &self,
        store: &dyn Store,
        space: &str,
        id: String,
        bytes: &[u8],
        keep: usize,
    ) -> Result<(), StoreError> {
        let _one = self.writing.lock().await;
        let known = self
            .keys
            .lock()
            .expect("recorder keys lock")
            .contains_key(space);
        if !known {
            let keys: VecDeque<String> = crate::store::all_documents(store, space)
                .await?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            self.keys
                .lock()
                .expect("recorder keys lock")
                .insert(space.to_owned(), keys);
        }
        store.put_document(space, &id, bytes).await?;
        let stale: Vec<String> = {
            let mut all = self.keys.lock().expect("recorder keys lock");
            let keys = all.entry(space.to_owned()).or_default();
            // Records made at once may be stored in another order than their ids: keep the
            // keys in id (time) order, so the oldest are the ones dropped.
            let at = keys.partition_point(|k| *k < id);
            keys.insert(at, id);
            let over = keys.len().saturating_sub(keep);
            keys.drain(..over).collect()
        };
        for key in stale {
            store.delete_document(space, &key).await?;
        }
        Ok(())
    }
}

/// Stores `record` as JSON under `id` in `space` in the background, keeping the latest
/// `keep`; a failure is logged as recording `what`, and nothing waits on it.
pub fn record_later<T: serde::Serialize + Send + 'static>(
    app: &Arc<App>,
    space: String,
    id: String,
    record: T,
    keep: usize,
    what: &'static str,
) {
    let app = app.clone();
    tokio::spawn(async move {
        let stored = match serde_json::to_vec(&record) {
            Ok(bytes) => {
                app.recordings
                    .add(app.storage.as_ref(), &space, id, &bytes, keep)
                    .await
            }
            Err(e) => Err(StoreError::Backend(e.to_string())),
        };
        if let Err(e) = stored {
            tracing::warn!(space, "recording {what} failed: {e}");
        }
    });
}

/// Every record `space` holds that reads as a `T`, oldest first.
pub async fn records<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    space: &str,
) -> Result<Vec<T>, StoreError> {
    let docs = crate::store::all_documents(store, space).await?;
    Ok(docs
        .iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
        .collect())
}
