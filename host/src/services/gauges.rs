//! The metrics that are states, not events: read when `/metrics` is scraped from what the
//! host already keeps (the outbox, the queues' indexes, agents' presence, open streams,
//! channel health), so nothing on the hot paths keeps them up to date.

use crate::metrics::Snapshot;
use crate::services::agents::{Agents, Presence};
use crate::services::app::App;

/// The gauges' values now.
pub async fn snapshot(app: &App, agents: &Agents) -> Snapshot {
    let config = &app.config();
    let storage = &app.storage;
    let outbox_pending = storage.pending_sends().await.ok().map(|p| p.len() as u64);
    let mut waiting = Vec::with_capacity(config.queues.len());
    for q in &config.queues {
        waiting.push((q.name.clone(), storage.queued_count(&q.name).await.ok()));
    }
    let mut by_presence = Vec::new();
    for q in &config.queues {
        for presence in [Presence::Online, Presence::Away, Presence::Offline] {
            let n = config
                .queue_members(&q.name)
                .filter(|a| agents.presence(&a.id) == presence)
                .count();
            by_presence.push((q.name.clone(), presence.as_str(), n as u64));
        }
    }
    let quarantined = config
        .channels
        .iter()
        .map(|c| (c.name.clone(), app.health.is_quarantined(&c.name)))
        .collect();
    Snapshot {
        outbox_pending,
        waiting,
        agents: by_presence,
        sse_clients: agents.open_streams(),
        quarantined,
    }
}
