//! `application/x-www-form-urlencoded` parsing and encoding.
//!
//! Parsing follows the WHATWG rules the providers use: pairs separated by `&`, name and value
//! separated by the first `=`, `+` means a space and `%XX` is a percent-encoded byte. Unlike a
//! browser, malformed escapes and invalid UTF-8 are errors, because a webhook body that does not
//! decode cleanly cannot be trusted to mean what it seems to mean.

use std::fmt;

/// Why a form body (or query string) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hexadecimal digits, at this byte offset of the input.
    InvalidEscape {
        /// Byte offset of the `%` in the input.
        position: usize,
    },
    /// A name or value decodes to bytes that are not UTF-8; the offending byte (or the escape
    /// that produced it) starts at this byte offset of the input.
    InvalidUtf8 {
        /// Byte offset in the input of the first byte that is not valid UTF-8.
        position: usize,
    },
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::InvalidEscape { position } => write!(
                f,
                "malformed form data: '%' at byte {position} is not followed by two hex digits"
            ),
            FormError::InvalidUtf8 { position } => {
                write!(f, "malformed form data: invalid UTF-8 at byte {position}")
            }
        }
    }
}

impl std::error::Error for FormError {}

/// Parses an `application/x-www-form-urlencoded` body into name/value pairs, in order.
///
/// Empty segments (`a=1&&b=2`) are skipped; a segment without `=` is a name with an empty value.
///
/// # Errors
///
/// [`FormError::InvalidEscape`] for a bad `%` escape and [`FormError::InvalidUtf8`] when a
/// decoded name or value is not UTF-8; both carry the byte offset in `body`.
pub fn parse(body: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let mut pairs = Vec::with_capacity(body.iter().filter(|&&b| b == b'&').count() + 1);
    let mut start = 0;
    while start <= body.len() {
        let end = body[start..]
            .iter()
            .position(|&b| b == b'&')
            .map_or(body.len(), |i| start + i);
        let segment = &body[start..end];
        if !segment.is_empty() {
            let (name, value) = match segment.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    decode(&segment[..eq], start)?,
                    decode(&segment[eq + 1..], start + eq + 1)?,
                ),
                None => (decode(segment, start)?, String::new()),
            };
            pairs.push((name, value));
        }
        start = end + 1;
    }
    Ok(pairs)
}

/// Decodes one form component (`+` and `%XX`); `offset` is its position in the whole input,
/// used for error positions.
///
/// # Errors
///
/// As [`parse`].
pub fn decode(raw: &[u8], offset: usize) -> Result<String, FormError> {
    // Most components (sids, numbers, plain words) need no decoding: one UTF-8 check, one copy.
    if !raw.iter().any(|&b| b == b'+' || b == b'%') {
        return match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(FormError::InvalidUtf8 {
                position: offset + e.valid_up_to(),
            }),
        };
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&b| hex_value(b));
                let lo = raw.get(i + 2).and_then(|&b| hex_value(b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi << 4) | lo);
                        i += 3;
                    }
                    _ => {
                        return Err(FormError::InvalidEscape {
                            position: offset + i,
                        });
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| FormError::InvalidUtf8 {
        position: offset + source_position(raw, e.utf8_error().valid_up_to()),
    })
}

/// The offset in `raw` of the byte that decoded to output byte `decoded` (only on errors, so
/// the common path keeps no map from output to input).
fn source_position(raw: &[u8], decoded: usize) -> usize {
    let (mut i, mut produced) = (0, 0);
    while i < raw.len() && produced < decoded {
        i += if raw[i] == b'%' { 3 } else { 1 };
        produced += 1;
    }
    i
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes one name or value for a form body or query string: unreserved characters
/// (`A-Z a-z 0-9 - . _ * ~`) are kept, a space becomes `+`, every other byte becomes `%XX`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

/// Encodes name/value pairs as an `application/x-www-form-urlencoded` body, in order.
pub fn encode<I, K, V>(pairs: I) -> String
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode_component(name.as_ref()));
        out.push('=');
        out.push_str(&encode_component(value.as_ref()));
    }
    out
}

/// The value of the first pair named `name` (case-sensitive, as form names are).
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn parses_pairs_plus_and_percent() {
        assert_eq!(
            p("To=%2B12028831111&Body=Hello+world%21&Empty=&Flag&&x=a%3Db"),
            vec![
                ("To".into(), "+12028831111".into()),
                ("Body".into(), "Hello world!".into()),
                ("Empty".into(), String::new()),
                ("Flag".into(), String::new()),
                ("x".into(), "a=b".into()),
            ]
        );
        assert!(p("").is_empty());
        assert_eq!(p("a=%C3%A9"), vec![("a".into(), "é".into())]);
    }

    #[test]
    fn reports_bad_escape_position() {
        assert_eq!(
            parse(b"a=1&b=%zz").unwrap_err(),
            FormError::InvalidEscape { position: 6 }
        );
        assert_eq!(
            parse(b"a=%4").unwrap_err(),
            FormError::InvalidEscape { position: 2 }
        );
    }

    #[test]
    fn reports_invalid_utf8_position() {
        let err = parse(b"ok=1&name=ab%FFcd").unwrap_err();
        assert_eq!(err, FormError::InvalidUtf8 { position: 12 });
        assert!(err.to_string().contains("invalid UTF-8 at byte 12"));
        assert_eq!(
            parse(b"k\xff=v").unwrap_err(),
            FormError::InvalidUtf8 { position: 1 }
        );
        // Positions count input bytes, past escapes and pluses decoded before the fault.
        assert_eq!(
            parse(b"a=b+%C3%A9+%FF").unwrap_err(),
            FormError::InvalidUtf8 { position: 11 }
        );
        assert_eq!(
            parse(b"a=%41\xff").unwrap_err(),
            FormError::InvalidUtf8 { position: 5 }
        );
    }

    #[test]
    fn encode_round_trips() {
        let pairs = vec![
            ("To".to_string(), "+1 415".to_string()),
            ("Body".to_string(), "héllo & bye=1/2".to_string()),
        ];
        let body = encode(pairs.iter().map(|(a, b)| (a, b)));
        assert_eq!(body, "To=%2B1+415&Body=h%C3%A9llo+%26+bye%3D1%2F2");
        assert_eq!(parse(body.as_bytes()).unwrap(), pairs);
        assert_eq!(get(&pairs, "Body"), Some("héllo & bye=1/2"));
        assert_eq!(get(&pairs, "body"), None);
    }
}
