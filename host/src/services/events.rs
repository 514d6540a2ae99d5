//! What agents are told: every event is appended to a durable log (so a reconnecting client
//! resumes from `Last-Event-ID` without loss) and broadcast to live streams. Customers who
//! wait on their own conversation (web chat long-polls) are woken through
//! [`EventHub::conversation_changed`] instead of re-reading storage.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, broadcast};

use crate::clock::Clock;
use crate::config::Config;
use crate::model::{Conversation, ConversationState, Message, StoredEvent, StoredInbound};
use crate::services::agents::access::{self, Standing};
use crate::store::{IntakeNotices, NewEvent, Store};

/// How many events a slow live stream may fall behind before it re-reads the log.
const LIVE_BUFFER: usize = 4096;

/// How often a host that shares its store with other hosts reads the log for their events.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The most events one read of the log takes while following it.
const FOLLOW_CHUNK: usize = 512;

/// The most ids of its own events a host remembers for the follower to skip.
const OWN_LIMIT: usize = 65_536;

/// The event log and its live fan-out. Live streams may get two events out of log order (two
/// appends racing, or another host's event); a stream that sees a gap reads the log, so none
/// is missed.
pub struct EventHub {
    storage: Arc<dyn Store>,
    live: broadcast::Sender<Arc<StoredEvent>>,
    /// The events other hosts logged, in log order: fed by following the log when the store
    /// is shared (see [`EventHub::subscribe_remote`]).
    remote: broadcast::Sender<Arc<StoredEvent>>,
    /// Ids of events this host logged that the follower has not passed yet (a shared store
    /// only): the follower skips them, they were pushed to live streams already.
    own: Arc<Mutex<HashSet<u64>>>,
    /// What intake logs about each stored message.
    notices: arc_swap::ArcSwap<MessageNotices>,
    /// Wake-ups for those waiting on one conversation, by (channel, customer address).
    watchers: Arc<Watchers>,
    /// Whether subscribers or integrations hear events: then events no agent is told of are
    /// logged too, for them.
    outside: std::sync::atomic::AtomicBool,
}

/// Wake-up signals by (channel, customer address), held weakly: the watches own them.
type Watchers = Mutex<HashMap<(String, String), Weak<Notify>>>;

/// Interest in one conversation's new messages; dropping it stops the interest.
pub struct ConversationWatch {
    notify: Arc<Notify>,
    key: (String, String),
    watchers: Arc<Watchers>,
}

impl ConversationWatch {
    /// The wake-up signal: create the `notified()` future before checking storage, then await
    /// it, and no message stored in between is missed.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for ConversationWatch {
    fn drop(&mut self) {
        let mut watchers = self.watchers.lock().expect("conversation watchers lock");
        // Others upgrade only under this lock: a count of 1 means this is the last watch.
        if Arc::strong_count(&self.notify) == 1 {
            watchers.remove(&self.key);
        }
    }
}

impl EventHub {
    /// A hub over `storage`'s event log, for the agents of `config`. When other hosts share
    /// the store, a task follows the log and pushes their events to this host's live streams
    /// too (must then be called inside a tokio runtime).
    pub fn new(storage: Arc<dyn Store>, config: &Config) -> EventHub {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (remote, _) = broadcast::channel(LIVE_BUFFER);
        let own = Arc::new(Mutex::new(HashSet::new()));
        if storage.is_shared() {
            let follower = Follower {
                live: live.downgrade(),
                remote: remote.downgrade(),
                own: own.clone(),
            };
            tokio::spawn(follow(storage.clone(), follower));
        }
        EventHub {
            storage,
            live,
            remote,
            own,
            notices: arc_swap::ArcSwap::from_pointee(MessageNotices::new(config)),
            watchers: Arc::default(),
            outside: config.has_event_targets().into(),
        }
    }

    /// Registers interest in new messages of the conversation of `customer` on `channel`
    /// (which need not exist yet).
    pub fn watch_conversation(&self, channel: &str, customer: &str) -> ConversationWatch {
        let key = (channel.to_owned(), customer.to_owned());
        let mut watchers = self.watchers.lock().expect("conversation watchers lock");
        let notify = match watchers.get(&key).and_then(Weak::upgrade) {
            Some(n) => n,
            None => {
                let n = Arc::new(Notify::new());
                watchers.insert(key.clone(), Arc::downgrade(&n));
                n
            }
        };
        ConversationWatch {
            notify,
            key,
            watchers: self.watchers.clone(),
        }
    }

