//! `/api/v1/...`: the agent API (bearer token per agent) and the admin API (admin token).
//!
//! An agent sees the conversations of their queues and those they own; any other conversation
//! is a 404, by id or in a list, so ids reveal nothing.

// Rejections are axum `Response`s by design: a handler returns them as they are.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::AgentConfig;
use crate::sandbox::Clock;
use crate::server::{AppState, error_response};
use crate::storage::{
    Attachment, Conversation, ConversationState, Direction, Message, MessageStatus,
};

/// How long a reply request waits for the provider's answer before answering 202.
const SEND_WAIT: Duration = Duration::from_secs(10);

/// The largest reply text, in characters.
const MAX_TEXT_CHARS: usize = 1600;

/// The authenticated agent of a request.
pub struct Agent(pub AgentConfig);

impl FromRequestParts<AppState> for Agent {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = bearer(parts)?;
        state
            .app
            .agent_by_token(token)
            .cloned()
            .map(Agent)
            .ok_or_else(|| unauthorized("the bearer token matches no agent"))
    }
}

/// A request carrying the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(expected) = &state.app.config.server.admin_token else {
            return Err(error_response(
                StatusCode::NOT_FOUND,
                "admin API is off: set server.admin_token to enable it",
            ));
        };
        let token = bearer(parts)?;
        if bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
            Ok(Admin)
        } else {
            Err(unauthorized("the bearer token is not the admin token"))
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, Response> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <token> header"))?;
    let value = value
        .to_str()
        .map_err(|_| unauthorized("Authorization header is not ASCII"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Authorization header must be `Bearer <token>`"))
}

fn unauthorized(message: &str) -> Response {
    let mut r = error_response(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"plugboard\""),
    );
    r
}

/// A conversation as agents see it.
#[derive(Debug, Serialize)]
pub struct ConversationView {
    id: String,
    channel: String,
    kind: String,
    customer: String,
    contact_name: Option<String>,
    queue: String,
    state: ConversationState,
    owner: Option<String>,
    offered_to: Vec<String>,
    created_at: u64,
    updated_at: u64,
    last_inbound_at: Option<u64>,
    message_count: u64,
}

impl ConversationView {
    fn new(state: &AppState, c: Conversation) -> Self {
        let kind = state
            .app
            .channels
            .get(&c.channel)
            .map(|ch| ch.plugin.manifest.kind.clone())
            .unwrap_or_default();
        ConversationView {
            id: c.id.to_string(),
            kind,
            channel: c.channel,
            customer: c.customer,
            contact_name: c.contact_name,
            queue: c.queue,
            state: c.state,
            owner: c.owner,
            offered_to: c.offered_to,
            created_at: c.created_at,
            updated_at: c.updated_at,
            last_inbound_at: c.last_inbound_at,
            message_count: c.last_seq,
        }
    }
}

/// A message as agents see it.
#[derive(Debug, Serialize)]
pub struct MessageView {
    id: String,
    conversation: String,
    direction: Direction,
    text: Option<String>,
    attachments: Vec<Attachment>,
    author: Option<String>,
    provider_id: Option<String>,
    status: MessageStatus,
    error: Option<String>,
    created_at: u64,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        MessageView {
            id: m.id(),
            conversation: m.conversation.to_string(),
            direction: m.direction,
            text: m.text,
            attachments: m.attachments,
            author: m.author,
            provider_id: m.provider_id,
            status: m.status,
            error: m.error,
            created_at: m.created_at,
        }
    }
}

fn visible(agent: &AgentConfig, c: &Conversation) -> bool {
    c.owner.as_deref() == Some(agent.id.as_str()) || agent.queues.iter().any(|q| q == &c.queue)
}

fn storage_error(e: impl std::fmt::Display) -> Response {
    tracing::error!("storage: {e}");
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage unavailable; retry later",
    )
}

fn not_found(id: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no conversation {id:?} visible to you"),
    )
}

/// Loads a conversation the agent may see, or the 404 that hides it.
fn visible_conversation(
    state: &AppState,
    agent: &AgentConfig,
    id: &str,
) -> Result<Conversation, Response> {
    let Ok(n) = id.parse::<u64>() else {
        return Err(not_found(id));
    };
    match state.app.storage.conversation(n) {
        Ok(Some(c)) if visible(agent, &c) => Ok(c),
        Ok(_) => Err(not_found(id)),
        Err(e) => Err(storage_error(e)),
    }
}

