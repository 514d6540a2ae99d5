//! Performs the provider API requests plugins build, for every channel: one pooled HTTP client,
//! one timeout, one cap on response size, and the allow-list of hosts.

use std::collections::HashSet;
use std::time::Duration;

use crate::bindings::wit;

/// The largest provider response body read, in bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a provider request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The plugin built a request the host will not send.
    #[error("refused to send: {0}")]
    Refused(String),
    /// The provider could not be reached or did not answer in time.
    #[error("provider unreachable: {0}")]
    Unreachable(String),
}

/// The host's HTTP client for provider APIs.
#[derive(Clone)]
pub struct ProviderClient {
    client: reqwest::Client,
}

impl ProviderClient {
    /// A client with connection reuse and the given per-request timeout.
    pub fn new(timeout: Duration) -> anyhow::Result<ProviderClient> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(64)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("plugboard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ProviderClient { client })
    }

    /// Sends `req` if its host is allowed, and reads the answer (up to 1 MiB).
    pub async fn perform(
        &self,
        allowed_hosts: &HashSet<String>,
        req: wit::HttpRequest,
    ) -> Result<wit::HttpResponse, TransportError> {
        let url = url::Url::parse(&req.url)
            .map_err(|e| TransportError::Refused(format!("bad URL {:?}: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TransportError::Refused(format!(
                "URL scheme {} is not http or https",
                url.scheme()
            )));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !allowed_hosts.contains(&host) {
            return Err(TransportError::Refused(format!(
                "host {host} is not among the channel's allowed hosts ({}); set the plugin's API base URL setting to reach another host",
                {
                    let mut v: Vec<_> = allowed_hosts.iter().cloned().collect();
                    v.sort();
                    v.join(", ")
                }
            )));
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| TransportError::Refused(format!("bad method {:?}", req.method)))?;
        let mut builder = self.client.request(method, url);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut resp = builder
            .body(req.body)
            .send()
            .await
            .map_err(|e| TransportError::Unreachable(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TransportError::Unreachable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TransportError::Unreachable(format!(
                    "response body exceeds {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(wit::HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
