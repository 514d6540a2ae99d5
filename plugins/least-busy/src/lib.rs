//! Plugboard routing strategy "least-busy": offer waiting work to the eligible agent with the
//! fewest active conversations (Asterisk queue strategy `fewestcalls`).
//!
//! Eligibility (see [`plugboard_sdk::routing::eligible`]) already leaves out agents at capacity.
//! Among the rest the one owning the fewest `active` conversations is offered the work; ties go
//! to the longest idle (as in longest-idle), then to the earlier agent in the host's order (see
//! [`plugboard_sdk::routing::by_fewest_active`]). With nobody eligible the work waits.

use plugboard_sdk::routing::{by_fewest_active, eligible, offer_one};
use plugboard_sdk::types::{AgentState, Decision, WaitingWork};

/// The least-busy strategy.
pub struct LeastBusy;

/// The decision for `work` among `agents`: offer to the least busy eligible agent, or wait.
pub fn decide(_work: &WaitingWork, agents: &[AgentState]) -> Decision {
    offer_one(by_fewest_active(eligible(agents)))
}

impl plugboard_sdk::Router for LeastBusy {
    fn decide(work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        decide(&work, &agents)
    }
}

plugboard_sdk::export_router!(LeastBusy);
