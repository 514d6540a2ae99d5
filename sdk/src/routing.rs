//! Pure building blocks for routing strategies (router plugins).
//!
//! Every bundled router follows one common rule, implemented here once so the strategies differ
//! only in how they pick among the agents that may take the work:
//!
//! * an agent is **eligible** ([`is_eligible`], [`eligible`]) when it is online, owns fewer
//!   active conversations than its capacity, and has not already let this work's offer lapse
//!   (`tried`);
//! * with nobody eligible the decision is [`Decision::Wait`] ([`offer_one`], [`offer_all`]);
//! * only agents from the list the host passed are ever offered (by their `index`), and ties
//!   are broken by that list's order (the host passes agents in configuration order).
//!
//! The helpers take and return references into the caller's agent list and never call the host,
//! so they can be unit-tested natively.
//!
//! ```
//! use plugboard_sdk::routing::{by_longest_idle, eligible, offer_one};
//! use plugboard_sdk::types::{AgentState, Decision, WaitingWork};
//!
//! fn decide(_work: &WaitingWork, agents: &[AgentState]) -> Decision {
//!     offer_one(by_longest_idle(eligible(agents)))
//! }
//! # let _ = decide;
//! ```

use std::cmp::Ordering;

use crate::types::{AgentState, Decision, Presence, WaitingWork};

/// Whether `agent` may be offered `work`: online, below capacity, and not already tried.
pub fn is_eligible(agent: &AgentState) -> bool {
    agent.presence == Presence::Online && agent.active < agent.capacity && !agent.tried
}

/// The agents of `agents` that are eligible ([`is_eligible`]), in the given order.
pub fn eligible(agents: &[AgentState]) -> Vec<&AgentState> {
    agents.iter().filter(|a| is_eligible(a)).collect()
}

/// Orders agents from longest idle to most recently busy.
///
/// Idle agents (`idle-since` set) come first, smallest `idle-since` first. Agents with
/// `idle-since = none` (busy with some active work) follow, ordered by `last-assigned`, oldest
/// first, with never-assigned agents (`none`) before all others. Agents this order considers
/// equal keep their given order when used with a stable sort or [`by_longest_idle`].
pub fn idle_order(a: &AgentState, b: &AgentState) -> Ordering {
    match (a.idle_since, b.idle_since) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        // `Option` orders `None` before every `Some`, i.e. never assigned first.
        (None, None) => a.last_assigned.cmp(&b.last_assigned),
    }
}

/// The agent idle longest among `agents` ([`idle_order`]); the earliest in the given order on a
/// tie, `None` if `agents` is empty.
pub fn by_longest_idle<'a>(
    agents: impl IntoIterator<Item = &'a AgentState>,
) -> Option<&'a AgentState> {
    // `min_by` returns the first of several equal minima.
    agents.into_iter().min_by(|a, b| idle_order(a, b))
}

/// The agent with the fewest `active` conversations among `agents`; ties go to the longest idle
/// ([`idle_order`]), then to the earliest in the given order. `None` if `agents` is empty.
pub fn by_fewest_active<'a>(
    agents: impl IntoIterator<Item = &'a AgentState>,
) -> Option<&'a AgentState> {
    agents
        .into_iter()
        .min_by(|a, b| a.active.cmp(&b.active).then_with(|| idle_order(a, b)))
}

/// Whether `agent` holds every skill `work` requires (the host matched the names
/// case-insensitively into `agent.skills`). Every agent holds an empty list of skills.
pub fn has_skills(agent: &AgentState, work: &WaitingWork) -> bool {
    let wanted = match work.skills.len() {
        n if n >= 64 => u64::MAX,
        n => (1u64 << n) - 1,
    };
    agent.skills & wanted == wanted
}

/// The agents of `agents` holding every skill `work` requires ([`has_skills`]), in the given
/// order.
pub fn with_skills<'a>(
    agents: impl IntoIterator<Item = &'a AgentState>,
    work: &WaitingWork,
) -> Vec<&'a AgentState> {
    agents.into_iter().filter(|a| has_skills(a, work)).collect()
}

