//! Building and reading the contract's HTTP records.

use crate::types::{HttpRequest, HttpResponse};

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

/// The `Authorization` header value for HTTP Basic authentication: `Basic base64(user:pass)`.
pub fn basic_auth(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        crate::base64::encode(format!("{user}:{pass}").as_bytes())
    )
}

/// Whether `status` is a 2xx success.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The `Retry-After` header as whole seconds, when it is a number (HTTP dates are ignored).
pub fn retry_after(headers: &[(String, String)]) -> Option<u32> {
    header(headers, "retry-after")?.trim().parse().ok()
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
}
