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

use crate::app::ChannelInstance;
use crate::bindings::wit;
use crate::channel_rules;
use crate::sandbox::{Clock, PluginError};
use crate::server::{AppState, Edge, error_response, too_many_requests};
use crate::storage::{Attachment, InboundEvent, MessageStatus, OptChange};

/// Handles one provider call to a channel's webhook. Only an authenticated call spends the
/// channel's rate limit; a refused one counts against the caller's address instead.
pub async fn handle(
    State(state): State<AppState>,
    Extension(edge): Extension<Edge>,
    Path(channel_name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let app = &state.app;
    let Some(channel) = app
        .live_channel(&channel_name)
        .filter(|c| c.kind() != "webchat")
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
    if let Err((reason, retry_after)) = app.health.check(&channel.name) {
        let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, reason);
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return r;
    }
    let limit = app.config.server.max_body_bytes;
    let body = match read_limited(body, &headers, limit).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };

    let mut url = format!(
        "{}/webhooks/{}",
        app.config.server.public_url.trim_end_matches('/'),
        channel.name
    );
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let request = wit::HttpRequest {
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
    };

    let outcome = match channel
        .plugin
        .handle_webhook(
            &app.sandbox,
            &channel.name,
            request,
            channel.settings.clone(),
        )
        .await
    {
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
            return plugin_failure(&e, &channel.name);
        }
    };

    if let Err(wait) = edge.webhook_authenticated(&channel.name) {
        tracing::debug!(channel = %channel.name, "webhook rate limited");
        return too_many_requests(wait);
    }
    if let Err(r) = accept(&state, &channel, outcome.events).await {
        return r;
    }
    plugin_response(outcome.response)
}

/// The largest webhook answer a plugin may give, headers and body (the provider gets it
/// verbatim).
pub const MAX_PLUGIN_RESPONSE_BYTES: usize = 1024 * 1024;
/// The most events one webhook call may carry (Meta batches up to 1,000 updates).
pub const MAX_EVENTS_PER_CALL: usize = 1000;

/// Refuses a plugin answer too large to carry: the memory cap bounds what a plugin can hold,
/// this bounds what it can make the host store and send.
fn check_outcome_size(outcome: &wit::WebhookOutcome) -> Result<(), String> {
    let headers: usize = outcome
        .response
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let size = outcome.response.body.len() + headers;
    if size > MAX_PLUGIN_RESPONSE_BYTES {
        return Err(format!(
            "answered with a {size}-byte response ({headers} bytes of headers); the limit is {MAX_PLUGIN_RESPONSE_BYTES}"
        ));
    }
    if outcome.events.len() > MAX_EVENTS_PER_CALL {
        return Err(format!(
            "returned {} events; the limit is {MAX_EVENTS_PER_CALL} per call",
            outcome.events.len()
        ));
    }
    Ok(())
}

/// Stores a plugin's events durably, tells the agents concerned and hands new work to the
/// dispatcher: what every authentic inbound call does after the plugin parsed it.
pub async fn accept(
    state: &AppState,
    channel: &ChannelInstance,
    events: Vec<wit::Event>,
) -> Result<crate::storage::IngestReport, Response> {
    let app = &state.app;
    let mut events = normalize(channel, events);
    let nonces = crate::nonce::take(&mut events);
    if events.is_empty() {
        tracing::info!(channel = %channel.name, "authentic call with no event this channel handles; acknowledged");
        return Ok(Default::default());
    }
    let _intake = state.dispatcher.intake().await;
    let now = Clock::System.now_millis();
    let unavailable = || {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable; retry later",
        )
    };
    match crate::nonce::claim(&app.storage, &channel.plugin.info.name, &nonces, now) {
        Ok(()) => {}
        Err(crate::nonce::NonceError::Replayed) => {
            tracing::warn!(channel = %channel.name, "webhook refused: replayed signature");
            return Err(error_response(
                StatusCode::FORBIDDEN,
                format!(
                    "authentication failed: {}",
                    crate::nonce::NonceError::Replayed
                ),
            ));
        }
        Err(e) => {
            tracing::error!(channel = %channel.name, "claiming the call's nonce failed: {e}");
            return Err(unavailable());
        }
    };
    let report = app
        .storage
        .ingest_batched(channel.name.clone(), channel.target.clone(), events, now)
        .await
        .map_err(|e| {
            tracing::error!(channel = %channel.name, "storing events failed: {e}");
            unavailable()
        })?;
    tracing::info!(
        channel = %channel.name,
        stored = report.stored,
        duplicates = report.duplicates,
        statuses = report.statuses,
        statuses_ignored = report.statuses_ignored,
        "events stored"
    );
    announce(state, &channel.name, &report);
    if !report.to_route.is_empty() {
        state.dispatcher.kick_conversations(&report.to_route);
    }
    Ok(report)
}

