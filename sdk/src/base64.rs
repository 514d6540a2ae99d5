//! Base64 with the standard alphabet and `=` padding, plus a lenient decoder.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a Base64 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// A character outside the standard alphabet, at this character offset.
    InvalidCharacter {
        /// Byte offset of the character.
        position: usize,
    },
    /// The length (without padding) leaves a lone trailing character, or padding is wrong.
    InvalidLength,
    /// `=` appears somewhere other than the last one or two positions.
    InvalidPadding,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::InvalidCharacter { position } => {
                write!(f, "invalid base64: unexpected character at byte {position}")
            }
            Base64Error::InvalidLength => write!(f, "invalid base64: truncated input"),
            Base64Error::InvalidPadding => write!(f, "invalid base64: misplaced '=' padding"),
        }
    }
}

impl std::error::Error for Base64Error {}

/// Encodes `data` as Base64 with the standard alphabet and `=` padding.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes alphabet characters (no padding, no other characters) into bytes.
fn decode_symbols(symbols: &[u8]) -> Result<Vec<u8>, Base64Error> {
    if symbols.len() % 4 == 1 {
        return Err(Base64Error::InvalidLength);
    }
    let mut out = Vec::with_capacity(symbols.len() / 4 * 3 + 2);
    for (ci, chunk) in symbols.chunks(4).enumerate() {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or(Base64Error::InvalidCharacter {
                position: ci * 4 + i,
            })?;
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Ok(out)
}

/// Decodes standard Base64 with padding; the input length must be a multiple of 4.
///
/// # Errors
///
/// A [`Base64Error`] for a character outside the alphabet, a wrong length or misplaced padding.
pub fn decode(input: &str) -> Result<Vec<u8>, Base64Error> {
    let bytes = input.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(Base64Error::InvalidLength);
    }
    let unpadded = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="))
        .unwrap_or(bytes);
    if let Some(position) = unpadded.iter().position(|&c| value(c).is_none()) {
        return Err(if unpadded[position] == b'=' {
            Base64Error::InvalidPadding
        } else {
            Base64Error::InvalidCharacter { position }
        });
    }
    decode_symbols(unpadded)
}

/// Decodes Base64 leniently: every character outside `[A-Za-z0-9+/]` (including `=`,
/// whitespace and `-`) is dropped first, then the rest is decoded without padding. This is how
/// some providers' SDKs read keys that are not strictly valid Base64.
///
/// # Errors
///
/// [`Base64Error::InvalidLength`] if the remaining characters leave a lone trailing character.
pub fn decode_lenient(input: &str) -> Result<Vec<u8>, Base64Error> {
    let symbols: Vec<u8> = input.bytes().filter(|&c| value(c).is_some()).collect();
    decode_symbols(&symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes());
            assert_eq!(decode_lenient(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn strict_rejects_and_lenient_accepts() {
        assert_eq!(decode("Zm9"), Err(Base64Error::InvalidLength));
        assert_eq!(decode("Zm=v"), Err(Base64Error::InvalidPadding));
        assert_eq!(
            decode("Zm-v"),
            Err(Base64Error::InvalidCharacter { position: 2 })
        );
        assert_eq!(decode_lenient("Zm-9v\n").unwrap(), b"foo");
        assert_eq!(decode_lenient("Zg").unwrap(), b"f");
        assert_eq!(decode_lenient("Zm9vY"), Err(Base64Error::InvalidLength));
    }
}
