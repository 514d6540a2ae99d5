//! The audit trail: one log line (target `plugboard::audit`) for every agent action (take,
//! transfer, close, reopen, reply, note, start, presence) and every admin action, saying who
//! did what to which conversation. It goes wherever the log goes (`server.log_format = "json"`
//! makes each line one object with `who`, `action`, `conversation` and `detail` fields).

/// Records that `who` (an agent id, or `admin`) did `action` (`take`, `channel.disable`, ...)
/// to `conversation`, with `detail` (a target, a new state; never message text).
pub fn record(who: &str, action: &str, conversation: Option<u64>, detail: &str) {
    tracing::info!(
        target: "plugboard::audit",
        who,
        action,
        conversation,
        detail,
        "audit"
    );
}