/// Tells the agents concerned about new messages and unknown senders.
fn announce(state: &AppState, channel: &str, report: &crate::storage::IngestReport) {
    let app = &state.app;
    for m in &report.messages {
        let audience: Vec<String> = match &m.owner {
            Some(owner) => vec![owner.clone()],
            None => app
                .config
                .queue_members(&m.queue)
                .map(|a| a.id.clone())
                .collect(),
        };
        state.events.publish(
            "message",
            audience.clone(),
            Some(m.conversation),
            serde_json::json!({"seq": m.seq, "customer": m.customer, "text": m.text}),
        );
        if report.created.contains(&m.conversation)
            && app.storage.contact(&m.customer).ok().flatten().is_none()
        {
            state.events.publish(
                "unknown_contact",
                audience,
                Some(m.conversation),
                serde_json::json!({"address": m.customer, "channel": channel, "name": m.contact_name}),
            );
        }
    }
}

/// Reads the body, refusing with 413 as soon as it is known to exceed `limit`.
async fn read_limited(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Response> {
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

/// Turns the plugin's events into storage events, dropping (and logging) malformed ones.
fn normalize(instance: &ChannelInstance, events: Vec<wit::Event>) -> Vec<InboundEvent> {
    let channel = instance.name.as_str();
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        match event {
            wit::Event::Message(m) => {
                if m.provider_id.is_empty() || m.from.is_empty() {
                    tracing::error!(
                        channel,
                        "plugin returned a message without provider id or sender; dropped"
                    );
                    continue;
                }
                let mut note = None;
                let mut attachments: Vec<Attachment> = m
                    .attachments
                    .into_iter()
                    .map(|a| Attachment {
                        url: a.url,
                        content_type: a.content_type,
                    })
                    .collect();
                if !instance.customer_attachments && !attachments.is_empty() {
                    note = Some(format!(
                        "{} attachment(s) dropped: customer attachments are off for channel {channel}",
                        attachments.len()
                    ));
                    attachments.clear();
                }
                let keyword = channel_rules::is_phone_kind(instance.kind())
                    .then(|| m.text.as_deref().and_then(channel_rules::keyword))
                    .flatten();
                let change = OptChange {
                    address: m.from.clone(),
                    provider_id: Some(m.provider_id.clone()),
                };
                out.push(InboundEvent::Message {
                    provider_id: m.provider_id,
                    from: m.from,
                    text: m.text,
                    attachments,
                    contact_name: m.contact_name,
                    thread: m.thread,
                    note,
                });
                match keyword {
                    Some(channel_rules::Keyword::OptOut) => out.push(InboundEvent::OptOut(change)),
                    Some(channel_rules::Keyword::OptIn) => out.push(InboundEvent::OptIn(change)),
                    None => {}
                }
            }
            wit::Event::Status(s) => {
                let status = match s.state {
                    wit::DeliveryState::Queued => MessageStatus::Queued,
                    wit::DeliveryState::Sent => MessageStatus::Sent,
                    wit::DeliveryState::Delivered => MessageStatus::Delivered,
                    wit::DeliveryState::Read => MessageStatus::Read,
                    wit::DeliveryState::Failed => MessageStatus::Failed,
                };
                let error = match (s.error_code, s.error_message) {
                    (None, None) => None,
                    (Some(c), None) => Some(format!("provider error {c}")),
                    (None, Some(m)) => Some(m),
                    (Some(c), Some(m)) => Some(format!("provider error {c}: {m}")),
                };
                out.push(InboundEvent::Status {
                    provider_id: s.provider_id,
                    status,
                    error,
                });
            }
            wit::Event::OptOut(c) => out.push(InboundEvent::OptOut(opt_change(c))),
            wit::Event::OptIn(c) => out.push(InboundEvent::OptIn(opt_change(c))),
        }
    }
    out
}

/// The stored form of a plugin's opt-change; an empty provider id counts as none.
fn opt_change(c: wit::OptChange) -> OptChange {
    OptChange {
        address: c.address,
        provider_id: c.provider_id.filter(|id| !id.is_empty()),
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
fn plugin_response(r: wit::HttpResponse) -> Response {
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