/// `GET /api/v1/conversations`: the agent's queues' conversations and their own.
pub async fn list_conversations(State(state): State<AppState>, Agent(agent): Agent) -> Response {
    match state.app.storage.conversations(|c| visible(&agent, c)) {
        Ok(list) => {
            let views: Vec<_> = list
                .into_iter()
                .map(|c| ConversationView::new(&state, c))
                .collect();
            Json(serde_json::json!({ "conversations": views })).into_response()
        }
        Err(e) => storage_error(e),
    }
}

/// `GET /api/v1/conversations/{id}/messages`.
pub async fn list_messages(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
) -> Response {
    let conv = match visible_conversation(&state, &agent, &id) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match state.app.storage.messages(conv.id) {
        Ok(list) => {
            let views: Vec<MessageView> = list.into_iter().map(Into::into).collect();
            Json(serde_json::json!({ "messages": views })).into_response()
        }
        Err(e) => storage_error(e),
    }
}

/// The body of a reply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    text: Option<String>,
    #[serde(default)]
    attachments: Vec<ReplyAttachment>,
}

/// A media attachment on a reply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyAttachment {
    url: String,
    content_type: Option<String>,
}

/// `POST /api/v1/conversations/{id}/messages`: queue a reply durably, send it through the
/// channel, and answer with the stored message once the provider answered (201), or with the
/// pending message if it takes longer (202).
pub async fn reply(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let conv = match visible_conversation(&state, &agent, &id) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body: ReplyBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("body must be JSON like {{\"text\": \"...\"}}: {e}"),
            );
        }
    };
    let text = body.text.filter(|t| !t.trim().is_empty());
    if text.is_none() && body.attachments.is_empty() {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a reply needs a non-empty `text` or at least one attachment",
        );
    }
    if let Some(t) = &text {
        let chars = t.chars().count();
        if chars > MAX_TEXT_CHARS {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("text is {chars} characters; the limit is {MAX_TEXT_CHARS}"),
            );
        }
    }
    for a in &body.attachments {
        if url::Url::parse(&a.url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("attachment url {:?} is not an absolute http(s) URL", a.url),
            );
        }
    }
    if conv.state == ConversationState::Closed {
        return error_response(StatusCode::CONFLICT, "the conversation is closed");
    }
    if let Some(owner) = &conv.owner
        && owner != &agent.id
    {
        return error_response(
            StatusCode::CONFLICT,
            format!("the conversation is owned by {owner}"),
        );
    }
    match state
        .app
        .storage
        .is_opted_out(&conv.channel, &conv.customer)
    {
        Ok(true) => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{} opted out of channel {}; nothing was sent",
                    conv.customer, conv.channel
                ),
            );
        }
        Ok(false) => {}
        Err(e) => return storage_error(e),
    }
    let attachments = body
        .attachments
        .into_iter()
        .map(|a| Attachment {
            url: a.url,
            content_type: a.content_type,
        })
        .collect();
    let now = Clock::System.now_millis();
    let message = match state
        .app
        .storage
        .add_outbound(conv.id, &agent.id, text, attachments, now)
    {
        Ok(Some(m)) => m,
        Ok(None) => return not_found(&id),
        Err(e) => return storage_error(e),
    };
    if let Err(e) = state.app.storage.wait_durable().await {
        return storage_error(e);
    }
    let rx = state.outbox.watch(message.conversation, message.seq);
    state.outbox.submit(message.conversation, message.seq);
    match state.outbox.wait(rx, SEND_WAIT).await {
        Some(done) => (StatusCode::CREATED, Json(MessageView::from(done))).into_response(),
        None => (StatusCode::ACCEPTED, Json(MessageView::from(message))).into_response(),
    }
}

/// `GET /api/v1/admin/plugins`: loaded and refused plugins.
pub async fn plugins(State(state): State<AppState>, _admin: Admin) -> Response {
    let p = &state.app.plugins;
    let channels: Vec<_> = p
        .channels
        .values()
        .map(|c| serde_json::json!({ "info": c.info, "manifest": c.manifest }))
        .collect();
    let routers: Vec<_> = p.routers.values().map(|r| &r.info).collect();
    Json(serde_json::json!({
        "contract": crate::plugin::CONTRACT_VERSION,
        "channels": channels,
        "routers": routers,
        "refused": p.refused,
    }))
    .into_response()
}
