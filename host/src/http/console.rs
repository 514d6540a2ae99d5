//! The agent console (`/console`) and the API pieces only a signed-in person needs: the
//! console's static files, embedded in the binary and served with a strict Content Security
//! Policy; sign-in and sign-out (`/api/v1/session`); and who am I, my colleagues and the
//! queues (`/api/v1/agents/me`, `/api/v1/agents`, `/api/v1/queues`), usable by any client.

// Rejections are axum `Response`s by design: a handler returns them as they are.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::Clock;
use crate::config::{AgentConfig, CannedReply};
use crate::http::api::{Agent, CSRF_REFUSAL, CookieSession, SESSION_COOKIE, csrf_matches};
use crate::http::edge::{AppState, error_response, json_body};
use crate::services::agents::access;
use crate::services::sessions::{self, SESSION_TTL_MS};

/// The console's files: name, content type, content. `index.html` is also `/console`.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", HTML, include_str!("console/index.html")),
    ("console.css", CSS, include_str!("console/console.css")),
    ("api.js", JS, include_str!("console/api.js")),
    ("composer.js", JS, include_str!("console/composer.js")),
    ("console.js", JS, include_str!("console/console.js")),
    ("contacts.js", JS, include_str!("console/contacts.js")),
    (
        "conversation.js",
        JS,
        include_str!("console/conversation.js"),
    ),
    ("dom.js", JS, include_str!("console/dom.js")),
    ("list.js", JS, include_str!("console/list.js")),
    ("offers.js", JS, include_str!("console/offers.js")),
    ("people.js", JS, include_str!("console/people.js")),
    ("reports.js", JS, include_str!("console/reports.js")),
    ("sms.js", JS, include_str!("console/sms.js")),
    ("start.js", JS, include_str!("console/start.js")),
    ("stream.js", JS, include_str!("console/stream.js")),
    ("transfer.js", JS, include_str!("console/transfer.js")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Only the console's own files run, and it talks only to this host; customers' attachments
/// may show as images from any https source.
const CSP: &str = "default-src 'self'; img-src 'self' https: data:; connect-src 'self'; \
                   style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

/// `GET /console` and `GET /console/{file}`: the console's embedded files.
pub async fn file(path: Option<Path<String>>) -> Response {
    let name = path.map_or_else(|| "index.html".to_owned(), |Path(p)| p);
    let Some((_, content_type, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("the console has no file {name:?}"),
        );
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *body,
    )
        .into_response()
}

/// Who the signed-in agent is, as `/agents/me` and sign-in answer.
#[derive(Serialize)]
struct Me<'a> {
    id: &'a str,
    name: &'a str,
    queues: &'a [String],
    manages: Vec<String>,
    may_start: bool,
    send_from: Option<&'a str>,
    presence: crate::services::agents::Presence,
    /// The event log's end now: a client that opens the stream with `?last_event_id=` this
    /// misses nothing that happened after it read the rest.
    last_event_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<&'a str>,
}

async fn me<'a>(state: &'a AppState, agent: &'a AgentConfig, csrf: Option<&'a str>) -> Me<'a> {
    Me {
        last_event_id: state.events.last_id().await,
        id: &agent.id,
        name: &agent.name,
        queues: &agent.queues,
        manages: state
            .app
            .config()
            .queues
            .iter()
            .filter(|q| q.managers.contains(&agent.id))
            .map(|q| q.name.clone())
            .collect(),
        may_start: agent.may_start,
        send_from: agent.send_from.as_deref(),
        presence: state.agents.presence(&agent.id),
        csrf,
    }
}

/// The body of a sign-in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    token: String,
}

/// `POST /api/v1/session` `{"token": "<agent API token>"}`: begins a console session. The
/// answer sets the HttpOnly, SameSite=Strict session cookie (Secure when the public URL is
/// https) and carries the agent and the CSRF value state changes must echo.
pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    // A form on another page cannot send JSON without a CORS preflight, so it cannot sign a
    // browser in to an account of its choosing.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "sign in with Content-Type: application/json and {\"token\": \"...\"}",
        );
    }
    let body: SignInBody = match json_body(&body, r#"{"token": "<your agent token>"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(agent) = state.app.agent_by_token(&body.token) else {
        return error_response(StatusCode::UNAUTHORIZED, "that token belongs to no agent");
    };
    let now = Clock::System.now_millis();
    let signed = match sessions::sign_in(state.app.storage.as_ref(), &agent, now).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("console session: {e}");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; retry later",
            );
        }
    };
    tracing::info!(agent = %agent.id, "console sign-in");
    let secure = if state.app.config().server.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        signed.token,
        SESSION_TTL_MS / 1000
    );
    let mut response = Json(json!({
        "agent": me(&state, &agent, Some(&signed.session.csrf)).await,
        "csrf": signed.session.csrf,
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `DELETE /api/v1/session`: ends the console session on the server (the cookie stops working
/// on every host) and clears the cookie. A live session must carry its CSRF value; a cookie
/// whose session already ended or expired is simply cleared.
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = crate::http::edge::cookie(&headers, SESSION_COOKIE) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "no session cookie: there is no session to end (bearer tokens have none)",
        );
    };
    let storage = state.app.storage.as_ref();
    match sessions::find(storage, token, Clock::System.now_millis()).await {
        Ok(Some(session)) => {
            if !csrf_matches(&headers, &session) {
                return error_response(StatusCode::FORBIDDEN, CSRF_REFUSAL);
            }
            if let Err(e) = sessions::sign_out(storage, token).await {
                tracing::error!("console sign-out: {e}");
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage unavailable; retry later",
                );
            }
            tracing::info!(agent = %session.agent, "console sign-out");
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!("console sign-out: {e}");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; retry later",
            );
        }
    }
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
    )
        .into_response()
}

