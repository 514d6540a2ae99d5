//! Plugboard routing strategy "ring-all": offer waiting work to every eligible agent at once
//! (Asterisk queue strategy `ringall`).
//!
//! An agent is eligible when it is online, owns fewer active conversations than its capacity and
//! has not already let this work's offer lapse (see [`plugboard_sdk::routing::eligible`]). Offers
//! list agents in the order the host gave them; with nobody eligible the work waits.

use plugboard_sdk::routing::{eligible, offer_all};
use plugboard_sdk::types::{AgentState, Decision, WaitingWork};

/// The ring-all strategy.
pub struct RingAll;

/// The decision for `work` among `agents`: offer to every eligible agent, in order, or wait.
pub fn decide(_work: &WaitingWork, agents: &[AgentState]) -> Decision {
    offer_all(eligible(agents))
}

impl plugboard_sdk::Router for RingAll {
    fn decide(work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        decide(&work, &agents)
    }
}

plugboard_sdk::export_router!(RingAll);

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::types::Presence;

    fn agent(index: u32, presence: Presence, active: u32, capacity: u32) -> AgentState {
        AgentState {
            index,
            presence,
            active,
            capacity,
            idle_since: None,
            last_offered: None,
            last_assigned: None,
            skills: 0,
            tried: false,
        }
    }

    fn work() -> WaitingWork {
        WaitingWork {
            conversation: "conv-1".into(),
            queue: "support".into(),
            channel: "sms".into(),
            skills: Vec::new(),
            waiting_since: 0,
            now: 0,
        }
    }

    #[test]
    fn offers_to_all_eligible_in_order() {
        let mut agents = [
            agent(0, Presence::Online, 0, 2),
            agent(1, Presence::Away, 0, 2),
            agent(2, Presence::Online, 2, 2),
            agent(3, Presence::Offline, 0, 2),
            agent(4, Presence::Online, 1, 2),
            agent(5, Presence::Online, 0, 1),
        ];
        assert_eq!(decide(&work(), &agents), Decision::Offer(vec![0, 4, 5]));
        agents[5].tried = true;
        agents[0].tried = true;
        assert_eq!(decide(&work(), &agents), Decision::Offer(vec![4]));
        assert_eq!(decide(&work(), &agents[1..4]), Decision::Wait);
        assert_eq!(decide(&work(), &[]), Decision::Wait);
    }
}
