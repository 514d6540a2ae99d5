//! `/api/v1/...`: the agent API (bearer token per agent) and the admin API (admin token).
//!
//! An agent reads a conversation only when it shows in one of their views (queued work of their
//! queues, their own, closed ones they handled, the queues they manage); any other conversation
//! is a 404, by id or in a list, so ids reveal nothing. The rules are
//! [`crate::services::agents::access`]'s; this module maps their answers to HTTP.

// Rejections are axum `Response`s by design: a handler returns them as they are.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::config::AgentConfig;
use crate::http::edge::{AppState, error_response, json_body};
use crate::model::{
    AgentSession, Attachment, Contact, Conversation, ConversationState, Direction, Message,
    MessageStatus, OutboundDraft, Rejection, StoredEvent,
};
use crate::services::agents::Presence;
use crate::services::agents::access::{self, Refused, Standing, View};
use crate::services::app::ReloadError;
use crate::services::channel_rules;
use crate::services::conversations::{ActionError, StartError};
use crate::services::replies::{self, DraftError, ReplyRequest};
use crate::services::search;
use crate::services::sessions;
use crate::store::UpdateError;

/// The authenticated agent of a request: by bearer token, or by the console's session cookie
/// (then a state-changing request must also carry the session's CSRF value in
/// [`CSRF_HEADER`]; a page on another site can send the cookie but never read that value).
pub struct Agent(pub AgentConfig);

/// The console session a request was authenticated by (a request extension), when it came
/// with the cookie rather than a bearer token.
#[derive(Clone)]
pub struct CookieSession {
    /// The cookie's token.
    pub token: String,
    /// The stored session.
    pub session: AgentSession,
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "plugboard_session";

/// The header a cookie-authenticated state change carries the session's CSRF value in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The `403` of a state change by cookie without the session's CSRF value.
pub const CSRF_REFUSAL: &str = "a request signed in by the session cookie must carry the X-CSRF-Token header with the value sign-in returned";

/// Whether `headers` carry `session`'s CSRF value (compared in constant time).
pub fn csrf_matches(headers: &HeaderMap, session: &AgentSession) -> bool {
    let sent = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    bool::from(sent.ct_eq(session.csrf.as_bytes()))
}

impl FromRequestParts<AppState> for Agent {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let cookie = crate::http::edge::cookie(&parts.headers, SESSION_COOKIE);
        let (Some(token), false) = (cookie, parts.headers.contains_key(header::AUTHORIZATION))
        else {
            let token = bearer(parts)?;
            return state
                .app
                .agent_by_token(token)
                .map(Agent)
                .ok_or_else(|| unauthorized("the bearer token matches no agent"));
        };
        let token = token.to_owned();
        let now = Clock::System.now_millis();
        let session = match sessions::find(state.app.storage.as_ref(), &token, now).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(unauthorized("the session ended or expired; sign in again")),
            Err(e) => return Err(storage_error(e)),
        };
        let Some(agent) = state.app.config().agent(&session.agent).cloned() else {
            return Err(unauthorized(
                "the session's agent is no longer configured; sign in again",
            ));
        };
        if !sessions::still_valid_for(&session, &agent) {
            return Err(unauthorized(
                "the agent's token changed since this session began; sign in again",
            ));
        }
        if !matches!(parts.method, Method::GET | Method::HEAD)
            && !csrf_matches(&parts.headers, &session)
        {
            return Err(error_response(StatusCode::FORBIDDEN, CSRF_REFUSAL));
        }
        parts.extensions.insert(CookieSession { token, session });
        Ok(Agent(agent))
    }
}

/// A request carrying the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(expected) = &state.app.config().server.admin_token else {
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
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        unauthorized(
            "missing Authorization: Bearer <token> header (or the console's session cookie)",
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| unauthorized("Authorization header is not ASCII"))?;
    crate::http::edge::bearer_token(value)
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
    known_contact: bool,
    queue: String,
    state: ConversationState,
    owner: Option<String>,
    offered_to: Vec<String>,
    handled_by: Vec<String>,
    /// The customer's rating (1 to 5) from the survey, if they answered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    rating: Option<u8>,
    /// Higher is offered first (work classification).
    priority: i32,
    /// Skills an agent needs to be offered it.
    skills: Vec<String>,
    /// The bot holding it (state `bot`), or that held it last.
    #[serde(skip_serializing_if = "Option::is_none")]
    bot: Option<String>,
    created_at: u64,
    updated_at: u64,
    last_inbound_at: Option<u64>,
    waiting_since: Option<u64>,
    message_count: u64,
    unread: u64,
    preview: Option<Preview>,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    matched: Option<String>,
}

/// A list row's last message, in short.
#[derive(Debug, Serialize)]
struct Preview {
    text: Option<String>,
    direction: Direction,
    at: u64,
}

/// How many list rows read their contact and last message at once.
const ROW_READS: usize = 8;

/// The longest preview of a last message, in characters.
const PREVIEW_CHARS: usize = 140;

