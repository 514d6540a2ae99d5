//! What agents are told: every event is appended to a durable log (so a reconnecting client
//! resumes from `Last-Event-ID` without loss) and broadcast to live streams.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::sandbox::Clock;
use crate::storage::{Storage, StoredEvent};

/// How many events a slow live stream may fall behind before it re-reads the log.
const LIVE_BUFFER: usize = 4096;

/// The event log and its live fan-out.
pub struct EventHub {
    storage: Arc<Storage>,
    live: broadcast::Sender<Arc<StoredEvent>>,
    /// Held across append and send, so live streams see events in log order.
    order: std::sync::Mutex<()>,
}

impl EventHub {
    /// A hub over `storage`'s event log.
    pub fn new(storage: Arc<Storage>) -> EventHub {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        EventHub {
            storage,
            live,
            order: std::sync::Mutex::new(()),
        }
    }

    /// Records an event for `audience` and pushes it to live streams.
    pub fn publish(
        &self,
        kind: &str,
        audience: Vec<String>,
        conversation: Option<u64>,
        data: serde_json::Value,
    ) {
        if audience.is_empty() {
            return;
        }
        let now = Clock::System.now_millis();
        let _order = self.order.lock().expect("event order lock");
        match self
            .storage
            .append_event(kind, audience, conversation, data, now)
        {
            Ok(event) => {
                tracing::debug!(event = kind, id = event.id, "event");
                let _ = self.live.send(Arc::new(event));
            }
            Err(e) => tracing::error!(event = kind, "event not recorded: {e}"),
        }
    }

    /// A receiver of live events (subscribe before reading the log to miss nothing).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.live.subscribe()
    }

    /// Logged events after `after` that concern `agent` (scanning at most `limit`), and the id
    /// of the last event scanned.
    pub fn backlog(&self, agent: &str, after: u64, limit: usize) -> (Vec<StoredEvent>, u64) {
        match self.storage.events_after(after, limit) {
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
    pub fn last_id(&self) -> u64 {
        self.storage.last_event_id().unwrap_or(0)
    }
}
