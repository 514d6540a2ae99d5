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
//!   conversation for messages after `N`.
//!
//! A visitor reaches only their own conversation: everything is keyed by the token's visitor.

// Rejections are axum `Response`s by design: a handler returns them as they are.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;

use crate::agents::Presence;
use crate::app::ChannelInstance;
use crate::bindings::wit;
use crate::sandbox::Clock;
use crate::server::{AppState, error_response};
use crate::storage::{ConversationTarget, Direction, Visitor};

/// The longest a long-poll waits for a new message.
const MAX_WAIT: Duration = Duration::from_secs(25);

fn webchat_channel(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<ChannelInstance>, Response> {
    match state.app.live_channel(name) {
        Some(c) if c.kind() == "webchat" => Ok(c),
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

/// Whether an agent who could answer this channel is online.
fn online(state: &AppState, channel: &ChannelInstance) -> bool {
    let members: Vec<String> = match &channel.target {
        ConversationTarget::Queue { queue, .. } => state
            .app
            .config
            .queue_members(queue)
            .map(|a| a.id.clone())
            .collect(),
        ConversationTarget::Agent(a) => vec![a.clone()],
    };
    members
        .iter()
        .any(|a| state.agents.presence(a) == Presence::Online)
}

fn token_hash(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

/// The visitor whose bearer token this request carries, on this channel.
fn visitor(state: &AppState, channel: &str, headers: &HeaderMap) -> Result<Visitor, Response> {
    let unauthorized = |m: &str| error_response(StatusCode::UNAUTHORIZED, m);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <visitor token>"))?;
    match state.app.storage.visitor(&token_hash(token.trim())) {
        Ok(Some(v)) if v.channel == channel => Ok(v),
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

/// `POST /webchat/{channel}/sessions`: a new visitor session.
pub async fn start_session(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let channel = match webchat_channel(&state, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let visitor = Visitor {
        id: hex::encode(id),
        channel: name.clone(),
        created_at: Clock::System.now_millis(),
    };
    if let Err(e) = state.app.storage.put_visitor(&token_hash(&token), &visitor) {
        tracing::error!("visitor session: {e}");
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable; retry later",
        );
    }
    if let Err(e) = state.app.storage.wait_durable().await {
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
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: VisitorText = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("body must be JSON like {{\"text\": \"hello\"}}: {e}"),
            );
        }
    };
    let forward =
        json!({"message_id": body.message_id.unwrap_or_else(random_id), "text": body.text});
    forward_to_plugin(&state, &name, &headers, "messages", forward).await
}

/// `POST /webchat/{channel}/offline`: the form shown when nobody is online; it becomes a
/// conversation that waits for an agent.
pub async fn post_offline(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: OfflineForm = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "body must be JSON like {{\"name\": \"Ann\", \"email\": \"ann@example.org\", \"message\": \"...\"}}: {e}"
                ),
            );
        }
    };
    let forward = json!({
        "message_id": random_id(),
        "text": form.message,
        "name": form.name,
        "email": form.email,
        "offline": true,
    });
    forward_to_plugin(&state, &name, &headers, "offline", forward).await
}

fn random_id() -> String {
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Passes a visitor's message to the channel plugin with the visitor's id in the one header
/// only the host sets, then stores the events like any webhook's.
async fn forward_to_plugin(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    endpoint: &str,
    forward: serde_json::Value,
) -> Response {
    let channel = match webchat_channel(state, name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let visitor = match visitor(state, name, headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let request = wit::HttpRequest {
        method: "POST".into(),
        url: format!(
            "{}/webchat/{name}/{endpoint}",
            state.app.config.server.public_url.trim_end_matches('/')
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
        Err(e) => return crate::webhook::plugin_failure(&e),
    };
    match crate::webhook::accept(state, &channel, outcome.events).await {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(json!({"ok": true, "online": online(state, &channel)})),
        )
            .into_response(),
        Err(r) => r,
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
/// waiting up to `S` seconds (at most 25) for one to arrive.
pub async fn poll(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PollQuery>,
) -> Response {
    let channel = match webchat_channel(&state, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let visitor = match visitor(&state, &name, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let deadline = tokio::time::Instant::now() + MAX_WAIT.min(Duration::from_secs(q.wait));
    let address = format!("webchat:{}", visitor.id);
    loop {
        let messages = match state.app.storage.conversation_by_key(&name, &address) {
            Ok(Some(conv)) => match state.app.storage.messages(conv.id) {
                Ok(list) => list,
                Err(e) => {
                    tracing::error!("visitor poll: {e}");
                    Vec::new()
                }
            },
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::error!("visitor poll: {e}");
                Vec::new()
            }
        };
        let new: Vec<_> = messages
            .into_iter()
            .filter(|m| m.seq > q.after)
            .map(|m| {
                json!({
                    "seq": m.seq,
                    "from": if m.direction == Direction::Inbound { "visitor" } else { "agent" },
                    "text": m.text,
                    "at": m.created_at,
                })
            })
            .collect();
        if !new.is_empty() || tokio::time::Instant::now() >= deadline {
            return Json(json!({"messages": new, "online": online(&state, &channel)}))
                .into_response();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /webchat/{channel}/widget.js`: the widget, configured from the channel's settings.
pub async fn widget(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let channel = match webchat_channel(&state, &name) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let config = json!({
        "base": format!("{}/webchat/{name}", state.app.config.server.public_url.trim_end_matches('/')),
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