impl ConversationView {
    /// The view of `c` for `agent`.
    async fn new(state: &AppState, agent: &AgentConfig, c: Conversation) -> Self {
        let unread_from = state
            .app
            .storage
            .read_marks(&agent.id, &[c.id])
            .await
            .ok()
            .and_then(|m| m.first().copied())
            .unwrap_or(0);
        ConversationView::with(state, c, unread_from).await
    }

    /// The views of `list` for `agent`, their read markers read at once and their other
    /// facts [`ROW_READS`] rows at a time.
    async fn list(
        state: &AppState,
        agent: &AgentConfig,
        list: Vec<Conversation>,
    ) -> Result<Vec<Self>, Response> {
        use futures_util::StreamExt;
        let ids: Vec<u64> = list.iter().map(|c| c.id).collect();
        let marks = state
            .app
            .storage
            .read_marks(&agent.id, &ids)
            .await
            .map_err(storage_error)?;
        Ok(futures_util::stream::iter(list.into_iter().zip(marks))
            .map(|(c, mark)| ConversationView::with(state, c, mark))
            .buffered(ROW_READS)
            .collect()
            .await)
    }

    /// The view of `c`, whose messages after `read` are unread.
    async fn with(state: &AppState, c: Conversation, read: u64) -> Self {
        let kind = channel_kind(state, &c.channel);
        let storage = &state.app.storage;
        let contact = storage.contact(&c.customer).await.ok().flatten();
        let preview = match c.last_seq {
            0 => None,
            seq => storage
                .message(c.id, seq)
                .await
                .ok()
                .flatten()
                .map(|m| Preview {
                    text: m.text.map(|t| t.chars().take(PREVIEW_CHARS).collect()),
                    direction: m.direction,
                    at: m.created_at,
                }),
        };
        ConversationView {
            unread: c.last_seq.saturating_sub(read),
            waiting_since: (c.state == ConversationState::Queued).then_some(c.queued_since),
            preview,
            matched: None,
            id: c.id.to_string(),
            kind,
            channel: c.channel,
            known_contact: contact.is_some(),
            contact_name: contact.map(|k| k.name).or(c.contact_name),
            customer: c.customer,
            queue: c.queue,
            state: c.state,
            owner: c.owner,
            offered_to: c.offered_to,
            rating: c.rating,
            priority: c.priority,
            skills: c.skills,
            bot: c.bot,
            handled_by: c.handled_by,
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
    seq: u64,
    direction: Direction,
    text: Option<String>,
    attachments: Vec<Attachment>,
    author: Option<String>,
    provider_id: Option<String>,
    status: MessageStatus,
    error: Option<String>,
    note: Option<String>,
    template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segments: Option<channel_rules::Segments>,
    /// Which automated message it is, when the host sent it by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    automated: Option<String>,
    /// Where the send moved because its channel's provider could not take it.
    #[serde(skip_serializing_if = "Option::is_none")]
    failover: Option<crate::model::Failover>,
    created_at: u64,
}

impl MessageView {
    /// The view of `m` on a channel that counts SMS segments (`segments`) or not: the
    /// segments of what goes over the air (never of a note).
    fn on(segments: bool, m: Message) -> MessageView {
        let segments = (segments && m.direction != Direction::Note)
            .then(|| m.text.as_deref().map(channel_rules::segments))
            .flatten();
        MessageView {
            segments,
            ..MessageView::from(m)
        }
    }
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        MessageView {
            id: m.id(),
            conversation: m.conversation.to_string(),
            seq: m.seq,
            direction: m.direction,
            text: m.text,
            attachments: m.attachments,
            automated: m.automated,
            failover: m.failover,
            author: m.author,
            provider_id: m.provider_id,
            status: m.status,
            error: m.error,
            note: m.note,
            template: m.template.map(|t| t.name),
            segments: None,
            created_at: m.created_at,
        }
    }
}

/// Whether a configured channel's texts count in SMS segments (no, if it is gone).
fn counts_segments(state: &AppState, channel: &str) -> bool {
    state
        .app
        .catalog()
        .channels
        .get(channel)
        .is_some_and(|c| c.rules().segments)
}

/// The kind of a configured channel (`sms`, `whatsapp`, ...), empty if it is gone.
fn channel_kind(state: &AppState, channel: &str) -> String {
    state
        .app
        .catalog()
        .channels
        .get(channel)
        .map(|c| c.kind().to_owned())
        .unwrap_or_default()
}

pub(crate) fn storage_error(e: impl std::fmt::Display) -> Response {
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

/// Loads a conversation the agent reaches at least as far as `need` (and says how far), or
/// the 404 that hides it.
async fn conversation_for(
    state: &AppState,
    agent: &AgentConfig,
    id: &str,
    need: Standing,
) -> Result<(Conversation, Standing), Response> {
    let Ok(n) = id.parse::<u64>() else {
        return Err(not_found(id));
    };
    match state.app.storage.conversation(n).await {
        Ok(Some(c)) => {
            let standing = access::standing(&state.app.config(), agent, &c);
            if standing >= need {
                Ok((c, standing))
            } else {
                Err(not_found(id))
            }
        }
        Ok(None) => Err(not_found(id)),
        Err(e) => Err(storage_error(e)),
    }
}

/// The answer to a refused request: who the agent is or what the conversation is forbids it
/// (403), the conversation is closed (409), or what they asked for cannot be done (422).
fn refused(r: Refused) -> Response {
    let status = match r {
        Refused::Closed
        | Refused::OwnedBy { .. }
        | Refused::NotClosed
        | Refused::AlreadyInQueue(_) => StatusCode::CONFLICT,
        Refused::NotOwnerOrManager { .. }
        | Refused::MayNotStart
        | Refused::NotSendFrom(_)
        | Refused::ChannelNotYours { .. }
        | Refused::OtherQueue { .. }
        | Refused::NotInQueue { .. }
        | Refused::NotHandler { .. } => StatusCode::FORBIDDEN,
        Refused::UnknownAgent(_)
        | Refused::UnknownQueue(_)
        | Refused::ToYourself
        | Refused::AlreadyOwner(_)
        | Refused::OutsideQueue { .. }
        | Refused::NoChannel => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error_response(status, r.to_string())
}

/// The 409 a colleague gets for taking or answering a conversation another agent owns.
fn owned_by(owner: Option<String>) -> Response {
    let message = format!(
        "the conversation is owned by {}",
        owner.as_deref().unwrap_or("another agent")
    );
    (
        StatusCode::CONFLICT,
        Json(json!({"error": message, "owner": owner})),
    )
        .into_response()
}

/// `?view=&limit=&cursor=&updated_since=` of the conversation list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    view: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    updated_since: Option<String>,
    queue: Option<String>,
    state: Option<String>,
    channel: Option<String>,
    owner: Option<String>,
    q: Option<String>,
}

/// The longest search text `q` takes, in characters.
const MAX_SEARCH_CHARS: usize = 200;

/// A page of conversations as the API answers it (serialized straight from the views).
#[derive(Serialize)]
struct ConversationPage {
    conversations: Vec<ConversationView>,
    next_cursor: Option<String>,
}

/// A page of messages as the API answers it.
#[derive(Serialize)]
struct MessagePage {
    messages: Vec<MessageView>,
    next_cursor: Option<String>,
}

/// `?limit=&cursor=` of a message list.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// The page size a list gets without `limit`.
pub const DEFAULT_PAGE: usize = 50;
/// The largest `limit` a list takes.
pub const MAX_PAGE: usize = 200;

/// Reads `limit`: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
fn page_limit(limit: Option<&str>) -> Result<usize, Response> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(error_response(
                StatusCode::BAD_REQUEST,
                format!("limit {text:?} must be a whole number from 1 to {MAX_PAGE}"),
            )),
        },
    }
}

