//! Plugboard bot plugin "faq": answers the customer from a configured list of questions and
//! answers, and hands the conversation to the agents when it cannot help.
//!
//! Each turn looks at the customer's latest message only (see [`respond`]):
//!
//! 1. a phrase of `human_words` ("agent", "human", ...) hands off at once;
//! 2. once the bot has answered in this conversation, a phrase of `thanks_words` ("thanks",
//!    "bye", ...) gets the `closing` reply and resolves the conversation;
//! 3. the entry of `entries` with the most matching keywords (the first on a tie) is answered
//!    and the bot keeps the conversation;
//! 4. otherwise the first miss gets the `fallback` reply, and a second miss in a row hands off
//!    with both unanswered messages in the summary.
//!
//! Matching is on lowercase words ([`matching`]). The bot keeps three small memory entries:
//! `answered` (`1` once it answered), `misses` (`1` after an unanswered message; absent means
//! 0) and `missed` (that message, at most [`MISSED_MAX_CHARS`] characters). It never fetches.

pub mod config;
pub mod matching;

use config::{Config, Entry};
use matching::{any_matches, phrase_matches, words};
use plugboard_sdk::conversation::{
    BotManifest, BotTurn, ConversationFacts, HandOff, Outcome, Step, Turn, latest_customer_text,
};
use plugboard_sdk::types::{Fields, HttpResponse, Settings};

/// The most characters of an unanswered message kept in memory for the hand-off summary.
pub const MISSED_MAX_CHARS: usize = 200;

/// The FAQ bot.
pub struct Faq;

/// The bot's manifest.
pub fn manifest() -> BotManifest {
    BotManifest {
        name: "faq".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        settings: config::setting_specs(),
        api_hosts: Vec::new(),
    }
}

/// The entry answering `message` (its words): the one with the most matching keywords, the
/// first of them on a tie; `None` when no keyword matches.
pub fn best_entry<'a>(entries: &'a [Entry], message: &[String]) -> Option<&'a Entry> {
    let mut best: Option<(&Entry, usize)> = None;
    for entry in entries {
        let hits = entry
            .keywords
            .iter()
            .filter(|k| phrase_matches(k, message))
            .count();
        if hits > 0 && best.is_none_or(|(_, most)| hits > most) {
            best = Some((entry, hits));
        }
    }
    best.map(|(entry, _)| entry)
}

/// The value of `key` in `memory`, if present (the last one if it repeats).
fn recall<'a>(memory: &'a [(String, String)], key: &str) -> Option<&'a str> {
    memory
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The first `max` characters of `text`.
fn truncate(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(end, _)| &text[..end])
}

/// A turn handing the conversation off with `summary`.
fn hand_off(config: &Config, summary: String) -> BotTurn {
    BotTurn {
        replies: vec![config.handoff_message.clone()],
        outcome: Outcome::HandOff(HandOff {
            queue: config.handoff_queue.clone(),
            skills: config.handoff_skills.clone(),
            summary: Some(summary),
        }),
        memory: Vec::new(),
    }
}

/// The bot's turn for the customer's latest message `text`, given what the previous turn kept
/// in `memory` (see the crate documentation for the rules).
pub fn respond(config: &Config, text: &str, memory: &[(String, String)]) -> BotTurn {
    let text = text.trim();
    let message = words(text);
    if any_matches(&config.human_words, &message) {
        return hand_off(config, format!("Customer asked for a person: \"{text}\"."));
    }
    let answered = recall(memory, "answered") == Some("1");
    if answered && any_matches(&config.thanks_words, &message) {
        return BotTurn {
            replies: vec![config.closing.clone()],
            outcome: Outcome::Resolved,
            memory: Vec::new(),
        };
    }
    if let Some(entry) = best_entry(&config.entries, &message) {
        return BotTurn {
            replies: vec![entry.answer.clone()],
            outcome: Outcome::Keep,
            memory: vec![("answered".to_string(), "1".to_string())],
        };
    }
    let misses: u32 = recall(memory, "misses")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if misses == 0 {
        let mut kept = Vec::with_capacity(3);
        if answered {
            kept.push(("answered".to_string(), "1".to_string()));
        }
        kept.push(("misses".to_string(), "1".to_string()));
        kept.push((
            "missed".to_string(),
            truncate(text, MISSED_MAX_CHARS).to_string(),
        ));
        return BotTurn {
            replies: vec![config.fallback.clone()],
            outcome: Outcome::Keep,
            memory: kept,
        };
    }
    let previous = recall(memory, "missed").unwrap_or_default();
    hand_off(
        config,
        format!("FAQ bot could not answer twice. Customer wrote: \"{previous}\" then \"{text}\"."),
    )
}

impl plugboard_sdk::Bot for Faq {
    fn describe() -> BotManifest {
        manifest()
    }

    fn check_settings(settings: Settings) -> Result<(), String> {
        config::parse(&settings).map(|_| ())
    }

    fn respond(
        _facts: ConversationFacts,
        history: Vec<Turn>,
        memory: Fields,
        _answers: Vec<Result<HttpResponse, String>>,
        settings: Settings,
    ) -> Result<Step, String> {
        let config = config::parse(&settings)?;
        let text = latest_customer_text(&history).unwrap_or_default();
        Ok(Step::Done(respond(&config, text, &memory)))
    }
}

