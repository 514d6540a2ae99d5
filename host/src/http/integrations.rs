//! The CRM side of the HTTP API: a CRM's calls to `/integrations/{name}` (read by its
//! integration plugin), the integration API that integration keys act through
//! (`/api/v1/integration/...`), and the admin's view of event deliveries
//! (`/api/v1/admin/deliveries`, `/api/v1/admin/targets`). Handlers parse, call a service and
//! map its error to a status.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::IntegrationKeyConfig;
use crate::model::Contact;
use crate::services::hooks::{DeliveryState, HooksError};
use crate::services::outreach::{CrmCallError, CrmRefusal, OutreachError};
use crate::services::ratelimit::Rate;

use super::api::Admin;
use super::edge::{AppState, Edge, error_response, json_body, too_many_requests};

/// `POST /integrations/{name}`: a call from the CRM (its outbound webhook or automation).
pub async fn crm_call(
    State(state): State<AppState>,
    edge: Extension<Edge>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = state.app.config().server.max_body_bytes;
    let body = match super::webhook::read_limited(body, &headers, limit).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let mut url = format!(
        "{}/integrations/{name}",
        state.app.config().server.public_url.trim_end_matches('/'),
    );
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let request = super::webhook::wit_request(&method, url, &headers, &body);
    match state.outreach().crm_call(&name, request).await {
        Ok(response) => super::webhook::plugin_response(response),
        Err(e @ CrmCallError::UnknownIntegration(_)) => {
            error_response(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(CrmCallError::Refused(m, how)) => {
            let status = match how {
                CrmRefusal::Unauthorized => {
                    edge.webhook_refused();
                    StatusCode::FORBIDDEN
                }
                CrmRefusal::BadRequest => {
                    edge.webhook_refused();
                    StatusCode::BAD_REQUEST
                }
                CrmRefusal::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error_response(status, m)
        }
        Err(e @ CrmCallError::Plugin(_)) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e @ CrmCallError::Actions(_)) => error_response(StatusCode::FORBIDDEN, e.to_string()),
    }
}

/// A request made with an integration key.
pub struct IntegrationKey(IntegrationKeyConfig);

impl axum::extract::FromRequestParts<AppState> for IntegrationKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let unauthorized = |m: &str| error_response(StatusCode::UNAUTHORIZED, m);
        let Some(token) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(super::edge::bearer_token)
        else {
            return Err(unauthorized(
                "missing Authorization: Bearer <integration key> header",
            ));
        };
        let config = state.app.config();
        let key = config
            .integration_keys
            .iter()
            .find(|k| bool::from(k.secret.as_bytes().ct_eq(token.as_bytes())))
            .cloned();
        let Some(key) = key else {
            return Err(unauthorized("the bearer token is not an integration key"));
        };
        if let Some(edge) = parts.extensions.get::<Edge>()
            && let Err(wait) = edge.limits.api.check_with(
                ("integration-key", key.name.as_str()),
                Rate::per_minute(key.per_minute),
            )
        {
            return Err(too_many_requests(wait));
        }
        Ok(IntegrationKey(key))
    }
}

