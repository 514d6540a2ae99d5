//! Statistics as counters per day: what each stored change counts (a message received or sent,
//! an offer made or missed, a wait ended, a transfer, an overflow, a conversation resolved or
//! abandoned), and how reports read them back.
//!
//! A backend adds the [`Tally`]s of a change in the same write as the change, so a report reads
//! one row per name, metric and day whatever the traffic: a month of one channel is at most 31
//! rows of each metric, a year 366. Durations (first response, resolution, waiting) are kept as
//! a count per [`DURATION_BOUNDS`] bucket plus their sum, so a report gives their exact mean
//! and their median and 90th percentile to the bucket (the bound of the bucket the percentile
//! falls in). Days are the local dates of [`day_of`] in the deployment's time zone
//! (`[server] timezone`).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::model::{Conversation, ConversationState};

/// What a statistic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A channel instance.
    Channel,
    /// An agent.
    Agent,
    /// A queue.
    Queue,
}

impl Scope {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Channel => "channel",
            Scope::Agent => "agent",
            Scope::Queue => "queue",
        }
    }

    /// The scope stored as `s`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "channel" => Some(Scope::Channel),
            "agent" => Some(Scope::Agent),
            "queue" => Some(Scope::Queue),
            _ => None,
        }
    }
}

/// A duration a report gives the mean, median and 90th percentile of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// From entering the queue to the first agent reply.
    FirstResponse,
    /// From entering the queue to being resolved (closed after an agent replied).
    Resolution,
    /// From entering the queue to an agent taking it (queues only).
    Waiting,
}

impl Span {
    /// The metric-name stem (`first_response`).
    pub fn name(self) -> &'static str {
        match self {
            Span::FirstResponse => "first_response",
            Span::Resolution => "resolution",
            Span::Waiting => "waiting",
        }
    }
}

/// Upper bounds of the duration buckets, seconds; a last bucket holds the longer ones.
pub const DURATION_BOUNDS: [u64; 12] = [
    10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400,
];

/// One counter increment: `amount` more of `metric` for `name` in `scope`, on the day of `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// What it is about.
    pub scope: Scope,
    /// The channel, agent or queue.
    pub name: String,
    /// `received`, `sent`, `offers`, `missed`, `transfers`, `overflowed`, `handled`,
    /// `abandoned`, `{span}.sum_ms` or `{span}.{bucket}`.
    pub metric: String,
    /// When it happened, Unix milliseconds.
    pub at: u64,
    /// How much.
    pub amount: u64,
}

impl Tally {
    fn one(scope: Scope, name: &str, metric: &str, at: u64) -> Tally {
        Tally {
            scope,
            name: name.to_owned(),
            metric: metric.to_owned(),
            at,
            amount: 1,
        }
    }

    /// A message received on `channel`.
    pub fn received(channel: &str, at: u64) -> Tally {
        Tally::one(Scope::Channel, channel, "received", at)
    }

    /// A message the provider took from `channel`.
    pub fn sent(channel: &str, at: u64) -> Tally {
        Tally::one(Scope::Channel, channel, "sent", at)
    }
}

/// The bucket of a duration of `ms` milliseconds (an index into [`DURATION_BOUNDS`], or its
/// length for longer ones).
pub fn bucket_of(ms: u64) -> usize {
    let secs = ms.div_ceil(1000);
    DURATION_BOUNDS
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(DURATION_BOUNDS.len())
}

fn span(out: &mut Vec<Tally>, scope: Scope, name: &str, span: Span, ms: u64, at: u64) {
    out.push(Tally::one(
        scope,
        name,
        &format!("{}.{}", span.name(), bucket_of(ms)),
        at,
    ));
    out.push(Tally {
        amount: ms,
        ..Tally::one(scope, name, &format!("{}.sum_ms", span.name()), at)
    });
}

