//! Access tokens for channels whose provider wants one first (LINE WORKS' service-account JWT
//! exchange and the like), through the contract's `prepare-token` / `read-token-response` pair.
//! A token is fetched once per channel instance and reused until shortly before it expires;
//! a send refused as unauthorized drops it so the next attempt fetches a fresh one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::runtime::bindings::describe_send_error;
use crate::runtime::provider_http::{ProviderClient, TransportError};
use crate::runtime::sandbox::{PluginError, Sandbox};
use crate::services::catalog::ChannelInstance;

/// Refresh this long before expiry at most (less for short-lived tokens: a tenth of the life).
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Clone)]
enum Cached {
    /// The channel uses no token.
    NotNeeded,
    /// A token and when to fetch the next one.
    Token { value: String, refresh_at: Instant },
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Worth retrying later (provider unreachable, 5xx, throttled, plugin busy).
    #[error("token: {0}")]
    Retryable(String),
    /// Will not work until the configuration changes (bad credentials, plugin error).
    #[error("token: {0}")]
    Permanent(String),
}

/// Tokens by channel instance.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Cached>>,
    fetching: tokio::sync::Mutex<()>,
}

impl TokenCache {
    /// The channel's current token (fetching one if needed), or `None` if it uses none.
    pub async fn get(
        &self,
        sandbox: &Arc<Sandbox>,
        client: &ProviderClient,
        channel: &ChannelInstance,
    ) -> Result<Option<String>, TokenError> {
        if let Some(hit) = self.cached(&channel.name) {
            return Ok(hit);
        }
        // One fetch at a time: concurrent sends wait for it instead of all fetching.
        let _guard = self.fetching.lock().await;
        if let Some(hit) = self.cached(&channel.name) {
            return Ok(hit);
        }
        let fetched = fetch(sandbox, client, channel).await?;
        let (entry, out) = match fetched {
            None => (Cached::NotNeeded, None),
            Some((value, life)) => {
                let margin = MAX_REFRESH_MARGIN.min(life / 10);
                let refresh_at = Instant::now() + life.saturating_sub(margin);
                tracing::info!(channel = %channel.name, expires_in = ?life, "access token obtained");
                (
                    Cached::Token {
                        value: value.clone(),
                        refresh_at,
                    },
                    Some(value),
                )
            }
        };
        self.entries
            .lock()
            .expect("token cache lock")
            .insert(channel.name.clone(), entry);
        Ok(out)
    }

    fn cached(&self, channel: &str) -> Option<Option<String>> {
        match self
            .entries
            .lock()
            .expect("token cache lock")
            .get(channel)?
        {
            Cached::NotNeeded => Some(None),
            Cached::Token { value, refresh_at } if Instant::now() < *refresh_at => {
                Some(Some(value.clone()))
            }
            Cached::Token { .. } => None,
        }
    }

    /// Drops the channel's token (the provider refused it).
    pub fn invalidate(&self, channel: &str) {
        self.entries
            .lock()
            .expect("token cache lock")
            .remove(channel);
    }
}

async fn fetch(
    sandbox: &Arc<Sandbox>,
    client: &ProviderClient,
    channel: &ChannelInstance,
) -> Result<Option<(String, Duration)>, TokenError> {
    let plugin = &channel.plugin;
    let request = match plugin
        .prepare_token(sandbox, &channel.name, channel.settings.clone())
        .await
    {
        Err(e) => return Err(plugin_error(&e)),
        Ok(Err(e)) => return Err(send_error(&e)),
        Ok(Ok(None)) => return Ok(None),
        Ok(Ok(Some(req))) => req,
    };
    let response = client
        .perform(&channel.allowed_hosts, request)
        .await
        .map_err(|e| match e {
            TransportError::Refused(m) => TokenError::Permanent(m),
            TransportError::Unreachable(m) => TokenError::Retryable(m),
        })?;
    let grant = plugin
        .read_token_response(sandbox, &channel.name, response, channel.settings.clone())
        .await
        .map_err(|e| plugin_error(&e))?
        .map_err(|e| send_error(&e))?;
    Ok(Some((grant.token, Duration::from_secs(grant.expires_in))))
}

fn plugin_error(e: &PluginError) -> TokenError {
    match e {
        PluginError::Timeout { .. } | PluginError::Busy { .. } => {
            TokenError::Retryable(e.to_string())
        }
        _ => TokenError::Permanent(e.to_string()),
    }
}

fn send_error(e: &crate::runtime::bindings::wit::SendError) -> TokenError {
    use crate::runtime::bindings::wit::SendError;
    match e {
        SendError::RateLimited(_) | SendError::Unavailable(_) => {
            TokenError::Retryable(describe_send_error(e))
        }
        _ => TokenError::Permanent(describe_send_error(e)),
    }
}
