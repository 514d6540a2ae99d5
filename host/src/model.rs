//! The domain model: conversations and their states and transitions, messages and their
//! delivery states, agents' records, contacts, visitors, the outbox's entries, and the
//! normalized events a webhook brings. Storage backends store these; nothing here knows how.

use serde::{Deserialize, Serialize};

/// Every type of event the host tells subscribers and integrations of (see the README's
/// "Events"): each carries its own id and the conversation's.
pub const EVENT_TYPES: &[&str] = &[
    "conversation.created",
    "conversation.offered",
    "conversation.offer_withdrawn",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.closed",
    "conversation.reopened",
    "message.received",
    "message.sent",
    "message.status",
    "contact.unknown",
    "contact.opted_out",
    "contact.opted_in",
];

/// Where a conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    /// Waiting in its queue, visible to the queue's agents.
    Queued,
    /// Owned by one agent.
    Assigned,
    /// Resolved and archived.
    Closed,
    /// Held by a bot (`Conversation::bot`): it answers the customer and is not offered to
    /// agents until it hands the conversation to its queue.
    Bot,
}

/// A conversation: one customer address on one channel instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    /// The id.
    pub id: u64,
    /// The channel instance.
    pub channel: String,
    /// The customer's address on that channel.
    pub customer: String,
    /// The queue it belongs to.
    pub queue: String,
    /// Where it stands.
    pub state: ConversationState,
    /// The agent who owns it, if assigned.
    pub owner: Option<String>,
    /// The customer's display name from the provider, if any.
    pub contact_name: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: u64,
    /// Last change, Unix milliseconds.
    pub updated_at: u64,
    /// The last inbound message's time, Unix milliseconds.
    pub last_inbound_at: Option<u64>,
    /// Provider facts from the latest inbound message, passed back on send.
    pub thread: Vec<(String, String)>,
    /// Agents the router offered it to most recently.
    pub offered_to: Vec<String>,
    /// The sequence number of its latest message.
    pub last_seq: u64,
    /// Agents whose offer for the current wait lapsed, oldest first.
    #[serde(default)]
    pub tried: Vec<String>,
    /// When the current offer lapses, Unix milliseconds.
    #[serde(default)]
    pub offer_expires_at: Option<u64>,
    /// When it last entered its queue (creation, reopening, overflow), Unix milliseconds.
    #[serde(default)]
    pub queued_since: u64,
    /// Whether the queue's offline message was sent for this conversation.
    #[serde(default)]
    pub offline_notified: bool,
    /// Whether the queue's closed message (outside business hours) was sent for this wait.
    #[serde(default)]
    pub closed_notified: bool,
    /// When an agent first replied since it last entered its queue, Unix milliseconds (the
    /// statistics' first response; none at close: abandoned).
    #[serde(default)]
    pub first_reply_at: Option<u64>,
    /// The automated messages already sent for it (`greeting`, `take_message`,
    /// `closing_message`): each goes out once per conversation.
    #[serde(default)]
    pub automated: Vec<String>,
    /// Higher is offered first; equal priorities go longest-waiting first (set by work
    /// classification when it is created or reopened).
    #[serde(default)]
    pub priority: i32,
    /// Until when (Unix milliseconds) an answer to the survey sent at close is its rating.
    #[serde(default)]
    pub survey_until: Option<u64>,
    /// The customer's rating, 1 to 5, from their answer to the survey.
    #[serde(default)]
    pub rating: Option<u8>,
    /// Every agent who has owned it, for the archived view.
    #[serde(default)]
    pub handled_by: Vec<String>,
    /// Skills an agent needs to be offered it.
    #[serde(default)]
    pub skills: Vec<String>,
    /// The configured bot holding it (state `bot`), or that held it last.
    #[serde(default)]
    pub bot: Option<String>,
    /// What the bot kept about it after its last turn (see the contract's `bot-turn.memory`).
    #[serde(default)]
    pub bot_memory: Vec<(String, String)>,
}

