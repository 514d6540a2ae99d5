//! What a host does when other hosts share its store:
//! - it follows their events (through [`EventHub::subscribe_remote`]) so that what they did
//!   reaches this host's routing, as if done here: presence changes update the agents'
//!   facts, and new or freed work kicks the dispatcher (which acts only on the host holding
//!   the dispatcher role);
//! - it beats: every [`BEAT`] it records that it is alive and whose event streams are open on
//!   it, and sets offline the agents whose every stream was on a host that stopped beating
//!   for the heartbeat window (a host that died takes nobody's presence with it);
//! - with each beat it takes in the channels' administrative states, so a channel disabled,
//!   enabled or deleted through one host is so on every host within a beat.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::clock::Clock;
use crate::model::StoredEvent;
use crate::services::agents::{Agents, Presence};
use crate::services::app::App;
use crate::services::conversations::Actions;
use crate::services::events::EventHub;
use crate::services::outbox::Outbox;
use crate::services::routing::Dispatcher;

/// How often a host records that it is alive.
pub const BEAT: Duration = Duration::from_secs(2);

/// How long a host may go without a beat before the agents whose streams it held are set
/// offline (override: `PLUGBOARD_HEARTBEAT_WINDOW_MS`).
pub const HEARTBEAT_WINDOW: Duration = Duration::from_secs(10);

/// The services a host sharing its store keeps in step with the others.
pub struct Cluster {
    /// Configuration and storage.
    pub app: Arc<App>,
    /// Agents' routing facts.
    pub agents: Arc<Agents>,
    /// The event log.
    pub events: Arc<EventHub>,
    /// The dispatcher.
    pub dispatcher: Arc<Dispatcher>,
    /// The outbox (for the agents' actions).
    pub outbox: Arc<Outbox>,
}

/// Starts following the shared log and beating; nothing when the store is this host's alone.
pub fn start(cluster: Cluster) {
    if !cluster.app.storage.is_shared() {
        return;
    }
    let cluster = Arc::new(cluster);
    tokio::spawn(follow(cluster.clone()));
    tokio::spawn(beat(cluster));
}

fn heartbeat_window() -> Duration {
    crate::config::env_millis("PLUGBOARD_HEARTBEAT_WINDOW_MS").unwrap_or(HEARTBEAT_WINDOW)
}

/// Beats every [`BEAT`], then sets offline the agents whose streams a silent host held, and
/// takes in the channels' states. The agents of silent hosts are only looked for once this
/// host has beaten for a whole window without a failure: after an outage of the database every
/// host's last beat is old, and the first host back must not take the others for dead.
async fn beat(cluster: Arc<Cluster>) {
    let window = heartbeat_window();
    let storage = &cluster.app.storage;
    let mut tick = tokio::time::interval(BEAT);
    let mut beating_since: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let now = Clock::System.now_millis();
        let streaming = cluster.agents.streaming();
        if let Err(e) = storage.beat(&cluster.app.host_id, &streaming, now).await {
            tracing::warn!("cannot record this host's heartbeat: {e}");
            beating_since = None;
            continue;
        }
        let since = *beating_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= window {
            set_orphans_offline(&cluster, &streaming, now, window).await;
        }
        match cluster.app.refresh_channel_states().await {
            Ok(changed) if !changed.is_empty() => {
                tracing::info!(channels = ?changed, "channel states changed by another host taken in");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot read the channels' states: {e}"),
        }
    }
}

/// Sets offline the agents whose every stream was on a host silent for `window`.
async fn set_orphans_offline(cluster: &Cluster, streaming: &[String], now: u64, window: Duration) {
    let orphaned = match cluster
        .app
        .storage
        .orphaned_agents(now, window.as_millis() as u64)
        .await
    {
        Ok(agents) => agents,
        Err(e) => {
            tracing::warn!("cannot look for agents on silent hosts: {e}");
            return;
        }
    };
    let actions = Actions {
        app: &cluster.app,
        agents: &cluster.agents,
        events: &cluster.events,
        dispatcher: &cluster.dispatcher,
        outbox: &cluster.outbox,
    };
    for agent in orphaned {
        if cluster.agents.presence(&agent) == Presence::Offline || streaming.contains(&agent) {
            continue;
        }
        tracing::info!(
            agent,
            "the host holding this agent's stream went silent; agent set offline"
        );
        actions.set_presence(&agent, Presence::Offline).await;
    }
}

/// Follows the shared log for the agents and the dispatcher.
async fn follow(cluster: Arc<Cluster>) {
    let (agents, dispatcher) = (&cluster.agents, &cluster.dispatcher);
    let mut log = cluster.events.subscribe_remote();
    loop {
        match log.recv().await {
            Ok(event) => apply(&event, agents, dispatcher).await,
            Err(RecvError::Lagged(missed)) => {
                // Too far behind to know what changed: look at everything again.
                tracing::warn!(
                    missed,
                    "fell behind the shared event log; looking at all work again"
                );
                dispatcher.kick();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// One event from the shared log, applied to this host's view.
async fn apply(event: &StoredEvent, agents: &Agents, dispatcher: &Dispatcher) {
    match event.kind.as_str() {
        "presence" => {
            if let Some(agent) = event.data.get("agent").and_then(|v| v.as_str()) {
                agents.reload(Some(agent)).await;
            }
            dispatcher.kick();
        }
        // Capacity freed or taken: routers that count work need another look.
        "closed" | "transferred" | "assigned" => dispatcher.kick(),
        _ => {
            if let Some(id) = event.conversation.as_deref().and_then(|c| c.parse().ok()) {
                dispatcher.kick_conversations(&[id]);
            }
        }
    }
}
