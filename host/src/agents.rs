//! Agents' live routing facts: presence, idle time, offers and misses. Kept in memory for the
//! router and written through to storage so a restart keeps them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::bindings::wit;
use crate::config::Config;
use crate::storage::{AgentRecord, Storage, StorageError};

/// What the router view of the agents depends on from the waiting work.
#[derive(Debug, Default)]
pub struct WorkFacts {
    /// The skills the work requires, lower case (at most 64: see `config::MAX_WORK_SKILLS`).
    pub skills: Vec<String>,
    /// Agents who let an offer of this work lapse.
    pub tried: Vec<String>,
}

/// The agents as a router sees them, and who each one is: `agents[i].index == i` names
/// `ids[i]`.
#[derive(Debug, Default)]
pub struct RouterView {
    /// Agent ids by index.
    pub ids: Vec<String>,
    /// The router's facts about each agent.
    pub agents: Vec<wit::AgentState>,
}

/// Whether an agent takes work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Offered work.
    Online,
    /// Signed in, not offered work.
    Away,
    /// Not signed in.
    Offline,
}

impl Presence {
    fn parse(s: &str) -> Presence {
        match s {
            "online" => Presence::Online,
            "away" => Presence::Away,
            _ => Presence::Offline,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Away => "away",
            Presence::Offline => "offline",
        }
    }
}

/// Every configured agent's routing facts.
pub struct Agents {
    storage: Arc<Storage>,
    records: Mutex<HashMap<String, AgentRecord>>,
}

impl Agents {
    /// Loads stored facts for the configured agents; new agents start offline.
    pub fn load(config: &Config, storage: Arc<Storage>) -> Result<Agents, StorageError> {
        let stored: HashMap<_, _> = storage.agent_records()?.into_iter().collect();
        let records = config
            .agents
            .iter()
            .map(|a| {
                let mut r = stored.get(&a.id).cloned().unwrap_or_default();
                if r.presence.is_empty() {
                    r.presence = "offline".into();
                }
                (a.id.clone(), r)
            })
            .collect();
        Ok(Agents {
            storage,
            records: Mutex::new(records),
        })
    }

    fn with<T>(&self, agent: &str, f: impl FnOnce(&mut AgentRecord) -> T) -> Option<T> {
        let mut records = self.records.lock().expect("agents lock");
        let record = records.get_mut(agent)?;
        let out = f(record);
        if let Err(e) = self.storage.put_agent_record(agent, record) {
            tracing::error!(agent, "agent state not stored: {e}");
        }
        Some(out)
    }

    /// An agent's presence.
    pub fn presence(&self, agent: &str) -> Presence {
        self.records
            .lock()
            .expect("agents lock")
            .get(agent)
            .map(|r| Presence::parse(&r.presence))
            .unwrap_or(Presence::Offline)
    }

    /// Sets an agent's presence; returns the previous one.
    pub fn set_presence(&self, agent: &str, presence: Presence, now: u64) -> Presence {
        let idle = self.storage.owned_count(agent) == 0;
        self.with(agent, |r| {
            let before = Presence::parse(&r.presence);
            r.presence = presence.as_str().into();
            if presence == Presence::Online {
                r.missed_offers = 0;
                if before != Presence::Online && idle {
                    r.idle_since = Some(now);
                }
            }
            before
        })
        .unwrap_or(Presence::Offline)
    }

    /// Notes offers made to `agents`, in memory only: the time is stored with the agent's next
    /// stored change. Offers are the most frequent routing fact (a ring-all offer to 50 agents
    /// would be 50 writes), and after a crash a lost `last-offered` only shows a router an
    /// older offer time.
    pub fn offered(&self, agents: &[String], now: u64) {
        let mut records = self.records.lock().expect("agents lock");
        for a in agents {
            if let Some(r) = records.get_mut(a) {
                r.last_offered = Some(now);
            }
        }
    }

