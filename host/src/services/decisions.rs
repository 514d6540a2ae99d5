//! Routing decisions as recorded: with `record_decisions = N` on a queue, the host keeps the
//! latest N `decide` calls its dispatcher made (the waiting work, every agent's state as the
//! router saw it, by id, and the router's answer), durably, for `plugboard simulate` to give a
//! candidate router the very same snapshots. Routers are pure functions of what the host gives
//! them, so a snapshot is all a replay needs. Admins read them through
//! `GET /api/v1/admin/queues/{name}/decisions`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::runtime::bindings::wit;
use crate::services::app::App;
use crate::services::recording::{record_id, record_later, records};
use crate::store::StoreError;

fn space(queue: &str) -> String {
    format!("decisions/{queue}")
}

/// One `decide` call: what the router was given and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The record's id (its time first, so ids sort oldest first).
    pub id: String,
    /// The router that decided (`name@version`).
    pub router: String,
    /// The work it decided on.
    pub work: Work,
    /// The queue's agents in the order the router got them (`index` is the position).
    pub agents: Vec<Agent>,
    /// What it answered.
    pub decision: Decision,
}

/// The waiting work given to `decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// The conversation's id.
    pub conversation: String,
    /// The queue it waits in.
    pub queue: String,
    /// The channel it came from.
    pub channel: String,
    /// The skills it requires (lower case).
    pub skills: Vec<String>,
    /// Unix seconds since when it has waited.
    pub waiting_since: u64,
    /// Unix seconds at the call.
    pub now: u64,
}

/// One agent as `decide` saw them, with the id the index stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// The agent's id.
    pub id: String,
    /// `online`, `away` or `offline`.
    pub presence: String,
    /// Conversations owned and not closed.
    pub active: u32,
    /// The most they may own.
    pub capacity: u32,
    /// Unix seconds since when they have had no active conversation.
    pub idle_since: Option<u64>,
    /// Unix seconds of their last offer.
    pub last_offered: Option<u64>,
    /// Unix seconds of their last assignment.
    pub last_assigned: Option<u64>,
    /// Bit `i`: they hold `work.skills[i]`.
    pub skills: u64,
    /// Whether they let an offer of this work lapse.
    pub tried: bool,
}

/// A router's answer, with agents named by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Offered to these agents, in the router's order.
    Offer(Vec<String>),
    /// Kept waiting.
    Wait,
    /// Moved to the overflow queue.
    Overflow,
}

impl Snapshot {
    /// The snapshot of one call: `ids[i]` is the agent at index `i`.
    pub fn of(
        router: &str,
        work: &wit::WaitingWork,
        agents: &[wit::AgentState],
        ids: &[String],
        decision: &wit::Decision,
    ) -> Snapshot {
        Snapshot {
            id: record_id(),
            router: router.to_owned(),
            work: Work {
                conversation: work.conversation.clone(),
                queue: work.queue.clone(),
                channel: work.channel.clone(),
                skills: work.skills.clone(),
                waiting_since: work.waiting_since,
                now: work.now,
            },
            agents: agents
                .iter()
                .zip(ids)
                .map(|(a, id)| Agent {
                    id: id.clone(),
                    presence: match a.presence {
                        wit::Presence::Online => "online",
                        wit::Presence::Away => "away",
                        wit::Presence::Offline => "offline",
                    }
                    .to_owned(),
                    active: a.active,
                    capacity: a.capacity,
                    idle_since: a.idle_since,
                    last_offered: a.last_offered,
                    last_assigned: a.last_assigned,
                    skills: a.skills,
                    tried: a.tried,
                })
                .collect(),
            decision: Decision::from_wit(decision, ids),
        }
    }

    /// What `decide` is given for this snapshot, rebuilt.
    pub fn call(&self) -> (wit::WaitingWork, Vec<wit::AgentState>) {
        let work = wit::WaitingWork {
            conversation: self.work.conversation.clone(),
            queue: self.work.queue.clone(),
            channel: self.work.channel.clone(),
            skills: self.work.skills.clone(),
            waiting_since: self.work.waiting_since,
            now: self.work.now,
        };
        let agents = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| wit::AgentState {
                index: i as u32,
                presence: match a.presence.as_str() {
                    "online" => wit::Presence::Online,
                    "away" => wit::Presence::Away,
                    _ => wit::Presence::Offline,
                },
                active: a.active,
                capacity: a.capacity,
                idle_since: a.idle_since,
                last_offered: a.last_offered,
                last_assigned: a.last_assigned,
                skills: a.skills,
                tried: a.tried,
            })
            .collect();
        (work, agents)
    }

    /// The agents' ids, by index.
    pub fn ids(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.id.clone()).collect()
    }
}

impl Decision {
    /// A router's answer with indices turned into ids, as the dispatcher reads it: indices
    /// outside the list are ignored, repeats count once.
    pub fn from_wit(decision: &wit::Decision, ids: &[String]) -> Decision {
        match decision {
            wit::Decision::Offer(indices) => {
                let mut offered: Vec<String> = Vec::with_capacity(indices.len());
                for &i in indices {
                    if let Some(id) = ids.get(i as usize)
                        && !offered.contains(id)
                    {
                        offered.push(id.clone());
                    }
                }
                Decision::Offer(offered)
            }
            wit::Decision::Wait => Decision::Wait,
            wit::Decision::Overflow => Decision::Overflow,
        }
    }
}

/// Records one call of `queue`'s router in the background, if the queue records decisions
/// (only then is the snapshot built).
pub fn record(app: &Arc<App>, queue: &str, snapshot: impl FnOnce() -> Snapshot) {
    let keep = app.config().queue(queue).map_or(0, |q| q.record_decisions) as usize;
    if keep == 0 {
        return;
    }
    let snapshot = snapshot();
    let id = snapshot.id.clone();
    record_later(app, space(queue), id, snapshot, keep, "a routing decision");
}

/// Every decision `queue` recorded, oldest first.
pub async fn snapshots(app: &App, queue: &str) -> Result<Vec<Snapshot>, StoreError> {
    records(app.storage.as_ref(), &space(queue)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_gives_the_router_back_what_it_was_given() {
        let work = wit::WaitingWork {
            conversation: "7".into(),
            queue: "support".into(),
            channel: "sms".into(),
            skills: vec!["spanish".into()],
            waiting_since: 100,
            now: 130,
        };
        let agent = |index, presence, tried| wit::AgentState {
            index,
            presence,
            active: index,
            capacity: 3,
            idle_since: Some(90),
            last_offered: None,
            last_assigned: Some(50),
            skills: 1,
            tried,
        };
        let agents = vec![
            agent(0, wit::Presence::Online, false),
            agent(1, wit::Presence::Away, true),
        ];
        let ids = vec!["alice".to_owned(), "bob".to_owned()];
        let s = Snapshot::of(
            "ring-all@1.0.0",
            &work,
            &agents,
            &ids,
            &wit::Decision::Offer(vec![1, 9, 1, 0]),
        );
        assert_eq!(
            s.decision,
            Decision::Offer(vec!["bob".into(), "alice".into()]),
            "unknown indices dropped, repeats once"
        );
        let json = serde_json::to_string(&s).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let (w, a) = back.call();
        assert_eq!(format!("{w:?}"), format!("{work:?}"));
        assert_eq!(format!("{a:?}"), format!("{agents:?}"));
        assert_eq!(back.ids(), ids);
    }
}