/// A cursor the client sent back that this host never handed out.
fn bad_cursor(text: &str) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        format!("cursor {text:?} is not one this API handed out (pass `next_cursor` as it came)"),
    )
}

/// `GET /api/v1/conversations?view=recent|archived|monitor`: recent (the default) is the
/// queued work of the agent's queues plus their own open conversations; archived is the closed
/// ones they handled; monitor is every conversation of the queues they manage. `queue`,
/// `state`, `channel` and `owner` narrow the view. Most recently updated first, a page of
/// `limit` at a time; `next_cursor` asks for the next page.
pub async fn list_conversations(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = match page_limit(q.limit.as_deref()) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let after = match q.cursor.as_deref() {
        None => None,
        Some(text) => match crate::store::ConversationCursor::decode(text) {
            Some(c) => Some(c),
            None => return bad_cursor(text),
        },
    };
    let updated_since = match q.updated_since.as_deref() {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(ms) => Some(ms),
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!("updated_since {text:?} must be Unix milliseconds"),
                );
            }
        },
    };
    let name = q.view.as_deref().unwrap_or("recent");
    let Some(view) = View::parse(name) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("unknown view {name:?}: use recent, archived or monitor"),
        );
    };
    let config = &state.app.config();
    if view == View::Monitor && !access::manages_any(config, &agent) {
        return error_response(
            StatusCode::FORBIDDEN,
            "the monitor view is for queue managers; you manage no queue",
        );
    }
    if let Some(queue) = q.queue.as_deref()
        && config.queue(queue).is_none()
    {
        return error_response(StatusCode::BAD_REQUEST, format!("unknown queue {queue:?}"));
    }
    let state_filter = match q.state.as_deref() {
        None => None,
        Some("queued") => Some(ConversationState::Queued),
        Some("assigned") => Some(ConversationState::Assigned),
        Some("closed") => Some(ConversationState::Closed),
        Some("bot") => Some(ConversationState::Bot),
        Some(other) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("unknown state {other:?}: use queued, assigned, closed or bot"),
            );
        }
    };
    let query = crate::store::ConversationQuery {
        any_of: access::selectors(config, &agent, view),
        channel: q.channel,
        queue: q.queue,
        state: state_filter,
        owner: q.owner,
        updated_since,
        after,
        limit,
    };
    if let Some(q) = q.q.as_deref().filter(|q| !q.trim().is_empty()) {
        return search(&state, &agent, &query, q).await;
    }
    match state.app.storage.conversations(&query).await {
        Ok(page) => {
            let views = match ConversationView::list(&state, &agent, page.items).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            let next = page.next.map(|c| c.encode());
            Json(ConversationPage {
                conversations: views,
                next_cursor: next,
            })
            .into_response()
        }
        Err(e) => storage_error(e),
    }
}

