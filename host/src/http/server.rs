//! The HTTP server: routes, shared state, protections at the edge, graceful shutdown.
//!
//! Edge protections (promise 4 and 5 of the reliability issue):
//! * connections are served by hyper's HTTP/1 server directly: a client must send a request's
//!   whole head within [`HEADER_READ_TIMEOUT`] (slowloris; also closes idle keep-alive
//!   connections), with at most [`MAX_HEADERS`] header fields and [`MAX_HEADER_BYTES`] of head
//!   (else `431`);
//! * every request must complete within [`REQUEST_TIMEOUT`] (a body trickled slowly gets `408`);
//! * API bodies are limited to `server.max_body_bytes` (`413`), as webhook bodies are;
//! * each channel's webhook (authenticated calls only) and each API bearer token have a
//!   token-bucket rate limit ([`crate::services::ratelimit`]), and so do failed authentications per
//!   client address (webhooks, API and web chat apart): over it, `429` with `Retry-After`.
//!
//! On SIGTERM or SIGINT the host stops accepting, lets in-flight requests finish (live event
//! streams are ended), waits for in-flight provider sends ([`Outbox::drain`]), all within
//! [`DRAIN_TIMEOUT`], then flushes storage and exits 0. SIGHUP re-reads the configuration and the plugins ([`Signals`]).
//! Every error answer outside `/webhooks` is JSON, axum's own included ([`json_errors`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::runtime::provider_http::ProviderClient;
use crate::services::agents::Agents;
use crate::services::app::App;
use crate::services::events::EventHub;
use crate::services::outbox::Outbox;
use crate::services::ratelimit::address_key;
use crate::services::routing::Dispatcher;

use super::edge::AuthArea;
pub use super::edge::{
    AppState, ClientAddr, Edge, RateLimits, bearer_token, error_response, too_many_requests,
};

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
    let max_body = state.app.config().server.max_body_bytes;
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::http::metrics::scrape))
        .route("/webhooks/{channel}", any(crate::http::webhook::handle))
        .route(
            "/integrations/{name}",
            any(crate::http::integrations::crm_call),
        )
        .route(
            "/api/v1/integration/conversations",
            post(crate::http::integrations::start),
        )
        .route(
            "/api/v1/integration/conversations/{id}/messages",
            post(crate::http::integrations::post_message),
        )
        .route(
            "/api/v1/integration/contacts",
            post(crate::http::integrations::add_contact),
        )
        .route(
            "/api/v1/admin/deliveries",
            get(crate::http::integrations::deliveries),
        )
        .route(
            "/api/v1/admin/deliveries/{target}/redeliver",
            post(crate::http::integrations::redeliver_all),
        )
        .route(
            "/api/v1/admin/deliveries/{target}/{event}/redeliver",
            post(crate::http::integrations::redeliver_one),
        )
        .route(
            "/api/v1/admin/channels/{name}/kept",
            get(crate::http::traffic::kept),
        )
        .route(
            "/api/v1/admin/channels/{name}/shadow",
            get(crate::http::traffic::shadow_report)
                .put(crate::http::traffic::attach_shadow)
                .delete(crate::http::traffic::detach_shadow),
        )
        .route(
            "/api/v1/admin/channels/{name}/corpus",
            get(crate::http::traffic::corpus),
        )
        .route(
            "/api/v1/admin/channels/{name}/replay",
            post(crate::http::traffic::replay),
        )
        .route(
            "/api/v1/admin/queues/{name}/decisions",
            get(crate::http::traffic::decisions),
        )
        .route(
            "/api/v1/admin/channels/{name}/redrive",
            post(crate::http::traffic::redrive),
        )
        .route(
            "/api/v1/admin/targets",
            get(crate::http::integrations::targets),
        )
        .merge(crate::http::webchat::routes(state.clone()))
        .route(
            "/api/v1/conversations",
            get(crate::http::api::list_conversations).post(crate::http::api::start_conversation),
        )
        .route(
            "/api/v1/conversations/{id}",
            get(crate::http::api::get_conversation),
        )
        .route(
            "/api/v1/conversations/{id}/notes",
            post(crate::http::api::add_note),
        )
        .route(
            "/api/v1/conversations/{id}/read",
            post(crate::http::api::mark_read),
        )
        .route(
            "/api/v1/conversations/{id}/reopen",
            post(crate::http::api::reopen),
        )
        .route(
            "/api/v1/session",
            post(crate::http::console::sign_in).delete(crate::http::console::sign_out),
        )
        .route("/api/v1/agents/me", get(crate::http::console::whoami))
        .route("/api/v1/agents", get(crate::http::console::colleagues))
        .route("/api/v1/queues", get(crate::http::console::queues))
        .route("/api/v1/stats/{scope}", get(crate::http::stats::stats))
        .route("/api/v1/channels", get(crate::http::console::channels))
        .route("/console", get(crate::http::console::file))
        .route("/console/", get(crate::http::console::file))
        .route("/console/{file}", get(crate::http::console::file))
        .route(
            "/api/v1/conversations/{id}/messages",
            get(crate::http::api::list_messages).post(crate::http::api::reply),
        )
        .route(
            "/api/v1/conversations/{id}/take",
            post(crate::http::api::take),
        )
        .route(
            "/api/v1/conversations/{id}/transfer",
            post(crate::http::api::transfer),
        )
        .route(
            "/api/v1/conversations/{id}/close",
            post(crate::http::api::close),
        )
        .route(
            "/api/v1/agents/me/presence",
            put(crate::http::api::set_presence).get(crate::http::api::get_presence),
        )
        .route(
            "/api/v1/contacts",
            get(crate::http::api::list_contacts).post(crate::http::api::add_contact),
        )
        .route("/api/v1/events", get(crate::http::api::events))
        .route("/api/v1/admin/plugins", get(crate::http::api::plugins))
        .route("/api/v1/admin/reload", post(crate::http::api::reload))
        .route(
            "/api/v1/admin/channels/{name}/test",
            post(crate::http::api::test_channel),
        )
        .route(
            "/api/v1/admin/channels/{name}/{action}",
            post(crate::http::api::channel_switch),
        )
        .route(
            "/api/v1/admin/channels/{name}",
            axum::routing::delete(crate::http::api::delete_channel),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn(json_errors))
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
        // Outermost, so refusals by the layers inside (429, 408, 413) carry CORS headers too
        // and an allowed page can read them.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::cors::api_cors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::metrics::record_request,
        ))
        .with_state(state)
}