    /// Wakes everyone watching the conversation of `customer` on `channel`: call after a
    /// message of it is stored.
    pub fn conversation_changed(&self, channel: &str, customer: &str) {
        // Under the lock, so a watch dropped meanwhile still sees itself as the last one.
        let watchers = self.watchers.lock().expect("conversation watchers lock");
        if let Some(n) = watchers
            .get(&(channel.to_owned(), customer.to_owned()))
            .and_then(Weak::upgrade)
        {
            n.notify_waiters();
        }
    }

    /// The event to log for `audience`, or none when nobody would hear it (no agent, and no
    /// integration that takes this kind): for a store write that logs it alongside
    /// ([`crate::store::Store::add_outbound_with`]), then [`EventHub::broadcast`].
    pub fn notice(
        &self,
        kind: &str,
        audience: Vec<String>,
        conversation: Option<u64>,
        data: serde_json::Value,
    ) -> Option<NewEvent> {
        let outside = self.outside.load(std::sync::atomic::Ordering::Relaxed)
            && crate::services::hooks::envelope::crm_type(kind, &data).is_some();
        (!audience.is_empty() || outside).then(|| NewEvent {
            kind: kind.to_owned(),
            audience,
            conversation,
            data,
        })
    }

    /// Records an event for `audience` and pushes it to live streams.
    pub async fn publish(
        &self,
        kind: &str,
        audience: Vec<String>,
        conversation: Option<u64>,
        data: serde_json::Value,
    ) {
        if let Some(event) = self.notice(kind, audience, conversation, data) {
            self.record(event).await;
        }
    }

    /// What tells the readers of conversation `conv` (and `also`, its author) that `message`
    /// was queued to go out: an agent's reply, or the host's own on an integration's or an
    /// automation's behalf.
    pub fn outbound_notice(
        &self,
        config: &Config,
        also: Option<&str>,
        conv: &Conversation,
        message: &Message,
    ) -> Option<NewEvent> {
        self.notice(
            "outbound",
            audience(config, conv, also),
            Some(conv.id),
            serde_json::json!({
                "seq": message.seq,
                "id": message.id(),
                "author": message.author,
                "automated": message.automated,
                "text": message.text,
                "status": message.status,
            }),
        )
    }

    /// Records `event` (from [`EventHub::notice`]) and pushes it to live streams.
    pub async fn record(&self, event: NewEvent) {
        self.record_all(vec![event]).await;
    }

    /// Records `events` in one write, in their order, and pushes them to live streams.
    pub async fn record_all(&self, events: Vec<NewEvent>) {
        let Some(kind) = events.first().map(|e| e.kind.clone()) else {
            return;
        };
        match self
            .storage
            .append_events(events, Clock::System.now_millis())
            .await
        {
            Ok(logged) => self.broadcast(logged),
            Err(e) => tracing::error!(event = %kind, "events not recorded: {e}"),
        }
    }

    /// Tells `agents` an offer of `conversation` is gone (`reason`, and `owner` when someone
    /// took it), so their cards hide; nothing when there is nobody to tell.
    pub async fn offer_withdrawn(
        &self,
        conversation: u64,
        agents: Vec<String>,
        reason: &str,
        owner: Option<&str>,
    ) {
        if let Some(event) = self.offer_withdrawn_notice(conversation, agents, reason, owner) {
            self.record(event).await;
        }
    }

    /// What [`EventHub::offer_withdrawn`] logs, for a write that logs it alongside; none when
    /// there is nobody to tell.
    pub fn offer_withdrawn_notice(
        &self,
        conversation: u64,
        agents: Vec<String>,
        reason: &str,
        owner: Option<&str>,
    ) -> Option<NewEvent> {
        if agents.is_empty() {
            return None;
        }
        tracing::info!(event = "offer_withdrawn", conversation, agents = ?agents, reason, "offer withdrawn");
        let data = match owner {
            Some(owner) => serde_json::json!({"reason": reason, "owner": owner}),
            None => serde_json::json!({"reason": reason}),
        };
        self.notice("offer_withdrawn", agents, Some(conversation), data)
    }

    /// What intake logs about the messages it stores: pass to [`Store::intake_with`], then
    /// [`EventHub::broadcast`] what it logged.
    pub fn intake_notices(&self) -> Arc<dyn IntakeNotices> {
        self.notices.load_full()
    }

