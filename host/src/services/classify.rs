//! Work classification: the ordered `[[rules]]` of the configuration, compiled once per
//! configuration, decide a new or reopened conversation's queue, skills and priority from its
//! message (channel, channel kind, keywords, a pattern, whether the sender is a known contact,
//! whether the channel's queue is open). The first rule that matches wins; none: the channel's
//! own queue and skills, priority 0. A rule that names a `classifier` plugin hands the decision
//! to it (the contract's `classifier` world); when the plugin decides nothing, or fails, the
//! next rule is tried.

use std::sync::Arc;

use crate::config::{Config, MAX_WORK_SKILLS, RULE_PATTERN_LIMIT, RuleConfig};
use crate::model::ConversationTarget;
use crate::runtime::bindings::wit_conversations::ConversationFacts;
use crate::services::app::App;

/// A plugin's settings, shared by its calls.
type Settings = Arc<Vec<(String, String)>>;

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    channel: Option<String>,
    kind: Option<String>,
    keywords: Vec<String>,
    pattern: Option<regex::Regex>,
    contact: Option<bool>,
    open: Option<bool>,
    queue: Option<String>,
    classifier: Option<(String, Settings)>,
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
            classifier: r.classifier.clone().map(|name| {
                let settings = r.classifier_settings.clone().into_iter().collect();
                (name, Arc::new(settings))
            }),
            skills: r.skills.iter().map(|s| s.to_lowercase()).collect(),
            priority: r.priority,
        })
    }

    /// Whether this rule asks whether the sender is a known contact (a classifier is told).
    pub fn needs_contact(&self) -> bool {
        self.contact.is_some() || self.classifier.is_some()
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

    /// Where work this rule matched goes; `queue` is the channel's (for a rule that names no
    /// queue of its own).
    pub fn target(&self, queue: &str) -> ConversationTarget {
        ConversationTarget::Queue {
            queue: self.queue.clone().unwrap_or_else(|| queue.to_owned()),
            skills: self.skills.clone(),
            priority: self.priority,
            bot: None,
        }
    }

    /// The classifier plugin this rule hands the decision to, with its settings.
    pub fn classifier(&self) -> Option<(&str, &Settings)> {
        self.classifier.as_ref().map(|(n, s)| (n.as_str(), s))
    }
}

/// The configuration's rules, compiled (checked at load, so none is dropped).
pub fn compile(config: &Config) -> Vec<Rule> {
    config.rules.iter().filter_map(Rule::compile).collect()
}

/// The rules of `rules` that `facts` match, in order.
pub fn matching<'r>(rules: &'r [Rule], facts: &Facts<'_>) -> impl Iterator<Item = &'r Rule> {
    rules.iter().filter(|r| r.matches(facts))
}

/// Where a conversation of `facts` goes: the first matching rule without a classifier, or
/// the first classifier that decides (`plugin` gives a classifier rule's facts and text);
/// `None` when no rule decides. `queue` is the channel's.
pub async fn decide(
    app: &App,
    rules: &[Rule],
    facts: &Facts<'_>,
    queue: &str,
    plugin: impl Fn() -> ConversationFacts,
) -> Option<ConversationTarget> {
    let numbered = rules.iter().enumerate().filter(|(_, r)| r.matches(facts));
    for (i, rule) in numbered {
        let Some((name, settings)) = rule.classifier() else {
            return Some(rule.target(queue));
        };
        if let Some(target) = ask(app, i, rule, name, settings, facts.text, plugin(), queue).await {
            return Some(target);
        }
    }
    None
}

/// Asks the classifier `name` of the `i`th matching rule; `None` when it decides nothing,
/// fails or names a queue that is not configured (each logged).
#[allow(clippy::too_many_arguments)]
async fn ask(
    app: &App,
    i: usize,
    rule: &Rule,
    name: &str,
    settings: &Settings,
    text: &str,
    facts: ConversationFacts,
    queue: &str,
) -> Option<ConversationTarget> {
    let catalog = app.catalog();
    let Some(plugin) = catalog.plugins.classifiers.get(name) else {
        tracing::error!(
            classifier = name,
            "classifier plugin not loaded; rule skipped"
        );
        return None;
    };
    let key = format!("rule-{i}");
    let text = (!text.is_empty()).then(|| text.to_owned());
    let decided = match plugin
        .classify(&app.sandbox, &key, facts, text, settings.clone())
        .await
    {
        Ok(Ok(decided)) => decided?,
        Ok(Err(reason)) => {
            tracing::warn!(
                classifier = name,
                "classifier declined with an error: {reason}; next rule"
            );
            return None;
        }
        Err(e) => {
            tracing::error!(classifier = name, "classifier failed: {e}; next rule");
            return None;
        }
    };
    let queue = match decided.queue {
        Some(q) if catalog.queues.contains_key(&q) => q,
        Some(q) => {
            tracing::warn!(
                classifier = name,
                "classifier named queue {q:?}, which is not configured; next rule"
            );
            return None;
        }
        None => rule.queue.clone().unwrap_or_else(|| queue.to_owned()),
    };
    let mut skills: Vec<String> = decided
        .skills
        .iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    skills.truncate(MAX_WORK_SKILLS);
    Some(ConversationTarget::Queue {
        queue,
        skills,
        priority: decided.priority,
        bot: None,
    })
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
        let classify = |f: &Facts<'_>| matching(&rules, f).next();
        let pick = |f: &Facts<'_>| classify(f).and_then(|r| r.queue.as_deref());
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
        let billing = classify(&facts("billing")).unwrap();
        assert_eq!(
            billing.target("support"),
            ConversationTarget::Queue {
                queue: "billing".into(),
                skills: vec!["billing".into()],
                priority: 10,
                bot: None,
            }
        );
        assert!(rules[0].needs_contact() && !rules[1].needs_contact());
        let other_channel = rule("queue = \"x\"\nchannel = \"wa\"");
        assert!(!other_channel.matches(&facts("hi")));
    }
}