/// Builds the host from `app`, serves until SIGINT or SIGTERM, drains, then flushes storage;
/// SIGHUP re-reads the configuration and the plugins (see [`Signals`]).
pub async fn serve(app: App) -> anyhow::Result<()> {
    serve_with(app, Signals::install()?).await
}

/// [`serve`] with `signals` installed by the caller, before its start-up work (loading the
/// configuration and compiling plugins), so a signal during start-up is never a kill.
pub async fn serve_with(app: App, signals: Signals) -> anyhow::Result<()> {
    let Signals {
        shutdown: signal,
        #[cfg(unix)]
        hangup,
    } = signals;
    let app = Arc::new(app);
    let client = ProviderClient::new(app.config().limits.provider_timeout())?;
    let events = Arc::new(EventHub::new(app.storage.clone(), &app.config()));
    let outbox = Outbox::start(app.clone(), client, events.clone()).await?;
    let agents = Arc::new(Agents::load(&app.config(), app.storage.clone()).await?);
    let dispatcher = Dispatcher::start(app.clone(), agents.clone(), events.clone(), outbox.clone());
    crate::services::cluster::start(crate::services::cluster::Cluster {
        app: app.clone(),
        agents: agents.clone(),
        events: events.clone(),
        dispatcher: dispatcher.clone(),
        outbox: outbox.clone(),
    });
    crate::services::plugin_watch::spawn(app.clone());
    let listener = tokio::net::TcpListener::bind(&app.config().server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", app.config().server.listen))?;
    let limits = Arc::new(RateLimits::from_env());
    let header_timeout = crate::config::env_millis("PLUGBOARD_HEADER_READ_TIMEOUT_MS")
        .unwrap_or(HEADER_READ_TIMEOUT);
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %app.config().server.public_url,
        channels = app.catalog().channels.len(),
        webhook_rate = limits.webhook.rate(),
        api_rate = limits.api.rate(),
        retry = ?outbox.policy(),
        "plugboard ready"
    );
    let bots = crate::services::bots::Bots::new(
        app.clone(),
        events.clone(),
        dispatcher.clone(),
        outbox.clone(),
        ProviderClient::new(app.config().limits.provider_timeout())?,
    );
    bots.resume().await;
    let hooks = crate::services::hooks::Hooks::start(app.clone(), events.clone()).await;
    let state = AppState {
        app: app.clone(),
        outbox: outbox.clone(),
        agents,
        events,
        dispatcher,
        bots,
        hooks,
    };
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(state.reloader(), hangup));
    let (stop, stopping) = watch::channel(false);
    if let Some(addr) = &app.config().server.metrics_listen {
        let private = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (server.metrics_listen): {e}"))?;
        tracing::info!(metrics_listen = %private.local_addr()?, "metrics served without a token on this address");
        tokio::spawn(accept_loop(
            private,
            crate::http::metrics::private_router(state.clone()),
            header_timeout,
            stopping.clone(),
        ));
    }
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
    app.storage.close().await?;
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
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer.ip()));
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

/// The process signals the server handles: SIGINT and SIGTERM stop it gracefully; SIGHUP
/// (which would otherwise kill the process) re-reads the configuration and the plugins, as
/// `POST /api/v1/admin/reload` does, and never stops the server. Install them before start-up work.
pub struct Signals {
    shutdown: ShutdownSignal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; from then on these signals no longer kill the process. Must run
    /// inside a tokio runtime.
    pub fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            shutdown: ShutdownSignal::install()?,
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| anyhow::anyhow!("cannot install the SIGHUP handler: {e}"))?,
        })
    }
}