/// `?q=`: the view's conversations whose address, contact name or messages contain `q`
/// ([`search::search`]), each row with `match`, the text that matched.
async fn search(
    state: &AppState,
    agent: &AgentConfig,
    query: &crate::store::ConversationQuery,
    q: &str,
) -> Response {
    if q.chars().count() > MAX_SEARCH_CHARS {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("q is longer than {MAX_SEARCH_CHARS} characters"),
        );
    }
    match search::search(state.app.storage.as_ref(), query, q).await {
        Ok(found) => {
            let (convs, matched): (Vec<_>, Vec<_>) = found
                .hits
                .into_iter()
                .map(|h| (h.conversation, h.matched))
                .unzip();
            let mut views = match ConversationView::list(state, agent, convs).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            for (view, m) in views.iter_mut().zip(matched) {
                view.matched = Some(m);
            }
            Json(ConversationPage {
                conversations: views,
                next_cursor: found.next.map(|c| c.encode()),
            })
            .into_response()
        }
        Err(e) => storage_error(e),
    }
}

/// A conversation with the rules a reply to it must follow.
#[derive(Serialize)]
struct ConversationDetail {
    #[serde(flatten)]
    conversation: ConversationView,
    rules: replies::ReplyRules,
}

/// `GET /api/v1/conversations/{id}`: one conversation the agent can read, with the rules a
/// reply to it follows (length, SMS segments, attachments, the WhatsApp window, templates,
/// opt-out).
pub async fn get_conversation(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
) -> Response {
    let conv = match conversation_for(&state, &agent, &id, Standing::Reader).await {
        Ok((c, _)) => c,
        Err(r) => return r,
    };
    let rules = match replies::rules(&state.app, &conv, Clock::System.now_millis()).await {
        Ok(r) => r,
        Err(e) => return storage_error(e),
    };
    Json(ConversationDetail {
        conversation: ConversationView::new(&state, &agent, conv).await,
        rules,
    })
    .into_response()
}

/// The body of a read marker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadBody {
    seq: u64,
}

/// `POST /api/v1/conversations/{id}/read` `{"seq": n}`: the agent has read up to message
/// `n` (a marker only moves forward; past the last message it stops there).
pub async fn mark_read(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let conv = match conversation_for(&state, &agent, &id, Standing::Reader).await {
        Ok((c, _)) => c,
        Err(r) => return r,
    };
    let body: ReadBody = match json_body(&body, r#"{"seq": 3}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match state
        .app
        .storage
        .mark_read(&agent.id, conv.id, body.seq.min(conv.last_seq))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => storage_error(e),
    }
}

/// The body of a note.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    text: String,
}

/// The longest note, in characters.
const MAX_NOTE_CHARS: usize = 5_000;

/// `POST /api/v1/conversations/{id}/notes` `{"text": "..."}`: an internal note on a
/// conversation the agent can read, kept with its history for agents only; nothing sends it.
pub async fn add_note(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let conv = match conversation_for(&state, &agent, &id, Standing::Reader).await {
        Ok((c, _)) => c,
        Err(r) => return r,
    };
    let body: NoteBody = match json_body(&body, r#"{"text": "VIP customer"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let chars = body.text.chars().count();
    if body.text.trim().is_empty() || chars > MAX_NOTE_CHARS {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`text` must be 1 to {MAX_NOTE_CHARS} characters (it is {chars})"),
        );
    }
    match state.actions().note(&agent, &conv, &body.text).await {
        Ok(m) => {
            let segments = counts_segments(&state, &conv.channel);
            (StatusCode::CREATED, Json(MessageView::on(segments, m))).into_response()
        }
        Err(e) => update_error(e, &id),
    }
}

/// `POST /api/v1/conversations/{id}/reopen`: a closed conversation the agent handled (or whose
/// queue they manage) is theirs again, with its history.
pub async fn reopen(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
) -> Response {
    let before = match conversation_for(&state, &agent, &id, Standing::Colleague).await {
        Ok((c, _)) => c,
        Err(r) => return r,
    };
    let done = state.actions().reopen(&agent, &before).await;
    acted(&state, &agent, done, &id).await
}

/// `GET /api/v1/conversations/{id}/messages?limit=&cursor=`: oldest first, a page of `limit`
/// at a time; `next_cursor` (a sequence number) asks for the next page.
pub async fn list_messages(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let limit = match page_limit(q.limit.as_deref()) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let after = match q.cursor.as_deref() {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(seq) => Some(seq),
            Err(_) => return bad_cursor(text),
        },
    };
    let conv = match conversation_for(&state, &agent, &id, Standing::Reader).await {
        Ok((c, _)) => c,
        Err(r) => return r,
    };
    match state.app.storage.messages(conv.id, after, limit).await {
        Ok(page) => {
            let segments = counts_segments(&state, &conv.channel);
            let views: Vec<MessageView> = page
                .items
                .into_iter()
                .map(|m| MessageView::on(segments, m))
                .collect();
            let next = page.next.map(|seq| seq.to_string());
            Json(MessagePage {
                messages: views,
                next_cursor: next,
            })
            .into_response()
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
    template: Option<TemplateChoice>,
}

/// A media attachment on a reply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyAttachment {
    url: String,
    content_type: Option<String>,
}