/// What a conversation going from `old` (`None`: created) to `new` at `now` counts.
pub fn conversation_tallies(
    old: Option<&Conversation>,
    new: &Conversation,
    now: u64,
) -> Vec<Tally> {
    let mut out = Vec::new();
    let queue = new.queue.as_str();
    for agent in &new.offered_to {
        if old.is_none_or(|o| !o.offered_to.contains(agent)) {
            out.push(Tally::one(Scope::Agent, agent, "offers", now));
            out.push(Tally::one(Scope::Queue, queue, "offers", now));
        }
    }
    // A lapsed offer moves its agents from `offered_to` to `tried` (a transfer to a queue
    // puts the agent who handed it on in `tried` too: not a miss).
    for agent in &new.tried {
        if old.is_some_and(|o| o.offered_to.contains(agent) && !o.tried.contains(agent)) {
            out.push(Tally::one(Scope::Agent, agent, "missed", now));
            out.push(Tally::one(Scope::Queue, queue, "missed", now));
        }
    }
    if let Some(old) = old {
        let moved_queue = old.queue != new.queue;
        match (old.state, new.state) {
            (ConversationState::Queued, ConversationState::Assigned) => {
                let waited = now.saturating_sub(old.queued_since);
                span(
                    &mut out,
                    Scope::Queue,
                    &old.queue,
                    Span::Waiting,
                    waited,
                    now,
                );
            }
            (ConversationState::Assigned, ConversationState::Assigned)
                if old.owner != new.owner =>
            {
                transfer(&mut out, old, now);
            }
            (ConversationState::Assigned, ConversationState::Queued) if moved_queue => {
                transfer(&mut out, old, now);
            }
            (ConversationState::Queued, ConversationState::Queued) if moved_queue => {
                out.push(Tally::one(Scope::Queue, &old.queue, "overflowed", now));
            }
            (ConversationState::Bot, ConversationState::Queued) => {
                out.push(Tally::one(Scope::Queue, queue, "bot_handoffs", now));
            }
            (ConversationState::Bot, ConversationState::Closed) if resolved_by_bot(old, new) => {
                out.push(Tally::one(Scope::Queue, queue, "bot_resolved", now));
            }
            _ => {}
        }
    }
    if let (Some(at), true) = (
        new.first_reply_at,
        old.is_none_or(|o| o.first_reply_at.is_none()),
    ) {
        let ms = at.saturating_sub(new.queued_since);
        span(&mut out, Scope::Queue, queue, Span::FirstResponse, ms, now);
        if let Some(owner) = &new.owner {
            span(&mut out, Scope::Agent, owner, Span::FirstResponse, ms, now);
        }
    }
    if let (Some(n), true) = (new.rating, old.is_some_and(|o| o.rating.is_none())) {
        let points = u64::from(n);
        out.push(Tally::one(Scope::Queue, queue, "ratings", now));
        out.push(Tally {
            amount: points,
            ..Tally::one(Scope::Queue, queue, "rating_points", now)
        });
        if let Some(owner) = &new.owner {
            out.push(Tally::one(Scope::Agent, owner, "ratings", now));
            out.push(Tally {
                amount: points,
                ..Tally::one(Scope::Agent, owner, "rating_points", now)
            });
        }
    }
    if new.state == ConversationState::Closed
        && old.is_some_and(|o| o.state != ConversationState::Closed && !resolved_by_bot(o, new))
    {
        if new.first_reply_at.is_some() {
            let ms = now.saturating_sub(new.queued_since);
            out.push(Tally::one(Scope::Queue, queue, "handled", now));
            span(&mut out, Scope::Queue, queue, Span::Resolution, ms, now);
            if let Some(owner) = &new.owner {
                out.push(Tally::one(Scope::Agent, owner, "handled", now));
                span(&mut out, Scope::Agent, owner, Span::Resolution, ms, now);
            }
        } else {
            out.push(Tally::one(Scope::Queue, queue, "abandoned", now));
        }
    }
    out
}

/// Whether `old` going to `new` is its bot resolving it (a manager closing a bot's
/// conversation joins those who handled it).
fn resolved_by_bot(old: &Conversation, new: &Conversation) -> bool {
    old.state == ConversationState::Bot
        && new.state == ConversationState::Closed
        && new.handled_by == old.handled_by
}

fn transfer(out: &mut Vec<Tally>, old: &Conversation, now: u64) {
    out.push(Tally::one(Scope::Queue, &old.queue, "transfers", now));
    if let Some(owner) = &old.owner {
        out.push(Tally::one(Scope::Agent, owner, "transfers", now));
    }
}

