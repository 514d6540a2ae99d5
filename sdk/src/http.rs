//! Building and reading the contract's HTTP records.

use crate::types::{HttpRequest, HttpResponse, SendError};

/// The value of the first header named `name`, compared case-insensitively (ASCII).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response with the given status, a `content-type` header (omitted when empty) and body.
pub fn response(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> HttpResponse {
    let headers = if content_type.is_empty() {
        Vec::new()
    } else {
        vec![("content-type".to_string(), content_type.to_string())]
    };
    HttpResponse {
        status,
        headers,
        body: body.into(),
    }
}

/// A `200` response with a `text/plain; charset=utf-8` body.
pub fn text(body: impl Into<String>) -> HttpResponse {
    response(200, "text/plain; charset=utf-8", body.into().into_bytes())
}

/// A `200` response with an `application/json` body.
pub fn json(body: &impl serde::Serialize) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    response(200, "application/json", bytes)
}

/// An empty `200` response.
pub fn ok() -> HttpResponse {
    response(200, "", Vec::new())
}

/// A request with the given method, URL, headers and body.
pub fn request(
    method: &str,
    url: impl Into<String>,
    headers: Vec<(String, String)>,
    body: impl Into<Vec<u8>>,
) -> HttpRequest {
    HttpRequest {
        method: method.to_string(),
        url: url.into(),
        headers,
        body: body.into(),
    }
}

/// A `POST` of `body` as JSON to `url` with `headers` and `Content-Type: application/json`.
pub fn post_json(
    url: impl Into<String>,
    mut headers: Vec<(String, String)>,
    body: &impl serde::Serialize,
) -> HttpRequest {
    headers.push(("Content-Type".into(), "application/json".into()));
    let body = serde_json::to_vec(body).unwrap_or_default();
    request("POST", url, headers, body)
}

/// The `Authorization` header value for HTTP Basic authentication: `Basic base64(user:pass)`.
pub fn basic_auth(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        crate::base64::encode(format!("{user}:{pass}").as_bytes())
    )
}

/// The `Authorization` header for a Bearer token: `("Authorization", "Bearer {token}")`.
pub fn bearer(token: &str) -> (String, String) {
    ("Authorization".to_string(), format!("Bearer {token}"))
}

/// A bodiless `GET` of `url` authorized with a Bearer token: the usual `prepare-check`, fetching
/// something harmless that only valid credentials may read (LINE's bot info, Messenger's `me`).
pub fn bearer_get(url: impl Into<String>, token: &str) -> HttpRequest {
    request("GET", url, vec![bearer(token)], Vec::new())
}

/// `Ok` for a 2xx answer, else the error `map_error` reads from it: the usual
/// `read-check-response`, with the provider's own error mapping.
///
/// # Errors
///
/// `map_error(resp)` when the status is not 2xx.
pub fn expect_success(
    resp: &HttpResponse,
    map_error: impl FnOnce(&HttpResponse) -> SendError,
) -> Result<(), SendError> {
    if is_success(resp.status) {
        Ok(())
    } else {
        Err(map_error(resp))
    }
}

/// Whether `status` is a 2xx success.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The `Retry-After` header as whole seconds, when it is a number (HTTP dates are ignored).
pub fn retry_after(headers: &[(String, String)]) -> Option<u32> {
    header(headers, "retry-after")?.trim().parse().ok()
}

/// The usual reading of a failed provider answer: 401/403 `unauthorized` (the host renews a
/// token and retries once), 429 `rate-limited` with its `Retry-After`, other 4xx `invalid` (not
/// retried), anything else `unavailable` (retried with backoff). Providers with their own error
/// codes check those first and fall back to this.
pub fn send_error(resp: &HttpResponse, description: String) -> SendError {
    match resp.status {
        401 | 403 => SendError::Unauthorized(description),
        429 => SendError::RateLimited(retry_after(&resp.headers)),
        400..=499 => SendError::Invalid(description),
        _ => SendError::Unavailable(description),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_auth() {
        let headers = vec![
            ("Content-Type".to_string(), "text/xml".to_string()),
            ("Retry-After".to_string(), " 30 ".to_string()),
        ];
        assert_eq!(header(&headers, "content-type"), Some("text/xml"));
        assert_eq!(header(&headers, "CONTENT-TYPE"), Some("text/xml"));
        assert_eq!(header(&headers, "x-missing"), None);
        assert_eq!(retry_after(&headers), Some(30));
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        let r = response(200, "text/xml", "<Response/>");
        assert_eq!(r.status, 200);
        assert_eq!(header(&r.headers, "Content-Type"), Some("text/xml"));
        assert_eq!(r.body, b"<Response/>");
        assert!(ok().headers.is_empty());
        assert!(is_success(201) && !is_success(302));
    }

    #[test]
    fn bearer_check_requests() {
        let req = bearer_get("https://api.example.com/me", "tok");
        assert_eq!(req.method, "GET");
        assert_eq!(req.url, "https://api.example.com/me");
        assert_eq!(header(&req.headers, "authorization"), Some("Bearer tok"));
        assert!(req.body.is_empty());
        let unauthorized = |_: &HttpResponse| SendError::Unauthorized("no".into());
        assert_eq!(expect_success(&response(204, "", ""), unauthorized), Ok(()));
        assert_eq!(
            expect_success(&response(401, "", ""), unauthorized),
            Err(SendError::Unauthorized("no".into()))
        );
    }

    #[test]
    fn failed_answers_map_to_send_errors() {
        let answer = |status: u16, headers: Vec<(String, String)>| HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let d = || "why".to_string();
        assert_eq!(
            send_error(&answer(401, vec![]), d()),
            SendError::Unauthorized(d())
        );
        assert_eq!(
            send_error(&answer(403, vec![]), d()),
            SendError::Unauthorized(d())
        );
        let wait = vec![("Retry-After".to_string(), "7".to_string())];
        assert_eq!(
            send_error(&answer(429, wait), d()),
            SendError::RateLimited(Some(7))
        );
        assert_eq!(
            send_error(&answer(429, vec![]), d()),
            SendError::RateLimited(None)
        );
        assert_eq!(
            send_error(&answer(400, vec![]), d()),
            SendError::Invalid(d())
        );
        assert_eq!(
            send_error(&answer(503, vec![]), d()),
            SendError::Unavailable(d())
        );
        assert_eq!(
            send_error(&answer(302, vec![]), d()),
            SendError::Unavailable(d())
        );
    }
}
