//! Plugboard routing strategy "random": offer waiting work to one eligible agent chosen
//! uniformly at random (Asterisk queue strategy `random`).
//!
//! Eligibility is the common rule (see [`plugboard_sdk::routing::eligible`]); the randomness
//! comes from the host's secure generator ([`plugboard_sdk::host::random_bytes`]), asked only
//! when there is an agent to choose. With nobody eligible the work waits.

use plugboard_sdk::routing::{eligible, offer_one, pick_index};
use plugboard_sdk::types::{AgentState, Decision, WaitingWork};

/// The random strategy.
pub struct Random;

/// The decision for `work` among `agents`: offer to the eligible agent that `random` (8 random
/// bytes, asked for only when some agent is eligible) selects uniformly, or wait.
pub fn decide(
    _work: &WaitingWork,
    agents: &[AgentState],
    random: impl FnOnce() -> [u8; 8],
) -> Decision {
    let candidates = eligible(agents);
    if candidates.is_empty() {
        return Decision::Wait;
    }
    let chosen = pick_index(candidates.len(), random()).map(|i| candidates[i]);
    offer_one(chosen)
}

/// Eight bytes from the host's secure random generator.
fn host_random() -> [u8; 8] {
    let bytes = plugboard_sdk::host::random_bytes(8);
    let mut out = [0u8; 8];
    // The host returns exactly the length asked for; a short answer only loses randomness.
    for (slot, byte) in out.iter_mut().zip(bytes) {
        *slot = byte;
    }
    out
}

impl plugboard_sdk::Router for Random {
    fn decide(work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        decide(&work, &agents, host_random)
    }
}

plugboard_sdk::export_router!(Random);

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::types::Presence;

    fn agent(index: u32, presence: Presence, tried: bool) -> AgentState {
        AgentState {
            index,
            presence,
            active: 0,
            capacity: 1,
            idle_since: None,
            last_offered: None,
            last_assigned: None,
            skills: 0,
            tried,
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
    fn picks_among_eligible_only() {
        let agents = [
            agent(0, Presence::Online, false),
            agent(1, Presence::Away, false),
            agent(2, Presence::Online, false),
            agent(3, Presence::Online, true),
        ];
        let top = |b: u8| move || [0, 0, 0, 0, 0, 0, 0, b];
        let w = work();
        assert_eq!(decide(&w, &agents, top(0)), Decision::Offer(vec![0]));
        assert_eq!(decide(&w, &agents, top(0xff)), Decision::Offer(vec![2]));
        let never = || -> [u8; 8] { panic!("no randomness needed without candidates") };
        assert_eq!(decide(&w, &agents[1..2], never), Decision::Wait);
    }
}