/// The local date of `at_ms` in `tz`, as days since 1970-01-01: the day a tally counts on.
pub fn day_of(at_ms: u64, tz: &TimeZone) -> i32 {
    let at = i64::try_from(at_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    day_number(at.to_zoned(tz.clone()).date())
}

/// `date` as days since 1970-01-01.
pub fn day_number(date: Date) -> i32 {
    let epoch = Date::constant(1970, 1, 1);
    date.since((jiff::Unit::Day, epoch))
        .map(|s| s.get_days())
        .unwrap_or(0)
}

/// The date `days` after 1970-01-01.
pub fn date_of(days: i32) -> Date {
    Date::constant(1970, 1, 1)
        .checked_add(jiff::Span::new().days(days))
        .unwrap_or(Date::constant(1970, 1, 1))
}

/// Adds up `tallies` by scope, name, metric and day, so a write touches each counter once.
pub fn by_counter(tallies: &[Tally], tz: &TimeZone) -> BTreeMap<(Scope, String, i32, String), u64> {
    let mut out = BTreeMap::new();
    for t in tallies {
        *out.entry((t.scope, t.name.clone(), day_of(t.at, tz), t.metric.clone()))
            .or_insert(0) += t.amount;
    }
    out
}

/// One stored counter, as a backend returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The channel, agent or queue.
    pub name: String,
    /// The day, days since 1970-01-01 (see [`day_of`]).
    pub day: i32,
    /// The metric.
    pub metric: String,
    /// Its value that day.
    pub value: u64,
}

/// A duration's summary over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpanSummary {
    /// How many.
    pub count: u64,
    /// Their mean, seconds (exact).
    pub mean_s: Option<f64>,
    /// Their median, seconds: the bound of the bucket it falls in (`None` above a day).
    pub median_s: Option<u64>,
    /// Their 90th percentile, seconds, the same way.
    pub p90_s: Option<u64>,
}

