//! The website live chat: the embeddable widget and the visitor endpoints it calls.
//!
//! * `GET /webchat/{channel}/widget.js`: one `<script>` tag puts the widget on a page (title,
//!   colour and intro come from the channel's settings).
//! * `POST /webchat/{channel}/sessions`: starts a visitor session and returns its token (kept
//!   by the browser; the host stores only its SHA-256) and whether an agent is online.
//! * `POST /webchat/{channel}/messages` `{"text"}` and `POST /webchat/{channel}/offline`
//!   `{"name", "email", "message"}` (bearer: the visitor token): the visitor's message goes
//!   through the channel's plugin like any webhook and lands in the visitor's conversation.
//! * `GET /webchat/{channel}/messages?after=N&wait=S`: long-polls the visitor's own
//!   conversation for messages after `N`; a waiting poll sleeps until a message of that
//!   conversation is stored ([`crate::services::events::EventHub::conversation_changed`]), never
//!   re-reading storage on a timer.
//!
//! A visitor reaches only their own conversation: everything is keyed by the token's visitor.
//! Visitors are limited per client address and per session (`[channels.webchat]`, see
//! [`crate::services::visitors`]), sessions unused for `session_idle_secs` expire, and browsers on the channel's
//! `allowed_origins` (and only those) get CORS headers and preflight answers.

// Rejections are axum `Response`s by design: a handler returns them as they are.
#![allow(clippy::result_large_err)]

use crate::services::visitors as rules;

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use crate::clock::Clock;
use crate::config::WebchatConfig;
use crate::http::edge::{AppState, Edge, bearer_token, error_response, json_body};
use crate::model::{ConversationTarget, Direction, Visitor};
use crate::runtime::bindings::wit;
use crate::services::agents::Presence;
use crate::services::catalog::ChannelInstance;

use crate::services::sessions::{secret_token, token_hash};
/// The longest a long-poll waits for a new message.
const MAX_WAIT: Duration = Duration::from_secs(25);

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// The web chat routes, with their CORS layer.
pub fn routes(state: AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/webchat/{channel}/widget.js", get(widget))
        .route(
            "/webchat/{channel}/sessions",
            post(start_session).options(preflight),
        )
        .route(
            "/webchat/{channel}/messages",
            get(poll).post(post_message).options(preflight),
        )
        .route(
            "/webchat/{channel}/offline",
            post(post_offline).options(preflight),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, cors))
}

/// The `[channels.webchat]` limits of channel `name` (the defaults if it has none).
fn limits_of(state: &AppState, name: &str) -> WebchatConfig {
    state
        .app
        .config()
        .channel(name)
        .map(|c| c.webchat.clone())
        .unwrap_or_default()
}

/// The request's `Origin` if the channel lists it in `allowed_origins`.
fn allowed_origin(state: &AppState, name: &str, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    state
        .app
        .config()
        .channel(name)
        .is_some_and(|c| c.allows_origin(text))
        .then(|| origin.clone())
}

/// Adds `Access-Control-Allow-Origin` (and `Vary: Origin`) to every web chat answer for an
/// origin the channel allows; other origins get no CORS header, so browsers keep the answer
/// from their pages.
async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let name = req
        .uri()
        .path()
        .strip_prefix("/webchat/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let allowed = allowed_origin(&state, &name, req.headers());
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    response
}

/// `OPTIONS /webchat/{channel}/...`: a browser's CORS preflight. An allowed origin may send
/// `GET`/`POST` with `Authorization` and `Content-Type`; any other origin is refused (`403`,
/// and no CORS header, so the browser blocks the real request).
pub async fn preflight(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = webchat_channel(&state, &name) {
        return r;
    }
    let mut response = match (
        headers.get(header::ORIGIN),
        allowed_origin(&state, &name, &headers),
    ) {
        (None, _) => StatusCode::NO_CONTENT.into_response(),
        (Some(_), Some(_)) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
            );
            r
        }
        (Some(origin), None) => error_response(
            StatusCode::FORBIDDEN,
            format!(
                "origin {} is not in the allowed_origins of web chat channel {name:?}",
                String::from_utf8_lossy(origin.as_bytes())
            ),
        ),
    };
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    response
}

