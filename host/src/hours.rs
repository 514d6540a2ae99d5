//! Business hours: a queue's weekly opening times in its own time zone, with holidays.
//! Pure functions of an instant, so the dispatcher, the web chat and the tests ask one
//! question the same way: is the queue open now, and if not, when does it open?

use std::collections::BTreeSet;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// `[queues.hours]` as written: `timezone` (IANA), one line per open weekday
/// (`mon = "09:00-18:00"`, or several ranges `"09:00-12:00, 13:00-18:00"`; a day left out or
/// `"closed"` is closed all day) and `holidays` (`"2026-12-31"`, closed all day).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    /// The IANA time zone the times are in (`Asia/Tokyo`).
    pub timezone: String,
    /// Monday's opening times.
    #[serde(default)]
    pub mon: Option<String>,
    /// Tuesday's.
    #[serde(default)]
    pub tue: Option<String>,
    /// Wednesday's.
    #[serde(default)]
    pub wed: Option<String>,
    /// Thursday's.
    #[serde(default)]
    pub thu: Option<String>,
    /// Friday's.
    #[serde(default)]
    pub fri: Option<String>,
    /// Saturday's.
    #[serde(default)]
    pub sat: Option<String>,
    /// Sunday's.
    #[serde(default)]
    pub sun: Option<String>,
    /// Dates (`YYYY-MM-DD`, in the time zone) closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// Checked business hours, ready to be asked.
#[derive(Debug, Clone)]
pub struct Hours {
    tz: TimeZone,
    /// Open ranges per weekday (Monday first), minutes after midnight, `[start, end)`.
    week: [Vec<(u16, u16)>; 7],
    holidays: BTreeSet<Date>,
}

/// How far ahead [`Hours::next_open`] looks: a year and a week covers every weekly schedule
/// and any holiday list.
const LOOKAHEAD_DAYS: i32 = 373;

impl Hours {
    /// Checks `config`; an error names the sub-key (`mon`, `holidays[1]`, `timezone`) and why.
    pub fn parse(config: &HoursConfig) -> Result<Hours, (String, String)> {
        let tz = jiff::tz::db().get(&config.timezone).map_err(|_| {
            (
                "timezone".to_owned(),
                format!(
                    "{:?} is not an IANA time zone name (write e.g. \"Asia/Tokyo\" or \"Europe/London\")",
                    config.timezone
                ),
            )
        })?;
        let days = [
            ("mon", &config.mon),
            ("tue", &config.tue),
            ("wed", &config.wed),
            ("thu", &config.thu),
            ("fri", &config.fri),
            ("sat", &config.sat),
            ("sun", &config.sun),
        ];
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for (i, (key, value)) in days.into_iter().enumerate() {
            if let Some(value) = value {
                week[i] = parse_day(value).map_err(|reason| (key.to_owned(), reason))?;
            }
        }
        let mut holidays = BTreeSet::new();
        for (j, day) in config.holidays.iter().enumerate() {
            let date: Date = day.trim().parse().map_err(|_| {
                (
                    format!("holidays[{j}]"),
                    format!("{day:?} is not a date; write YYYY-MM-DD"),
                )
            })?;
            holidays.insert(date);
        }
        Ok(Hours { tz, week, holidays })
    }

    /// Whether the queue is open at `at_ms` (Unix milliseconds).
    pub fn is_open(&self, at_ms: u64) -> bool {
        let Some(now) = self.local(at_ms) else {
            return false;
        };
        let date = now.date();
        if self.holidays.contains(&date) {
            return false;
        }
        let minute = u16::from(now.hour() as u8) * 60 + u16::from(now.minute() as u8);
        self.ranges(date.weekday())
            .iter()
            .any(|&(start, end)| start <= minute && minute < end)
    }

    /// When the queue next opens at or after `at_ms`: `at_ms` itself while open, `None` when
    /// it never opens within a year (no open day, or every one a holiday).
    pub fn next_open(&self, at_ms: u64) -> Option<u64> {
        if self.is_open(at_ms) {
            return Some(at_ms);
        }
        let today = self.local(at_ms)?.date();
        for offset in 0..LOOKAHEAD_DAYS {
            let date = today.checked_add(jiff::Span::new().days(offset)).ok()?;
            if self.holidays.contains(&date) {
                continue;
            }
            for &(start, _) in self.ranges(date.weekday()) {
                let time = Time::new((start / 60) as i8, (start % 60) as i8, 0, 0).ok()?;
                let opens = date.to_datetime(time).to_zoned(self.tz.clone()).ok()?;
                let opens = u64::try_from(opens.timestamp().as_millisecond()).ok()?;
                if opens > at_ms {
                    return Some(opens);
                }
            }
        }
        None
    }

    fn local(&self, at_ms: u64) -> Option<jiff::Zoned> {
        let at = jiff::Timestamp::from_millisecond(i64::try_from(at_ms).ok()?).ok()?;
        Some(at.to_zoned(self.tz.clone()))
    }

    fn ranges(&self, day: Weekday) -> &[(u16, u16)] {
        &self.week[day.to_monday_zero_offset() as usize]
    }
}

