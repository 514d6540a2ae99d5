//! Agents' live routing facts: presence, idle time, offers and misses. Kept in memory for the
//! router and written through to storage so a restart keeps them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::AgentRecord;
use crate::runtime::bindings::wit;
use crate::store::{Store, StoreError};

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

    /// The presence as the API and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Away => "away",
            Presence::Offline => "offline",
        }
    }
}

/// An open event stream of one agent (see [`Agents::stream_opened`]).
pub struct StreamGuard {
    agent: String,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().expect("agent streams lock");
        if let Some(n) = streams.get_mut(&self.agent) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.agent);
            }
        }
    }
}

/// Every configured agent's routing facts.
pub struct Agents {
    storage: Arc<dyn Store>,
    records: Mutex<HashMap<String, AgentRecord>>,
    /// Event streams open on this host, by agent.
    streams: Arc<Mutex<HashMap<String, usize>>>,
    /// Orders stored changes: held from a change to its write, so writes land in the order
    /// the changes were made.
    writes: tokio::sync::Mutex<()>,
}

impl Agents {
    /// Loads stored facts for the configured agents; new agents start offline.
    pub async fn load(config: &Config, storage: Arc<dyn Store>) -> Result<Agents, StoreError> {
        let agents = Agents {
            storage,
            records: Mutex::new(HashMap::new()),
            streams: Arc::default(),
            writes: tokio::sync::Mutex::new(()),
        };
        agents.adopt(config).await?;
        Ok(agents)
    }

    /// Takes in the agents of a (reloaded) configuration: one added since starts from what is
    /// stored for them, or offline; the others keep their live facts. A removed agent is set
    /// offline here (routing asks only configured agents) and starts offline if they come back.
    pub async fn adopt(&self, config: &Config) -> Result<(), StoreError> {
        let missing = {
            let mut records = self.records.lock().expect("agents lock");
            // A removed agent is offline here: back in a later file, they start offline.
            for (id, r) in records.iter_mut() {
                if config.agent(id).is_none() {
                    r.presence = "offline".into();
                }
            }
            config.agents.iter().any(|a| !records.contains_key(&a.id))
        };
        if !missing {
            return Ok(());
        }
        let stored: HashMap<_, _> = self.storage.agent_records().await?.into_iter().collect();
        let _order = self.writes.lock().await;
        let mut records = self.records.lock().expect("agents lock");
        for a in &config.agents {
            records.entry(a.id.clone()).or_insert_with(|| {
                let mut r = stored.get(&a.id).cloned().unwrap_or_default();
                if r.presence.is_empty() {
                    r.presence = "offline".into();
                }
                r
            });
        }
        Ok(())
    }

    async fn with<T>(&self, agent: &str, f: impl FnOnce(&mut AgentRecord) -> T) -> Option<T> {
        let _order = self.writes.lock().await;
        let (out, record) = {
            let mut records = self.records.lock().expect("agents lock");
            // An agent a reload added before `adopt` read their stored facts starts offline.
            let record = records
                .entry(agent.to_owned())
                .or_insert_with(|| AgentRecord {
                    presence: "offline".into(),
                    ..AgentRecord::default()
                });
            (f(record), record.clone())
        };
        if let Err(e) = self.storage.put_agent_record(agent, &record).await {
            tracing::error!(agent, "agent state not stored: {e}");
        }
        Some(out)
    }

    /// How many open conversations `agent` owns (0 when storage cannot say).
    async fn owned(&self, agent: &str) -> u32 {
        self.storage.owned_count(agent).await.unwrap_or_else(|e| {
            tracing::warn!(agent, "cannot count owned conversations: {e}");
            0
        })
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
    pub async fn set_presence(&self, agent: &str, presence: Presence, now: u64) -> Presence {
        let idle = self.owned(agent).await == 0;
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
        .await
        .unwrap_or(Presence::Offline)
    }

    /// How many event streams are open on this host.
    pub fn open_streams(&self) -> u64 {
        self.streams
            .lock()
            .expect("agent streams lock")
            .values()
            .map(|&n| n as u64)
            .sum()
    }

    /// Notes an event stream of `agent` open on this host until the guard is dropped.
    pub fn stream_opened(&self, agent: &str) -> StreamGuard {
        *self
            .streams
            .lock()
            .expect("agent streams lock")
            .entry(agent.to_owned())
            .or_default() += 1;
        StreamGuard {
            agent: agent.to_owned(),
            streams: self.streams.clone(),
        }
    }

    /// The agents with an event stream open on this host.
    pub fn streaming(&self) -> Vec<String> {
        let mut agents: Vec<String> = self
            .streams
            .lock()
            .expect("agent streams lock")
            .keys()
            .cloned()
            .collect();
        agents.sort();
        agents
    }

    /// Takes in what another host stored about agents (one of them changed presence there, or
    /// this host takes over dispatching): `only` that agent, or every one. A stored record
    /// replaces this host's copy, so its routing facts (misses, idle time) are the ones the
    /// other host left, not this host's older ones.
    pub async fn reload(&self, only: Option<&str>) {
        let stored = match self.storage.agent_records().await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!("cannot read the agents' stored facts: {e}");
                return;
            }
        };
        let _order = self.writes.lock().await;
        let mut records = self.records.lock().expect("agents lock");
        for (agent, record) in stored {
            if only.is_some_and(|o| o != agent) {
                continue;
            }
            if let Some(mine) = records.get_mut(&agent) {
                *mine = record;
            }
        }
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
    pub async fn missed(&self, agent: &str) -> u32 {
        self.with(agent, |r| {
            r.missed_offers += 1;
            r.missed_offers
        })
        .await
        .unwrap_or(0)
    }