impl Conversation {
    /// A new conversation with `customer` on `channel`, closed until it is queued or assigned.
    pub fn new(id: u64, channel: &str, customer: &str, queue: &str, now: u64) -> Conversation {
        Conversation {
            id,
            channel: channel.to_owned(),
            customer: customer.to_owned(),
            queue: queue.to_owned(),
            state: ConversationState::Closed,
            owner: None,
            contact_name: None,
            created_at: now,
            updated_at: now,
            last_inbound_at: None,
            thread: Vec::new(),
            offered_to: Vec::new(),
            last_seq: 0,
            tried: Vec::new(),
            offer_expires_at: None,
            queued_since: now,
            offline_notified: false,
            closed_notified: false,
            first_reply_at: None,
            automated: Vec::new(),
            priority: 0,
            survey_until: None,
            rating: None,
            handled_by: Vec::new(),
            skills: Vec::new(),
            bot: None,
            bot_memory: Vec::new(),
        }
    }

    /// Gives it to the configured bot `bot`, from its queue (it waits there for the bot's
    /// hand-off); the bot starts with no memory.
    pub fn hold_for_bot(&mut self, bot: &str) {
        self.state = ConversationState::Bot;
        self.bot = Some(bot.to_owned());
        self.bot_memory.clear();
    }

    /// Resolved by the bot holding it, at `now`: closed, with no agent among those who
    /// handled it. Returns whether it changed.
    pub fn resolve_by_bot(&mut self, now: u64) -> bool {
        if self.state != ConversationState::Bot {
            return false;
        }
        self.state = ConversationState::Closed;
        self.offered_to.clear();
        self.offer_expires_at = None;
        self.tried.clear();
        self.updated_at = now;
        true
    }

    /// Whether the configured bot `bot` holds it.
    pub fn is_held_by(&self, bot: &str) -> bool {
        self.state == ConversationState::Bot && self.bot.as_deref() == Some(bot)
    }

    /// Makes `agent` the owner, assigned, with no offer outstanding.
    pub fn assign(&mut self, agent: &str) {
        self.state = ConversationState::Assigned;
        self.owner = Some(agent.to_owned());
        self.offered_to.clear();
        self.tried.clear();
        self.offer_expires_at = None;
        if !self.handled_by.iter().any(|a| a == agent) {
            self.handled_by.push(agent.to_owned());
        }
    }

    /// Resolves it, closed `by` an agent at `now`: no offer outstanding, `by` among those who
    /// handled it (the archived view). The owner stays recorded as the last to hold it. Returns
    /// whether it changed (closing a closed conversation does nothing).
    pub fn close(&mut self, by: &str, now: u64) -> bool {
        if self.state == ConversationState::Closed {
            return false;
        }
        self.state = ConversationState::Closed;
        self.offered_to.clear();
        self.offer_expires_at = None;
        self.tried.clear();
        if !self.handled_by.iter().any(|a| a == by) {
            self.handled_by.push(by.to_owned());
        }
        self.updated_at = now;
        true
    }

    /// Hands it to `agent` at `now`, whoever held it; returns the previous owner.
    pub fn transfer(&mut self, agent: &str, now: u64) -> Option<String> {
        let previous = self.owner.clone();
        self.assign(agent);
        self.updated_at = now;
        previous
    }

    /// Puts it back in `queue`, unowned, waiting from `now`.
    pub fn enqueue(&mut self, queue: &str, now: u64) {
        self.state = ConversationState::Queued;
        self.queue = queue.to_owned();
        self.owner = None;
        self.offered_to.clear();
        self.tried.clear();
        self.offer_expires_at = None;
        self.queued_since = now;
        self.offline_notified = false;
        self.closed_notified = false;
        self.first_reply_at = None;
    }
}

/// Where a channel's new conversations go.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationTarget {
    /// Into a queue, with the skills the channel asks for.
    Queue {
        /// The queue.
        queue: String,
        /// Wanted skills.
        skills: Vec<String>,
        /// Higher is offered first (work classification; 0 by default).
        priority: i32,
        /// The configured bot that answers first (the channel's, else the queue's).
        bot: Option<String>,
    },
    /// Straight to one agent.
    Agent(String),
}

/// Why a conversation change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No such conversation.
    NotFound,
    /// It conflicts with the conversation's state (owned by someone else, closed).
    Conflict(String),
    /// The caller may not do this.
    Forbidden(String),
}