/// An approved template picked by name (and language, when several share the name).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateChoice {
    name: String,
    language: Option<String>,
    #[serde(default)]
    variables: serde_json::Map<String, serde_json::Value>,
}

/// `POST /api/v1/conversations/{id}/messages`: queue a reply durably, send it through the
/// channel, and answer with the stored message once the provider answered (201), or with the
/// pending message while it is not yet accepted (202: the first attempt failed and will be
/// retried, or it takes longer than [`crate::services::conversations::SEND_WAIT`]).
pub async fn reply(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let conv = match conversation_for(&state, &agent, &id, Standing::Colleague).await {
        Ok((c, Standing::Reader)) => c,
        Ok((c, _)) => return owned_by(c.owner),
        Err(r) => return r,
    };
    let body: ReplyBody = match json_body(&body, r#"{"text": "..."}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let draft = match outbound_draft(&state, &conv, body).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match send_reply(&state, &agent, &conv, draft).await {
        Ok((status, view)) => (status, Json(view)).into_response(),
        Err(r) => r,
    }
}

/// Checks a reply against its channel's rules ([`replies::draft`]): `422` naming the rule it
/// breaks.
async fn outbound_draft(
    state: &AppState,
    conv: &Conversation,
    body: ReplyBody,
) -> Result<OutboundDraft, Response> {
    let request = ReplyRequest {
        text: body.text,
        attachments: body
            .attachments
            .into_iter()
            .map(|a| Attachment {
                url: a.url,
                content_type: a.content_type,
            })
            .collect(),
        template: body.template.map(|t| replies::TemplateChoice {
            name: t.name,
            language: t.language,
            variables: t.variables,
        }),
    };
    replies::draft(&state.app, conv, request, Clock::System.now_millis())
        .await
        .map_err(|e| match e {
            DraftError::Refused(m) => error_response(StatusCode::UNPROCESSABLE_ENTITY, m),
            DraftError::Storage(e) => storage_error(e),
        })
}

/// Queues an agent's message durably, submits it, and waits for the provider's answer: `201`
/// once the provider accepted or refused it for good, `202` while it is still pending.
async fn send_reply(
    state: &AppState,
    agent: &AgentConfig,
    before: &Conversation,
    draft: OutboundDraft,
) -> Result<(StatusCode, MessageView), Response> {
    let message = state
        .actions()
        .reply(agent, before, draft)
        .await
        .map_err(|e| update_error(e, &before.id.to_string()))?;
    let segments = counts_segments(state, &before.channel);
    let status = if message.status == MessageStatus::Pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((status, MessageView::on(segments, message)))
}

/// `GET /api/v1/admin/plugins`: loaded and refused plugins.
pub async fn plugins(State(state): State<AppState>, _admin: Admin) -> Response {
    let catalog = state.app.catalog();
    let p = &catalog.plugins;
    let channels: Vec<_> = p
        .channels
        .values()
        .map(|c| serde_json::json!({ "info": c.info, "manifest": c.manifest }))
        .collect();
    let routers: Vec<_> = p.routers.values().map(|r| &r.info).collect();
    Json(serde_json::json!({
        "contract": crate::runtime::plugin::CONTRACT_VERSION,
        "channels": channels,
        "routers": routers,
        "refused": p.refused,
        "channel_health": state.app.health.views(),
    }))
    .into_response()
}

fn update_error(e: UpdateError, id: &str) -> Response {
    match e {
        UpdateError::Storage(e) => storage_error(e),
        UpdateError::Rejected(Rejection::NotFound) => not_found(id),
        UpdateError::Rejected(Rejection::Conflict(m)) => error_response(StatusCode::CONFLICT, m),
        UpdateError::Rejected(Rejection::Forbidden(m)) => error_response(StatusCode::FORBIDDEN, m),
    }
}

/// `POST /api/v1/conversations/{id}/take`: the agent takes a conversation of their queue.
/// Taking one another agent owns is a 409 that names the owner; of two agents taking at once,
/// exactly one wins.
pub async fn take(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
) -> Response {
    let before = match conversation_for(&state, &agent, &id, Standing::Colleague).await {
        Ok((c, _)) => c,
        Err(r) => return r,
    };
    let done = state.actions().take(&agent, &before).await;
    acted(&state, &agent, done, &id).await
}

/// The answer to an action on conversation `id`: its view as it now stands, or why not.
async fn acted(
    state: &AppState,
    agent: &AgentConfig,
    done: Result<Conversation, ActionError>,
    id: &str,
) -> Response {
    match done {
        Ok(after) => Json(ConversationView::new(state, agent, after).await).into_response(),
        Err(e) => action_error(e, id),
    }
}

