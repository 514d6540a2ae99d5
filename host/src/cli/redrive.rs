//! `plugboard redrive --channel NAME --config FILE`: asks the running host of that
//! configuration (its `listen` address, its `admin_token`) to redrive the webhooks its channel
//! keeps, and prints the report. A thin client of `POST /api/v1/admin/channels/{name}/redrive`:
//! the host that holds the data does the work.

use crate::config::Config;

/// Redrives `channel` on the host `config` describes; the report, and whether every kept
/// request went through.
pub async fn run(config: &Config, channel: &str) -> anyhow::Result<(serde_json::Value, bool)> {
    let path = format!("/api/v1/admin/channels/{channel}/redrive");
    let body = crate::cli::admin::call(config, reqwest::Method::POST, &path).await?;
    let done = body["still_failing"]
        .as_array()
        .is_some_and(|failing| failing.is_empty());
    Ok((body, done))
}