    /// Takes in a reloaded configuration: who is told about new messages of each queue.
    pub fn reconfigure(&self, config: &Config) {
        self.notices.store(Arc::new(MessageNotices::new(config)));
        self.outside.store(
            config.has_event_targets(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Pushes events already in the log to live streams.
    pub fn broadcast(&self, events: Vec<StoredEvent>) {
        for event in events {
            tracing::debug!(event = %event.kind, id = event.id, "event");
            self.mark_own(event.id);
            let _ = self.live.send(Arc::new(event));
        }
    }

    /// Notes an event this host logged and pushed, for the follower to skip (shared stores).
    fn mark_own(&self, id: u64) {
        if !self.storage.is_shared() {
            return;
        }
        let mut own = self.own.lock().expect("own events lock");
        // A follower far behind (the database unreachable) must not grow this without bound;
        // forgetting only makes it push a few events twice (streams skip them by id).
        if own.len() >= OWN_LIMIT {
            own.clear();
        }
        own.insert(id);
    }

    /// A receiver of live events (subscribe before reading the log to miss nothing).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.live.subscribe()
    }

    /// A receiver of the events other hosts log from now on, in log order; only fed when the
    /// store is shared (a lagging receiver misses events: it should then re-read state).
    pub fn subscribe_remote(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.remote.subscribe()
    }

    /// Logged events after `after` that concern `agent` (scanning at most `limit`), and the id
    /// of the last event scanned.
    pub async fn backlog(&self, agent: &str, after: u64, limit: usize) -> (Vec<StoredEvent>, u64) {
        match self.storage.events_after(after, limit).await {
            Ok(list) => {
                let last = list.last().map(|e| e.id).unwrap_or(after);
                let mine = list
                    .into_iter()
                    .filter(|e| e.audience.iter().any(|a| a == agent))
                    .collect();
                (mine, last)
            }
            Err(e) => {
                tracing::error!("reading the event log failed: {e}");
                (Vec::new(), after)
            }
        }
    }

    /// The id of the newest logged event (0 if none).
    pub async fn last_id(&self) -> u64 {
        self.storage.last_event_id().await.unwrap_or(0)
    }
}

/// Who is told about a change to `c`: exactly the agents who may read it now (its owner, the
/// managers of its queue, the agents of its queue while it waits there, and once it is closed
/// those who handled it), and `also` (an author, a closer) only if they may read it too. No
/// one else hears its content.
pub fn audience(config: &Config, c: &Conversation, also: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |id: &str| {
        if !out.iter().any(|a| a == id) {
            out.push(id.to_owned());
        }
    };
    if let Some(owner) = c
        .owner
        .as_ref()
        .filter(|_| c.state == ConversationState::Assigned)
    {
        add(owner);
    }
    match c.state {
        ConversationState::Queued => config.queue_members(&c.queue).for_each(|a| add(&a.id)),
        ConversationState::Closed => c.handled_by.iter().for_each(|a| add(a)),
        ConversationState::Assigned | ConversationState::Bot => {}
    }
    if let Some(q) = config.queue(&c.queue) {
        q.managers.iter().for_each(|m| add(m));
    }
    if let Some(a) = also.and_then(|a| config.agent(a))
        && access::standing(config, a, c) == Standing::Reader
    {
        add(&a.id);
    }
    out
}

/// Who hears `agent`'s presence: they and their colleagues ([`access::colleagues`]).
pub fn presence_audience(config: &Config, agent: &str) -> Vec<String> {
    let mut out = vec![agent.to_owned()];
    if let Some(me) = config.agent(agent) {
        out.extend(
            access::colleagues(config, me)
                .into_iter()
                .map(|a| a.id.clone()),
        );
    }
    out
}

/// Where the follower pushes what it reads, held weakly: it ends with the hub.
struct Follower {
    live: broadcast::WeakSender<Arc<StoredEvent>>,
    remote: broadcast::WeakSender<Arc<StoredEvent>>,
    own: Arc<Mutex<HashSet<u64>>>,
}

/// Follows the log from its current end, pushing each event another host logged to `live`
/// and `remote` (this host's own were pushed when logged), until the hub is gone. Ids become
/// visible in order (the store's promise), so reading after the last id seen misses nothing.
async fn follow(storage: Arc<dyn Store>, follower: Follower) {
    let mut last = loop {
        match storage.last_event_id().await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!("cannot read the event log's end; trying again: {e}");
                tokio::time::sleep(FOLLOW_EVERY * 10).await;
            }
        }
    };
    loop {
        let (Some(live), Some(remote)) = (follower.live.upgrade(), follower.remote.upgrade())
        else {
            return;
        };
        match storage.events_after(last, FOLLOW_CHUNK).await {
            Ok(events) => {
                let full = events.len() == FOLLOW_CHUNK;
                for event in events {
                    last = event.id;
                    if follower
                        .own
                        .lock()
                        .expect("own events lock")
                        .remove(&event.id)
                    {
                        continue;
                    }
                    let event = Arc::new(event);
                    let _ = remote.send(event.clone());
                    let _ = live.send(event);
                }
                if full {
                    continue;
                }
            }
            Err(e) => tracing::warn!("following the event log failed; trying again: {e}"),
        }
        drop((live, remote));
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// What agents are told about a stored inbound message: `message` to its owner (or, while it
/// waits, to its queue's agents) and its queue's managers, and `unknown_contact` to the same
/// agents for the first message of a new conversation from an address the directory does not
/// know. With subscribers or integrations configured, these are logged even when no agent is
/// told, after a `created` or `reopened` event for a conversation the message opened.
struct MessageNotices {
    /// Each queue's agents.
    members: HashMap<String, Vec<String>>,
    /// Each queue's managers.
    managers: HashMap<String, Vec<String>>,
    /// Whether subscribers or integrations hear events.
    outside: bool,
}

impl MessageNotices {
    fn new(config: &Config) -> MessageNotices {
        let members = config
            .queues
            .iter()
            .map(|q| {
                let agents = config
                    .queue_members(&q.name)
                    .map(|a| a.id.clone())
                    .collect();
                (q.name.clone(), agents)
            })
            .collect();
        let managers = config
            .queues
            .iter()
            .map(|q| (q.name.clone(), q.managers.clone()))
            .collect();
        MessageNotices {
            members,
            managers,
            outside: config.has_event_targets(),
        }
    }
}

impl IntakeNotices for MessageNotices {
    fn notices(&self, channel: &str, m: &StoredInbound, new_contact: bool) -> Vec<NewEvent> {
        let mut audience: Vec<String> = match &m.owner {
            Some(owner) => vec![owner.clone()],
            // While a bot holds it, only its queue's managers may read it.
            None if m.held_by_bot => Vec::new(),
            None => self.members.get(&m.queue).cloned().unwrap_or_default(),
        };
        for manager in self.managers.get(&m.queue).into_iter().flatten() {
            if !audience.contains(manager) {
                audience.push(manager.clone());
            }
        }
        if audience.is_empty() && !self.outside {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.outside && (m.created || m.reopened) {
            out.push(NewEvent {
                kind: if m.created { "created" } else { "reopened" }.into(),
                audience: Vec::new(),
                conversation: Some(m.conversation),
                data: serde_json::json!({"by": "customer"}),
            });
        }
        out.push(NewEvent {
            kind: "message".into(),
            audience: audience.clone(),
            conversation: Some(m.conversation),
            data: serde_json::json!({"seq": m.seq, "id": format!("{}-{}", m.conversation, m.seq), "customer": m.customer, "text": m.text}),
        });
        if new_contact {
            out.push(NewEvent {
                kind: "unknown_contact".into(),
                audience,
                conversation: Some(m.conversation),
                data: serde_json::json!({"address": m.customer, "channel": channel, "name": m.contact_name}),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://hooks.example.com"
data_dir = "/tmp/x"
[[queues]]
name = "support"
router = "ring-all"
managers = ["dave"]
[[agents]]
id = "alice"
name = "Alice"
token = "alice-token"
queues = ["support"]
[[agents]]
id = "dave"
name = "Dave"
token = "dave-token-1"
"#;
        Config::parse(text, "t", &|_| None).unwrap()
    }

    fn stored(owner: Option<&str>, held_by_bot: bool) -> StoredInbound {
        StoredInbound {
            conversation: 1,
            seq: 1,
            customer: "+14155550100".into(),
            contact_name: None,
            text: Some("private".into()),
            owner: owner.map(str::to_owned),
            queue: "support".into(),
            held_by_bot,
            created: true,
            reopened: false,
        }
    }

    #[test]
    fn a_message_a_bot_holds_reaches_only_the_queues_managers() {
        let notices = MessageNotices::new(&config());
        let audience = |m: &StoredInbound| notices.notices("sms", m, true)[0].audience.clone();
        assert_eq!(audience(&stored(None, false)), ["alice", "dave"]);
        assert_eq!(audience(&stored(None, true)), ["dave"]);
        assert_eq!(audience(&stored(Some("alice"), false)), ["alice", "dave"]);
        let kinds: Vec<String> = notices
            .notices("sms", &stored(None, true), true)
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["message", "unknown_contact"]);
    }
}