/// The answer to an action the walls, the current state or storage refused.
fn action_error(e: ActionError, id: &str) -> Response {
    match e {
        ActionError::Refused(r) => refused(r),
        ActionError::Update(e) => update_error(e, id),
        ActionError::Taken { message, owner } => (
            StatusCode::CONFLICT,
            Json(json!({"error": message, "owner": owner})),
        )
            .into_response(),
    }
}

/// The body of a transfer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    agent: Option<String>,
    queue: Option<String>,
}

/// `POST /api/v1/conversations/{id}/transfer` `{"agent": "..."}` or `{"queue": "..."}`: hands
/// the conversation, with its whole history, to another agent of its queue (or one of its
/// managers), or puts it, unowned, in another queue for its agents to be offered. Only its
/// owner or a manager of its queue may, and not to themselves.
pub async fn transfer(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let before = match conversation_for(&state, &agent, &id, Standing::Colleague).await {
        Ok((c, _)) => c,
        Err(r) => return r,
    };
    let body: TransferBody = match json_body(&body, r#"{"agent": "bob"} or {"queue": "sales"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let done = match (body.agent.as_deref(), body.queue.as_deref()) {
        (Some(to), None) => state.actions().transfer(&agent, &before, to).await,
        (None, Some(queue)) => {
            state
                .actions()
                .transfer_to_queue(&agent, &before, queue)
                .await
        }
        _ => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "name exactly one of `agent` (a colleague) or `queue`",
            );
        }
    };
    acted(&state, &agent, done, &id).await
}

/// `POST /api/v1/conversations/{id}/close`: resolves and archives it. Its owner, a manager of
/// its queue, or (while it is still queued) an agent of its queue may close it.
pub async fn close(
    State(state): State<AppState>,
    Agent(agent): Agent,
    Path(id): Path<String>,
) -> Response {
    let before = match conversation_for(&state, &agent, &id, Standing::Colleague).await {
        Ok((c, _)) => c,
        Err(r) => return r,
    };
    let done = state.actions().close(&agent, &before).await;
    acted(&state, &agent, done, &id).await
}

/// The body of a presence change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceBody {
    presence: String,
}

/// `PUT /api/v1/agents/me/presence` `{"presence": "online"|"away"|"offline"}`.
pub async fn set_presence(
    State(state): State<AppState>,
    Agent(agent): Agent,
    body: Bytes,
) -> Response {
    let body: PresenceBody = match json_body(&body, r#"{"presence": "online"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let presence = match body.presence.as_str() {
        "online" => Presence::Online,
        "away" => Presence::Away,
        "offline" => Presence::Offline,
        other => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("presence {other:?} is not one of online, away, offline"),
            );
        }
    };
    state.actions().set_presence(&agent.id, presence).await;
    Json(json!({"agent": agent.id, "presence": presence})).into_response()
}

/// `GET /api/v1/agents/me/presence`.
pub async fn get_presence(State(state): State<AppState>, Agent(agent): Agent) -> Response {
    let presence = state.agents.presence(&agent.id);
    Json(json!({"agent": agent.id, "presence": presence})).into_response()
}

/// The body of an agent-started conversation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    to: String,
    channel: Option<String>,
    text: Option<String>,
    template: Option<TemplateChoice>,
}

/// `POST /api/v1/conversations` `{"to": "+E164", "channel"?: "...", "text"?: "..."}`: an
/// agent with `may_start` opens a conversation over their `send_from` channel, or a channel
/// that feeds one of their queues. An existing conversation with the customer is taken over
/// only when it is in a queue they work (403 otherwise).
pub async fn start_conversation(
    State(state): State<AppState>,
    Agent(agent): Agent,
    body: Bytes,
) -> Response {
    let body: StartBody = match json_body(&body, r#"{"to": "+14155550100"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let conv = match state
        .actions()
        .start(&agent, body.channel.as_deref(), &body.to)
        .await
    {
        Ok(c) => c,
        Err(StartError::Refused(r)) => return refused(r),
        Err(StartError::Update(e)) => return update_error(e, &body.to),
        Err(StartError::Storage(e)) => return storage_error(e),
        Err(e) => return error_response(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let mut out = json!({});
    let has_text = body.text.as_deref().is_some_and(|t| !t.trim().is_empty());
    if has_text || body.template.is_some() {
        let reply = ReplyBody {
            text: body.text,
            attachments: Vec::new(),
            template: body.template,
        };
        let draft = match outbound_draft(&state, &conv, reply).await {
            Ok(d) => d,
            Err(r) => return r,
        };
        match send_reply(&state, &agent, &conv, draft).await {
            Ok((_, view)) => out["message"] = json!(view),
            Err(r) => return r,
        }
    }
    let conv = state
        .app
        .storage
        .conversation(conv.id)
        .await
        .ok()
        .flatten()
        .unwrap_or(conv);
    out["conversation"] = json!(ConversationView::new(&state, &agent, conv).await);
    (StatusCode::CREATED, Json(out)).into_response()
}

/// `?q=` of the contact directory.
#[derive(Debug, Deserialize)]
pub struct ContactQuery {
    q: Option<String>,
}

/// `GET /api/v1/contacts?q=`: the directory, by address; `q` keeps the contacts whose name or
/// address contains it, whatever the case.
pub async fn list_contacts(
    State(state): State<AppState>,
    _agent: Agent,
    Query(query): Query<ContactQuery>,
) -> Response {
    let needle = query.q.as_deref().unwrap_or("").trim().to_lowercase();
    match state.app.storage.contacts().await {
        Ok(mut list) => {
            if !needle.is_empty() {
                list.retain(|c| {
                    c.name.to_lowercase().contains(&needle)
                        || c.address.to_lowercase().contains(&needle)
                });
            }
            Json(json!({ "contacts": list })).into_response()
        }
        Err(e) => storage_error(e),
    }
}

/// `POST /api/v1/contacts` `{"name": "...", "address": "..."}`: adds or renames a contact.
pub async fn add_contact(State(state): State<AppState>, _agent: Agent, body: Bytes) -> Response {
    let contact: Contact = match json_body(&body, r#"{"name": "Ann", "address": "+14155550100"}"#) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if contact.name.trim().is_empty() || contact.name.chars().count() > 200 {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`name` must be 1 to 200 characters",
        );
    }
    if contact.address.trim().is_empty() || contact.address.len() > 320 {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`address` must be 1 to 320 characters",
        );
    }
    match state.app.storage.put_contact(&contact).await {
        Ok(()) => (StatusCode::CREATED, Json(contact)).into_response(),
        Err(e) => storage_error(e),
    }
}

/// `?last_event_id=` for clients that cannot set the header.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    last_event_id: Option<u64>,
}