/// A `429` with `Retry-After` for a visitor over one of the channel's limits.
fn refused(refusal: rules::Refusal) -> Response {
    let rules::Refusal::Limited { wait, .. } = &refusal;
    let secs = crate::services::ratelimit::retry_after_secs(*wait);
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, refusal.to_string());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

fn webchat_channel(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<ChannelInstance>, Response> {
    match state.app.live_channel(name) {
        Some(c) if c.plugin.manifest.hosted_chat => Ok(c),
        _ => Err(error_response(
            StatusCode::NOT_FOUND,
            format!("no web chat channel named {name:?}"),
        )),
    }
}

fn setting<'a>(channel: &'a ChannelInstance, name: &str) -> Option<&'a str> {
    channel
        .settings
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Whether an agent who could answer this channel is online, within its queue's business
/// hours (outside them the widget shows the offline form).
fn online(state: &AppState, channel: &ChannelInstance) -> bool {
    let members: Vec<String> = match &channel.target {
        ConversationTarget::Queue { queue, .. } => {
            let open = state
                .app
                .catalog()
                .queues
                .get(queue)
                .is_none_or(|q| q.is_open(Clock::System.now_millis()));
            if !open {
                return false;
            }
            state
                .app
                .config()
                .queue_members(queue)
                .map(|a| a.id.clone())
                .collect()
        }
        ConversationTarget::Agent(a) => vec![a.clone()],
    };
    members
        .iter()
        .any(|a| state.agents.presence(a) == Presence::Online)
}

/// The visitor whose bearer token this request carries, on this channel, if their session has
/// not expired; a use refreshes the session's last-use time.
async fn visitor(
    state: &AppState,
    channel: &str,
    config: &WebchatConfig,
    headers: &HeaderMap,
) -> Result<Visitor, Response> {
    let unauthorized = |m: &str| error_response(StatusCode::UNAUTHORIZED, m);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <visitor token>"))?;
    let hash = token_hash(token);
    match state.app.storage.visitor(&hash).await {
        Ok(Some(v)) if v.channel == channel => {
            let now = Clock::System.now_millis();
            if rules::expired(&v, config, now) {
                return Err(unauthorized(&format!(
                    "this visitor session expired after {} s without use; start a new session",
                    config.session_idle_secs
                )));
            }
            if rules::needs_touch(&v, config, now) {
                let touched = Visitor {
                    last_seen: now,
                    ..v.clone()
                };
                if let Err(e) = state.app.storage.put_visitor(&hash, &touched).await {
                    tracing::warn!("visitor session last use not recorded: {e}");
                }
            }
            Ok(v)
        }
        Ok(_) => Err(unauthorized("unknown visitor token; start a new session")),
        Err(e) => {
            tracing::error!("visitor lookup: {e}");
            Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; retry later",
            ))
        }
    }
}

/// Drops the channel's expired sessions from storage, at most once per sweep interval, in the
/// background.
fn sweep_expired(state: &AppState, edge: &Edge, name: &str, config: &WebchatConfig) {
    if edge
        .limits
        .webchat
        .check_with(("sweep", name), rules::sweep_rate(config))
        .is_err()
    {
        return;
    }
    let storage = state.app.storage.clone();
    let (name, config) = (name.to_owned(), config.clone());
    tokio::spawn(async move {
        let now = Clock::System.now_millis();
        let expired = |v: &Visitor| rules::expired(v, &config, now);
        match storage.expire_visitors(&name, &expired).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(channel = %name, removed = n, "expired visitor sessions removed")
            }
            Err(e) => tracing::warn!(channel = %name, "sweeping visitor sessions failed: {e}"),
        }
    });
}

/// `POST /webchat/{channel}/sessions`: a new visitor session.
pub async fn start_session(
    State(state): State<AppState>,
    Extension(edge): Extension<Edge>,
    Path(name): Path<String>,
) -> Response {
    let channel = match webchat_channel(&state, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let config = limits_of(&state, &name);
    if let Err(refusal) = rules::session_started(&edge.limits.webchat, &config, &name, edge.client)
    {
        return refused(refusal);
    }
    sweep_expired(&state, &edge, &name, &config);
    let token = secret_token();
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let visitor = Visitor {
        id: hex::encode(id),
        channel: name.clone(),
        created_at: Clock::System.now_millis(),
        last_seen: 0,
    };
    if let Err(e) = state
        .app
        .storage
        .put_visitor(&token_hash(&token), &visitor)
        .await
    {
        tracing::error!("visitor session: {e}");
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable; retry later",
        );
    }
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "visitor": visitor.id,
            "online": online(&state, &channel),
            "title": setting(&channel, "title").unwrap_or("Chat with us"),
            "intro": setting(&channel, "intro"),
        })),
    )
        .into_response()
}