/// The next eligible agent in rotation (round-robin with memory).
///
/// The rotation continues after the agent with the greatest `last-assigned` among all of
/// `agents` (eligible or not): the first eligible agent after it in the given order, wrapping
/// around, and ending with that agent itself. On a tie for the greatest `last-assigned` the later
/// agent in the given order counts as the last assigned, since agents assigned within the same
/// second were assigned in rotation order. If nobody was ever assigned, the rotation starts at the
/// first agent. `None` if no agent is eligible.
pub fn next_in_rotation(agents: &[AgentState]) -> Option<&AgentState> {
    let last = agents
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.last_assigned.map(|t| (t, i)))
        // Compares by time, then index: the later agent wins a tie.
        .max();
    let start = last.map_or(0, |(_, i)| i + 1);
    (0..agents.len())
        .map(|k| &agents[(start + k) % agents.len()])
        .find(|a| is_eligible(a))
}

/// An index below `len` chosen uniformly from 8 random bytes (e.g. from
/// [`host::random_bytes`](crate::host::random_bytes)`(8)`); `None` if `len` is zero.
///
/// Uses the multiply-shift reduction of a 64-bit value, whose bias (at most `len / 2^64`) is
/// negligible for any agent list.
pub fn pick_index(len: usize, random: [u8; 8]) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let x = u128::from(u64::from_le_bytes(random));
    let index = (x * len as u128) >> 64;
    Some(usize::try_from(index).expect("index is below len"))
}

/// Offers the work to `agent` alone, or [`Decision::Wait`] if there is none.
pub fn offer_one(agent: Option<&AgentState>) -> Decision {
    match agent {
        Some(agent) => Decision::Offer(vec![agent.index]),
        None => Decision::Wait,
    }
}

