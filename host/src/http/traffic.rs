//! The admin's view of a channel's raw webhooks: those kept for a redrive
//! (`GET /api/v1/admin/channels/{name}/kept`) and the redrive itself (`POST
//! /api/v1/admin/channels/{name}/redrive`), and its recorded corpus (`GET
//! /api/v1/admin/channels/{name}/corpus`) with its golden replay (`POST
//! /api/v1/admin/channels/{name}/replay`), and the candidate it runs in shadow
//! (`/api/v1/admin/channels/{name}/shadow`); and a queue's recorded routing decisions (`GET
//! /api/v1/admin/queues/{name}/decisions`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::services::golden::{self, GoldenError};
use crate::services::quarantine::{self, RedriveError};

use super::api::Admin;
use super::edge::{AppState, error_response};

/// `GET /api/v1/admin/channels/{name}/kept`: `{"kept": [{"id", "received_at", "method", "url",
/// "body_bytes", "error", "redrives"}]}`, oldest first.
pub async fn kept(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Response {
    if let Some(missing) = unknown_channel(&state, &name) {
        return missing;
    }
    match quarantine::kept(&state.app, &name).await {
        Ok(list) => {
            let list: Vec<_> = list
                .iter()
                .map(|k| {
                    json!({
                        "id": k.id,
                        "received_at": k.received_at,
                        "method": k.method,
                        "url": k.url,
                        "body_bytes": k.request().body.len(),
                        "error": k.error,
                        "redrives": k.redrives,
                    })
                })
                .collect();
            Json(json!({"kept": list})).into_response()
        }
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /api/v1/admin/channels/{name}/redrive`: every kept request through the channel's
/// plugin as it is now; `200 {"redriven", "still_failing": [{"id", "error"}]}`.
pub async fn redrive(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Response {
    match quarantine::redrive(state.intake(), &name).await {
        Ok(report) => Json(report).into_response(),
        Err(e @ RedriveError::ChannelUnavailable(_)) => {
            error_response(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e @ RedriveError::Storage(_)) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// `GET /api/v1/admin/channels/{name}/corpus`: `{"channel", "requests": [{"id", "method",
/// "url", "headers", "body" (base64), "received_at"}]}`, oldest first: what `plugboard replay
/// --corpus` reads.
pub async fn corpus(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Response {
    if let Some(missing) = unknown_channel(&state, &name) {
        return missing;
    }
    match crate::services::corpus::requests(&state.app, &name).await {
        Ok(list) => {
            let list: Vec<_> = list
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "method": r.method,
                        "url": r.url,
                        "headers": r.headers,
                        "body": r.body,
                        "received_at": r.received_at,
                    })
                })
                .collect();
            Json(json!({"channel": name, "requests": list})).into_response()
        }
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The body of `POST /api/v1/admin/channels/{name}/replay`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    plugin: String,
    #[serde(default)]
    baseline: Option<String>,
    #[serde(default)]
    accept: Vec<String>,
}

/// `POST /api/v1/admin/channels/{name}/replay` `{"plugin", "baseline"?, "accept"?: [id]}`:
/// golden replay of the channel's corpus through two loaded channel plugins (the baseline
/// defaults to the one serving it); `200` with the report and `"agree"`.
pub async fn replay(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: ReplayBody = match super::edge::json_body(&body, r#"{"plugin": "twilio-sms-next"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let accepted = body.accept.into_iter().collect();
    match golden::replay_in_host(
        &state.app,
        &name,
        &body.plugin,
        body.baseline.as_deref(),
        &accepted,
    )
    .await
    {
        Ok((mut report, differ)) => {
            report["agree"] = json!(!differ);
            Json(report).into_response()
        }
        Err(e @ GoldenError::UnknownChannel(_)) => {
            error_response(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(
            e @ (GoldenError::UnknownPlugin(_)
            | GoldenError::EmptyCorpus(_)
            | GoldenError::Load { .. }),
        ) => error_response(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e @ GoldenError::Storage(_)) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// `GET /api/v1/admin/queues/{name}/decisions`: `{"queue", "decisions": [snapshot]}`, oldest
/// first: what `plugboard simulate --snapshots` reads (see [`crate::services::decisions`]).
pub async fn decisions(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Response {
    if state.app.config().queue(&name).is_none() {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no queue named {name:?} is configured"),
        );
    }
    match crate::services::decisions::snapshots(&state.app, &name).await {
        Ok(list) => Json(json!({"queue": name, "decisions": list})).into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `404` naming `name` when no channel of that name is configured.
fn unknown_channel(state: &AppState, name: &str) -> Option<Response> {
    state.app.config().channel(name).is_none().then(|| {
        error_response(
            StatusCode::NOT_FOUND,
            format!("no channel named {name:?} is configured"),
        )
    })
}

/// The body of `PUT /api/v1/admin/channels/{name}/shadow`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowBody {
    plugin: String,
}

/// `PUT /api/v1/admin/channels/{name}/shadow` `{"plugin"}`: runs that loaded channel plugin
/// beside the live one on every webhook, comparing; `200` with the (empty) report.
pub async fn attach_shadow(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: ShadowBody = match super::edge::json_body(&body, r#"{"plugin": "twilio-sms-next"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match state.app.shadows.attach(&state.app, &name, &body.plugin) {
        Ok(report) => Json(report).into_response(),
        Err(e) => error_response(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// `GET /api/v1/admin/channels/{name}/shadow`: the report: `{"channel", "plugin", "compared",
/// "agreed", "skipped", "diverged": {kind: count}, "first": [{"kind", "live", "candidate"}]}`.
pub async fn shadow_report(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Response {
    match state.app.shadows.report(&name) {
        Some(report) => Json(report).into_response(),
        None => no_shadow(&name),
    }
}

/// `DELETE /api/v1/admin/channels/{name}/shadow`: detaches it; its last report.
pub async fn detach_shadow(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Response {
    match state.app.shadows.detach(&name) {
        Some(report) => Json(report).into_response(),
        None => no_shadow(&name),
    }
}

fn no_shadow(name: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("channel {name:?} runs no shadow"),
    )
}
