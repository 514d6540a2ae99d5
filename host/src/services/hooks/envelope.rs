//! What subscribers and integrations are told: which logged events they hear, under which
//! type (`conversation.closed`), and the JSON envelope of each, `{"id", "type", "timestamp",
//! "data"}`, whose `data` carries the conversation (its id follows the contact through every
//! later event), the channel, queue and contact, and the type's own details.

use serde_json::{Value, json};

use crate::model::{Conversation, Message, StoredEvent};

/// The types one logged event (`kind` with `data`) is told as, in order; empty when outside
/// ears hear nothing of it.
pub fn crm_types(kind: &str, data: &Value) -> &'static [&'static str] {
    let started = data.get("how").and_then(Value::as_str) == Some("started");
    match kind {
        "created" => &["conversation.created"],
        "offered" => &["conversation.offered"],
        "offer_withdrawn" => &["conversation.offer_withdrawn"],
        "assigned" if started => &["conversation.created", "conversation.assigned"],
        "assigned" => &["conversation.assigned"],
        "transferred" => &["conversation.transferred"],
        "closed" => &["conversation.closed"],
        "reopened" => &["conversation.reopened"],
        "message" => &["message.received"],
        "unknown_contact" => &["contact.unknown"],
        "opted_out" => &["contact.opted_out"],
        "opted_in" => &["contact.opted_in"],
        "status" if settled_as_sent(data) => &["message.sent"],
        "status" | "send_failed" | "dead_lettered" => &["message.status"],
        _ => &[],
    }
}

/// The first of [`crm_types`], if any: whether the event is logged for outside ears.
pub fn crm_type(kind: &str, data: &Value) -> Option<&'static str> {
    crm_types(kind, data).first().copied()
}

/// Whether a `status` event is the outbox's "the provider took it".
fn settled_as_sent(data: &Value) -> bool {
    data.get("settled").and_then(Value::as_bool) == Some(true)
        && data.get("status").and_then(Value::as_str) != Some("failed")
}

/// An event as told outside: its id, type, time and `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `evt_<log position>`, or `evt_<log position>_<n>` for the n-th type of one logged event.
    pub id: String,
    /// Its type.
    pub kind: &'static str,
    /// When it happened, Unix milliseconds.
    pub at: u64,
    /// The conversation's id, if it concerns one.
    pub conversation: Option<u64>,
    /// The channel and queue, for filters.
    pub channel: Option<String>,
    /// The queue, for filters.
    pub queue: Option<String>,
    /// The `data` object.
    pub data: Value,
}

