//! `plugboard redrive --channel NAME --config FILE`: asks the running host of that
//! configuration (its `listen` address, its `admin_token`) to redrive the webhooks its channel
//! keeps, and prints the report. A thin client of `POST /api/v1/admin/channels/{name}/redrive`:
//! the host that holds the data does the work.

use anyhow::Context;

use crate::config::Config;

/// Redrives `channel` on the host `config` describes; the report, and whether every kept
/// request went through.
pub async fn run(config: &Config, channel: &str) -> anyhow::Result<(serde_json::Value, bool)> {
    let token = config
        .server
        .admin_token
        .as_deref()
        .context("the configuration has no server.admin_token: the admin API is off")?;
    let listen = config.server.listen.replace("0.0.0.0", "127.0.0.1");
    let url = format!("http://{listen}/api/v1/admin/channels/{channel}/redrive");
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the host at {url}: is it running?"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("the host answered {status} without JSON"))?;
    if !status.is_success() {
        anyhow::bail!(
            "the host refused the redrive ({status}): {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    let done = body["still_failing"]
        .as_array()
        .is_some_and(|failing| failing.is_empty());
    Ok((body, done))
}
