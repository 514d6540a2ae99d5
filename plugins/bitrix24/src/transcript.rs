//! The timeline comment of a closed conversation: how it closed, then every message as
//! `[time UTC] who: text`.

use plugboard_sdk::crm::{Author, Event, Turn};
use plugboard_sdk::serde_json::Value;

use crate::config::Config;
use crate::contact::display_name;

/// The comment for `event` (a `conversation.closed`) whose `data` is `data`.
pub fn comment(event: &Event, data: &Value, config: &Config) -> String {
    let facts = &event.conversation;
    let customer = customer(event);
    let closed_by = match data.get("by").and_then(Value::as_str) {
        Some(by) => format!(" by {}", agent(by, config)),
        None => String::new(),
    };
    let mut out = format!(
        "Plugboard conversation {} with {customer} on {} (queue {}), closed{closed_by} at {}.\n",
        facts.conversation,
        facts.channel,
        facts.queue,
        utc(event.at)
    );
    let handling = data.get("handling");
    let millis = |key: &str| handling.and_then(|h| h.get(key)).and_then(Value::as_u64);
    let waited = match millis("waited_ms") {
        Some(ms) => format!("waited {} for an agent", duration(ms)),
        None => "did not wait for an agent".to_string(),
    };
    match millis("open_ms") {
        Some(ms) => out.push_str(&format!("Open {}; {waited}.\n", duration(ms))),
        None => out.push_str(&format!("It {waited}.\n")),
    }
    out.push('\n');
    if event.transcript.is_empty() {
        out.push_str("(no messages)\n");
    }
    for turn in &event.transcript {
        let text = turn.text.as_deref().unwrap_or("(no text)");
        out.push_str(&format!(
            "[{}] {}: {text}\n",
            utc(turn.at),
            who(turn, &customer, config)
        ));
    }
    out.truncate(out.trim_end().len());
    out
}

/// The customer as the comment names them: `Ann (+14155550100)`, or the address alone.
fn customer(event: &Event) -> String {
    let facts = &event.conversation;
    let name = display_name(facts);
    if name == facts.contact {
        name.to_string()
    } else {
        format!("{name} ({})", facts.contact)
    }
}

/// Who wrote `turn`.
fn who(turn: &Turn, customer: &str, config: &Config) -> String {
    match (turn.author, turn.name.as_deref()) {
        (Author::Customer, _) => customer.to_string(),
        (Author::Agent, Some(id)) => format!("Agent {}", agent(id, config)),
        (Author::Agent, None) => "Agent".to_string(),
        (Author::Bot, Some(name)) => format!("Bot {name}"),
        (Author::Bot, None) => "Bot".to_string(),
        (Author::Host, _) => "Plugboard".to_string(),
    }
}

/// An agent id with the Bitrix24 user `user_map` maps it to: `alice (Bitrix24 user 5)`.
fn agent(id: &str, config: &Config) -> String {
    match config.bitrix_user(id) {
        Some(user) => format!("{id} (Bitrix24 user {user})"),
        None => id.to_string(),
    }
}

/// `ms` milliseconds as `1 h 2 min 3 s` (whole seconds; leading zero units left out).
fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min {s} s"),
    }
}

/// Unix seconds as `2026-12-02 06:00:00 UTC`.
fn utc(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_191_200), "2026-12-02 06:00:00 UTC");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(duration(850), "0 s");
        assert_eq!(duration(5_678), "5 s");
        assert_eq!(duration(65_000), "1 min 5 s");
        assert_eq!(duration(3_723_000), "1 h 2 min 3 s");
    }
}
