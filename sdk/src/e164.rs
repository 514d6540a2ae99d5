//! E.164 phone numbers: `+`, a country code that does not start with 0, at most 15 digits.

use std::fmt;

/// The fewest digits (country code included) this SDK accepts as a phone number.
pub const MIN_DIGITS: usize = 8;
/// The most digits E.164 allows (country code included).
pub const MAX_DIGITS: usize = 15;

/// A validated E.164 phone number such as `+14155550100`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

/// Exactly what is wrong with a would-be E.164 number. The `Display` text quotes the input and
/// says how to fix it, so it can be shown to operators and agents as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum E164Error {
    /// The input is empty.
    Empty,
    /// The number does not start with `+`.
    MissingPlus(String),
    /// The number contains formatting characters (space, `-`, `(`, `)`, `.`, `/`): this one.
    Formatting(String, char),
    /// The number contains a letter or another character that is not a digit: this one.
    NotADigit(String, char),
    /// Fewer than [`MIN_DIGITS`] digits; this many.
    TooShort(String, usize),
    /// More than [`MAX_DIGITS`] digits; this many.
    TooLong(String, usize),
    /// The country code starts with 0.
    LeadingZero(String),
}

impl fmt::Display for E164Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            E164Error::Empty => write!(
                f,
                "phone number is empty; expected E.164 such as +14155550100"
            ),
            E164Error::MissingPlus(s) => write!(
                f,
                "phone number \"{s}\" must start with '+' and the country code (E.164, e.g. +14155550100)"
            ),
            E164Error::Formatting(s, c) => write!(
                f,
                "phone number \"{s}\" contains {}; E.164 is '+' followed by digits only",
                describe(*c)
            ),
            E164Error::NotADigit(s, c) => write!(
                f,
                "phone number \"{s}\" contains {}; E.164 is '+' followed by digits only",
                describe(*c)
            ),
            E164Error::TooShort(s, n) => write!(
                f,
                "phone number \"{s}\" is too short: {n} digits, E.164 needs at least {MIN_DIGITS} including the country code"
            ),
            E164Error::TooLong(s, n) => write!(
                f,
                "phone number \"{s}\" is too long: {n} digits, E.164 allows at most {MAX_DIGITS} including the country code"
            ),
            E164Error::LeadingZero(s) => write!(
                f,
                "phone number \"{s}\" has a country code starting with 0; write the country code (e.g. +81), not a trunk prefix"
            ),
        }
    }
}

impl std::error::Error for E164Error {}

fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '-' => "a dash '-'".to_string(),
        '(' | ')' => format!("a bracket '{c}'"),
        c if c.is_alphabetic() => format!("a letter '{c}'"),
        c if c.is_whitespace() => "whitespace".to_string(),
        c => format!("the character '{c}'"),
    }
}

impl E164 {
    /// Validates `input` as E.164 (no trimming, no reformatting).
    ///
    /// # Errors
    ///
    /// An [`E164Error`] naming the first problem found.
    pub fn parse(input: &str) -> Result<E164, E164Error> {
        if input.is_empty() {
            return Err(E164Error::Empty);
        }
        let owned = || input.to_string();
        let Some(digits) = input.strip_prefix('+') else {
            if let Some(c) = input.chars().find(|c| !c.is_ascii_digit())
                && c.is_alphabetic()
            {
                return Err(E164Error::NotADigit(owned(), c));
            }
            return Err(E164Error::MissingPlus(owned()));
        };
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(match c {
                ' ' | '-' | '(' | ')' | '.' | '/' | '\t' => E164Error::Formatting(owned(), c),
                _ => E164Error::NotADigit(owned(), c),
            });
        }
        if digits.starts_with('0') {
            return Err(E164Error::LeadingZero(owned()));
        }
        if digits.len() < MIN_DIGITS {
            return Err(E164Error::TooShort(owned(), digits.len()));
        }
        if digits.len() > MAX_DIGITS {
            return Err(E164Error::TooLong(owned(), digits.len()));
        }
        Ok(E164(input.to_string()))
    }

    /// The number with its leading `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without the leading `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for E164 {
    type Err = E164Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid() {
        let n = E164::parse("+14155550100").unwrap();
        assert_eq!(n.as_str(), "+14155550100");
        assert_eq!(n.digits(), "14155550100");
        assert!(E164::parse("+12345678").is_ok());
        assert!(E164::parse("+123456789012345").is_ok());
    }

    #[test]
    fn says_what_is_wrong() {
        let msg = |s: &str| E164::parse(s).unwrap_err().to_string();
        assert!(matches!(E164::parse(""), Err(E164Error::Empty)));
        assert!(msg("14155550100").contains("must start with '+'"));
        assert!(msg("+1 415 555 0100").contains("a space"));
        assert!(msg("+1-415-555-0100").contains("a dash"));
        assert!(msg("+1(415)5550100").contains("a bracket '('"));
        assert!(msg("+1415CALLNOW").contains("a letter 'C'"));
        assert!(msg("whatsapp:+1415").contains("a letter 'w'"));
        assert!(msg("+1234567").contains("too short: 7 digits"));
        assert!(msg("+1234567890123456").contains("too long: 16 digits"));
        assert!(msg("+0901234567").contains("starting with 0"));
    }
}