/// `"09:00-18:00"`, `"09:00-12:00, 13:00-18:00"` or `"closed"`: ranges in minutes after
/// midnight, each ending after it starts (`24:00` ends at midnight), none overlapping.
fn parse_day(value: &str) -> Result<Vec<(u16, u16)>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("closed") || value.is_empty() {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    for part in value.split(',') {
        let form = || {
            format!(
                "{part:?} is not a range; write \"09:00-18:00\" (several: \"09:00-12:00, 13:00-18:00\"; none: \"closed\")"
            )
        };
        let (start, end) = part.trim().split_once('-').ok_or_else(form)?;
        let (start, end) = (
            minutes(start).ok_or_else(form)?,
            minutes(end).ok_or_else(form)?,
        );
        if end <= start {
            return Err(format!(
                "{part:?} ends before it starts; a range stays within one day (use \"24:00\" for midnight)"
            ));
        }
        ranges.push((start, end));
    }
    ranges.sort_unstable();
    if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(format!("{value:?} has overlapping ranges"));
    }
    Ok(ranges)
}

/// `HH:MM` as minutes after midnight, `00:00` to `24:00`.
fn minutes(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let total = h * 60 + m;
    (m < 60 && total <= 24 * 60).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokyo() -> Hours {
        Hours::parse(&HoursConfig {
            timezone: "Asia/Tokyo".into(),
            mon: Some("09:00-18:00".into()),
            tue: Some("09:00-12:00, 13:00-18:00".into()),
            wed: Some("09:00-18:00".into()),
            thu: Some("09:00-18:00".into()),
            fri: Some("09:00-18:00".into()),
            sat: Some("closed".into()),
            sun: None,
            holidays: vec!["2026-12-31".into()],
        })
        .unwrap()
    }

    fn at(text: &str) -> u64 {
        let t: jiff::Timestamp = text.parse().unwrap();
        t.as_millisecond() as u64
    }

    #[test]
    fn open_within_the_ranges_of_the_local_day() {
        let h = tokyo();
        // Tuesday 2026-12-01 in Tokyo (UTC+9).
        assert!(!h.is_open(at("2026-12-01T08:59:59+09:00")));
        assert!(h.is_open(at("2026-12-01T09:00:00+09:00")));
        assert!(h.is_open(at("2026-12-01T11:59:59+09:00")));
        assert!(!h.is_open(at("2026-12-01T12:30:00+09:00")), "lunch break");
        assert!(h.is_open(at("2026-12-01T13:00:00+09:00")));
        assert!(
            !h.is_open(at("2026-12-01T18:00:00+09:00")),
            "the end is exclusive"
        );
        // 2026-12-01T01:00Z is 10:00 in Tokyo: open, though it is still night in London.
        assert!(h.is_open(at("2026-12-01T01:00:00Z")));
        // Saturday and Sunday closed; the holiday (a Thursday) closed all day.
        assert!(!h.is_open(at("2026-12-05T10:00:00+09:00")));
        assert!(!h.is_open(at("2026-12-06T10:00:00+09:00")));
        assert!(!h.is_open(at("2026-12-31T10:00:00+09:00")));
        assert!(h.is_open(at("2026-12-30T10:00:00+09:00")));
    }

    #[test]
    fn next_open_skips_breaks_weekends_and_holidays() {
        let h = tokyo();
        let open = at("2026-12-01T10:00:00+09:00");
        assert_eq!(h.next_open(open), Some(open), "open now");
        assert_eq!(
            h.next_open(at("2026-12-01T12:15:00+09:00")),
            Some(at("2026-12-01T13:00:00+09:00"))
        );
        assert_eq!(
            h.next_open(at("2026-12-04T19:00:00+09:00")),
            Some(at("2026-12-07T09:00:00+09:00")),
            "Friday evening: Monday morning"
        );
        assert_eq!(
            h.next_open(at("2026-12-30T18:30:00+09:00")),
            Some(at("2027-01-01T09:00:00+09:00")),
            "the holiday is skipped"
        );
    }

    #[test]
    fn daylight_saving_time_moves_the_instant_not_the_local_hour() {
        let h = Hours::parse(&HoursConfig {
            timezone: "Europe/London".into(),
            sun: Some("09:00-17:00".into()),
            mon: Some("09:00-17:00".into()),
            ..HoursConfig::default()
        })
        .unwrap();
        // Clocks go forward on Sunday 2027-03-28: 09:00 local is 08:00Z, the day before 09:00Z.
        assert!(h.is_open(at("2027-03-28T08:00:00Z")));
        assert!(!h.is_open(at("2027-03-21T08:00:00Z")));
        assert_eq!(
            h.next_open(at("2027-03-27T12:00:00Z")),
            Some(at("2027-03-28T08:00:00Z"))
        );
    }

    #[test]
    fn bad_hours_name_the_sub_key() {
        let bad = |c: HoursConfig| Hours::parse(&c).unwrap_err();
        let base = HoursConfig {
            timezone: "Asia/Tokyo".into(),
            ..HoursConfig::default()
        };
        assert_eq!(
            bad(HoursConfig {
                timezone: "Mars/Olympus".into(),
                ..base.clone()
            })
            .0,
            "timezone"
        );
        for wrong in [
            "9-18",
            "18:00-09:00",
            "09:00-25:00",
            "09:00-12:00,11:00-13:00",
            "09:60-10:00",
        ] {
            let (key, reason) = bad(HoursConfig {
                mon: Some(wrong.into()),
                ..base.clone()
            });
            assert_eq!(key, "mon", "{wrong}: {reason}");
        }
        assert_eq!(
            bad(HoursConfig {
                holidays: vec!["2026-12-31".into(), "31/12/2026".into()],
                ..base.clone()
            })
            .0,
            "holidays[1]"
        );
        let never = Hours::parse(&base).unwrap();
        assert_eq!(never.next_open(at("2026-12-01T00:00:00Z")), None);
        assert!(
            Hours::parse(&HoursConfig {
                fri: Some("00:00-24:00".into()),
                ..base
            })
            .unwrap()
            .is_open(at("2026-12-04T23:59:00+09:00"))
        );
    }
}
