//! The command line as a client of a running host's admin API: the address and the admin
//! token come from that host's configuration (`listen`, `server.admin_token`).

use anyhow::Context as _;
use serde_json::Value;

use crate::config::Config;

/// `method` `path` (`/api/v1/admin/...`) on the running host of `config`: the answer's JSON,
/// or an error naming why the host could not be asked or refused.
pub async fn call(config: &Config, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
    let token = config
        .server
        .admin_token
        .as_deref()
        .context("the configuration has no server.admin_token: the admin API is off")?;
    let listen = config.server.listen.replace("0.0.0.0", "127.0.0.1");
    let url = format!("http://{listen}{path}");
    let resp = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the host at {url}: is it running?"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .with_context(|| format!("the host answered {status} without JSON"))?;
    anyhow::ensure!(
        status.is_success(),
        "the host refused ({status}): {}",
        body["error"].as_str().unwrap_or("no reason given")
    );
    Ok(body)
}
