//! Reports from the statistics counters (see [`crate::stats`]): per channel, agent or queue and
//! per period (day, ISO week or month, in the deployment's time zone), limited to what the
//! caller may see: admins everything, a queue's managers its line and its agents' and its
//! channels', an agent their own line.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Serialize;

use crate::config::{AgentConfig, Config};
use crate::stats::{Scope, Span, SpanSummary, date_of, day_number, summarize};
use crate::store::{Store, StoreError};

/// The longest range one report covers, in days (two years).
pub const MAX_DAYS: i32 = 731;

/// How a report groups days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Each day.
    Day,
    /// Each ISO week (from Monday).
    Week,
    /// Each calendar month.
    Month,
}

impl Period {
    /// The period named `s` (`day`, `week`, `month`).
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    /// The first day of the period `date` is in.
    fn start(self, date: Date) -> Date {
        match self {
            Period::Day => date,
            Period::Week => date
                .checked_sub(
                    jiff::Span::new().days(i64::from(date.weekday().to_monday_zero_offset())),
                )
                .unwrap_or(date),
            Period::Month => date.first_of_month(),
        }
    }
}

/// Who asks for a report.
pub enum Viewer<'a> {
    /// The admin token: everything.
    Admin,
    /// An agent: their own line, and as a manager their queues', those queues' agents' and
    /// the channels feeding them.
    Agent(&'a AgentConfig),
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The range or period is wrong (the message says how).
    #[error("{0}")]
    Invalid(String),
    /// This caller may not see this scope at all.
    #[error("{0}")]
    Forbidden(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// One line of a report: a name, a period and its figures.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The channel, agent or queue.
    pub name: String,
    /// The period's first day (`2026-12-01`).
    pub period: String,
    /// Counts by metric (`received`, `sent`, `handled`, `offers`, `missed`, `transfers`,
    /// `overflowed`, `abandoned`), zeros included for the scope's metrics.
    pub counts: BTreeMap<&'static str, u64>,
    /// Durations by name (`first_response`, `resolution`, `waiting`).
    pub spans: BTreeMap<&'static str, SpanSummary>,
}

/// What a scope's lines carry.
fn shape(scope: Scope) -> (&'static [&'static str], &'static [Span]) {
    match scope {
        Scope::Channel => (&["received", "sent"], &[]),
        Scope::Agent => (
            &[
                "handled",
                "offers",
                "missed",
                "transfers",
                "ratings",
                "rating_points",
            ],
            &[Span::FirstResponse, Span::Resolution],
        ),
        Scope::Queue => (
            &[
                "handled",
                "offers",
                "missed",
                "transfers",
                "overflowed",
                "abandoned",
                "bot_resolved",
                "bot_handoffs",
                "ratings",
                "rating_points",
            ],
            &[Span::FirstResponse, Span::Resolution, Span::Waiting],
        ),
    }
}

/// Whether `viewer` may see `scope`'s line for `name`.
fn may_see(config: &Config, viewer: &Viewer<'_>, scope: Scope, name: &str) -> bool {
    let Viewer::Agent(me) = viewer else {
        return true;
    };
    let managed: Vec<&str> = config
        .queues
        .iter()
        .filter(|q| q.managers.contains(&me.id))
        .map(|q| q.name.as_str())
        .collect();
    match scope {
        Scope::Agent => {
            name == me.id
                || config
                    .agent(name)
                    .is_some_and(|a| a.queues.iter().any(|q| managed.contains(&q.as_str())))
        }
        Scope::Queue => managed.contains(&name),
        Scope::Channel => config
            .channel(name)
            .and_then(|c| c.queue.as_deref())
            .is_some_and(|q| managed.contains(&q)),
    }
}

