//! JSON bodies, with errors that say where parsing failed.

use std::fmt;

use serde::de::DeserializeOwned;

/// Why a JSON body could not be read into the expected type.
#[derive(Debug)]
pub struct JsonError(serde_json::Error);

impl JsonError {
    /// The underlying `serde_json` error.
    pub fn inner(&self) -> &serde_json::Error {
        &self.0
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0.classify() {
            serde_json::error::Category::Io => "could not read JSON",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unexpected JSON content",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        write!(f, "{kind}: {}", self.0)
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Parses `body` as JSON into `T`.
///
/// # Errors
///
/// A [`JsonError`] whose message says whether the body is not JSON, truncated, or JSON of the
/// wrong shape, with the line and column.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, JsonError> {
    serde_json::from_slice(body).map_err(JsonError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Sent {
        sid: String,
    }

    #[test]
    fn parses_and_explains() {
        let s: Sent = parse(br#"{"sid":"SM1","status":"queued"}"#).unwrap();
        assert_eq!(s.sid, "SM1");
        let e = parse::<Sent>(b"{\"sid\":").unwrap_err().to_string();
        assert!(e.starts_with("truncated JSON"), "{e}");
        let e = parse::<Sent>(b"{}").unwrap_err().to_string();
        assert!(e.contains("missing field `sid`"), "{e}");
        let e = parse::<Sent>(b"<html>").unwrap_err().to_string();
        assert!(e.starts_with("invalid JSON"), "{e}");
    }
}
