//! The bot's settings: the question-and-answer list and the texts and word lists around it,
//! parsed once per call from the host's settings.

use crate::matching::words;
use plugboard_sdk::Settings;
use plugboard_sdk::types::SettingSpec;

/// The reply after the first message the bot cannot answer, unless `fallback` is set.
pub const DEFAULT_FALLBACK: &str =
    "Sorry, I did not understand that. Could you say it another way?";
/// The reply when the bot hands the conversation to the agents, unless `handoff_message` is set.
pub const DEFAULT_HANDOFF_MESSAGE: &str = "Let me connect you with an agent.";
/// The phrases that ask for a person, unless `human_words` is set.
pub const DEFAULT_HUMAN_WORDS: &str = "agent, human, person, representative, operator";
/// The reply that resolves the conversation, unless `closing` is set.
pub const DEFAULT_CLOSING: &str = "Glad I could help. Goodbye!";
/// The phrases that end the conversation once the bot has answered, unless `thanks_words` is set.
pub const DEFAULT_THANKS_WORDS: &str = "thanks, thank you, bye, that's all";

/// One question-and-answer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The keyword phrases, each as its lowercase words (never empty).
    pub keywords: Vec<Vec<String>>,
    /// The reply when the entry wins.
    pub answer: String,
}

/// Everything the bot reads from its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The entries, in the order configured (the first wins a tie).
    pub entries: Vec<Entry>,
    /// The reply after the first unanswered message.
    pub fallback: String,
    /// The reply when handing off.
    pub handoff_message: String,
    /// The queue a hand-off names, if any.
    pub handoff_queue: Option<String>,
    /// The skills a hand-off names (lower case).
    pub handoff_skills: Vec<String>,
    /// Phrases that ask for a person.
    pub human_words: Vec<Vec<String>>,
    /// The reply that resolves the conversation.
    pub closing: String,
    /// Phrases that end the conversation once the bot has answered.
    pub thanks_words: Vec<Vec<String>>,
}

/// The settings the bot reads, for its manifest.
pub fn setting_specs() -> Vec<SettingSpec> {
    let spec = |name: &str, required: bool, description: String| SettingSpec {
        name: name.to_string(),
        required,
        secret: false,
        description,
    };
    vec![
        spec(
            "entries",
            true,
            "One entry per line: `keyword, another phrase => answer text`. Blank lines and lines \
             starting with `#` are ignored. The entry with the most keywords in the customer's \
             message wins (the first on a tie); single keywords of 5+ letters tolerate one typo."
                .to_string(),
        ),
        spec(
            "fallback",
            false,
            format!(
                "Reply to the first message no entry answers (default \"{DEFAULT_FALLBACK}\"); \
                 a second one in a row hands the conversation off."
            ),
        ),
        spec(
            "handoff_message",
            false,
            format!(
                "Reply when handing off to the agents (default \"{DEFAULT_HANDOFF_MESSAGE}\")."
            ),
        ),
        spec(
            "handoff_queue",
            false,
            "Queue a hand-off goes to; unset keeps the conversation's queue.".to_string(),
        ),
        spec(
            "handoff_skills",
            false,
            "Comma-separated skills a hand-off requires; unset keeps the conversation's."
                .to_string(),
        ),
        spec(
            "human_words",
            false,
            format!(
                "Comma-separated phrases with which the customer asks for a person, handing off \
                 at once (default \"{DEFAULT_HUMAN_WORDS}\")."
            ),
        ),
        spec(
            "closing",
            false,
            format!(
                "Reply that resolves the conversation when the customer thanks the bot after an \
                 answer (default \"{DEFAULT_CLOSING}\")."
            ),
        ),
        spec(
            "thanks_words",
            false,
            format!(
                "Comma-separated phrases that end the conversation once the bot has answered \
                 (default \"{DEFAULT_THANKS_WORDS}\")."
            ),
        ),
    ]
}

/// Comma-separated phrases as their lowercase words, dropping those without any word.
pub fn phrases(list: &str) -> Vec<Vec<String>> {
    list.split(',')
        .map(words)
        .filter(|w| !w.is_empty())
        .collect()
}

/// Parses the `entries` setting.
///
/// # Errors
///
/// A message naming the 1-based line of an entry without `=>`, without keywords or with an empty
/// answer, or saying that there is no entry at all.
pub fn parse_entries(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let Some((keywords, answer)) = line.split_once("=>") else {
            return Err(format!(
                "setting `entries` line {number}: expected `keywords => answer`, found no `=>`"
            ));
        };
        let keywords = phrases(keywords);
        if keywords.is_empty() {
            return Err(format!(
                "setting `entries` line {number}: no keywords before `=>`"
            ));
        }
        let answer = answer.trim();
        if answer.is_empty() {
            return Err(format!(
                "setting `entries` line {number}: the answer after `=>` is empty"
            ));
        }
        entries.push(Entry {
            keywords,
            answer: answer.to_string(),
        });
    }
    if entries.is_empty() {
        return Err(
            "setting `entries` has no entries (one `keywords => answer` per line)".to_string(),
        );
    }
    Ok(entries)
}