/// Offers the work to all of `agents` at once, in order, or [`Decision::Wait`] if there are none.
pub fn offer_all<'a>(agents: impl IntoIterator<Item = &'a AgentState>) -> Decision {
    let indices: Vec<u32> = agents.into_iter().map(|a| a.index).collect();
    if indices.is_empty() {
        Decision::Wait
    } else {
        Decision::Offer(indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An online idle agent at `index` with capacity 1, nothing assigned, no skills.
    fn agent(index: u32) -> AgentState {
        AgentState {
            index,
            presence: Presence::Online,
            active: 0,
            capacity: 1,
            idle_since: None,
            last_offered: None,
            last_assigned: None,
            skills: 0,
            tried: false,
        }
    }

    fn work(skills: &[&str]) -> WaitingWork {
        WaitingWork {
            conversation: "conv-1".into(),
            queue: "support".into(),
            channel: "sms".into(),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            waiting_since: 1_000,
            now: 2_000,
        }
    }

    fn ids(agents: &[&AgentState]) -> Vec<u32> {
        agents.iter().map(|a| a.index).collect()
    }

    fn id(agent: Option<&AgentState>) -> Option<u32> {
        agent.map(|a| a.index)
    }

    #[test]
    fn eligibility() {
        let agents = [
            AgentState {
                presence: Presence::Away,
                ..agent(0)
            },
            AgentState {
                tried: true,
                ..agent(1)
            },
            AgentState {
                presence: Presence::Offline,
                ..agent(2)
            },
            AgentState {
                active: 2,
                capacity: 2,
                ..agent(3)
            },
            agent(4),
            AgentState {
                capacity: 0,
                ..agent(5)
            },
            AgentState {
                active: 1,
                capacity: 2,
                ..agent(6)
            },
        ];
        assert_eq!(ids(&eligible(&agents)), [4, 6]);
        assert!(eligible(&[]).is_empty());
    }

    #[test]
    fn longest_idle_order() {
        let idle = |index: u32, since: u64| AgentState {
            idle_since: Some(since),
            ..agent(index)
        };
        let busy = |index: u32, assigned: Option<u64>| AgentState {
            active: 1,
            capacity: 3,
            last_assigned: assigned,
            ..agent(index)
        };
        let agents = [
            busy(0, Some(100)),
            busy(1, None),
            idle(2, 500),
            busy(3, Some(900)),
            idle(4, 200),
            idle(5, 200),
        ];
        let all: Vec<&AgentState> = agents.iter().collect();
        assert_eq!(id(by_longest_idle(all.iter().copied())), Some(4));
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| idle_order(a, b));
        assert_eq!(ids(&sorted), [4, 5, 2, 1, 0, 3]);
        assert_eq!(id(by_longest_idle(&agents[..2])), Some(1));
        assert_eq!(id(by_longest_idle(&[])), None);
        // Equal busy agents keep the given order.
        let twins = [busy(7, Some(5)), busy(8, Some(5))];
        assert_eq!(id(by_longest_idle(&twins)), Some(7));
    }

    #[test]
    fn fewest_active() {
        let a = |index: u32, active: u32, idle: Option<u64>| AgentState {
            active,
            capacity: 5,
            idle_since: idle,
            last_assigned: Some(10),
            ..agent(index)
        };
        let agents = [a(0, 2, None), a(1, 1, None), a(2, 1, None), a(3, 3, None)];
        // Equal active and equal idleness: given order.
        assert_eq!(id(by_fewest_active(&agents)), Some(1));
        let agents = [a(0, 1, None), a(1, 0, Some(50)), a(2, 0, Some(10))];
        assert_eq!(id(by_fewest_active(&agents)), Some(2));
        assert_eq!(id(by_fewest_active(&[])), None);
    }

    #[test]
    fn skills() {
        let skilled = |index: u32, skills: u64| AgentState {
            skills,
            ..agent(index)
        };
        // Bits stand for the work's skills in order: here 0 = japanese, 1 = billing.
        let agents = [skilled(0, 0b00), skilled(1, 0b01), skilled(2, 0b11)];
        assert_eq!(ids(&with_skills(&agents, &work(&["japanese"]))), [1, 2]);
        assert_eq!(
            ids(&with_skills(&agents, &work(&["japanese", "billing"]))),
            [2]
        );
        assert_eq!(ids(&with_skills(&agents, &work(&[]))), [0, 1, 2]);
        assert!(has_skills(&agents[0], &work(&[])));
        // All 64 skills wanted: every bit must be set.
        let many: Vec<String> = (0..64).map(|i| format!("s{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(has_skills(&skilled(3, u64::MAX), &work(&many)));
        assert!(!has_skills(&skilled(4, u64::MAX >> 1), &work(&many)));
    }

    #[test]
    fn rotation() {
        let assigned = |index: u32, t: Option<u64>| AgentState {
            last_assigned: t,
            ..agent(index)
        };
        // Nobody assigned yet: start at the first agent.
        let fresh = [agent(0), agent(1), agent(2)];
        assert_eq!(id(next_in_rotation(&fresh)), Some(0));
        // Continue after the most recently assigned.
        let agents = [
            assigned(0, Some(10)),
            assigned(1, Some(30)),
            assigned(2, Some(20)),
        ];
        assert_eq!(id(next_in_rotation(&agents)), Some(2));
        // Wrap around after the last agent.
        let agents = [
            assigned(0, Some(10)),
            assigned(1, Some(20)),
            assigned(2, Some(30)),
        ];
        assert_eq!(id(next_in_rotation(&agents)), Some(0));
        // Skip ineligible agents, even the last assigned's successor.
        let mut agents = [
            AgentState {
                presence: Presence::Away,
                ..assigned(0, Some(10))
            },
            assigned(1, None),
            assigned(2, Some(30)),
        ];
        assert_eq!(id(next_in_rotation(&agents)), Some(1));
        agents[1].tried = true;
        assert_eq!(id(next_in_rotation(&agents)), Some(2));
        agents[2].tried = true;
        assert_eq!(id(next_in_rotation(&agents)), None);
        // A tie for the latest assignment continues after the later agent.
        let agents = [
            assigned(0, Some(30)),
            assigned(1, Some(30)),
            assigned(2, None),
        ];
        assert_eq!(id(next_in_rotation(&agents)), Some(2));
        assert_eq!(id(next_in_rotation(&[])), None);
    }

    #[test]
    fn uniform_pick() {
        assert_eq!(pick_index(0, [7; 8]), None);
        assert_eq!(pick_index(1, [0xff; 8]), Some(0));
        assert_eq!(pick_index(4, [0; 8]), Some(0));
        assert_eq!(pick_index(4, [0xff; 8]), Some(3));
        // The top two bits of the value select among four.
        let top = |b: u8| {
            let mut r = [0; 8];
            r[7] = b;
            r
        };
        assert_eq!(pick_index(4, top(0x40)), Some(1));
        assert_eq!(pick_index(4, top(0x80)), Some(2));
        assert_eq!(pick_index(4, top(0xc0)), Some(3));
    }

    #[test]
    fn decisions() {
        let agents = [agent(3), agent(5)];
        assert_eq!(offer_one(agents.first()), Decision::Offer(vec![3]));
        assert_eq!(offer_one(None), Decision::Wait);
        assert_eq!(offer_all(&agents), Decision::Offer(vec![3, 5]));
        assert_eq!(offer_all(&[]), Decision::Wait);
    }
}
