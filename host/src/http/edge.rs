//! What every handler shares: the application state, the edge's rate limits and client
//! address, and the JSON error and `429` answers. Apart from the server, so handlers and the
//! server that routes to them do not import each other.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::services::agents::Agents;
use crate::services::app::App;
use crate::services::events::EventHub;
use crate::services::outbox::Outbox;
use crate::services::ratelimit::{
    DEFAULT_API_RATE, DEFAULT_AUTH_FAILURE_RATE, DEFAULT_WEBHOOK_RATE, MAX_BUCKETS, RateLimiter,
    retry_after_secs,
};
use crate::services::routing::Dispatcher;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// Configuration, plugins, storage.
    pub app: Arc<App>,
    /// The outbound queue.
    pub outbox: Arc<Outbox>,
    /// Agents' presence and routing facts.
    pub agents: Arc<Agents>,
    /// The event log and live streams.
    pub events: Arc<EventHub>,
    /// Offers waiting work.
    pub dispatcher: Arc<Dispatcher>,
    /// Runs the bots' turns.
    pub bots: Arc<crate::services::bots::Bots>,
    /// Event deliveries to subscribers and integrations.
    pub hooks: Arc<crate::services::hooks::Hooks>,
}

impl AppState {
    /// What a reload of the configuration reaches.
    pub fn reloader(&self) -> crate::services::reload::Reloader {
        crate::services::reload::Reloader {
            app: self.app.clone(),
            agents: self.agents.clone(),
            events: self.events.clone(),
            dispatcher: self.dispatcher.clone(),
        }
    }

    /// The agents' actions on conversations, borrowed from this state.
    pub fn actions(&self) -> crate::services::conversations::Actions<'_> {
        crate::services::conversations::Actions {
            app: &self.app,
            agents: &self.agents,
            events: &self.events,
            dispatcher: &self.dispatcher,
            outbox: &self.outbox,
        }
    }

    /// What integrations do on their own initiative, borrowed from this state.
    pub fn outreach(&self) -> crate::services::outreach::Outreach<'_> {
        crate::services::outreach::Outreach {
            app: &self.app,
            events: &self.events,
            dispatcher: &self.dispatcher,
            outbox: &self.outbox,
        }
    }

    /// The services intake needs, borrowed from this state.
    pub fn intake(&self) -> crate::services::intake::Services<'_> {
        crate::services::intake::Services {
            app: &self.app,
            events: &self.events,
            dispatcher: &self.dispatcher,
            outbox: &self.outbox,
            bots: &self.bots,
        }
    }
}

/// A JSON error body `{"error": "..."}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Parses a JSON body, or answers 400 with an example of the expected shape. (Handlers return
/// the answer they give as their error, so its size is theirs.)
#[allow(clippy::result_large_err)]
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    example: &str,
) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error_response(
            StatusCode::BAD_REQUEST,
            format!("body must be JSON like {example}: {e}"),
        )
    })
}

/// The request-rate limits the edge enforces.
pub struct RateLimits {
    /// Per channel webhook (`/webhooks/{channel}`), spent by authenticated calls only.
    pub webhook: RateLimiter,
    /// Per bearer token on `/api/v1/...` (normalized: see [`bearer_token`]).
    pub api: RateLimiter,
    /// Failed authentications per client address, webhooks, API and web chat apart.
    pub auth_failures: RateLimiter,
    /// Web chat visitors (sessions per address, messages and polls per session), at each
    /// channel's configured rates.
    pub webchat: RateLimiter,
}

impl RateLimits {
    /// The defaults, or `PLUGBOARD_WEBHOOK_RATE` / `PLUGBOARD_API_RATE` /
    /// `PLUGBOARD_AUTH_FAILURE_RATE` (per second, bursts of twice that; `0` turns a limit off).
    pub fn from_env() -> RateLimits {
        RateLimits {
            webhook: RateLimiter::from_env("PLUGBOARD_WEBHOOK_RATE", DEFAULT_WEBHOOK_RATE),
            api: RateLimiter::from_env("PLUGBOARD_API_RATE", DEFAULT_API_RATE),
            auth_failures: RateLimiter::from_env(
                "PLUGBOARD_AUTH_FAILURE_RATE",
                DEFAULT_AUTH_FAILURE_RATE,
            ),
            webchat: RateLimiter::new(0.0, MAX_BUCKETS),
        }
    }
}

/// The client's address as its TCP connection shows it (set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// What handlers get from the edge: the limits, and the client address they are keyed on.
#[derive(Clone)]
pub struct Edge {
    /// The shared limits.
    pub limits: Arc<RateLimits>,
    /// The client's address as limits key it ([`crate::services::ratelimit::address_key`]).
    pub client: IpAddr,
}

/// Where a request's failed authentications are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AuthArea {
    Webhook,
    Api,
    Webchat,
}

impl Edge {
    /// Spends the channel's webhook limit for an authenticated call (`Err`: over it).
    pub fn webhook_authenticated(&self, channel: &str) -> Result<(), Duration> {
        self.limits.webhook.check(("channel", channel))
    }

    /// Counts a webhook call the channel's plugin refused (failed authentication or
    /// malformed) against this client address.
    pub fn webhook_refused(&self) {
        let _ = self
            .limits
            .auth_failures
            .check((AuthArea::Webhook, self.client));
    }
}

/// The token of an `Authorization: Bearer <token>` header value: the scheme matched
/// case-insensitively, any run of spaces or tabs around the token ignored (so every spelling of
/// one token is one token to limits and lookups); `None` when it is not that shape.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
    let token = rest.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains([' ', '\t']))
        .then_some(token)
}

/// `429` with `Retry-After` for a request over a limit.
pub fn too_many_requests(wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many requests; retry after {secs}s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// The value of cookie `name` in a request's `Cookie` headers, if sent.
pub fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}