/// The report of `scope` over `from..=to` by `period`, as `viewer` may see it.
pub async fn report(
    store: &dyn Store,
    config: &Config,
    viewer: &Viewer<'_>,
    scope: Scope,
    period: Period,
    from: Date,
    to: Date,
) -> Result<Vec<Line>, ReportError> {
    if from > to {
        return Err(ReportError::Invalid(format!(
            "`from` ({from}) is after `to` ({to})"
        )));
    }
    let (first, last) = (day_number(from), day_number(to));
    if last - first >= MAX_DAYS {
        return Err(ReportError::Invalid(format!(
            "a report covers at most {MAX_DAYS} days; ask for a shorter range"
        )));
    }
    if let Viewer::Agent(me) = viewer
        && scope != Scope::Agent
        && !config.queues.iter().any(|q| q.managers.contains(&me.id))
    {
        return Err(ReportError::Forbidden(format!(
            "{} statistics are for the managers of a queue and for admins; agents see their own line in /api/v1/stats/agents",
            scope.as_str()
        )));
    }
    let mut grouped: BTreeMap<(String, Date), BTreeMap<String, u64>> = BTreeMap::new();
    for c in store.statistics(scope, first, last).await? {
        if !may_see(config, viewer, scope, &c.name) {
            continue;
        }
        let start = period.start(date_of(c.day));
        *grouped
            .entry((c.name, start))
            .or_default()
            .entry(c.metric)
            .or_insert(0) += c.value;
    }
    let (counts, spans) = shape(scope);
    Ok(grouped
        .into_iter()
        .map(|((name, start), metrics)| Line {
            name,
            period: start.to_string(),
            counts: counts
                .iter()
                .map(|&m| (m, metrics.get(m).copied().unwrap_or(0)))
                .collect(),
            spans: spans
                .iter()
                .map(|&s| (s.name(), summarize(&metrics, s)))
                .collect(),
        })
        .collect())
}

/// `lines` as CSV: a header, then one row per line; durations as `{span}_count`,
/// `{span}_mean_s`, `{span}_median_s`, `{span}_p90_s` (empty when none).
pub fn csv(scope: Scope, lines: &[Line]) -> String {
    let (counts, spans) = shape(scope);
    let mut header = vec![scope.as_str().to_owned(), "period".to_owned()];
    header.extend(counts.iter().map(|c| (*c).to_owned()));
    for s in spans {
        for part in ["count", "mean_s", "median_s", "p90_s"] {
            header.push(format!("{}_{part}", s.name()));
        }
    }
    let mut out = header.join(",");
    out.push_str("\r\n");
    for line in lines {
        let mut row = vec![csv_field(&line.name), line.period.clone()];
        row.extend(counts.iter().map(|c| line.counts[c].to_string()));
        for s in spans {
            let sum = &line.spans[s.name()];
            row.push(sum.count.to_string());
            row.push(sum.mean_s.map(|m| format!("{m:.1}")).unwrap_or_default());
            row.push(sum.median_s.map(|m| m.to_string()).unwrap_or_default());
            row.push(sum.p90_s.map(|m| m.to_string()).unwrap_or_default());
        }
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A CSV field: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-` or
/// `@` is prefixed with `'` so a spreadsheet does not run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_on_the_day_the_monday_or_the_first() {
        let d = Date::constant(2026, 12, 3);
        assert_eq!(Period::Day.start(d), d);
        assert_eq!(Period::Week.start(d), Date::constant(2026, 11, 30));
        assert_eq!(Period::Month.start(d), Date::constant(2026, 12, 1));
        assert_eq!(Period::parse("year"), None);
    }

    #[test]
    fn csv_quotes_and_defuses_fields() {
        assert_eq!(csv_field("sms"), "sms");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        let line = Line {
            name: "sms".into(),
            period: "2026-12-01".into(),
            counts: [("received", 3), ("sent", 2)].into_iter().collect(),
            spans: BTreeMap::new(),
        };
        assert_eq!(
            csv(Scope::Channel, &[line]),
            "channel,period,received,sent\r\nsms,2026-12-01,3,2\r\n"
        );
    }
}
