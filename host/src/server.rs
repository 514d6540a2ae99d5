//! The HTTP server: routes, shared state, protections at the edge, graceful shutdown.
//!
//! Edge protections (promise 4 and 5 of the reliability issue):
//! * connections are served by hyper's HTTP/1 server directly: a client must send a request's
//!   whole head within [`HEADER_READ_TIMEOUT`] (slowloris; also closes idle keep-alive
//!   connections), with at most [`MAX_HEADERS`] header fields and [`MAX_HEADER_BYTES`] of head
//!   (else `431`);
//! * every request must complete within [`REQUEST_TIMEOUT`] (a body trickled slowly gets `408`);
//! * API bodies are limited to `server.max_body_bytes` (`413`), as webhook bodies are;
//! * each channel's webhook and each API bearer token have a token-bucket rate limit
//!   ([`crate::ratelimit`]): over it, `429` with `Retry-After`.
//!
//! On SIGTERM or SIGINT the host stops accepting, lets in-flight requests finish (live event
//! streams are ended), waits for in-flight provider sends ([`Outbox::drain`]), all within
//! [`DRAIN_TIMEOUT`], then flushes storage and exits 0.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::agents::Agents;
use crate::app::App;
use crate::events::EventHub;
use crate::outbox::Outbox;
use crate::provider_http::ProviderClient;
use crate::ratelimit::{DEFAULT_API_RATE, DEFAULT_WEBHOOK_RATE, RateLimiter, retry_after_secs};
use crate::routing::Dispatcher;

/// How long a client may take to send a request's head (request line and headers), and how
/// long an idle keep-alive connection stays open (override: `PLUGBOARD_HEADER_READ_TIMEOUT_MS`).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most header fields a request may carry (more: `431`).
pub const MAX_HEADERS: usize = 100;

/// The largest request head, in bytes (larger: `431`).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How long one request may take from its head to its response's head (the body of a
/// streamed response, such as the event stream, is not limited). Longer than the longest
/// wait a handler does (a reply waits up to 10 s for the provider, a write up to 10 s for disk).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight requests and provider sends.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
}

/// A JSON error body `{"error": "..."}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The request-rate limits the edge enforces.
pub struct RateLimits {
    /// Per channel webhook (`/webhooks/{channel}`).
    pub webhook: RateLimiter,
    /// Per `Authorization` header on `/api/v1/...`.
    pub api: RateLimiter,
}

impl RateLimits {
    /// The defaults, or `PLUGBOARD_WEBHOOK_RATE` / `PLUGBOARD_API_RATE` (requests per second,
    /// bursts of twice that; `0` turns a limit off).
    pub fn from_env() -> RateLimits {
        RateLimits {
            webhook: RateLimiter::from_env("PLUGBOARD_WEBHOOK_RATE", DEFAULT_WEBHOOK_RATE),
            api: RateLimiter::from_env("PLUGBOARD_API_RATE", DEFAULT_API_RATE),
        }
    }
}

/// Every route the host serves, with the edge protections, rate limits read from the
/// environment and no shutdown signal.
pub fn router(state: AppState) -> axum::Router {
    let (_, never) = watch::channel(false);
    router_with(state, Arc::new(RateLimits::from_env()), never)
}

/// Every route the host serves, with `limits`; live event streams end when `shutdown` turns
/// true.
pub fn router_with(
    state: AppState,
    limits: Arc<RateLimits>,
    shutdown: watch::Receiver<bool>,
) -> axum::Router {
    let max_body = state.app.config.server.max_body_bytes;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/webhooks/{channel}", any(crate::webhook::handle))
        .route("/webchat/{channel}/widget.js", get(crate::webchat::widget))
        .route(
            "/webchat/{channel}/sessions",
            post(crate::webchat::start_session),
        )
        .route(
            "/webchat/{channel}/messages",
            get(crate::webchat::poll).post(crate::webchat::post_message),
        )
        .route(
            "/webchat/{channel}/offline",
            post(crate::webchat::post_offline),
        )
        .route(
            "/api/v1/conversations",
            get(crate::api::list_conversations).post(crate::api::start_conversation),
        )
        .route(
            "/api/v1/conversations/{id}/messages",
            get(crate::api::list_messages).post(crate::api::reply),
        )
        .route("/api/v1/conversations/{id}/take", post(crate::api::take))
        .route(
            "/api/v1/conversations/{id}/transfer",
            post(crate::api::transfer),
        )
        .route("/api/v1/conversations/{id}/close", post(crate::api::close))
        .route(
            "/api/v1/agents/me/presence",
            put(crate::api::set_presence).get(crate::api::get_presence),
        )
        .route(
            "/api/v1/contacts",
            get(crate::api::list_contacts).post(crate::api::add_contact),
        )
        .route("/api/v1/events", get(crate::api::events))
        .route("/api/v1/admin/plugins", get(crate::api::plugins))
        .route("/api/v1/admin/reload", post(crate::api::reload))
        .route(
            "/api/v1/admin/channels/{name}/test",
            post(crate::api::test_channel),
        )
        .route(
            "/api/v1/admin/channels/{name}/{action}",
            post(crate::api::channel_switch),
        )
        .route(
            "/api/v1/admin/channels/{name}",
            axum::routing::delete(crate::api::delete_channel),
        )
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            api_body_limit,
        ))
        .layer(axum::middleware::from_fn(request_timeout))
        .layer(axum::middleware::from_fn_with_state(
            shutdown,
            end_streams_on_shutdown,
        ))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), limits),
            rate_limit,
        ))
        .with_state(state)
}

