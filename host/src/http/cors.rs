//! CORS for the agent API: pages on the origins in `[server] allowed_origins` (a CRM, an
//! intranet) may call `/api/...` from a browser with a bearer token. Their preflights are
//! answered here, before routing; any other origin gets no CORS header (the browser keeps the
//! answer from the page) and a refused preflight. No credentials are allowed cross-origin:
//! the console's session cookie is SameSite=Strict and for the console's own origin only.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::edge::{AppState, error_response};

/// How long a browser may reuse a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// The methods and headers an allowed page may use.
const METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
const HEADERS: &str = "authorization, content-type, last-event-id";

/// Adds the CORS headers to API answers for allowed origins and answers their preflights.
pub async fn api_cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin.as_ref().filter(|o| {
        o.to_str()
            .is_ok_and(|o| state.app.config().server.allows_origin(o))
    });
    let is_preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = match (is_preflight, allowed, &origin) {
        (true, Some(_), _) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
            );
            r
        }
        (true, None, Some(o)) => error_response(
            StatusCode::FORBIDDEN,
            format!(
                "origin {} is not in server.allowed_origins; the API answers browsers only from those",
                String::from_utf8_lossy(o.as_bytes())
            ),
        ),
        _ => next.run(req).await,
    };
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after, www-authenticate"),
        );
    }
    response
}
