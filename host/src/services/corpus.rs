//! A corpus of real traffic: with `record = N` on a channel, the host keeps the latest N
//! authentic webhook requests it got (those its plugin read: method, public URL, headers, raw
//! body, time), durably, for `plugboard replay --corpus` to run a candidate plugin over. The
//! signature headers stay (a replay re-verifies them, at the recorded time); cookies are
//! dropped; secrets live in settings, never in a request. Admins read it through
//! `GET /api/v1/admin/channels/{name}/corpus`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use crate::clock::Clock;
use crate::runtime::bindings::wit;
use crate::services::app::App;
use crate::services::quarantine::KeptRequest;
use crate::store::StoreError;

/// The most requests a channel may record.
pub const MAX_RECORD: u32 = 10_000;

fn space(channel: &str) -> String {
    format!("corpus/{channel}")
}

/// The keys each channel's corpus holds, oldest first, read from the store at its first
/// recording after a start.
#[derive(Default)]
pub struct Recorder {
    keys: Mutex<HashMap<String, VecDeque<String>>>,
    /// Serializes recordings, so the count and the trimming stay right.
    writing: tokio::sync::Mutex<()>,
}

impl Recorder {
    /// Records the request `request` builds to `channel` in the background, if the channel
    /// records (only then is it built).
    pub fn record(app: &Arc<App>, channel: &str, request: impl FnOnce() -> wit::HttpRequest) {
        let keep = app.config().channel(channel).map_or(0, |c| c.record) as usize;
        if keep == 0 {
            return;
        }
        let request = request();
        let (app, channel) = (app.clone(), channel.to_owned());
        tokio::spawn(async move {
            if let Err(e) = app.corpus.add(&app, &channel, request, keep).await {
                tracing::warn!(channel, "recording a webhook for the corpus failed: {e}");
            }
        });
    }

    async fn add(
        &self,
        app: &App,
        channel: &str,
        request: wit::HttpRequest,
        keep: usize,
    ) -> Result<(), StoreError> {
        let _one = self.writing.lock().await;
        let space = space(channel);
        let known = self
            .keys
            .lock()
            .expect("corpus keys lock")
            .contains_key(channel);
        if !known {
            let keys: VecDeque<String> = crate::store::all_documents(app.storage.as_ref(), &space)
                .await?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            self.keys
                .lock()
                .expect("corpus keys lock")
                .insert(channel.to_owned(), keys);
        }
        let now = Clock::System.now_millis();
        let id = format!("{now:015}-{:08x}", rand::random::<u32>());
        let record = KeptRequest {
            id: id.clone(),
            channel: channel.to_owned(),
            method: request.method,
            url: request.url,
            headers: request
                .headers
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("cookie"))
                .collect(),
            body: base64::engine::general_purpose::STANDARD.encode(&request.body),
            received_at: now,
            error: String::new(),
            redrives: 0,
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| StoreError::Backend(e.to_string()))?;
        app.storage.put_document(&space, &id, &bytes).await?;
        let stale: Vec<String> = {
            let mut all = self.keys.lock().expect("corpus keys lock");
            let keys = all.entry(channel.to_owned()).or_default();
            keys.push_back(id);
            let over = keys.len().saturating_sub(keep);
            keys.drain(..over).collect()
        };
        for key in stale {
            app.storage.delete_document(&space, &key).await?;
        }
        Ok(())
    }
}

/// Every request `channel`'s corpus holds, oldest first.
pub async fn requests(app: &App, channel: &str) -> Result<Vec<KeptRequest>, StoreError> {
    let docs = crate::store::all_documents(app.storage.as_ref(), &space(channel)).await?;
    Ok(docs
        .iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
        .collect())
}