    /// Notes that `agent` got a conversation.
    pub async fn assigned(&self, agent: &str, now: u64) {
        self.with(agent, |r| {
            r.last_assigned = Some(now);
            r.idle_since = None;
            r.missed_offers = 0;
        })
        .await;
    }

    /// Notes that `agent` let go of a conversation (closed, transferred away).
    pub async fn released(&self, agent: &str, now: u64) {
        let idle = self.owned(agent).await == 0;
        self.with(agent, |r| {
            if idle {
                r.idle_since = Some(now);
            }
        })
        .await;
    }

    /// The router's view of `members` (in configuration order) for work with `work`'s facts.
    pub async fn states(
        &self,
        config: &Config,
        members: &[String],
        work: &WorkFacts,
    ) -> RouterView {
        let mut view = RouterView::default();
        for id in members {
            let Some(cfg) = config.agent(id) else {
                continue;
            };
            let active = self.owned(id).await;
            let r = self
                .records
                .lock()
                .expect("agents lock")
                .get(id)
                .cloned()
                .unwrap_or_default();
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

/// The walls between agents: who may read a conversation, act on it, start one, or receive one
/// by transfer. Pure rules over the configuration and a conversation's state, so every endpoint
/// asks the same questions, and a rule can be asked again inside the storage transaction that
/// acts on the answer.
///
/// An agent reads a conversation exactly when it shows in one of their views (the seed's
/// Recent, Archived and Monitor tabs): queued work of the queues they work, their own open
/// conversations, closed ones they handled, and every conversation of the queues they manage.
/// Anything else is answered as not found, so ids reveal nothing. The one exception is a
/// colleague's conversation in a queue they work: they saw it queued and were told who took
/// it, so taking or answering it is the conflict that names the owner (never its content).
pub mod access {
    use crate::config::{AgentConfig, Config};
    use crate::model::{Conversation, ConversationState, Rejection};
    use crate::store::Selector;

    /// One of an agent's conversation lists.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum View {
        /// Queued work of the agent's queues plus their own open conversations.
        Recent,
        /// Closed conversations the agent handled.
        Archived,
        /// Every conversation of the queues the agent manages.
        Monitor,
    }

    impl View {
        /// The view named by `?view=`.
        pub fn parse(name: &str) -> Option<View> {
            match name {
                "recent" => Some(View::Recent),
                "archived" => Some(View::Archived),
                "monitor" => Some(View::Monitor),
                _ => None,
            }
        }
    }

    /// How far an agent reaches into one conversation, weakest first.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Standing {
        /// Not theirs to know about: every request about it is answered as not found.
        Stranger,
        /// A colleague owns it in a queue the agent works: the agent knows it exists and who
        /// owns it, may contend for it (and hear the owner's name), but may not read it.
        Colleague,
        /// It shows in one of the agent's views: they may read it, and act on it as each
        /// action's own rule allows.
        Reader,
    }

    /// Why an agent may not do what they asked.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum Refused {
        /// The conversation is closed.
        #[error("the conversation is closed")]
        Closed,
        /// Only the owner or a manager of the queue may transfer or close it.
        #[error(
            "only the conversation's owner ({owner}) or a manager of queue {queue} may {action} it"
        )]
        NotOwnerOrManager {
            /// The current owner, or `nobody`.
            owner: String,
            /// The conversation's queue.
            queue: String,
            /// `transfer` or `close`.
            action: &'static str,
        },
        /// The transfer target is not a configured agent.
        #[error("no agent with id {0:?}")]
        UnknownAgent(String),
        /// An agent transferring to themselves.
        #[error("you cannot transfer a conversation to yourself")]
        ToYourself,
        /// The transfer target owns it already.
        #[error("{0} already owns the conversation")]
        AlreadyOwner(String),
        /// The transfer target neither works nor manages the conversation's queue.
        #[error(
            "agent {agent} neither works nor manages queue {queue}; a conversation is transferred only to an agent or a manager of its queue"
        )]
        OutsideQueue {
            /// The target.
            agent: String,
            /// The conversation's queue.
            queue: String,
        },
        /// A conversation is reopened only once closed.
        #[error("the conversation is not closed")]
        NotClosed,
        /// The queue named is not configured.
        #[error("no queue named {0:?}")]
        UnknownQueue(String),
        /// A queued conversation transferred to the queue it waits in.
        #[error("the conversation already waits in queue {0}")]
        AlreadyInQueue(String),
        /// Only an agent who handled a closed conversation, or a manager of its queue, may
        /// reopen it.
        #[error("only an agent who handled it or a manager of queue {queue} may reopen it")]
        NotHandler {
            /// The conversation's queue.
            queue: String,
        },
        /// The agent neither works nor manages the conversation's queue (any more).
        #[error(
            "you neither work nor manage queue {queue}, so you may not {action} its conversation"
        )]
        NotInQueue {
            /// The conversation's queue.
            queue: String,
            /// What was asked (`reopen`).
            action: &'static str,
        },
        /// The agent's `may_start` is off.
        #[error("you may not start conversations (may_start is off for you)")]
        MayNotStart,
        /// No channel named and no `send_from`.
        #[error("no `channel` given and no send_from channel is configured for you")]
        NoChannel,
        /// The agent has a `send_from` and named another channel.
        #[error("you may start conversations only from channel {0}")]
        NotSendFrom(String),
        /// The channel feeds none of the agent's queues.
        #[error(
            "channel {channel} feeds {destination}; you may start conversations only on channels that feed one of your queues"
        )]
        ChannelNotYours {
            /// The channel named.
            channel: String,
            /// Where its conversations go.
            destination: String,
        },
        /// The conversation to start exists and another agent owns it.
        #[error(
            "a conversation with {customer} on channel {channel} exists and is owned by {owner}"
        )]
        OwnedBy {
            /// The customer's address.
            customer: String,
            /// The channel.
            channel: String,
            /// Its owner.
            owner: String,
        },
        /// The conversation to start exists in a queue the agent does not work.
        #[error(
            "a conversation with {customer} on channel {channel} exists in queue {queue}, which you do not work"
        )]
        OtherQueue {
            /// The customer's address.
            customer: String,
            /// The channel.
            channel: String,
            /// The conversation's queue.
            queue: String,
        },
    }

    impl From<Refused> for Rejection {
        /// A rule that fails inside a storage transaction: the conversation changed since it
        /// was first checked (a refusal of who the agent is would have failed before).
        fn from(r: Refused) -> Rejection {
            match r {
                Refused::NotOwnerOrManager { .. }
                | Refused::MayNotStart
                | Refused::NotSendFrom(_)
                | Refused::ChannelNotYours { .. }
                | Refused::OtherQueue { .. }
                | Refused::NotInQueue { .. }
                | Refused::NotHandler { .. } => Rejection::Forbidden(r.to_string()),
                _ => Rejection::Conflict(r.to_string()),
            }
        }
    }

    fn works(agent: &AgentConfig, queue: &str) -> bool {
        agent.queues.iter().any(|q| q == queue)
    }

    /// Whether `c` shows in `agent`'s `view`.
    pub fn shows(config: &Config, agent: &AgentConfig, view: View, c: &Conversation) -> bool {
        let me = agent.id.as_str();
        match view {
            View::Recent => match c.state {
                ConversationState::Queued => works(agent, &c.queue),
                ConversationState::Assigned => c.owner.as_deref() == Some(me),
                // A bot's conversation reaches its queue's agents when the bot hands it off.
                ConversationState::Closed | ConversationState::Bot => false,
            },
            View::Archived => {
                c.state == ConversationState::Closed && c.handled_by.iter().any(|a| a == me)
            }
            View::Monitor => config.manages(me, &c.queue),
        }
    }

    /// The index ranges that hold `agent`'s `view`: the same conversations [`shows`] accepts,
    /// so a list reads only what it lists.
    pub fn selectors(config: &Config, agent: &AgentConfig, view: View) -> Vec<Selector> {
        let me = &agent.id;
        match view {
            View::Recent => {
                let mut out: Vec<Selector> = agent
                    .queues
                    .iter()
                    .map(|queue| Selector::Queue {
                        queue: queue.clone(),
                        state: ConversationState::Queued,
                    })
                    .collect();
                out.push(Selector::OwnedBy(me.clone()));
                out
            }
            View::Archived => vec![Selector::HandledBy(me.clone())],
            View::Monitor => config
                .queues
                .iter()
                .filter(|q| q.managers.iter().any(|m| m == me))
                .flat_map(|q| {
                    [
                        ConversationState::Queued,
                        ConversationState::Assigned,
                        ConversationState::Closed,
                        ConversationState::Bot,
                    ]
                    .map(|state| Selector::Queue {
                        queue: q.name.clone(),
                        state,
                    })
                })
                .collect(),
        }
    }

    /// Whether `agent` manages any queue (the monitor view is for managers).
    pub fn manages_any(config: &Config, agent: &AgentConfig) -> bool {
        config
            .queues
            .iter()
            .any(|q| q.managers.iter().any(|m| m == &agent.id))
    }

    /// How far `agent` reaches into `c`.
    pub fn standing(config: &Config, agent: &AgentConfig, c: &Conversation) -> Standing {
        if [View::Recent, View::Archived, View::Monitor]
            .into_iter()
            .any(|v| shows(config, agent, v, c))
        {
            Standing::Reader
        } else if c.state == ConversationState::Assigned && works(agent, &c.queue) {
            Standing::Colleague
        } else {
            Standing::Stranger
        }
    }

    /// Whether `agent` may close `c`: its owner, a manager of its queue, or (while it is still
    /// queued) an agent of its queue.
    pub fn may_close(
        config: &Config,
        agent: &AgentConfig,
        c: &Conversation,
    ) -> Result<(), Refused> {
        let me = agent.id.as_str();
        if config.manages(me, &c.queue)
            || c.owner.as_deref() == Some(me)
            || (c.state == ConversationState::Queued && works(agent, &c.queue))
        {
            Ok(())
        } else {
            Err(not_owner_or_manager(c, "close"))
        }
    }

    fn not_owner_or_manager(c: &Conversation, action: &'static str) -> Refused {
        Refused::NotOwnerOrManager {
            owner: c.owner.clone().unwrap_or_else(|| "nobody".into()),
            queue: c.queue.clone(),
            action,
        }
    }

    /// Whether `agent` may hand `c` to `target`: only its owner or a manager of its queue may,
    /// only while it is open, and only to another agent who works or manages its queue (a
    /// conversation of a channel that feeds one agent directly has no queue: any agent).
    pub fn may_transfer(
        config: &Config,
        agent: &AgentConfig,
        c: &Conversation,
        target: &str,
    ) -> Result<(), Refused> {
        let me = agent.id.as_str();
        may_hand_on(config, agent, c)?;
        let Some(to) = config.agent(target) else {
            return Err(Refused::UnknownAgent(target.to_owned()));
        };
        if to.id == me {
            return Err(Refused::ToYourself);
        }
        if c.owner.as_deref() == Some(target) {
            return Err(Refused::AlreadyOwner(target.to_owned()));
        }
        if !c.queue.is_empty() && !works(to, &c.queue) && !config.manages(&to.id, &c.queue) {
            return Err(Refused::OutsideQueue {
                agent: to.id.clone(),
                queue: c.queue.clone(),
            });
        }
        Ok(())
    }

    /// Whether `agent` may hand `c` on at all: only while it is open, and only its owner or a
    /// manager of its queue.
    fn may_hand_on(config: &Config, agent: &AgentConfig, c: &Conversation) -> Result<(), Refused> {
        if c.state == ConversationState::Closed {
            return Err(Refused::Closed);
        }
        if c.owner.as_deref() != Some(agent.id.as_str()) && !config.manages(&agent.id, &c.queue) {
            return Err(not_owner_or_manager(c, "transfer"));
        }
        Ok(())
    }

    /// Whether `agent` may move `c` into `queue`, unowned, for its agents to be offered: only
    /// its owner or a manager of its queue may, only while it is open, and only into a
    /// configured queue it does not already wait in.
    pub fn may_transfer_to_queue(
        config: &Config,
        agent: &AgentConfig,
        c: &Conversation,
        queue: &str,
    ) -> Result<(), Refused> {
        may_hand_on(config, agent, c)?;
        if config.queue(queue).is_none() {
            return Err(Refused::UnknownQueue(queue.to_owned()));
        }
        if c.state == ConversationState::Queued && c.queue == queue {
            return Err(Refused::AlreadyInQueue(queue.to_owned()));
        }
        Ok(())
    }

    /// Whether `agent` may reopen `c` and own it again: it must be closed, and they must have
    /// handled it or manage its queue, and work or manage its queue today (a conversation of a
    /// channel that feeds one agent directly has no queue).
    pub fn may_reopen(
        config: &Config,
        agent: &AgentConfig,
        c: &Conversation,
    ) -> Result<(), Refused> {
        let me = agent.id.as_str();
        if c.state != ConversationState::Closed {
            return Err(Refused::NotClosed);
        }
        let manages = config.manages(me, &c.queue);
        if !manages && !c.handled_by.iter().any(|a| a == me) {
            return Err(Refused::NotHandler {
                queue: c.queue.clone(),
            });
        }
        if !c.queue.is_empty() && !manages && !works(agent, &c.queue) {
            return Err(Refused::NotInQueue {
                queue: c.queue.clone(),
                action: "reopen",
            });
        }
        Ok(())
    }

    /// The agents `agent` works beside: those who share a queue with them, manage one of
    /// their queues, or work or manage a queue they manage; not `agent` themselves. Their
    /// presence is what a transfer picks from.
    pub fn colleagues<'c>(config: &'c Config, agent: &AgentConfig) -> Vec<&'c AgentConfig> {
        let mine: Vec<&str> = config
            .queues
            .iter()
            .filter(|q| works(agent, &q.name) || q.managers.iter().any(|m| m == &agent.id))
            .map(|q| q.name.as_str())
            .collect();
        config
            .agents
            .iter()
            .filter(|a| a.id != agent.id)
            .filter(|a| mine.iter().any(|q| works(a, q) || config.manages(&a.id, q)))
            .collect()
    }

    /// The channel `agent` may start a conversation on, given the one they named: they need
    /// `may_start`, and with a `send_from` only that channel; then it must feed one of their
    /// queues (or them directly). A channel missing from the configuration is not refused
    /// here: the caller reports it as unknown.
    pub fn start_channel(
        config: &Config,
        agent: &AgentConfig,
        requested: Option<&str>,
    ) -> Result<String, Refused> {
        if !agent.may_start {
            return Err(Refused::MayNotStart);
        }
        let Some(name) = requested.or(agent.send_from.as_deref()) else {
            return Err(Refused::NoChannel);
        };
        if let Some(own) = &agent.send_from
            && own != name
        {
            return Err(Refused::NotSendFrom(own.clone()));
        }
        if let Some(channel) = config.channel(name)
            && !channel.feeds(agent)
        {
            return Err(Refused::ChannelNotYours {
                channel: name.to_owned(),
                destination: channel.destination(),
            });
        }
        Ok(name.to_owned())
    }

    /// Whether `agent` may take over the existing conversation `c` by starting one with its
    /// customer: only when it is in a queue they work (or has no queue: a channel that feeds
    /// them directly), and no colleague owns it. Another queue's conversation, queued or
    /// closed, is not theirs.
    pub fn may_take_over(agent: &AgentConfig, c: &Conversation) -> Result<(), Refused> {
        if !c.queue.is_empty() && !works(agent, &c.queue) {
            return Err(Refused::OtherQueue {
                customer: c.customer.clone(),
                channel: c.channel.clone(),
                queue: c.queue.clone(),
            });
        }
        if c.state == ConversationState::Assigned
            && let Some(owner) = &c.owner
            && owner != &agent.id
        {
            return Err(Refused::OwnedBy {
                customer: c.customer.clone(),
                channel: c.channel.clone(),
                owner: owner.clone(),
            });
        }
        Ok(())
    }

    /// Takes over `c` for `agent` at `now` (queued or closed, it becomes theirs with its whole
    /// history), if [`may_take_over`] allows it.
    pub fn take_over(agent: &AgentConfig, c: &mut Conversation, now: u64) -> Result<(), Refused> {
        may_take_over(agent, c)?;
        c.assign(&agent.id);
        c.updated_at = now;
        Ok(())
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
        let storage = crate::store::sled::SledStore::open(dir.path(), Default::default()).unwrap();
        let agents = Agents::load(&config, storage).await.unwrap();
        agents.set_presence("ben", Presence::Online, 1_000).await;
        let members = ["ana".to_string(), "ghost".to_string(), "ben".to_string()];
        let work = WorkFacts {
            skills: vec!["billing".into(), "japanese".into(), "french".into()],
            tried: vec!["ana".into()],
        };
        let view = agents.states(&config, &members, &work).await;
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
