//! A corpus of real traffic: with `record = N` on a channel, the host keeps the latest N
//! authentic webhook requests it got (those its plugin read: method, public URL, headers, raw
//! body, time), durably, for `plugboard replay --corpus` to run a candidate plugin over. The
//! signature headers stay (a replay re-verifies them, at the recorded time); cookies are
//! dropped; secrets live in settings, never in a request. Admins read it through
//! `GET /api/v1/admin/channels/{name}/corpus`.

use std::sync::Arc;

use base64::Engine as _;

use crate::clock::Clock;
use crate::runtime::bindings::wit;
use crate::services::app::App;
use crate::services::quarantine::KeptRequest;
use crate::services::recording::{record_id, record_later, records};
use crate::store::StoreError;

/// The most requests a channel may record.
pub const MAX_RECORD: u32 = 10_000;

fn space(channel: &str) -> String {
    format!("corpus/{channel}")
}

/// Records the request `request` builds to `channel` in the background, if the channel records
/// (only then is it built).
pub fn record(app: &Arc<App>, channel: &str, request: impl FnOnce() -> wit::HttpRequest) {
    let keep = app.config().channel(channel).map_or(0, |c| c.record) as usize;
    if keep == 0 {
        return;
    }
    let request = request();
    let id = record_id();
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
        received_at: Clock::System.now_millis(),
        error: String::new(),
        redrives: 0,
    };
    record_later(
        app,
        space(channel),
        id,
        record,
        keep,
        "a webhook for the corpus",
    );
}

/// Every request `channel`'s corpus holds, oldest first.
pub async fn requests(app: &App, channel: &str) -> Result<Vec<KeptRequest>, StoreError> {
    records(app.storage.as_ref(), &space(channel)).await
}
