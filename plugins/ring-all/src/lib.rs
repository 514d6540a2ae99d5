//! Plugboard routing strategy "ring-all": offer waiting work to every available agent at once.
//!
//! An agent is available when it is online and owns fewer active conversations than its
//! capacity. Offers list agents in the order the host gave them; with nobody available the work
//! waits.

use plugboard_sdk::types::{AgentState, Decision, Presence, WaitingWork};

/// The ring-all strategy.
pub struct RingAll;

/// The decision for `agents`: offer to every available agent, in order, or wait.
pub fn decide(agents: &[AgentState]) -> Decision {
    let available: Vec<String> = agents
        .iter()
        .filter(|a| a.presence == Presence::Online && a.active < a.capacity)
        .map(|a| a.id.clone())
        .collect();
    if available.is_empty() {
        Decision::Wait
    } else {
        Decision::Offer(available)
    }
}

impl plugboard_sdk::Router for RingAll {
    fn decide(_work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        decide(&agents)
    }
}

plugboard_sdk::export_router!(RingAll);

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn offers_to_all_available_in_order() {
        let agents = [
            agent("c", Presence::Online, 0, 2),
            agent("a", Presence::Away, 0, 2),
            agent("b", Presence::Online, 2, 2),
            agent("d", Presence::Offline, 0, 2),
            agent("e", Presence::Online, 1, 2),
        ];
        assert_eq!(
            decide(&agents),
            Decision::Offer(vec!["c".to_string(), "e".to_string()])
        );
        assert_eq!(decide(&agents[1..4]), Decision::Wait);
        assert_eq!(decide(&[]), Decision::Wait);
    }
}
