//! One event's delivery to one target (a subscription or an integration), as kept in the
//! store: pending until delivered or dead-lettered, with its attempts, its last error and when
//! it is tried next; and what an attempt came to.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet: waiting for its turn or its next attempt.
    Pending,
    /// Received (a 2xx; the integration handled it).
    Delivered,
    /// Dead-lettered: the last attempt failed, or the failure was final.
    Failed,
}

impl DeliveryState {
    /// Parses `pending`, `delivered` or `failed`.
    pub fn parse(text: &str) -> Option<DeliveryState> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// One event's delivery to one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    /// The target's name.
    pub target: String,
    /// The event's id (`evt_...`): `webhook-id`, the same on every attempt.
    pub event: String,
    /// Its place in delivery order (the log position, times 8, plus the type's index).
    pub seq: u64,
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The conversation it concerns: its deliveries go one at a time, in order.
    pub conversation: Option<u64>,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due, Unix milliseconds (pending only).
    pub next_attempt_at: Option<u64>,
    /// When it was queued, Unix milliseconds.
    pub created_at: u64,
    /// When it was delivered, Unix milliseconds.
    pub delivered_at: Option<u64>,
    /// The envelope, exactly as posted (what the signature covers).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub body: String,
}

impl Delivery {
    /// Its key in its target's space: the sequence, zero-padded so keys sort in order.
    pub fn key(&self) -> String {
        key(self.seq)
    }
}

/// The key of the delivery with sequence `seq`.
pub fn key(seq: u64) -> String {
    format!("{seq:020}")
}

/// The store space of `target`'s deliveries.
pub fn space(target: &str) -> String {
    format!("deliveries/{target}")
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Received.
    Delivered,
    /// Worth trying again (no earlier than `after`, when the target said so).
    Retry {
        /// Why it failed.
        reason: String,
        /// The least wait the target asked for.
        after: Option<Duration>,
    },
    /// Final: trying again cannot help.
    Final(String),
}

/// What a subscriber's answer `status` (with `retry_after`, seconds) comes to: 2xx received;
/// 408, 429 and 5xx retried; any other status final.
pub fn classify_status(status: u16, retry_after: Option<u64>) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 | 500..=599 => Attempt::Retry {
            reason: format!("the subscriber answered {status}"),
            after: retry_after.map(Duration::from_secs),
        },
        _ => Attempt::Final(format!(
            "the subscriber answered {status}, which a retry cannot change"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify_status(204, None), Attempt::Delivered);
        assert!(matches!(
            classify_status(429, Some(3)),
            Attempt::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(classify_status(503, None), Attempt::Retry { .. }));
        assert!(matches!(classify_status(410, None), Attempt::Final(_)));
        assert_eq!(key(7), "00000000000000000007");
    }
}
