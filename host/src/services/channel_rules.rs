//! How the host applies the rules a channel's manifest declares
//! ([`crate::runtime::plugin::ChannelRules`]: address form, longest text, SMS segments, opt-out
//! keywords, a reply window): the keyword lists, segment counting, the window's arithmetic, and
//! the approved templates that may go out after it.

use serde::{Deserialize, Serialize};

/// Words that, alone in a message (any case, surrounding blanks), opt the sender out.
pub const OPT_OUT_KEYWORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
/// Words that, alone in a message, opt the sender back in.
pub const OPT_IN_KEYWORDS: &[&str] = &["START", "YES", "UNSTOP"];

/// What an inbound text asks for, if it is an opt-out or opt-in keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// Stop messaging me.
    OptOut,
    /// Message me again.
    OptIn,
}

/// The keyword `text` is, if it is one word from either list (case-insensitive, trimmed).
pub fn keyword(text: &str) -> Option<Keyword> {
    let word = text.trim();
    if OPT_OUT_KEYWORDS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
    {
        Some(Keyword::OptOut)
    } else if OPT_IN_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
        Some(Keyword::OptIn)
    } else {
        None
    }
}

/// How an SMS text is encoded and how many segments it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segments {
    /// `gsm7` or `ucs2`.
    pub encoding: &'static str,
    /// Segments the carrier bills.
    pub count: u32,
}

/// The GSM 03.38 basic character set.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Characters of the GSM extension table: each takes an escape plus itself (two septets).
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{0c}";

/// Counts SMS segments: GSM-7 takes 160 septets in one segment or 153 per segment when split
/// (an escape pair is never split); any character outside GSM-7 makes the whole text UCS-2,
/// 70 UTF-16 units in one segment or 67 per segment (a surrogate pair is never split).
pub fn segments(text: &str) -> Segments {
    if text.is_empty() {
        return Segments {
            encoding: "gsm7",
            count: 0,
        };
    }
    let gsm: Option<Vec<u32>> = text
        .chars()
        .map(|c| {
            if GSM_BASIC.contains(c) {
                Some(1)
            } else if GSM_EXTENDED.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .collect();
    match gsm {
        Some(units) => Segments {
            encoding: "gsm7",
            count: pack(&units, 160, 153),
        },
        None => {
            let units: Vec<u32> = text.chars().map(|c| c.len_utf16() as u32).collect();
            Segments {
                encoding: "ucs2",
                count: pack(&units, 70, 67),
            }
        }
    }
}

/// Packs indivisible units into segments of `split` capacity (or one of `single`).
fn pack(units: &[u32], single: u32, split: u32) -> u32 {
    let total: u32 = units.iter().sum();
    if total <= single {
        return 1;
    }
    let (mut count, mut used) = (1, 0);
    for &u in units {
        if used + u > split {
            count += 1;
            used = 0;
        }
        used += u;
    }
    count
}

/// An approved WhatsApp template, from the channel's `templates` setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The name agents pick it by.
    pub name: String,
    /// Its language, e.g. `en`.
    #[serde(default)]
    pub language: String,
    /// Twilio's Content SID (`HX...`).
    pub content_sid: String,
    /// The names of its variables, in order.
    #[serde(default)]
    pub variables: Vec<String>,
}

/// Parses a channel's `templates` setting (a JSON array); empty or absent means none.
pub fn parse_templates(setting: Option<&str>) -> Result<Vec<Template>, String> {
    match setting.map(str::trim) {
        None | Some("") => Ok(Vec::new()),
        Some(json) => serde_json::from_str(json).map_err(|e| {
            format!("`templates` must be a JSON array of {{name, language, content_sid, variables}}: {e}")
        }),
    }
}

/// Whether a WhatsApp conversation whose customer last wrote at `last_inbound` (ms) is inside
/// Whether a reply window of `hours` after the customer's last message (`last_inbound`) is
/// still open at `now` (never, if the customer never wrote).
pub fn window_open(hours: u32, last_inbound: Option<u64>, now: u64) -> bool {
    last_inbound.is_some_and(|t| now.saturating_sub(t) < window_ms(hours))
}

/// A reply window of `hours`, milliseconds.
pub fn window_ms(hours: u32) -> u64 {
    u64::from(hours) * 60 * 60 * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str) -> (&'static str, u32) {
        let s = segments(text);
        (s.encoding, s.count)
    }

    #[test]
    fn gsm7_segments() {
        assert_eq!(seg("hello"), ("gsm7", 1));
        assert_eq!(seg(&"a".repeat(160)), ("gsm7", 1));
        assert_eq!(seg(&"a".repeat(161)), ("gsm7", 2));
        assert_eq!(seg(&"a".repeat(306)), ("gsm7", 2));
        assert_eq!(seg(&"a".repeat(307)), ("gsm7", 3));
    }

    #[test]
    fn escape_characters_count_twice_and_are_not_split() {
        assert_eq!(seg(&"€".repeat(80)), ("gsm7", 1));
        assert_eq!(seg(&"€".repeat(81)), ("gsm7", 2));
        // 152 plain then an escape pair: the pair moves whole to the next segment.
        let text = format!("{}{}", "a".repeat(152), "{");
        assert_eq!(seg(&format!("{text}{}", "a".repeat(10))), ("gsm7", 2));
        let text = format!("{}{}{}", "a".repeat(152), "{", "a".repeat(152));
        assert_eq!(seg(&text), ("gsm7", 3));
    }

    #[test]
    fn one_non_gsm_character_makes_the_whole_text_ucs2() {
        assert_eq!(seg("hello ✓"), ("ucs2", 1));
        assert_eq!(seg(&format!("{}✓", "a".repeat(69))), ("ucs2", 1));
        assert_eq!(seg(&format!("{}✓", "a".repeat(70))), ("ucs2", 2));
        assert_eq!(
            seg(&"😀".repeat(35)),
            ("ucs2", 1),
            "emoji count as two UTF-16 units"
        );
        assert_eq!(seg(&"😀".repeat(36)), ("ucs2", 2));
    }

    #[test]
    fn keywords_are_single_words_any_case() {
        assert_eq!(keyword(" stop "), Some(Keyword::OptOut));
        assert_eq!(keyword("Unsubscribe"), Some(Keyword::OptOut));
        assert_eq!(keyword("QUIT\n"), Some(Keyword::OptOut));
        assert_eq!(keyword("start"), Some(Keyword::OptIn));
        assert_eq!(keyword("stop please"), None);
        assert_eq!(keyword("stopp"), None);
    }

    #[test]
    fn templates_parse_or_say_why() {
        let t = parse_templates(Some(
            r#"[{"name":"order","language":"en","content_sid":"HX1","variables":["1"]}]"#,
        ))
        .unwrap();
        assert_eq!(t[0].content_sid, "HX1");
        assert!(
            parse_templates(Some("{"))
                .unwrap_err()
                .contains("JSON array")
        );
        assert!(parse_templates(None).unwrap().is_empty());
    }

    #[test]
    fn window_is_24_hours_from_the_last_inbound() {
        assert!(window_open(24, Some(0), window_ms(24) - 1));
        assert!(!window_open(24, Some(0), window_ms(24)));
        assert!(!window_open(24, None, 0));
        assert!(
            window_open(1, Some(0), window_ms(1) - 1) && !window_open(1, Some(0), window_ms(1))
        );
    }
}