fn outreach_error(e: OutreachError) -> Response {
    let status = match &e {
        OutreachError::NotAllowed { .. } => StatusCode::FORBIDDEN,
        OutreachError::ChannelUnavailable(_) => StatusCode::NOT_FOUND,
        OutreachError::NoConversation(_) => StatusCode::NOT_FOUND,
        OutreachError::BadAddress { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        OutreachError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        OutreachError::Update(_) => StatusCode::CONFLICT,
        OutreachError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    channel: String,
    to: String,
    text: String,
}

/// `POST /api/v1/integration/conversations` `{"channel", "to", "text"}`: starts (or writes to)
/// the conversation with `to`; `201 {"conversation", "message"}`.
pub async fn start(
    State(state): State<AppState>,
    IntegrationKey(key): IntegrationKey,
    body: Bytes,
) -> Response {
    let body: StartBody = match json_body(
        &body,
        r#"{"channel": "sms", "to": "+14155550100", "text": "Hello"}"#,
    ) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let by = format!("key:{}", key.name);
    match state
        .outreach()
        .start(
            &by,
            &key.start_channels,
            &body.channel,
            &body.to,
            &body.text,
        )
        .await
    {
        Ok((conversation, message)) => (
            StatusCode::CREATED,
            Json(json!({"conversation": conversation, "message": message})),
        )
            .into_response(),
        Err(e) => outreach_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    text: String,
}

/// `POST /api/v1/integration/conversations/{id}/messages` `{"text"}`: `202 {"message"}`.
pub async fn post_message(
    State(state): State<AppState>,
    IntegrationKey(key): IntegrationKey,
    Path(id): Path<u64>,
    body: Bytes,
) -> Response {
    if !key.post {
        return error_response(
            StatusCode::FORBIDDEN,
            format!(
                "integration key {} may not post messages (`post = true` allows it)",
                key.name
            ),
        );
    }
    let body: PostBody = match json_body(&body, r#"{"text": "Your order shipped"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let by = format!("key:{}", key.name);
    match state
        .outreach()
        .post(&by, &key.start_channels, id, &body.text)
        .await
    {
        Ok((_, message)) => {
            (StatusCode::ACCEPTED, Json(json!({"message": message}))).into_response()
        }
        Err(e) => outreach_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactBody {
    address: String,
    name: String,
}

/// `POST /api/v1/integration/contacts` `{"address", "name"}`: `201 {"contact"}`.
pub async fn add_contact(
    State(state): State<AppState>,
    IntegrationKey(key): IntegrationKey,
    body: Bytes,
) -> Response {
    if !key.contacts {
        return error_response(
            StatusCode::FORBIDDEN,
            format!(
                "integration key {} may not add contacts (`contacts = true` allows it)",
                key.name
            ),
        );
    }
    let body: ContactBody = match json_body(&body, r#"{"address": "+14155550100", "name": "Ann"}"#)
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (address, name) = (body.address.trim(), body.name.trim());
    if address.is_empty() || address.len() > 256 || name.is_empty() || name.len() > 256 {
        return error_response(
            StatusCode::BAD_REQUEST,
            "`address` and `name` must each be 1 to 256 characters",
        );
    }
    let contact = Contact {
        address: address.to_owned(),
        name: name.to_owned(),
    };
    match state
        .outreach()
        .add_contact(&format!("key:{}", key.name), &contact)
        .await
    {
        Ok(()) => (StatusCode::CREATED, Json(json!({"contact": contact}))).into_response(),
        Err(e) => outreach_error(e),
    }
}

fn hooks_error(e: HooksError) -> Response {
    let status = match &e {
        HooksError::UnknownTarget(_) | HooksError::UnknownDelivery { .. } => StatusCode::NOT_FOUND,
        HooksError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, e.to_string())
}

/// The query of `GET /api/v1/admin/deliveries`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    target: String,
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/v1/admin/deliveries?target=NAME[&state=pending|delivered|failed][&limit][&cursor]`:
/// `{"deliveries": [...], "next_cursor"}` in event order.
pub async fn deliveries(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<DeliveriesQuery>,
) -> Response {
    let wanted = match q.state.as_deref() {
        None => None,
        Some(s) => match DeliveryState::parse(s) {
            Some(s) => Some(s),
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!("state must be pending, delivered or failed, not {s:?}"),
                );
            }
        },
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return error_response(StatusCode::BAD_REQUEST, "limit must be between 1 and 200");
    }
    if q.cursor
        .as_deref()
        .is_some_and(|c| c.len() != 20 || !c.bytes().all(|b| b.is_ascii_digit()))
    {
        return error_response(StatusCode::BAD_REQUEST, "cursor is not one this API gave");
    }
    match state
        .hooks
        .deliveries(&q.target, wanted, q.cursor.as_deref(), limit)
        .await
    {
        Ok((list, next)) => Json(json!({"deliveries": list, "next_cursor": next})).into_response(),
        Err(e) => hooks_error(e),
    }
}

/// `POST /api/v1/admin/deliveries/{target}/redeliver`: every failed delivery of `target`
/// pending again; `202 {"redelivered": N}`.
pub async fn redeliver_all(
    State(state): State<AppState>,
    _admin: Admin,
    Path(target): Path<String>,
) -> Response {
    match state.hooks.redeliver(&target, None).await {
        Ok(n) => (StatusCode::ACCEPTED, Json(json!({"redelivered": n}))).into_response(),
        Err(e) => hooks_error(e),
    }
}

/// `POST /api/v1/admin/deliveries/{target}/{event}/redeliver`: that failed delivery pending
/// again; `202 {"redelivered": 1}`.
pub async fn redeliver_one(
    State(state): State<AppState>,
    _admin: Admin,
    Path((target, event)): Path<(String, String)>,
) -> Response {
    match state.hooks.redeliver(&target, Some(&event)).await {
        Ok(n) => (StatusCode::ACCEPTED, Json(json!({"redelivered": n}))).into_response(),
        Err(e) => hooks_error(e),
    }
}

/// `GET /api/v1/admin/targets`: every subscription and integration with its delivery counts.
pub async fn targets(State(state): State<AppState>, _admin: Admin) -> Response {
    match state.hooks.summaries().await {
        Ok(list) => Json(json!({"targets": list})).into_response(),
        Err(e) => hooks_error(e),
    }
}