plugboard_sdk::export_bot!(Faq);

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRIES: &str = "\
# Store FAQ
opening hours, open, hours => We are open 9:00-17:00, Monday to Friday.
refund, money back, return => Refunds take 5 working days.
password, reset password, log in => Use \"Forgot password\" on the sign-in page.
";

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut settings = vec![("entries".to_string(), ENTRIES.to_string())];
        settings.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        config::parse(&settings).unwrap()
    }

    fn mem(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn manifest_describes_the_bot() {
        let m = manifest();
        assert_eq!(m.name, "faq");
        assert_eq!(m.version, env!("CARGO_PKG_VERSION"));
        assert!(m.api_hosts.is_empty());
        assert!(m.settings.iter().any(|s| s.name == "entries" && s.required));
    }

    #[test]
    fn answers_the_best_entry() {
        let c = config(&[]);
        let turn = respond(&c, "What are your opening hours?", &[]);
        assert_eq!(turn.replies, ["We are open 9:00-17:00, Monday to Friday."]);
        assert_eq!(turn.outcome, Outcome::Keep);
        assert_eq!(turn.memory, mem(&[("answered", "1")]));
        // "reset password" and "password" (two keywords) beat "return" (one).
        let turn = respond(&c, "return... I need to RESET PASSWORD", &[]);
        assert_eq!(
            turn.replies,
            ["Use \"Forgot password\" on the sign-in page."]
        );
        // A typo in a long keyword still matches.
        let turn = respond(&c, "I forgot my pasword", &[]);
        assert_eq!(
            turn.replies,
            ["Use \"Forgot password\" on the sign-in page."]
        );
    }

    #[test]
    fn ties_go_to_the_first_entry() {
        let c = config(&[]);
        let turn = respond(&c, "hours for a refund", &[]);
        assert_eq!(turn.replies, ["We are open 9:00-17:00, Monday to Friday."]);
        let entries = config::parse_entries("a => first\nb => second").unwrap();
        assert_eq!(best_entry(&entries, &words("b a")).unwrap().answer, "first");
        assert_eq!(best_entry(&entries, &words("c")), None);
    }

    #[test]
    fn an_answer_resets_the_misses() {
        let c = config(&[]);
        let turn = respond(&c, "refund", &mem(&[("misses", "1"), ("missed", "blah")]));
        assert_eq!(turn.outcome, Outcome::Keep);
        assert_eq!(turn.memory, mem(&[("answered", "1")]));
    }

    #[test]
    fn first_miss_falls_back_and_second_hands_off() {
        let c = config(&[
            ("handoff_queue", "billing"),
            ("handoff_skills", "Billing, vip"),
        ]);
        let first = respond(&c, "  blah blah ", &mem(&[("answered", "1")]));
        assert_eq!(first.replies, [config::DEFAULT_FALLBACK]);
        assert_eq!(first.outcome, Outcome::Keep);
        assert_eq!(
            first.memory,
            mem(&[("answered", "1"), ("misses", "1"), ("missed", "blah blah")])
        );
        let second = respond(&c, "still nothing", &first.memory);
        assert_eq!(second.replies, [config::DEFAULT_HANDOFF_MESSAGE]);
        assert_eq!(
            second.outcome,
            Outcome::HandOff(HandOff {
                queue: Some("billing".into()),
                skills: vec!["billing".into(), "vip".into()],
                summary: Some(
                    "FAQ bot could not answer twice. Customer wrote: \"blah blah\" then \"still nothing\"."
                        .into()
                ),
            })
        );
        assert!(second.memory.is_empty());
    }

    #[test]
    fn the_kept_miss_is_truncated() {
        let c = config(&[("fallback", "Eh?")]);
        let long = "é".repeat(300);
        let turn = respond(&c, &long, &[]);
        assert_eq!(turn.replies, ["Eh?"]);
        assert_eq!(recall(&turn.memory, "missed").unwrap().chars().count(), 200);
        assert_eq!(truncate("abc", 5), "abc");
    }

    #[test]
    fn a_message_without_text_is_a_miss() {
        let c = config(&[]);
        let turn = respond(&c, "", &[]);
        assert_eq!(turn.replies, [config::DEFAULT_FALLBACK]);
        assert_eq!(turn.memory, mem(&[("misses", "1"), ("missed", "")]));
    }

    #[test]
    fn asking_for_a_person_hands_off_at_once() {
        let c = config(&[]);
        let turn = respond(&c, "Refund? I want to talk to a HUMAN!", &[]);
        assert_eq!(turn.replies, [config::DEFAULT_HANDOFF_MESSAGE]);
        assert_eq!(
            turn.outcome,
            Outcome::HandOff(HandOff {
                queue: None,
                skills: Vec::new(),
                summary: Some(
                    "Customer asked for a person: \"Refund? I want to talk to a HUMAN!\".".into()
                ),
            })
        );
        let c = config(&[
            ("human_words", "real person"),
            ("handoff_message", "One moment."),
        ]);
        assert_eq!(respond(&c, "an agent", &[]).outcome, Outcome::Keep);
        let turn = respond(&c, "a real person please", &[]);
        assert_eq!(turn.replies, ["One moment."]);
        assert!(matches!(turn.outcome, Outcome::HandOff(_)));
    }

    #[test]
    fn thanks_after_an_answer_resolves() {
        let c = config(&[]);
        let answered = mem(&[("answered", "1")]);
        for text in ["Thanks!", "thank you so much", "ok bye", "That's all."] {
            let turn = respond(&c, text, &answered);
            assert_eq!(turn.replies, [config::DEFAULT_CLOSING], "{text}");
            assert_eq!(turn.outcome, Outcome::Resolved, "{text}");
        }
        // Before any answer, thanks is just a miss.
        let turn = respond(&c, "thanks", &[]);
        assert_eq!(turn.replies, [config::DEFAULT_FALLBACK]);
        assert_eq!(turn.outcome, Outcome::Keep);
        let c = config(&[("closing", "See you."), ("thanks_words", "cheers")]);
        assert_eq!(respond(&c, "cheers", &answered).replies, ["See you."]);
        assert_eq!(respond(&c, "thanks", &answered).outcome, Outcome::Keep);
    }
}