/// An agent's routing facts that outlive a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentRecord {
    /// `online`, `away` or `offline`.
    pub presence: String,
    /// Since when the agent has had nothing to do, Unix milliseconds.
    pub idle_since: Option<u64>,
    /// The last offer made to the agent, Unix milliseconds.
    pub last_offered: Option<u64>,
    /// The last conversation assigned to the agent, Unix milliseconds.
    pub last_assigned: Option<u64>,
    /// Offers let lapse in a row.
    pub missed_offers: u32,
}

/// An agent's signed-in console session: the cookie holds its token, the store its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSession {
    /// The agent signed in.
    pub agent: String,
    /// The value a state-changing request must carry in `X-CSRF-Token`.
    pub csrf: String,
    /// The SHA-256 (hex) of the agent's API token it was begun with: a changed token ends
    /// every session begun with the old one.
    #[serde(default)]
    pub credential: String,
    /// When it began, Unix milliseconds.
    pub created_at: u64,
    /// When it ends unless signed out before, Unix milliseconds.
    pub expires_at: u64,
}

/// A contact directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The customer's address.
    pub address: String,
    /// The name agents see.
    pub name: String,
}

/// A web chat visitor's session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Visitor {
    /// The visitor's id (their address is `webchat:{id}`).
    pub id: String,
    /// The web chat channel.
    pub channel: String,
    /// When the session started, Unix milliseconds.
    pub created_at: u64,
    /// When the session was last used, Unix milliseconds (0: not since it started); idle
    /// sessions expire.
    #[serde(default)]
    pub last_seen: u64,
}

/// One entry of the event log agents stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Its position in the log (the SSE id).
    pub id: u64,
    /// What happened: `offered`, `offer_withdrawn`, `message`, `assigned`, ...
    pub kind: String,
    /// The agents it concerns.
    pub audience: Vec<String>,
    /// The conversation, if any.
    pub conversation: Option<String>,
    /// Details.
    pub data: serde_json::Value,
    /// When, Unix milliseconds.
    pub at: u64,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// From an agent.
    Outbound,
    /// An internal note: agents see it; nothing sends it.
    Note,
}

/// A message's delivery status. Outbound messages move `pending` -> `queued`/`sent` ->
/// `delivered` -> `read`, or to `failed`; they never move backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// An inbound message, stored.
    Received,
    /// Waiting in the outbox.
    Pending,
    /// Accepted by the provider.
    Queued,
    /// Sent on by the provider.
    Sent,
    /// Delivered to the customer's device.
    Delivered,
    /// Read by the customer.
    Read,
    /// Will not be delivered.
    Failed,
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Where it can be fetched.
    pub url: String,
    /// MIME type, when known.
    pub content_type: Option<String>,
}

/// One message of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// The conversation.
    pub conversation: u64,
    /// Its position in the conversation, from 1.
    pub seq: u64,
    /// Which way it went.
    pub direction: Direction,
    /// The provider's message id, once known.
    pub provider_id: Option<String>,
    /// The text.
    pub text: Option<String>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// The agent who wrote it (outbound).
    pub author: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: u64,
    /// Delivery status.
    pub status: MessageStatus,
    /// The provider's error or the host's reason, when failed.
    pub error: Option<String>,
    /// A note for agents from the host (e.g. an attachment dropped by channel policy).
    #[serde(default)]
    pub note: Option<String>,
    /// The approved template this message sends, if any.
    #[serde(default)]
    pub template: Option<TemplateSend>,
    /// Which automated message this is (`greeting`, `offline_message`, ...), when the host
    /// sent it by itself.
    #[serde(default)]
    pub automated: Option<String>,
    /// Where an outbound send moved when its channel's provider could not take it (the
    /// channel's `fallback`); none while it goes out the conversation's own channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

/// A send moved to a fallback channel, once: from where, to where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    /// The conversation's channel, whose provider could not take it.
    pub from: String,
    /// The fallback channel that sends it from then on.
    pub to: String,
    /// Why it moved: the last failure on `from`.
    pub reason: String,
    /// When it moved, Unix milliseconds.
    pub at: u64,
}

/// An approved template chosen for an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSend {
    /// The template's name.
    pub name: String,
    /// The provider's content id (Twilio `ContentSid`).
    pub content_sid: String,
    /// Variable values as a JSON object string (Twilio `ContentVariables`).
    pub variables: String,
}