/// Reads the whole configuration from the host's settings (unset or empty ones take their
/// defaults).
///
/// # Errors
///
/// When `entries` is missing or does not parse ([`parse_entries`]).
pub fn parse(settings: &[(String, String)]) -> Result<Config, String> {
    let settings = Settings::new(settings);
    let text = |name: &str, default: &str| settings.get_or(name, default).trim().to_string();
    Ok(Config {
        entries: parse_entries(settings.require("entries")?)?,
        fallback: text("fallback", DEFAULT_FALLBACK),
        handoff_message: text("handoff_message", DEFAULT_HANDOFF_MESSAGE),
        handoff_queue: settings
            .get("handoff_queue")
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_string),
        handoff_skills: settings
            .get_or("handoff_skills", "")
            .split(',')
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect(),
        human_words: phrases(settings.get_or("human_words", DEFAULT_HUMAN_WORDS)),
        closing: text("closing", DEFAULT_CLOSING),
        thanks_words: phrases(settings.get_or("thanks_words", DEFAULT_THANKS_WORDS)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::pairs;

    #[test]
    fn parses_entries_skipping_blank_and_comment_lines() {
        let entries = parse_entries(
            "# Opening hours\n\n  hours, Opening Times => We open 9-17.\r\nrefund=>Refunds take 5 days => really.\n",
        )
        .unwrap();
        assert_eq!(
            entries,
            [
                Entry {
                    keywords: vec![vec!["hours".into()], vec!["opening".into(), "times".into()]],
                    answer: "We open 9-17.".into(),
                },
                Entry {
                    keywords: vec![vec!["refund".into()]],
                    answer: "Refunds take 5 days => really.".into(),
                },
            ]
        );
    }

    #[test]
    fn refuses_bad_lines_by_number() {
        let err = |text: &str| parse_entries(text).unwrap_err();
        assert!(err("a => b\n\nno arrow here").contains("line 3"));
        assert!(err("no arrow").contains("no `=>`"));
        assert!(err("# c\n , ,!  => answer").contains("line 2: no keywords"));
        assert!(err("a => b\nkey =>   ").contains("line 2: the answer after `=>` is empty"));
        assert!(err("").contains("no entries"));
        assert!(err("# only a comment\n\n").contains("no entries"));
    }

    #[test]
    fn defaults_and_overrides() {
        let config = parse(&pairs(&[("entries", "a => b")])).unwrap();
        assert_eq!(config.fallback, DEFAULT_FALLBACK);
        assert_eq!(config.handoff_message, DEFAULT_HANDOFF_MESSAGE);
        assert_eq!(config.handoff_queue, None);
        assert!(config.handoff_skills.is_empty());
        assert_eq!(config.human_words, phrases(DEFAULT_HUMAN_WORDS));
        assert_eq!(config.closing, DEFAULT_CLOSING);
        assert_eq!(config.thanks_words.len(), 4);
        assert_eq!(config.thanks_words[3], ["that", "s", "all"]);

        let config = parse(&pairs(&[
            ("entries", "a => b"),
            ("fallback", "Eh?"),
            ("handoff_message", "Hold on."),
            ("handoff_queue", " billing "),
            ("handoff_skills", "Billing, , japanese"),
            ("human_words", "real person"),
            ("closing", "Bye!"),
            ("thanks_words", "cheers"),
        ]))
        .unwrap();
        assert_eq!(config.fallback, "Eh?");
        assert_eq!(config.handoff_message, "Hold on.");
        assert_eq!(config.handoff_queue.as_deref(), Some("billing"));
        assert_eq!(config.handoff_skills, ["billing", "japanese"]);
        assert_eq!(config.human_words, [["real", "person"]]);
        assert_eq!(config.closing, "Bye!");
        assert_eq!(config.thanks_words, [["cheers"]]);
    }

    #[test]
    fn entries_are_required() {
        let err = parse(&pairs(&[("fallback", "x")])).unwrap_err();
        assert!(err.contains("`entries`"), "{err}");
    }

    #[test]
    fn every_setting_is_described() {
        let specs = setting_specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "entries",
                "fallback",
                "handoff_message",
                "handoff_queue",
                "handoff_skills",
                "human_words",
                "closing",
                "thanks_words"
            ]
        );
        assert!(specs.iter().all(|s| !s.description.is_empty() && !s.secret));
        assert!(specs.iter().filter(|s| s.required).count() == 1);
    }
}
