//! `GET /metrics`: the Prometheus text of [`crate::metrics`], on the main listener behind
//! `server.metrics_token` (a Bearer token), or without one on `server.metrics_listen` (a
//! private interface); and the middleware that counts and times every HTTP request by its
//! route template.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::http::edge::{AppState, bearer_token, error_response};
use crate::metrics::UNMATCHED;

/// `GET /metrics` on the main listener: the token must match `server.metrics_token`.
pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(expected) = &state.app.config().server.metrics_token else {
        return error_response(
            StatusCode::NOT_FOUND,
            "metrics are off on this listener: set server.metrics_token (or read them on server.metrics_listen)",
        );
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match sent {
        Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => {
            render(&state).await
        }
        _ => {
            let mut r = error_response(
                StatusCode::UNAUTHORIZED,
                "GET /metrics needs Authorization: Bearer <server.metrics_token>",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"plugboard metrics\""),
            );
            r
        }
    }
}

/// `GET /metrics` on `server.metrics_listen`: no token.
pub async fn scrape_private(State(state): State<AppState>) -> Response {
    render(&state).await
}

async fn render(state: &AppState) -> Response {
    let now = crate::services::gauges::snapshot(&state.app, &state.agents).await;
    match state.app.metrics.render(&now) {
        Some(text) => {
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
        }
        None => error_response(StatusCode::NOT_FOUND, "metrics are off"),
    }
}

/// The router of `server.metrics_listen`: `/metrics` only.
pub fn private_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape_private))
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "this listener serves only GET /metrics",
            )
        })
        .with_state(state)
}

/// Counts and times every request by its route template (`/api/v1/conversations/{id}`, never
/// the path itself), to the answer's head.
pub async fn record_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.app.metrics.is_on() {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .app
        .metrics
        .http(&route, response.status().as_u16(), started.elapsed());
    response
}