/// A visitor message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitorText {
    text: String,
    /// The widget's own id for the message, so a retried POST is stored once.
    message_id: Option<String>,
}

/// The offline form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineForm {
    name: Option<String>,
    email: String,
    message: String,
}

/// `POST /webchat/{channel}/messages`.
pub async fn post_message(
    State(state): State<AppState>,
    Extension(edge): Extension<Edge>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: VisitorText = match json_body(&body, r#"{"text": "hello"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let forward =
        json!({"message_id": body.message_id.unwrap_or_else(random_id), "text": body.text});
    forward_to_plugin(&state, &edge, &name, &headers, "messages", forward).await
}

/// `POST /webchat/{channel}/offline`: the form shown when nobody is online; it becomes a
/// conversation that waits for an agent.
pub async fn post_offline(
    State(state): State<AppState>,
    Extension(edge): Extension<Edge>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: OfflineForm = match json_body(
        &body,
        r#"{"name": "Ann", "email": "ann@example.org", "message": "..."}"#,
    ) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let forward = json!({
        "message_id": random_id(),
        "text": form.message,
        "name": form.name,
        "email": form.email,
        "offline": true,
    });
    forward_to_plugin(&state, &edge, &name, &headers, "offline", forward).await
}

fn random_id() -> String {
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Passes a visitor's message to the channel plugin with the visitor's id in the one header
/// only the host sets, then stores the events like any webhook's and wakes the visitor's
/// long-polls.
async fn forward_to_plugin(
    state: &AppState,
    edge: &Edge,
    name: &str,
    headers: &HeaderMap,
    endpoint: &str,
    forward: serde_json::Value,
) -> Response {
    let channel = match webchat_channel(state, name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let config = limits_of(state, name);
    let visitor = match visitor(state, name, &config, headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(refusal) = rules::message(&edge.limits.webchat, &config, name, &visitor, edge.client)
    {
        return refused(refusal);
    }
    let request = wit::HttpRequest {
        method: "POST".into(),
        url: format!(
            "{}/webchat/{name}/{endpoint}",
            state.app.config().server.public_url.trim_end_matches('/')
        ),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-plugboard-visitor".into(), visitor.id.clone()),
        ],
        body: forward.to_string().into_bytes(),
    };
    let outcome = match channel
        .plugin
        .handle_webhook(
            &state.app.sandbox,
            &channel.name,
            request,
            channel.settings.clone(),
        )
        .await
    {
        Ok(Ok(o)) => o,
        Ok(Err(wit::WebhookError::BadRequest(m))) => {
            return error_response(StatusCode::UNPROCESSABLE_ENTITY, m);
        }
        Ok(Err(wit::WebhookError::Unauthorized(m))) => {
            return error_response(StatusCode::FORBIDDEN, m);
        }
        Ok(Err(wit::WebhookError::Misconfigured(m))) => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, m);
        }
        Err(e) => return crate::http::webhook::plugin_failure(&e, &channel.name),
    };
    match crate::services::intake::accept(state.intake(), &channel, outcome.events).await {
        Ok(_) => {
            state
                .events
                .conversation_changed(name, &format!("webchat:{}", visitor.id));
            (
                StatusCode::ACCEPTED,
                Json(json!({"ok": true, "online": online(state, &channel)})),
            )
                .into_response()
        }
        Err(e) => crate::http::webhook::intake_failure(&e),
    }
}

/// `?after=&wait=` of the visitor's poll.
#[derive(Debug, Deserialize)]
pub struct PollQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait: u64,
}

