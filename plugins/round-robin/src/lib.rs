//! Plugboard routing strategy "round-robin": offer waiting work to agents in turn, continuing
//! after the last one assigned (Asterisk queue strategy `rrmemory`).
//!
//! The rotation follows the host's agent order and resumes right after the agent with the
//! greatest `last-assigned` (wrapping around); the first eligible agent from there (see
//! [`plugboard_sdk::routing::next_in_rotation`]) is offered the work. If nobody was ever
//! assigned, the rotation starts at the first agent. With nobody eligible the work waits.

use plugboard_sdk::routing::{next_in_rotation, offer_one};
use plugboard_sdk::types::{AgentState, Decision, WaitingWork};

/// The round-robin strategy.
pub struct RoundRobin;

/// The decision for `work` among `agents`: offer to the next eligible agent in rotation, or wait.
pub fn decide(_work: &WaitingWork, agents: &[AgentState]) -> Decision {
    offer_one(next_in_rotation(agents))
}

impl plugboard_sdk::Router for RoundRobin {
    fn decide(work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        decide(&work, &agents)
    }
}

plugboard_sdk::export_router!(RoundRobin);