/// Builds the host from `app`, serves until SIGINT or SIGTERM, drains, then flushes storage.
pub async fn serve(app: App) -> anyhow::Result<()> {
    // Installed first, so a signal during start-up is a clean stop rather than a kill.
    let signal = ShutdownSignal::install()?;
    let app = Arc::new(app);
    let client = ProviderClient::new(app.config.limits.provider_timeout())?;
    let events = Arc::new(EventHub::new(app.storage.clone()));
    let outbox = Outbox::start(app.clone(), client, events.clone())?;
    let agents = Arc::new(Agents::load(&app.config, app.storage.clone())?);
    let dispatcher = Dispatcher::start(app.clone(), agents.clone(), events.clone(), outbox.clone());
    crate::plugin_watch::spawn(app.clone());
    let listener = tokio::net::TcpListener::bind(&app.config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", app.config.server.listen))?;
    let limits = Arc::new(RateLimits::from_env());
    let header_timeout = std::env::var("PLUGBOARD_HEADER_READ_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(HEADER_READ_TIMEOUT);
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %app.config.server.public_url,
        channels = app.catalog().channels.len(),
        webhook_rate = limits.webhook.rate(),
        api_rate = limits.api.rate(),
        retry = ?outbox.policy(),
        "plugboard ready"
    );
    let state = AppState {
        app: app.clone(),
        outbox: outbox.clone(),
        agents,
        events,
        dispatcher,
    };
    let (stop, stopping) = watch::channel(false);
    let service = router_with(state, limits, stopping.clone());
    let connections = tokio::spawn(accept_loop(listener, service, header_timeout, stopping));

    signal.wait().await;
    tracing::info!("shutting down: no new connections; draining requests and sends");
    stop.send_replace(true);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    // Both at once: an in-flight reply request may be waiting for its send.
    let (requests, sends) = tokio::join!(
        tokio::time::timeout_at(deadline, connections),
        outbox.drain(DRAIN_TIMEOUT),
    );
    if requests.is_err() {
        tracing::warn!("some requests were still running after {DRAIN_TIMEOUT:?}; closed");
    }
    if !sends {
        tracing::warn!(
            "some provider sends were still running after {DRAIN_TIMEOUT:?}; they stay pending and resume at the next start"
        );
    }
    app.storage.flush()?;
    tracing::info!("plugboard stopped");
    Ok(())
}

/// Accepts connections until `stopping` turns true, then asks every connection to finish its
/// request in flight and close, and returns once all have.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    service: axum::Router,
    header_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let http = Arc::new(http);
    // Every connection task holds a sender; when all are gone, the receiver sees the end.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stopping) => break,
        };
        let _ = stream.set_nodelay(true);
        let (http, service, alive) = (http.clone(), service.clone(), alive.clone());
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let mut service = service.clone();
                async move { tower::Service::call(&mut service, req.map(Body::new)).await }
            });
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                        break;
                    }
                    _ = stopped(&mut stopping), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        });
    }
    drop(listener);
    drop(alive);
    let _ = all_closed.recv().await;
}

/// Resolves once `stopping` is true; never, if its sender is gone without saying so.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// SIGINT or SIGTERM.
struct ShutdownSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<ShutdownSignal> {
        Ok(ShutdownSignal {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM handler: {e}"))?,
        })
    }

    async fn wait(mut self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {},
            _ = self.term.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    }
}

/// `413` for an API request whose declared body is over `max` bytes, before reading it (a body
/// without a length is cut at the same size by [`DefaultBodyLimit`]). Webhooks check their own.
async fn api_body_limit(State(max): State<usize>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/api/")
        && let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        && len > max as u64
    {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is {len} bytes; the limit is {max}"),
        );
    }
    next.run(req).await
}

/// `408` for a request not answered within [`REQUEST_TIMEOUT`].
async fn request_timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request did not complete within {REQUEST_TIMEOUT:?}"),
        ),
    }
}

/// Ends streamed event responses when the host shuts down, so draining does not wait on
/// clients that listen forever (they reconnect with `Last-Event-ID` and miss nothing).
async fn end_streams_on_shutdown(
    State(stopping): State<watch::Receiver<bool>>,
    req: Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        return response;
    }
    let (parts, body) = response.into_parts();
    let mut stopping = stopping;
    let stop = async move { stopped(&mut stopping).await };
    Response::from_parts(
        parts,
        Body::from_stream(body.into_data_stream().take_until(stop)),
    )
}

/// `429` with `Retry-After` once a channel's webhook or an API token goes over its rate.
/// Unknown channels share one bucket, and so do API requests without credentials, so a flood of
/// made-up names cannot crowd out the real ones.
async fn rate_limit(
    State((state, limits)): State<(AppState, Arc<RateLimits>)>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let verdict = if let Some(rest) = path.strip_prefix("/webhooks/") {
        let channel = rest.split('/').next().unwrap_or_default();
        if state.app.catalog().channels.contains_key(channel) {
            limits.webhook.check(("channel", channel))
        } else {
            limits.webhook.check(("unknown channel", ()))
        }
    } else if path.starts_with("/api/") {
        match req.headers().get(header::AUTHORIZATION) {
            Some(token) => limits.api.check(("token", token.as_bytes())),
            None => limits.api.check(("anonymous", ())),
        }
    } else {
        Ok(())
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let secs = retry_after_secs(wait);
            tracing::debug!(path, retry_after = secs, "rate limited");
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many requests; retry after {secs}s"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
    }
}