/// `GET /webchat/{channel}/messages?after=N&wait=S`: the visitor's messages after `N`,
/// waiting up to `S` seconds (at most 25) for one to arrive. While it waits it reads nothing:
/// it wakes when a message of the visitor's conversation is stored.
pub async fn poll(
    State(state): State<AppState>,
    Extension(edge): Extension<Edge>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PollQuery>,
) -> Response {
    let channel = match webchat_channel(&state, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let config = limits_of(&state, &name);
    let visitor = match visitor(&state, &name, &config, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(refusal) = rules::poll(&edge.limits.webchat, &config, &name, &visitor) {
        return refused(refusal);
    }
    let deadline = tokio::time::Instant::now() + MAX_WAIT.min(Duration::from_secs(q.wait));
    let address = format!("webchat:{}", visitor.id);
    let watch = state.events.watch_conversation(&name, &address);
    let mut reads = 0u32;
    loop {
        // Registered before reading, so a message stored during the read still wakes us.
        let notified = watch.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        reads += 1;
        let new = messages_after(&state, &name, &address, q.after).await;
        if !new.is_empty() || tokio::time::Instant::now() >= deadline {
            tracing::debug!(
                channel = %name,
                visitor = %visitor.id,
                "long-poll ended after {reads} storage read(s) with {} message(s)",
                new.len()
            );
            return Json(json!({"messages": new, "online": online(&state, &channel)}))
                .into_response();
        }
        if reads == 1 {
            tracing::debug!(channel = %name, visitor = %visitor.id, "long-poll waiting for new messages");
        }
        // A host sharing its store is not woken by a reply another host sent: it looks again
        // every SHARED_RECHECK.
        let wake = if state.app.storage.is_shared() {
            deadline.min(tokio::time::Instant::now() + SHARED_RECHECK)
        } else {
            deadline
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// How often a waiting long-poll reads storage again when other hosts share it.
const SHARED_RECHECK: Duration = Duration::from_secs(1);

/// The most messages one poll answers; the widget asks again after the last one it got.
const MESSAGES_PER_POLL: usize = 200;

/// The visitor's messages after `after`, as the widget shows them.
async fn messages_after(
    state: &AppState,
    channel: &str,
    address: &str,
    after: u64,
) -> Vec<serde_json::Value> {
    let storage = &state.app.storage;
    let conv = match storage.conversation_by_key(channel, address).await {
        Ok(Some(conv)) => conv,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::error!("visitor poll: {e}");
            return Vec::new();
        }
    };
    // Internal notes are for agents only: pages of nothing but notes are read past, a few at
    // a time (a visitor whose cursor stops short of them polls on from there).
    let mut messages = Vec::new();
    let mut cursor = after;
    for _ in 0..NOTE_PAGES {
        let page = match storage
            .messages(conv.id, Some(cursor), MESSAGES_PER_POLL)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!("visitor poll: {e}");
                return Vec::new();
            }
        };
        messages.extend(
            page.items
                .into_iter()
                .filter(|m| m.seq > after && m.direction != Direction::Note),
        );
        match page.next {
            Some(next) if messages.is_empty() => cursor = next,
            _ => break,
        }
    }
    messages
        .into_iter()
        .map(|m| {
            json!({
                "seq": m.seq,
                "from": if m.direction == Direction::Inbound { "visitor" } else { "agent" },
                "text": m.text,
                "at": m.created_at,
            })
        })
        .collect()
}

/// How many pages of internal notes in a row one visitor poll reads past.
const NOTE_PAGES: usize = 4;

/// `GET /webchat/{channel}/widget.js`: the widget, configured from the channel's settings.
pub async fn widget(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let channel = match webchat_channel(&state, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let config = json!({
        "base": format!("{}/webchat/{name}", state.app.config().server.public_url.trim_end_matches('/')),
        "title": setting(&channel, "title").unwrap_or("Chat with us"),
        "color": setting(&channel, "color").unwrap_or("#2563eb"),
        "intro": setting(&channel, "intro").unwrap_or("Hi! How can we help?"),
    });
    let script = WIDGET_JS.replace("__PLUGBOARD_CONFIG__", &config.to_string());
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        script,
    )
        .into_response()
}

/// The widget: a button that opens a chat panel; the offline form when nobody is online.
const WIDGET_JS: &str = include_str!("widget.js");
