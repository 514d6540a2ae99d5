//! Plugboard routing strategy "longest-idle": offer waiting work to the one eligible agent idle
//! longest (Asterisk queue strategy `leastrecent`).
//!
//! Among eligible agents (see [`plugboard_sdk::routing::eligible`]) the one with the smallest
//! `idle-since` is offered the work; agents that are busy with some work (`idle-since = none`)
//! come after every idle one, the one assigned longest ago first (see
//! [`plugboard_sdk::routing::idle_order`]). Ties go to the earlier agent in the host's order.
//! When the offer lapses the host asks again with that agent marked `tried`, so the next one is
//! offered. With nobody eligible the work waits.

use plugboard_sdk::routing::{by_longest_idle, eligible, offer_one};
use plugboard_sdk::types::{AgentState, Decision, WaitingWork};

/// The longest-idle strategy.
pub struct LongestIdle;

/// The decision for `work` among `agents`: offer to the longest-idle eligible agent, or wait.
pub fn decide(_work: &WaitingWork, agents: &[AgentState]) -> Decision {
    offer_one(by_longest_idle(eligible(agents)))
}

impl plugboard_sdk::Router for LongestIdle {
    fn decide(work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        decide(&work, &agents)
    }
}

plugboard_sdk::export_router!(LongestIdle);