/// What an agent (or the host) sends.
#[derive(Debug, Clone, Default)]
pub struct OutboundDraft {
    /// Text.
    pub text: Option<String>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// An approved template instead of free text.
    pub template: Option<TemplateSend>,
    /// Which automated message it is, when the host sends it by itself.
    pub automated: Option<String>,
}

impl Message {
    /// The channel this send goes out through: its fallback once it moved there, else
    /// `channel` (the conversation's).
    pub fn send_channel<'a>(&'a self, channel: &'a str) -> &'a str {
        self.failover.as_ref().map_or(channel, |f| f.to.as_str())
    }

    /// The API id of this message: `{conversation}-{seq}`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.conversation, self.seq)
    }
}

/// An opt-out or opt-in as stored: whose, and the provider's id of what carried it.
#[derive(Debug, Clone)]
pub struct OptChange {
    /// The customer's address.
    pub address: String,
    /// The provider's id of the event or message that carried the change, if any: each is
    /// applied once per channel.
    pub provider_id: Option<String>,
}

/// A normalized inbound event, ready to store.
#[derive(Debug, Clone)]
pub enum InboundEvent {
    /// A customer's message.
    Message {
        /// The provider's message id (idempotency key).
        provider_id: String,
        /// The customer's address.
        from: String,
        /// Text.
        text: Option<String>,
        /// Attachments.
        attachments: Vec<Attachment>,
        /// Display name, if sent.
        contact_name: Option<String>,
        /// Provider facts for replies.
        thread: Vec<(String, String)>,
        /// A note for agents from the host.
        note: Option<String>,
    },
    /// A delivery-status callback.
    Status {
        /// The provider's id of the sent message.
        provider_id: String,
        /// The new status.
        status: MessageStatus,
        /// Error description when failed.
        error: Option<String>,
    },
    /// The customer opted out on this channel.
    OptOut(OptChange),
    /// The customer opted back in.
    OptIn(OptChange),
}

/// What storing one webhook's events did.
#[derive(Debug, Default, Clone)]
pub struct IngestReport {
    /// Messages stored.
    pub stored: usize,
    /// Messages already stored earlier (provider retries).
    pub duplicates: usize,
    /// Status updates applied.
    pub statuses: usize,
    /// Status callbacks ignored (unknown message, or would move backwards).
    pub statuses_ignored: usize,
    /// Conversations created or reopened that now wait in their queue.
    pub to_route: Vec<u64>,
    /// Conversations a bot holds that got a customer message: the bot's turn.
    pub to_bot: Vec<u64>,
    /// Conversations created by this call.
    pub created: Vec<u64>,
    /// Messages stored, with what agents are told about them.
    pub messages: Vec<StoredInbound>,
    /// The events logged with them, in log order.
    pub events: Vec<StoredEvent>,
    /// The delivery statuses applied, in order.
    pub status_changes: Vec<StatusChange>,
    /// The opt-outs (`true`) and opt-ins applied, by customer address, in order.
    pub opt_changes: Vec<(String, bool)>,
}

/// A delivery status applied to a stored outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The conversation.
    pub conversation: u64,
    /// The message's sequence number.
    pub seq: u64,
    /// Its new status.
    pub status: MessageStatus,
    /// The provider's error, when failed.
    pub error: Option<String>,
}

/// One stored inbound message and the conversation facts its announcement needs (so the
/// announcement reads nothing back from storage).
#[derive(Debug, Clone)]
pub struct StoredInbound {
    /// The conversation.
    pub conversation: u64,
    /// The message's sequence number in it.
    pub seq: u64,
    /// The customer's address.
    pub customer: String,
    /// The customer's display name, if known.
    pub contact_name: Option<String>,
    /// The message text.
    pub text: Option<String>,
    /// The agent who owns the conversation, if it is assigned.
    pub owner: Option<String>,
    /// The conversation's queue.
    pub queue: String,
    /// Whether a bot holds the conversation (its queue's agents are not told; managers are).
    pub held_by_bot: bool,
    /// Whether this message created its conversation.
    pub created: bool,
    /// Whether this message reopened its closed conversation.
    pub reopened: bool,
}

