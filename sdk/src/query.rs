//! Helpers for the query string of a URL.

use crate::form::{self, FormError};

/// Splits `url` into the part before `?` and the query string (without `?` and without any
/// `#fragment`). The query is `None` when the URL has no `?`.
pub fn split(url: &str) -> (&str, Option<&str>) {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    }
}

/// The raw query string of `url` (see [`split`]).
pub fn query_string(url: &str) -> Option<&str> {
    split(url).1
}

/// Decodes the query parameters of `url`, in order (form rules: `+` is a space).
///
/// # Errors
///
/// A [`FormError`] for a malformed escape or invalid UTF-8; positions are offsets in the query
/// string.
pub fn params(url: &str) -> Result<Vec<(String, String)>, FormError> {
    match query_string(url) {
        Some(q) => form::parse(q.as_bytes()),
        None => Ok(Vec::new()),
    }
}

/// The decoded value of the first query parameter named `name`, if present and well-formed.
pub fn param(url: &str, name: &str) -> Option<String> {
    params(url)
        .ok()?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_parses() {
        assert_eq!(
            split("https://x.test/a?b=1&c=2#frag"),
            ("https://x.test/a", Some("b=1&c=2"))
        );
        assert_eq!(split("https://x.test/a"), ("https://x.test/a", None));
        assert_eq!(split("https://x.test/a?"), ("https://x.test/a", Some("")));
        assert_eq!(
            params("https://x.test/?hub.mode=subscribe&x=a+b").unwrap(),
            vec![
                ("hub.mode".to_string(), "subscribe".to_string()),
                ("x".to_string(), "a b".to_string())
            ]
        );
        assert_eq!(param("https://x.test/?a=%2B1", "a").as_deref(), Some("+1"));
        assert_eq!(param("https://x.test/", "a"), None);
        assert!(params("https://x.test/?a=%G0").is_err());
    }
}