/// Re-reads the configuration file and the plugins on every SIGHUP, as `POST
/// /api/v1/admin/reload` does; a refused reload changes nothing and is logged.
#[cfg(unix)]
async fn reload_on_hangup(
    reloader: crate::services::reload::Reloader,
    mut hangup: tokio::signal::unix::Signal,
) {
    while hangup.recv().await.is_some() {
        tracing::info!(
            "SIGHUP received: re-reading the configuration and the plugins, as POST /api/v1/admin/reload does"
        );
        if let Err(e) = reloader.reload().await {
            tracing::error!("SIGHUP reload: {e}");
        }
    }
}

/// SIGINT or SIGTERM.
struct ShutdownSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<ShutdownSignal> {
        #[cfg(unix)]
        let handler = |kind, name| {
            tokio::signal::unix::signal(kind)
                .map_err(|e| anyhow::anyhow!("cannot install the {name} handler: {e}"))
        };
        Ok(ShutdownSignal {
            #[cfg(unix)]
            term: handler(tokio::signal::unix::SignalKind::terminate(), "SIGTERM")?,
            #[cfg(unix)]
            interrupt: handler(tokio::signal::unix::SignalKind::interrupt(), "SIGINT")?,
        })
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.term.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `200 ok`, or `503` with the reason when the host cannot do its job (storage out of service
/// after a failed disk write): what a supervisor restarts it on.
async fn healthz(State(state): State<AppState>) -> Response {
    match crate::services::health::host_problem(state.app.storage.as_ref()) {
        None => "ok".into_response(),
        Some(reason) => error_response(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// `405` for a method the path does not take (axum adds the `Allow` header).
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// The largest error body [`json_errors`] rewrites (axum's own are a line of text).
const MAX_REWRITTEN_ERROR: usize = 16 * 1024;

/// Makes every error answer outside `/webhooks` (whose answers are the plugins') a JSON
/// `{"error": ...}` like the handlers' own: axum answers a malformed query string, path or
/// body with plain text and an unknown method with an empty body. Status and other headers
/// (`Allow`, `Retry-After`) are kept.
async fn json_errors(req: Request, next: Next) -> Response {
    let webhook = req.uri().path().starts_with("/webhooks/");
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if webhook || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REWRITTEN_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_ascii_lowercase()
    } else {
        text
    };
    let (json_parts, json_body) = error_response(status, message).into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(content_type) = json_parts.headers.get(header::CONTENT_TYPE) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    Response::from_parts(parts, json_body)
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

/// `429` with `Retry-After` once a channel's webhook or an API token goes over its rate, or a
/// client address has failed authentication too often (then before its credentials are
/// looked at). A webhook call spends its channel's limit only once the plugin authenticated it
/// ([`Edge::webhook_authenticated`]), so unsigned junk cannot use up a channel's budget.
/// Unknown channels share one bucket, so a flood of made-up names cannot crowd out the real
/// ones. API requests are limited per bearer token, per console session cookie, and, without
/// either (sign-ins, preflights), per client address: one client's flood of sign-ins cannot
/// keep the others out.
async fn rate_limit(
    State((state, limits)): State<(AppState, Arc<RateLimits>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = address_key(
        req.extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0),
    );
    let path = req.uri().path();
    let (area, verdict) = if let Some(rest) = path.strip_prefix("/webhooks/") {
        let channel = rest.split('/').next().unwrap_or_default();
        let verdict = if state.app.catalog().channels.contains_key(channel) {
            limits
                .auth_failures
                .peek((AuthArea::Webhook, client))
                .and_then(|()| limits.webhook.peek(("channel", channel)))
        } else {
            limits.webhook.check(("unknown channel", ()))
        };
        (None, verdict)
    } else if path.starts_with("/api/") {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let session = crate::http::edge::cookie(req.headers(), crate::http::api::SESSION_COOKIE);
        let signing_in = path == "/api/v1/session" && req.method() == axum::http::Method::POST;
        let verdict = limits
            .auth_failures
            .peek((AuthArea::Api, client))
            .and_then(|()| match (token, session) {
                (Some(t), _) if !signing_in => limits.api.check(("token", t)),
                (None, Some(s)) if !signing_in => limits.api.check(("session", s)),
                _ => limits.api.check(("address", client)),
            });
        (Some(AuthArea::Api), verdict)
    } else if path.starts_with("/webchat/") {
        let verdict = limits.auth_failures.peek((AuthArea::Webchat, client));
        (Some(AuthArea::Webchat), verdict)
    } else if path == "/metrics" {
        // Wrong metrics tokens count against the address like the API's.
        let verdict = limits.auth_failures.peek((AuthArea::Api, client));
        (Some(AuthArea::Api), verdict)
    } else {
        (None, Ok(()))
    };
    if let Err(wait) = verdict {
        tracing::debug!(path, %client, "rate limited");
        return too_many_requests(wait);
    }
    req.extensions_mut().insert(Edge {
        limits: limits.clone(),
        client,
    });
    let response = next.run(req).await;
    if let Some(area) = area
        && response.status() == StatusCode::UNAUTHORIZED
    {
        let _ = limits.auth_failures.check((area, client));
    }
    response
}