/// A pending outbound send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The conversation.
    pub conversation: u64,
    /// The message's sequence number.
    pub seq: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, Unix milliseconds (0: at once). Durable, so a restart
    /// resumes the backoff where it stood instead of retrying at once.
    #[serde(default)]
    pub next_at: u64,
}

/// Whether `next` may replace `current` (status never moves backwards; `failed` is final).
pub fn status_advances(current: MessageStatus, next: MessageStatus) -> bool {
    current != MessageStatus::Failed && next > current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigning_takes_ownership_clears_offers_and_remembers_the_handler_once() {
        let mut c = Conversation::new(1, "sms", "+1", "support", 10);
        c.offered_to = vec!["alice".into(), "carol".into()];
        c.tried = vec!["bob".into()];
        c.offer_expires_at = Some(20);
        c.assign("alice");
        c.assign("alice");
        assert_eq!(c.state, ConversationState::Assigned);
        assert_eq!(c.owner.as_deref(), Some("alice"));
        assert!(c.offered_to.is_empty() && c.tried.is_empty());
        assert_eq!(c.offer_expires_at, None);
        assert_eq!(c.handled_by, ["alice"]);
    }

    #[test]
    fn enqueueing_gives_it_back_to_the_queue_and_keeps_the_handlers() {
        let mut c = Conversation::new(1, "sms", "+1", "support", 10);
        c.assign("alice");
        c.offline_notified = true;
        c.enqueue("sales", 30);
        assert_eq!(c.state, ConversationState::Queued);
        assert_eq!(c.queue, "sales");
        assert_eq!(c.owner, None);
        assert_eq!(c.queued_since, 30);
        assert!(!c.offline_notified);
        assert_eq!(
            c.handled_by,
            ["alice"],
            "the archive still knows who handled it"
        );
    }

    #[test]
    fn delivery_states_only_move_forward_and_failed_is_final() {
        use MessageStatus::*;
        assert!(status_advances(Queued, Sent));
        assert!(status_advances(Sent, Delivered));
        assert!(!status_advances(Delivered, Sent));
        assert!(!status_advances(Sent, Sent));
        assert!(!status_advances(Failed, Delivered));
    }

    fn queued() -> Conversation {
        let mut c = Conversation::new(1, "sms", "+1", "support", 10);
        c.enqueue("support", 10);
        c.offered_to = vec!["ana".into()];
        c.offer_expires_at = Some(99);
        c
    }

    #[test]
    fn assign_takes_the_offer_away_and_records_the_handler_once() {
        let mut c = queued();
        c.assign("ben");
        c.assign("ben");
        assert_eq!(c.state, ConversationState::Assigned);
        assert_eq!(c.owner.as_deref(), Some("ben"));
        assert!(c.offered_to.is_empty() && c.offer_expires_at.is_none());
        assert_eq!(c.handled_by, ["ben"]);
    }

    #[test]
    fn close_archives_for_the_closer_once_and_moves_the_update_time() {
        let mut c = queued();
        c.assign("ben");
        assert!(c.close("ana", 50));
        assert_eq!(c.state, ConversationState::Closed);
        assert_eq!(c.handled_by, ["ben", "ana"]);
        assert_eq!(c.updated_at, 50);
        assert!(c.offered_to.is_empty());
        assert!(!c.close("ana", 60), "closing twice changes nothing");
        assert_eq!(c.updated_at, 50);
    }

    #[test]
    fn enqueue_reopens_unowned_with_history_and_a_fresh_wait() {
        let mut c = queued();
        c.assign("ben");
        c.close("ben", 20);
        c.offline_notified = true;
        c.enqueue("sales", 30);
        assert_eq!(c.state, ConversationState::Queued);
        assert_eq!((c.queue.as_str(), c.owner.as_ref()), ("sales", None));
        assert_eq!(c.queued_since, 30);
        assert!(!c.offline_notified);
        assert_eq!(c.handled_by, ["ben"], "who handled it stays");
    }

    #[test]
    fn transfer_names_the_previous_owner() {
        let mut c = queued();
        c.assign("ben");
        assert_eq!(c.transfer("ana", 40).as_deref(), Some("ben"));
        assert_eq!(c.owner.as_deref(), Some("ana"));
        assert_eq!(c.updated_at, 40);
        assert_eq!(c.handled_by, ["ben", "ana"]);
    }
}