/// `GET /api/v1/agents/me`: name, queues, managed queues, `may_start`, `send_from`, presence,
/// and the CSRF value when signed in by cookie.
pub async fn whoami(
    State(state): State<AppState>,
    Agent(agent): Agent,
    session: Option<Extension<CookieSession>>,
) -> Response {
    let csrf = session.as_ref().map(|Extension(s)| s.session.csrf.as_str());
    Json(me(&state, &agent, csrf).await).into_response()
}

/// `GET /api/v1/agents`: the colleagues of the agent's queues (and of those they manage) with
/// their presence, to pick a transfer target from.
pub async fn colleagues(State(state): State<AppState>, Agent(agent): Agent) -> Response {
    let list: Vec<_> = access::colleagues(&state.app.config(), &agent)
        .into_iter()
        .map(|a| {
            json!({
                "id": a.id,
                "name": a.name,
                "presence": state.agents.presence(&a.id),
                "queues": a.queues,
            })
        })
        .collect();
    Json(json!({ "agents": list })).into_response()
}

/// `GET /api/v1/channels`: the channels that feed the agent's queues (or them), with their
/// kind and whether the agent may start conversations on them (the new-conversation dialog).
pub async fn channels(State(state): State<AppState>, Agent(agent): Agent) -> Response {
    let catalog = state.app.catalog();
    let list: Vec<_> = state
        .app
        .config()
        .channels
        .iter()
        .filter(|c| c.feeds(&agent))
        .filter_map(|c| {
            let live = catalog.channels.get(&c.name)?;
            let startable = access::start_channel(&state.app.config(), &agent, Some(&c.name))
                .is_ok()
                && live.rules().address.is_phone();
            Some(json!({
                "name": c.name,
                "kind": live.kind(),
                "queue": c.queue,
                "startable": startable,
            }))
        })
        .collect();
    Json(json!({ "channels": list })).into_response()
}

/// One queue as `/api/v1/queues` lists it.
#[derive(Serialize)]
struct QueueView<'a> {
    name: &'a str,
    member: bool,
    manages: bool,
    canned: &'a [CannedReply],
    /// Whether it is within its business hours now.
    open: bool,
    /// When it next opens (Unix ms), while closed; absent when open or never opening.
    #[serde(skip_serializing_if = "Option::is_none")]
    opens_at: Option<u64>,
}

/// `GET /api/v1/queues`: every queue (any is a transfer target), whether the agent works or
/// manages it, the canned replies of those they do, and whether each is open (business hours).
pub async fn queues(State(state): State<AppState>, Agent(agent): Agent) -> Response {
    let config = &state.app.config();
    let catalog = state.app.catalog();
    let now = Clock::System.now_millis();
    let list: Vec<QueueView> = config
        .queues
        .iter()
        .map(|q| {
            let member = agent.queues.contains(&q.name);
            let manages = q.managers.contains(&agent.id);
            let hours = catalog.queues.get(&q.name).and_then(|q| q.hours.as_ref());
            let open = hours.is_none_or(|h| h.is_open(now));
            QueueView {
                name: &q.name,
                member,
                manages,
                canned: if member || manages { &q.canned } else { &[] },
                open,
                opens_at: hours.filter(|_| !open).and_then(|h| h.next_open(now)),
            }
        })
        .collect();
    Json(json!({ "queues": list })).into_response()
}

#[cfg(test)]
mod tests {
    use super::FILES;

    #[test]
    fn every_file_of_the_console_folder_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/console");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut served: Vec<String> = FILES.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        served.sort();
        assert_eq!(
            on_disk,
            served,
            "list every file of {} in FILES",
            dir.display()
        );
    }
}
