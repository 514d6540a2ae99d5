//! The HTTP server: routes, shared state, graceful shutdown.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};

use crate::agents::Agents;
use crate::app::App;
use crate::events::EventHub;
use crate::outbox::Outbox;
use crate::provider_http::ProviderClient;
use crate::routing::Dispatcher;

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

/// Every route the host serves.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/webhooks/{channel}", any(crate::webhook::handle))
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
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

/// Builds the host from `app`, serves until SIGINT or SIGTERM, then flushes storage.
pub async fn serve(app: App) -> anyhow::Result<()> {
    let app = Arc::new(app);
    let client = ProviderClient::new(app.config.limits.provider_timeout())?;
    let outbox = Outbox::start(app.clone(), client)?;
    let agents = Arc::new(Agents::load(&app.config, app.storage.clone())?);
    let events = Arc::new(EventHub::new(app.storage.clone()));
    let dispatcher = Dispatcher::start(app.clone(), agents.clone(), events.clone(), outbox.clone());
    let listener = tokio::net::TcpListener::bind(&app.config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", app.config.server.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %app.config.server.public_url,
        channels = app.channels.len(),
        "plugboard ready"
    );
    let state = AppState {
        app: app.clone(),
        outbox,
        agents,
        events,
        dispatcher,
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    app.storage.flush()?;
    tracing::info!("plugboard stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}
