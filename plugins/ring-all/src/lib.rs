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
pub fn decide(work: &WaitingWork, agents: &[AgentState]) -> Decision {
    offer_all(eligible(work, agents))
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

    fn agent(id: &str, presence: Presence, active: u32, capacity: u32) -> AgentState {
        AgentState {
            id: id.to_string(),
            presence,
            active,
            capacity,
            idle_since: None,
            last_offered: None,
            last_assigned: None,
            skills: Vec::new(),
        }
    }

    fn work(tried: &[&str]) -> WaitingWork {
        WaitingWork {
            conversation: "conv-1".into(),
            queue: "support".into(),
            channel: "sms".into(),
            skills: Vec::new(),
            waiting_since: 0,
            now: 0,
            tried: tried.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn offers_to_all_eligible_in_order() {
        let agents = [
            agent("c", Presence::Online, 0, 2),
            agent("a", Presence::Away, 0, 2),
            agent("b", Presence::Online, 2, 2),
            agent("d", Presence::Offline, 0, 2),
            agent("e", Presence::Online, 1, 2),
            agent("f", Presence::Online, 0, 1),
        ];
        assert_eq!(
            decide(&work(&[]), &agents),
            Decision::Offer(vec!["c".into(), "e".into(), "f".into()])
        );
        assert_eq!(
            decide(&work(&["f", "c"]), &agents),
            Decision::Offer(vec!["e".into()])
        );
        assert_eq!(decide(&work(&[]), &agents[1..4]), Decision::Wait);
        assert_eq!(decide(&work(&[]), &[]), Decision::Wait);
    }
}
