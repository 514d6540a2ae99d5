//! Plugboard routing strategy "skills": offer waiting work to the longest-idle eligible agent
//! holding every skill the work needs (skills-based routing; Asterisk has no equivalent queue
//! strategy).
//!
//! Among eligible agents (see [`plugboard_sdk::routing::eligible`]) only those holding every
//! skill in the work's `skills` qualify (the host sets one bit of `agent-state.skills` per
//! required skill the agent holds, compared case-insensitively; see
//! [`plugboard_sdk::routing::with_skills`]); work without skills suits every agent. Of those,
//! the one idle longest is offered the work, as in longest-idle. With nobody qualified, even if
//! eligible agents without the skills exist, the work waits.

use plugboard_sdk::routing::{by_longest_idle, eligible, offer_one, with_skills};
use plugboard_sdk::types::{AgentState, Decision, WaitingWork};

/// The skills strategy.
pub struct Skills;

/// The decision for `work` among `agents`: offer to the longest-idle eligible agent holding the
/// work's skills, or wait.
pub fn decide(work: &WaitingWork, agents: &[AgentState]) -> Decision {
    offer_one(by_longest_idle(with_skills(eligible(agents), work)))
}

impl plugboard_sdk::Router for Skills {
    fn decide(work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        decide(&work, &agents)
    }
}

plugboard_sdk::export_router!(Skills);