    /// Notes a lapsed offer; returns how many in a row the agent has missed.
    pub fn missed(&self, agent: &str) -> u32 {
        self.with(agent, |r| {
            r.missed_offers += 1;
            r.missed_offers
        })
        .unwrap_or(0)
    }

    /// Notes that `agent` got a conversation.
    pub fn assigned(&self, agent: &str, now: u64) {
        self.with(agent, |r| {
            r.last_assigned = Some(now);
            r.idle_since = None;
            r.missed_offers = 0;
        });
    }

    /// Notes that `agent` let go of a conversation (closed, transferred away).
    pub fn released(&self, agent: &str, now: u64) {
        let idle = self.storage.owned_count(agent) == 0;
        self.with(agent, |r| {
            if idle {
                r.idle_since = Some(now);
            }
        });
    }

    /// The router's view of `members` (in configuration order) for work with `work`'s facts.
    pub fn states(&self, config: &Config, members: &[String], work: &WorkFacts) -> RouterView {
        let records = self.records.lock().expect("agents lock");
        let mut view = RouterView::default();
        for id in members {
            let Some(cfg) = config.agent(id) else {
                continue;
            };
            let r = records.get(id).cloned().unwrap_or_default();
            let active = self.storage.owned_count(id);
            let skills = work
                .skills
                .iter()
                .take(crate::config::MAX_WORK_SKILLS)
                .enumerate()
                .filter(|(_, wanted)| {
                    cfg.skills
                        .iter()
                        .any(|held| held.to_lowercase() == **wanted)
                })
                .fold(0u64, |set, (i, _)| set | (1u64 << i));
            view.agents.push(wit::AgentState {
                index: view.ids.len() as u32,
                presence: match Presence::parse(&r.presence) {
                    Presence::Online => wit::Presence::Online,
                    Presence::Away => wit::Presence::Away,
                    Presence::Offline => wit::Presence::Offline,
                },
                active,
                capacity: cfg.capacity,
                idle_since: if active == 0 {
                    r.idle_since.map(|t| t / 1000)
                } else {
                    None
                },
                last_offered: r.last_offered.map(|t| t / 1000),
                last_assigned: r.last_assigned.map(|t| t / 1000),
                skills,
                tried: work.tried.contains(id),
            });
            view.ids.push(id.clone());
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://hooks.example.com"
data_dir = "/tmp/unused"
[[queues]]
name = "support"
router = "skills"
[[agents]]
id = "ana"
name = "Ana"
token = "token-of-ana"
queues = ["support"]
skills = ["Japanese", "billing"]
[[agents]]
id = "ben"
name = "Ben"
token = "token-of-ben"
queues = ["support"]
skills = ["BILLING"]
"#;

    #[tokio::test]
    async fn router_view_names_agents_by_index_with_skill_sets_and_tried() {
        let config = Config::parse(CONFIG, "test", &|_| None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let agents = Agents::load(&config, storage).unwrap();
        agents.set_presence("ben", Presence::Online, 1_000);
        let members = ["ana".to_string(), "ghost".to_string(), "ben".to_string()];
        let work = WorkFacts {
            skills: vec!["billing".into(), "japanese".into(), "french".into()],
            tried: vec!["ana".into()],
        };
        let view = agents.states(&config, &members, &work);
        // An id missing from the configuration is left out; indices stay dense.
        assert_eq!(view.ids, ["ana", "ben"]);
        let got: Vec<(u32, u64, bool)> = view
            .agents
            .iter()
            .map(|a| (a.index, a.skills, a.tried))
            .collect();
        // Bit 0 = billing, bit 1 = japanese, bit 2 = french; names compare case-insensitively.
        assert_eq!(got, [(0, 0b011, true), (1, 0b001, false)]);
        assert_eq!(view.agents[0].presence, wit::Presence::Offline);
        assert_eq!(view.agents[1].presence, wit::Presence::Online);
    }
}