/// How often an idle event stream sends its `ping`.
const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// How many log entries one backlog read scans.
const BACKLOG_CHUNK: usize = 512;

struct EventCursor {
    state: AppState,
    agent: String,
    cursor: u64,
    pending: VecDeque<StoredEvent>,
    live: tokio::sync::broadcast::Receiver<std::sync::Arc<StoredEvent>>,
    caught_up: bool,
    /// The console session the stream was opened with, if any: the stream ends with it.
    session: Option<CookieSession>,
    /// The agent's token when the stream opened: the stream ends when a reload removes the
    /// agent or changes their token.
    token: String,
    /// When to look at that session again.
    recheck_at: tokio::time::Instant,
    /// Counts the stream as open on this host while it lives.
    _open: crate::services::agents::StreamGuard,
}

/// How often a stream checks that its agent is still configured with the same token and, if
/// opened by cookie, that its session still stands (signed out on any host, or expired),
/// ending at once when not (override: `PLUGBOARD_SESSION_RECHECK_MS`).
fn session_recheck() -> std::time::Duration {
    crate::config::env_millis("PLUGBOARD_SESSION_RECHECK_MS")
        .unwrap_or(std::time::Duration::from_secs(30))
}

impl EventCursor {
    /// Whether the stream may go on (looked at again every [`session_recheck`]): while the
    /// agent is configured with the token the stream opened under and, by cookie, while the
    /// session stands.
    async fn still_entitled(&mut self) -> bool {
        let configured = self
            .state
            .app
            .config()
            .agent(&self.agent)
            .is_some_and(|a| bool::from(a.token.as_bytes().ct_eq(self.token.as_bytes())));
        if !configured {
            return false;
        }
        let Some(s) = &self.session else {
            self.recheck_at = tokio::time::Instant::now() + session_recheck();
            return true;
        };
        let now = Clock::System.now_millis();
        if s.session.expires_at <= now {
            return false;
        }
        let left = std::time::Duration::from_millis(s.session.expires_at - now);
        match sessions::find(self.state.app.storage.as_ref(), &s.token, now).await {
            Ok(found) => {
                self.recheck_at = tokio::time::Instant::now() + session_recheck().min(left);
                found.is_some()
            }
            // Storage unreachable: keep the stream and look again soon.
            Err(_) => {
                self.recheck_at = tokio::time::Instant::now() + session_recheck() / 6;
                true
            }
        }
    }
}

