//! A small `multipart/form-data` reader (RFC 7578) for Mailgun's forwards with attachments:
//! it returns the text fields and skips file parts, which Mailgun sends as `attachment-N`.

/// Why a multipart body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    /// The `Content-Type` has no `boundary` parameter.
    NoBoundary,
    /// The body does not start with the boundary or ends before the closing boundary.
    Truncated,
    /// A part has no `Content-Disposition: form-data; name="..."`.
    UnnamedPart,
    /// A text field is not UTF-8.
    InvalidUtf8(String),
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MultipartError::NoBoundary => write!(f, "multipart Content-Type without a boundary"),
            MultipartError::Truncated => write!(f, "multipart body is truncated or malformed"),
            MultipartError::UnnamedPart => write!(f, "multipart part without a form-data name"),
            MultipartError::InvalidUtf8(name) => {
                write!(f, "multipart field `{name}` is not UTF-8")
            }
        }
    }
}

impl std::error::Error for MultipartError {}

/// The value of parameter `name` in a header value such as
/// `form-data; name="subject"` or `multipart/form-data; boundary=xyz` (quotes removed).
pub fn header_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|param| {
        let (key, v) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Parses a `multipart/form-data` body with the boundary of `content_type` into its text
/// fields, in order. Parts with a `filename` (attachments) are skipped.
///
/// # Errors
///
/// A [`MultipartError`] for a missing boundary, a malformed body, an unnamed part or a text
/// field that is not UTF-8.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<(String, String)>, MultipartError> {
    let boundary = header_param(content_type, "boundary")
        .filter(|b| !b.is_empty())
        .ok_or(MultipartError::NoBoundary)?;
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut pos =
        find(body, delimiter.as_bytes(), 0).ok_or(MultipartError::Truncated)? + delimiter.len();
    let mut fields = Vec::new();
    loop {
        // After a delimiter: `--` closes the body, otherwise CRLF starts a part.
        if body[pos..].starts_with(b"--") {
            return Ok(fields);
        }
        let rest = &body[pos..];
        let skip = if rest.starts_with(b"\r\n") {
            2
        } else if rest.starts_with(b"\n") {
            1
        } else {
            return Err(MultipartError::Truncated);
        };
        let start = pos + skip;
        let header_end = find(body, b"\r\n\r\n", start).ok_or(MultipartError::Truncated)?;
        let headers = String::from_utf8_lossy(&body[start..header_end]).into_owned();
        let content_start = header_end + 4;
        let content_end = find(body, next_delimiter.as_bytes(), content_start)
            .ok_or(MultipartError::Truncated)?;
        let disposition = headers
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then(|| value.trim().to_string())
            })
            .ok_or(MultipartError::UnnamedPart)?;
        let name = header_param(&disposition, "name").ok_or(MultipartError::UnnamedPart)?;
        if header_param(&disposition, "filename").is_none() {
            let value = String::from_utf8(body[content_start..content_end].to_vec())
                .map_err(|_| MultipartError::InvalidUtf8(name.clone()))?;
            fields.push((name, value));
        }
        pos = content_end + next_delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_fields_and_skips_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHello there\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\x10\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"body-plain\"\r\n\r\nline 1\r\nline 2\r\n--XyZ--\r\n";
        let fields = parse("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(
            fields,
            vec![
                ("subject".to_string(), "Hello there".to_string()),
                ("body-plain".to_string(), "line 1\r\nline 2".to_string()),
            ]
        );
        assert_eq!(
            parse("multipart/form-data", body),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            parse("multipart/form-data; boundary=\"XyZ\"", &body[..40]),
            Err(MultipartError::Truncated)
        );
        let bad = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\xff\r\n--b--";
        assert_eq!(
            parse("multipart/form-data; boundary=b", bad),
            Err(MultipartError::InvalidUtf8("x".into()))
        );
    }
}