/// Sums `counters`' duration buckets and sums of `span` into a summary.
pub fn summarize(counters: &BTreeMap<String, u64>, span: Span) -> SpanSummary {
    let mut buckets = [0u64; DURATION_BOUNDS.len() + 1];
    for (i, b) in buckets.iter_mut().enumerate() {
        *b = counters
            .get(&format!("{}.{i}", span.name()))
            .copied()
            .unwrap_or(0);
    }
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return SpanSummary::default();
    }
    let sum = counters
        .get(&format!("{}.sum_ms", span.name()))
        .copied()
        .unwrap_or(0);
    let quantile = |q: f64| {
        let rank = ((count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in buckets.iter().enumerate() {
            seen += b;
            if seen >= rank {
                return DURATION_BOUNDS.get(i).copied();
            }
        }
        None
    };
    SpanSummary {
        count,
        mean_s: Some(sum as f64 / count as f64 / 1000.0),
        median_s: quantile(0.5),
        p90_s: quantile(0.9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(queue: &str, since: u64) -> Conversation {
        let mut c = Conversation::new(1, "sms", "+14155550100", queue, since);
        c.enqueue(queue, since);
        c
    }

    fn metrics(t: &[Tally]) -> Vec<(Scope, &str, &str, u64)> {
        t.iter()
            .map(|t| (t.scope, t.name.as_str(), t.metric.as_str(), t.amount))
            .collect()
    }

    #[test]
    fn a_whole_wait_counts_each_step_once() {
        let start = 1_000_000;
        let c0 = queued("support", start);
        let mut c1 = c0.clone();
        c1.offered_to = vec!["alice".into()];
        assert_eq!(
            metrics(&conversation_tallies(Some(&c0), &c1, start + 1000)),
            vec![
                (Scope::Agent, "alice", "offers", 1),
                (Scope::Queue, "support", "offers", 1)
            ]
        );
        let mut c2 = c1.clone();
        c2.tried.append(&mut c2.offered_to);
        assert_eq!(
            metrics(&conversation_tallies(Some(&c1), &c2, start + 2000)),
            vec![
                (Scope::Agent, "alice", "missed", 1),
                (Scope::Queue, "support", "missed", 1)
            ]
        );
        let mut c3 = c2.clone();
        c3.assign("bob");
        let t = conversation_tallies(Some(&c2), &c3, start + 45_000);
        assert_eq!(
            metrics(&t),
            vec![
                (Scope::Queue, "support", "waiting.2", 1),
                (Scope::Queue, "support", "waiting.sum_ms", 45_000)
            ]
        );
        let mut c4 = c3.clone();
        c4.first_reply_at = Some(start + 50_000);
        let t = conversation_tallies(Some(&c3), &c4, start + 50_000);
        assert_eq!(
            metrics(&t),
            vec![
                (Scope::Queue, "support", "first_response.2", 1),
                (Scope::Queue, "support", "first_response.sum_ms", 50_000),
                (Scope::Agent, "bob", "first_response.2", 1),
                (Scope::Agent, "bob", "first_response.sum_ms", 50_000),
            ]
        );
        assert!(conversation_tallies(Some(&c4), &c4, start + 60_000).is_empty());
        let mut c5 = c4.clone();
        c5.close("bob", start + 600_000);
        let t = conversation_tallies(Some(&c4), &c5, start + 600_000);
        assert_eq!(
            metrics(&t),
            vec![
                (Scope::Queue, "support", "handled", 1),
                (Scope::Queue, "support", "resolution.5", 1),
                (Scope::Queue, "support", "resolution.sum_ms", 600_000),
                (Scope::Agent, "bob", "handled", 1),
                (Scope::Agent, "bob", "resolution.5", 1),
                (Scope::Agent, "bob", "resolution.sum_ms", 600_000),
            ]
        );
    }

    #[test]
    fn transfers_overflows_and_abandoned_work() {
        let c0 = queued("support", 0);
        let mut c1 = c0.clone();
        c1.assign("alice");
        let mut c2 = c1.clone();
        c2.transfer("bob", 10);
        assert_eq!(
            metrics(&conversation_tallies(Some(&c1), &c2, 10)),
            vec![
                (Scope::Queue, "support", "transfers", 1),
                (Scope::Agent, "alice", "transfers", 1)
            ]
        );
        let mut c3 = c2.clone();
        c3.enqueue("sales", 20);
        c3.tried = vec!["bob".into()];
        assert_eq!(
            metrics(&conversation_tallies(Some(&c2), &c3, 20)),
            vec![
                (Scope::Queue, "support", "transfers", 1),
                (Scope::Agent, "bob", "transfers", 1)
            ],
            "handing on to a queue is a transfer, not a miss"
        );
        let mut c4 = c3.clone();
        c4.enqueue("overflow", 30);
        assert_eq!(
            metrics(&conversation_tallies(Some(&c3), &c4, 30)),
            vec![(Scope::Queue, "sales", "overflowed", 1)]
        );
        let mut c5 = c4.clone();
        c5.close("carol", 40);
        assert_eq!(
            metrics(&conversation_tallies(Some(&c4), &c5, 40)),
            vec![(Scope::Queue, "overflow", "abandoned", 1)]
        );
    }

    #[test]
    fn a_rating_counts_once_for_the_queue_and_the_last_owner() {
        let mut c0 = queued("support", 0);
        c0.assign("alice");
        c0.close("alice", 10);
        let mut c1 = c0.clone();
        c1.rating = Some(4);
        assert_eq!(
            metrics(&conversation_tallies(Some(&c0), &c1, 20)),
            vec![
                (Scope::Queue, "support", "ratings", 1),
                (Scope::Queue, "support", "rating_points", 4),
                (Scope::Agent, "alice", "ratings", 1),
                (Scope::Agent, "alice", "rating_points", 4),
            ]
        );
        assert!(conversation_tallies(Some(&c1), &c1, 30).is_empty());
    }

    #[test]
    fn days_are_local_dates_and_summaries_read_the_buckets() {
        let tokyo = jiff::tz::db().get("Asia/Tokyo").unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64;
        let before = day_of(at("2026-12-01T23:59:59+09:00"), &tokyo);
        let after = day_of(at("2026-12-02T00:00:00+09:00"), &tokyo);
        assert_eq!(after, before + 1);
        assert_eq!(date_of(before), Date::constant(2026, 12, 1));
        assert_eq!(
            day_of(at("2026-12-01T23:59:59+09:00"), &TimeZone::UTC),
            before,
            "14:59 UTC the same day"
        );
        assert_eq!(day_number(Date::constant(1970, 1, 2)), 1);

        let mut counters = BTreeMap::new();
        // Nine answers within 10 s, one after 40 minutes: the median is in the first bucket.
        counters.insert("first_response.0".to_owned(), 9);
        counters.insert("first_response.7".to_owned(), 1);
        counters.insert("first_response.sum_ms".to_owned(), 9 * 5_000 + 2_400_000);
        let s = summarize(&counters, Span::FirstResponse);
        assert_eq!(s.count, 10);
        assert_eq!(s.median_s, Some(10));
        assert_eq!(s.p90_s, Some(10));
        assert_eq!(s.mean_s, Some(244.5));
        counters.insert("first_response.12".to_owned(), 10);
        let s = summarize(&counters, Span::FirstResponse);
        assert_eq!(s.p90_s, None, "above a day");
        assert_eq!(summarize(&counters, Span::Waiting), SpanSummary::default());
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(10_000), 0);
        assert_eq!(bucket_of(10_001), 1);
        assert_eq!(bucket_of(100_000_000), DURATION_BOUNDS.len());
    }
}
