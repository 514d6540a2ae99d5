//! Work classification: the ordered `[[rules]]` of the configuration, compiled once per
//! configuration, decide a new or reopened conversation's queue, skills and priority from its
//! message (channel, channel kind, keywords, a pattern, whether the sender is a known contact,
//! whether the channel's queue is open). The first rule that matches wins; none: the channel's
//! own queue and skills, priority 0.

use crate::config::{Config, RULE_PATTERN_LIMIT, RuleConfig};
use crate::model::ConversationTarget;

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    channel: Option<String>,
    kind: Option<String>,
    keywords: Vec<String>,
    pattern: Option<regex::Regex>,
    contact: Option<bool>,
    open: Option<bool>,
    queue: String,
    skills: Vec<String>,
    priority: i32,
}

/// What a rule looks at.
pub struct Facts<'a> {
    /// The channel instance.
    pub channel: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// The message's text.
    pub text: &'a str,
    /// Whether the sender is in the contact directory (asked only when a rule needs it).
    pub known: Option<bool>,
    /// Whether the channel's own queue is within its hours.
    pub open: bool,
}

impl Rule {
    fn compile(r: &RuleConfig) -> Option<Rule> {
        let pattern = match &r.pattern {
            Some(p) => Some(
                regex::RegexBuilder::new(p)
                    .size_limit(RULE_PATTERN_LIMIT)
                    .build()
                    .ok()?,
            ),
            None => None,
        };
        Some(Rule {
            channel: r.channel.clone(),
            kind: r.kind.clone(),
            keywords: r.keywords.iter().map(|k| k.trim().to_lowercase()).collect(),
            pattern,
            contact: r.contact.as_deref().map(|c| c == "known"),
            open: r.hours.as_deref().map(|h| h == "open"),
            queue: r.queue.clone(),
            skills: r.skills.iter().map(|s| s.to_lowercase()).collect(),
            priority: r.priority,
        })
    }

    /// Whether this rule asks whether the sender is a known contact.
    pub fn needs_contact(&self) -> bool {
        self.contact.is_some()
    }

    fn matches(&self, f: &Facts<'_>) -> bool {
        let words = || {
            f.text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
        };
        self.channel.as_deref().is_none_or(|c| c == f.channel)
            && self.kind.as_deref().is_none_or(|k| k == f.kind)
            && (self.keywords.is_empty() || words().any(|w| self.keywords.contains(&w)))
            && self.pattern.as_ref().is_none_or(|p| p.is_match(f.text))
            && self.contact.is_none_or(|want| f.known == Some(want))
            && self.open.is_none_or(|want| want == f.open)
    }

    /// Where work this rule matched goes.
    pub fn target(&self) -> ConversationTarget {
        ConversationTarget::Queue {
            queue: self.queue.clone(),
            skills: self.skills.clone(),
            priority: self.priority,
        }
    }
}

/// The configuration's rules, compiled (checked at load, so none is dropped).
pub fn compile(config: &Config) -> Vec<Rule> {
    config.rules.iter().filter_map(Rule::compile).collect()
}

/// The first of `rules` that `facts` match.
pub fn classify<'r>(rules: &'r [Rule], facts: &Facts<'_>) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matches(facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml: &str) -> Rule {
        let r: RuleConfig = toml::from_str(toml).unwrap();
        Rule::compile(&r).unwrap()
    }

    fn facts(text: &str) -> Facts<'_> {
        Facts {
            channel: "sms",
            kind: "sms",
            text,
            known: Some(false),
            open: true,
        }
    }

    #[test]
    fn first_match_wins_on_words_patterns_contacts_and_hours() {
        let rules = vec![
            rule("queue = \"vip\"\ncontact = \"known\""),
            rule(
                "queue = \"billing\"\nkeywords = [\"Invoice\", \"billing\"]\nskills = [\"Billing\"]\npriority = 10",
            ),
            rule("queue = \"refunds\"\npattern = \"(?i)refund(ed)?\""),
            rule("queue = \"night\"\nhours = \"closed\""),
        ];
        let pick = |f: &Facts<'_>| classify(&rules, f).map(|r| r.queue.as_str());
        assert_eq!(pick(&facts("Where is my INVOICE?")), Some("billing"));
        assert_eq!(pick(&facts("invoices")), None, "whole words only");
        assert_eq!(pick(&facts("I want a Refund")), Some("refunds"));
        assert_eq!(pick(&facts("hello")), None);
        assert_eq!(
            pick(&Facts {
                known: Some(true),
                ..facts("invoice")
            }),
            Some("vip"),
            "the first rule that matches wins"
        );
        assert_eq!(
            pick(&Facts {
                open: false,
                ..facts("hello")
            }),
            Some("night")
        );
        let billing = classify(&rules, &facts("billing")).unwrap();
        assert_eq!(
            billing.target(),
            ConversationTarget::Queue {
                queue: "billing".into(),
                skills: vec!["billing".into()],
                priority: 10
            }
        );
        assert!(rules[0].needs_contact() && !rules[1].needs_contact());
        let other_channel = rule("queue = \"x\"\nchannel = \"wa\"");
        assert!(!other_channel.matches(&facts("hi")));
    }
}