impl Envelope {
    /// The body posted: `{"id", "type", "timestamp", "data"}`, compact.
    pub fn body(&self) -> Vec<u8> {
        let doc = json!({
            "id": self.id,
            "type": self.kind,
            "timestamp": rfc3339(self.at),
            "data": self.data,
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

/// `ms` (Unix milliseconds) in RFC 3339, UTC.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The envelopes of `event`, given its conversation as it stands now and the message it names
/// (for `message.*` types), if found.
pub fn envelopes(
    event: &StoredEvent,
    conversation: Option<&Conversation>,
    message: Option<&Message>,
) -> Vec<Envelope> {
    let types = crm_types(&event.kind, &event.data);
    types
        .iter()
        .enumerate()
        .map(|(n, kind)| Envelope {
            id: if n == 0 {
                format!("evt_{}", event.id)
            } else {
                format!("evt_{}_{n}", event.id)
            },
            kind,
            at: event.at,
            conversation: conversation.map(|c| c.id),
            channel: conversation
                .map(|c| c.channel.clone())
                .or_else(|| str_field(&event.data, "channel")),
            queue: conversation.map(|c| c.queue.clone()),
            data: data(kind, event, conversation, message),
        })
        .collect()
}

fn str_field(data: &Value, name: &str) -> Option<String> {
    data.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// The conversation as the envelope shows it.
pub fn conversation_json(c: &Conversation) -> Value {
    json!({
        "id": c.id.to_string(),
        "channel": c.channel,
        "queue": c.queue,
        "state": c.state,
        "owner": c.owner.as_ref().filter(|_| c.state == crate::model::ConversationState::Assigned),
        "contact": {"address": c.customer, "name": c.contact_name},
    })
}

fn data(
    kind: &str,
    event: &StoredEvent,
    conversation: Option<&Conversation>,
    message: Option<&Message>,
) -> Value {
    let d = &event.data;
    let field = |name: &str| d.get(name).cloned().unwrap_or(Value::Null);
    let mut out = match kind {
        "conversation.offered" => json!({"agents": event.audience}),
        "conversation.offer_withdrawn" => {
            let mut v = json!({"agents": event.audience, "reason": field("reason")});
            if let Some(owner) = d.get("owner") {
                v["owner"] = owner.clone();
            }
            v
        }
        "conversation.assigned" => json!({"agent": field("owner"), "how": field("how")}),
        "conversation.transferred" => json!({
            "from_agent": field("from"),
            "to_agent": field("to"),
            "to_queue": d.get("queue").cloned().or_else(|| conversation.map(|c| json!(c.queue))),
            "by": field("by"),
        }),
        "conversation.closed" => {
            let handling = conversation.map(|c| {
                json!({
                    "waited_ms": c.first_reply_at.map(|r| r.saturating_sub(c.queued_since)),
                    "open_ms": event.at.saturating_sub(c.queued_since),
                })
            });
            json!({"by": field("by"), "handling": handling, "rating": conversation.and_then(|c| c.rating)})
        }
        "conversation.reopened" => json!({"by": field("by")}),
        "message.received" => json!({"message": {
            "seq": field("seq"),
            "text": message.map(|m| json!(m.text)).unwrap_or_else(|| field("text")),
            "at": rfc3339(message.map(|m| m.created_at).unwrap_or(event.at)),
        }}),
        "message.sent" => json!({"message": {
            "seq": field("seq"),
            "text": message.map(|m| json!(m.text)).unwrap_or(Value::Null),
            "author": message.and_then(|m| m.author.clone()),
            "provider_id": message.and_then(|m| m.provider_id.clone()),
        }}),
        "message.status" => json!({"message": {
            "seq": field("seq"),
            "status": field("status"),
            "error": field("error"),
        }}),
        "contact.opted_out" | "contact.opted_in" => {
            json!({"channel": field("channel"), "address": field("address")})
        }
        _ => json!({}),
    };
    out["conversation"] = conversation.map(conversation_json).unwrap_or(Value::Null);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: Value) -> StoredEvent {
        StoredEvent {
            id: 42,
            kind: kind.into(),
            audience: vec!["alice".into()],
            conversation: Some("7".into()),
            data,
            at: 1_764_655_200_000,
        }
    }

    #[test]
    fn each_logged_kind_is_told_as_its_type() {
        assert_eq!(crm_types("message", &json!({})), ["message.received"]);
        assert_eq!(
            crm_types("assigned", &json!({"how": "started"})),
            ["conversation.created", "conversation.assigned"]
        );
        assert_eq!(
            crm_types("status", &json!({"status": "queued", "settled": true})),
            ["message.sent"]
        );
        assert_eq!(
            crm_types("status", &json!({"status": "failed", "settled": true})),
            ["message.status"]
        );
        assert_eq!(
            crm_types("status", &json!({"status": "delivered"})),
            ["message.status"]
        );
        assert!(crm_types("presence", &json!({})).is_empty());
        assert!(crm_types("note", &json!({})).is_empty());
        for kind in [
            "created",
            "offered",
            "offer_withdrawn",
            "assigned",
            "transferred",
            "closed",
            "reopened",
            "message",
            "unknown_contact",
            "opted_out",
            "opted_in",
            "status",
        ] {
            for t in crm_types(kind, &json!({"settled": true})) {
                assert!(crate::model::EVENT_TYPES.contains(t), "{t}");
            }
        }
    }

    #[test]
    fn the_envelope_carries_the_conversation_and_a_unique_id_per_type() {
        let mut c = Conversation::new(7, "sms", "+14155550100", "support", 1_000);
        c.contact_name = Some("Ann".into());
        let started = event("assigned", json!({"owner": "alice", "how": "started"}));
        let list = envelopes(&started, Some(&c), None);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, "evt_42");
        assert_eq!(list[1].id, "evt_42_1");
        let body: Value = serde_json::from_slice(&list[1].body()).unwrap();
        assert_eq!(body["type"], "conversation.assigned");
        assert_eq!(body["timestamp"], "2025-12-02T06:00:00Z");
        assert_eq!(body["data"]["agent"], "alice");
        assert_eq!(body["data"]["conversation"]["id"], "7");
        assert_eq!(body["data"]["conversation"]["contact"]["name"], "Ann");
        assert_eq!(body["data"]["conversation"]["queue"], "support");
    }
}