/// `GET /api/v1/events`: Server-Sent Events of what concerns the agent (offered, offer
/// withdrawn, message, assigned, transferred, closed, presence, ...). Each event's id is its
/// position in the durable log; reconnecting with `Last-Event-ID` resumes without loss.
/// Without it the stream starts with what happens next. A stream ends when a reload removes
/// the agent or changes their token, and one opened with the console's session cookie when
/// the session does (signed out, on any host, or expired).
pub async fn events(
    State(state): State<AppState>,
    Agent(agent): Agent,
    session: Option<axum::extract::Extension<CookieSession>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let live = state.events.subscribe();
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.last_event_id);
    let cursor = match resume {
        Some(id) => id,
        None => state.events.last_id().await,
    };
    let open = state.agents.stream_opened(&agent.id);
    let session = session.map(|axum::extract::Extension(s)| s);
    let recheck_at = tokio::time::Instant::now()
        + session.as_ref().map_or(session_recheck(), |s| {
            let left = s
                .session
                .expires_at
                .saturating_sub(Clock::System.now_millis());
            session_recheck().min(std::time::Duration::from_millis(left))
        });
    let start = EventCursor {
        _open: open,
        session,
        recheck_at,
        state,
        token: agent.token,
        agent: agent.id,
        cursor,
        pending: VecDeque::new(),
        live,
        caught_up: false,
    };
    let stream = futures_util::stream::unfold(start, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop_front() {
                let data = json!({"kind": e.kind, "conversation": e.conversation, "data": e.data, "at": e.at});
                let event = Event::default()
                    .id(e.id.to_string())
                    .event(e.kind.clone())
                    .data(data.to_string());
                return Some((Ok(event), c));
            }
            if !c.caught_up {
                let (mine, last) = c
                    .state
                    .events
                    .backlog(&c.agent, c.cursor, BACKLOG_CHUNK)
                    .await;
                c.caught_up = last == c.cursor;
                c.cursor = last;
                c.pending.extend(mine);
                continue;
            }
            let received = tokio::select! {
                r = c.live.recv() => r,
                _ = tokio::time::sleep_until(c.recheck_at) => {
                    if !c.still_entitled().await {
                        return None;
                    }
                    continue;
                }
            };
            match received {
                Ok(e) if e.id <= c.cursor => {}
                Ok(e) if e.id > c.cursor + 1 => {
                    // Logged events we have not seen live: read them from the log.
                    c.caught_up = false;
                }
                Ok(e) => {
                    c.cursor = e.id;
                    if e.audience.iter().any(|a| a == &c.agent) {
                        c.pending.push_back((*e).clone());
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.caught_up = false,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // A named keep-alive a browser's EventSource can see (comments it cannot): a page that
    // hears nothing for a while knows its connection is half-open and reconnects.
    let ping = Event::default().event("ping").data("{}");
    Sse::new(stream).keep_alive(KeepAlive::new().interval(PING_EVERY).event(ping))
}

/// `POST /api/v1/admin/channels/{name}/test`: checks the channel's provider credentials with
/// a harmless authenticated request; `{"channel", "outcome": {"result": "ok"|"failed"|"unsupported", "message"}}`.
pub async fn test_channel(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Response {
    let Some(channel) = state.app.catalog().channels.get(&name).cloned() else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no channel named {name:?} is configured"),
        );
    };
    let client = match crate::runtime::provider_http::ProviderClient::new(
        state.app.config().limits.provider_timeout(),
    ) {
        Ok(c) => c,
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("HTTP client: {e}"),
            );
        }
    };
    crate::services::audit::record("admin", "channel.test", None, &name);
    let outcome = crate::services::credential::check(&state.app.sandbox, &client, &channel).await;
    Json(json!({"channel": name, "outcome": outcome})).into_response()
}

/// `POST /api/v1/admin/channels/{name}/disable` and `/enable`: unlinks a channel (webhooks
/// answer 404, sends are refused, nothing stored is lost) or links it again.
pub async fn channel_switch(
    State(state): State<AppState>,
    _admin: Admin,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let target = match action.as_str() {
        "disable" => crate::services::catalog::ChannelState::Disabled,
        "enable" => crate::services::catalog::ChannelState::Enabled,
        other => {
            return error_response(
                StatusCode::NOT_FOUND,
                format!("unknown channel action {other:?}: use disable or enable"),
            );
        }
    };
    channel_admin(&state, &name, target).await
}

/// `DELETE /api/v1/admin/channels/{name}`: destroys the channel's settings for good; its
/// conversations stay readable, and the channel stays deleted even if the configuration still
/// lists it.
pub async fn delete_channel(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Response {
    channel_admin(
        &state,
        &name,
        crate::services::catalog::ChannelState::Deleted,
    )
    .await
}

async fn channel_admin(
    state: &AppState,
    name: &str,
    target: crate::services::catalog::ChannelState,
) -> Response {
    if !state.app.catalog().channels.contains_key(name)
        && state.app.channel_state(name) != crate::services::catalog::ChannelState::Deleted
    {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no channel named {name:?} is configured"),
        );
    }
    match state.app.set_channel_state(name, target).await {
        Ok(()) => {
            crate::services::audit::record(
                "admin",
                &format!("channel.{}", target.as_str()),
                None,
                name,
            );
            tracing::info!(
                channel = name,
                state = target.as_str(),
                "channel state changed"
            );
            Json(json!({"channel": name, "state": target})).into_response()
        }
        Err(m) => error_response(StatusCode::CONFLICT, m),
    }
}

/// `POST /api/v1/admin/reload`: re-reads the configuration file and the plugins directory
/// without a restart (as SIGHUP does). Answers the report (what the configuration changed;
/// plugins loaded, unchanged, refused, kept previous); `422` naming every problem of a file
/// that is refused, or `409` when the configuration does not resolve against the plugins.
/// Either way nothing changes.
pub async fn reload(State(state): State<AppState>, _admin: Admin) -> Response {
    crate::services::audit::record("admin", "config.reload", None, "");
    match state.reloader().reload().await {
        Ok(report) => Json(json!({"reloaded": true, "report": report})).into_response(),
        Err(e @ ReloadError::File(_)) => {
            error_response(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(e @ ReloadError::Refused(_)) => error_response(StatusCode::CONFLICT, e.to_string()),
    }
}
