//! `/webhooks/{channel}`: where providers call. The plugin authenticates and parses the call;
//! the host stores its events durably, answers with the plugin's response, then routes new work.
//!
//! Status codes: unknown channel 404, body over the limit 413, failed authentication 403 (and
//! nothing stored), malformed 400, plugin failure 500 (503 on a deadline), storage not durable
//! in time 503. An authentic call with nothing the plugin handles is answered 2xx.

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::http::edge::{AppState, Edge, error_response, too_many_requests};
use crate::runtime::bindings::wit;
use crate::runtime::sandbox::PluginError;
use crate::services::intake::{self, IntakeError, check_outcome_size};
use crate::services::quarantine;

/// Handles one provider call to a channel's webhook. Only an authenticated call spends the
/// channel's rate limit; a refused one counts against the caller's address instead.
pub async fn handle(
    State(state): State<AppState>,
    edge: Extension<Edge>,
    Path(channel_name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = answer(&state, edge, &channel_name, method, uri, headers, body).await;
    let app = &state.app;
    if app.metrics.is_on() {
        let channel = crate::metrics::channel_label(&app.config(), &channel_name);
        app.metrics.webhook(&channel, response.status().as_u16());
    }
    response
}

/// The answer to one webhook call (what [`handle`] counts).
async fn answer(
    state: &AppState,
    Extension(edge): Extension<Edge>,
    channel_name: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let channel_name = channel_name.to_owned();
    let app = &state.app;
    let Some(channel) = app
        .live_channel(&channel_name)
        .filter(|c| !c.plugin.manifest.hosted_chat)
    else {
        if let Some(reason) = app.catalog().unavailable.get(&channel_name) {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, reason.clone());
        }
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no channel named {channel_name:?} is configured"),
        );
    };
    if method != Method::GET && method != Method::POST {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("webhooks take GET or POST, not {method}"),
        );
    }
    let limit = app.config().server.max_body_bytes;
    let body = match read_limited(body, &headers, limit).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };

    let mut url = format!(
        "{}/webhooks/{}",
        app.config().server.public_url.trim_end_matches('/'),
        channel.name
    );
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let request = wit_request(&method, url.clone(), &headers, &body);
    if let Err((reason, retry_after)) = app.health.check(&channel.name) {
        // The channel is quarantined for failing: keep the request for a redrive.
        if let Ok(kept) = quarantine::keep(app, &channel.name, &request, &reason).await {
            return kept_response(&kept);
        }
        let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, reason);
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return r;
    }

    let result = channel
        .plugin
        .handle_webhook(
            &app.sandbox,
            &channel.name,
            request,
            channel.settings.clone(),
        )
        .await;
    crate::services::shadow::Shadows::compare(
        &state.app,
        &channel.name,
        channel.settings.clone(),
        &result,
        || wit_request(&method, url.clone(), &headers, &body),
    );
    let outcome = match result {
        Ok(Ok(outcome)) => {
            if let Err(reason) = check_outcome_size(&outcome) {
                let message = format!("plugin {} {reason}", channel.plugin.info.name);
                app.health.failed(&channel.name, &message);
                return failure_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the channel's plugin answered too much",
                    &channel.name,
                    &message,
                );
            }
            app.health.succeeded(&channel.name);
            crate::services::corpus::record(&state.app, &channel.name, || {
                wit_request(&method, url.clone(), &headers, &body)
            });
            outcome
        }
        Ok(Err(wit::WebhookError::Unauthorized(reason))) => {
            edge.webhook_refused();
            tracing::warn!(channel = %channel.name, "webhook refused: {reason}");
            return error_response(
                StatusCode::FORBIDDEN,
                format!("authentication failed: {reason}"),
            );
        }
        Ok(Err(wit::WebhookError::BadRequest(reason))) => {
            edge.webhook_refused();
            tracing::warn!(channel = %channel.name, "webhook malformed: {reason}");
            return error_response(StatusCode::BAD_REQUEST, reason);
        }
        Ok(Err(wit::WebhookError::Misconfigured(reason))) => {
            return failure_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the channel is misconfigured",
                &channel.name,
                &format!("channel misconfigured: {reason}"),
            );
        }
        Err(e) => {
            app.health.failed(&channel.name, &e.to_string());
            let request = wit_request(&method, url, &headers, &body);
            if let Ok(kept) = quarantine::keep(app, &channel.name, &request, &e.to_string()).await {
                return kept_response(&kept);
            }
            return plugin_failure(&e, &channel.name);
        }
    };

    if let Err(wait) = edge.webhook_authenticated(&channel.name) {
        tracing::debug!(channel = %channel.name, "webhook rate limited");
        return too_many_requests(wait);
    }
    if let Err(e) = intake::accept(state.intake(), &channel, outcome.events).await {
        return intake_failure(&e);
    }
    plugin_response(outcome.response)
}

/// The answer to a webhook kept for a redrive: `200`, empty, naming what was kept (see
/// [`crate::services::quarantine`] for why a `2xx`).
fn kept_response(id: &str) -> Response {
    let mut response = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-plugboard-kept", v);
    }
    response
}

/// A call to the host as plugins see it: `url` the public URL called, headers in order, the
/// raw body (signatures cover its bytes).
pub(crate) fn wit_request(
    method: &Method,
    url: String,
    headers: &HeaderMap,
    body: &[u8],
) -> wit::HttpRequest {
    wit::HttpRequest {
        method: method.as_str().to_owned(),
        url,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    }
}

/// Reads the body, refusing with 413 as soon as it is known to exceed `limit`.
pub(crate) async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, Response> {
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the {limit}-byte limit"),
        )
    };
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(error_response(
            StatusCode::BAD_REQUEST,
            format!("could not read request body: {e}"),
        )),
    }
}

/// The answer to a call whose events intake refused: `403` for a replayed signature (nothing
/// stored), `503` when storage could not make them durable (the provider retries).
pub fn intake_failure(e: &IntakeError) -> Response {
    match e {
        IntakeError::Replayed => error_response(StatusCode::FORBIDDEN, e.to_string()),
        IntakeError::Storage(_) => error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Maps a failed plugin call to a 5xx that says what happened without leaking internals.
pub fn plugin_failure(e: &PluginError, channel: &str) -> Response {
    let status = match e {
        PluginError::Timeout { .. } | PluginError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    failure_response(status, e.public_reason(), channel, &e.to_string())
}

/// A 5xx answer for a caller who may be anyone: a short `reason` and a request id, never the
/// plugin's own text. The `detail` (trap message, backtrace, stderr tail, the plugin's
/// misconfiguration message) goes to the log under the same request id, so an operator can find
/// it from what the provider's dashboard shows.
pub fn failure_response(status: StatusCode, reason: &str, channel: &str, detail: &str) -> Response {
    let request_id = request_id();
    // One line per failure, so the request id finds the whole detail.
    let detail = detail.trim().replace('\n', " | ");
    tracing::error!(channel, request_id = %request_id, "{detail}");
    let mut response = (
        status,
        axum::Json(serde_json::json!({ "error": reason, "request_id": request_id })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A fresh id for one failed request: 16 hex digits.
fn request_id() -> String {
    use rand::RngCore;
    format!("{:016x}", rand::rng().next_u64())
}

/// The plugin's HTTP answer as an axum response; invalid header names or values are dropped.
pub(crate) fn plugin_response(r: wit::HttpResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut response = (status, r.body).into_response();
    for (k, v) in r.headers {
        match (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().insert(name, value);
            }
            _ => tracing::warn!(header = %k, "plugin response header is invalid; dropped"),
        }
    }
    response
}
