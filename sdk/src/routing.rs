//! Pure building blocks for routing strategies (router plugins).
//!
//! Every bundled router follows one common rule, implemented here once so the strategies differ
//! only in how they pick among the agents that may take the work:
//!
//! * an agent is **eligible** ([`is_eligible`], [`eligible`]) when it is online, owns fewer
//!   active conversations than its capacity, and is not in the work's `tried` list;
//! * with nobody eligible the decision is [`Decision::Wait`] ([`offer_one`], [`offer_all`]);
//! * only agents from the list the host passed are ever offered, and ties are broken by that
//!   list's order (the host passes agents in configuration order).
//!
//! The helpers take and return references into the caller's agent list and never call the host,
//! so they can be unit-tested natively.
//!
//! ```
//! use plugboard_sdk::routing::{by_longest_idle, eligible, offer_one};
//! use plugboard_sdk::types::{AgentState, Decision, WaitingWork};
//!
//! fn decide(work: &WaitingWork, agents: &[AgentState]) -> Decision {
//!     offer_one(by_longest_idle(eligible(work, agents)))
//! }
//! # let _ = decide;
//! ```

use std::cmp::Ordering;

use crate::types::{AgentState, Decision, Presence, WaitingWork};

/// Whether `agent` may be offered `work`: online, below capacity, and not already tried.
pub fn is_eligible(agent: &AgentState, work: &WaitingWork) -> bool {
    agent.presence == Presence::Online
        && agent.active < agent.capacity
        && !work.tried.contains(&agent.id)
}

/// The agents of `agents` that are eligible for `work` ([`is_eligible`]), in the given order.
pub fn eligible<'a>(work: &WaitingWork, agents: &'a [AgentState]) -> Vec<&'a AgentState> {
    agents.iter().filter(|a| is_eligible(a, work)).collect()
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

/// Whether `agent` holds every skill in `skills`, compared case-insensitively. Every agent holds
/// an empty list of skills.
pub fn has_skills(agent: &AgentState, skills: &[String]) -> bool {
    skills.iter().all(|wanted| {
        let wanted = wanted.to_lowercase();
        agent
            .skills
            .iter()
            .any(|held| held.to_lowercase() == wanted)
    })
}

/// The agents of `agents` holding every skill in `skills` ([`has_skills`]), in the given order.
pub fn with_skills<'a>(
    agents: impl IntoIterator<Item = &'a AgentState>,
    skills: &[String],
) -> Vec<&'a AgentState> {
    agents
        .into_iter()
        .filter(|a| has_skills(a, skills))
        .collect()
}

/// The next eligible agent in rotation (round-robin with memory).
///
/// The rotation continues after the agent with the greatest `last-assigned` among all of
/// `agents` (eligible or not): the first eligible agent after it in the given order, wrapping
/// around, and ending with that agent itself. On a tie for the greatest `last-assigned` the later
/// agent in the given order counts as the last assigned, since agents assigned within the same
/// second were assigned in rotation order. If nobody was ever assigned, the rotation starts at the
/// first agent. `None` if no agent is eligible.
pub fn next_in_rotation<'a>(
    work: &WaitingWork,
    agents: &'a [AgentState],
) -> Option<&'a AgentState> {
    let last = agents
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.last_assigned.map(|t| (t, i)))
        // Compares by time, then index: the later agent wins a tie.
        .max();
    let start = last.map_or(0, |(_, i)| i + 1);
    (0..agents.len())
        .map(|k| &agents[(start + k) % agents.len()])
        .find(|a| is_eligible(a, work))
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
        Some(agent) => Decision::Offer(vec![agent.id.clone()]),
        None => Decision::Wait,
    }
}

/// Offers the work to all of `agents` at once, in order, or [`Decision::Wait`] if there are none.
pub fn offer_all<'a>(agents: impl IntoIterator<Item = &'a AgentState>) -> Decision {
    let ids: Vec<String> = agents.into_iter().map(|a| a.id.clone()).collect();
    if ids.is_empty() {
        Decision::Wait
    } else {
        Decision::Offer(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An online idle agent with capacity 1, nothing assigned, no skills.
    fn agent(id: &str) -> AgentState {
        AgentState {
            id: id.to_string(),
            presence: Presence::Online,
            active: 0,
            capacity: 1,
            idle_since: None,
            last_offered: None,
            last_assigned: None,
            skills: Vec::new(),
        }
    }

    fn work(tried: &[&str], skills: &[&str]) -> WaitingWork {
        WaitingWork {
            conversation: "conv-1".into(),
            queue: "support".into(),
            channel: "sms".into(),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            waiting_since: 1_000,
            now: 2_000,
            tried: tried.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ids(agents: &[&AgentState]) -> Vec<String> {
        agents.iter().map(|a| a.id.clone()).collect()
    }

    fn id(agent: Option<&AgentState>) -> Option<&str> {
        agent.map(|a| a.id.as_str())
    }

    #[test]
    fn eligibility() {
        let away = AgentState {
            presence: Presence::Away,
            ..agent("away")
        };
        let offline = AgentState {
            presence: Presence::Offline,
            ..agent("offline")
        };
        let full = AgentState {
            active: 2,
            capacity: 2,
            ..agent("full")
        };
        let zero_capacity = AgentState {
            capacity: 0,
            ..agent("zero")
        };
        let room = AgentState {
            active: 1,
            capacity: 2,
            ..agent("room")
        };
        let agents = [
            away,
            agent("tried"),
            offline,
            full,
            agent("ok"),
            zero_capacity,
            room,
        ];
        let w = work(&["tried", "unknown"], &[]);
        assert_eq!(ids(&eligible(&w, &agents)), ["ok", "room"]);
        assert!(eligible(&w, &[]).is_empty());
        assert_eq!(
            ids(&eligible(&work(&[], &[]), &agents)),
            ["tried", "ok", "room"]
        );
    }

    #[test]
    fn longest_idle_order() {
        let idle = |id: &str, since: u64| AgentState {
            idle_since: Some(since),
            ..agent(id)
        };
        let busy = |id: &str, assigned: Option<u64>| AgentState {
            active: 1,
            capacity: 3,
            last_assigned: assigned,
            ..agent(id)
        };
        let agents = [
            busy("busy-old", Some(100)),
            busy("busy-never", None),
            idle("idle-late", 500),
            busy("busy-new", Some(900)),
            idle("idle-early", 200),
            idle("idle-early-2", 200),
        ];
        let all: Vec<&AgentState> = agents.iter().collect();
        assert_eq!(id(by_longest_idle(all.iter().copied())), Some("idle-early"));
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| idle_order(a, b));
        assert_eq!(
            ids(&sorted),
            [
                "idle-early",
                "idle-early-2",
                "idle-late",
                "busy-never",
                "busy-old",
                "busy-new"
            ]
        );
        assert_eq!(id(by_longest_idle(&agents[..2])), Some("busy-never"));
        assert_eq!(id(by_longest_idle(&[])), None);
        // Equal busy agents keep the given order.
        let twins = [busy("x", Some(5)), busy("y", Some(5))];
        assert_eq!(id(by_longest_idle(&twins)), Some("x"));
    }

    #[test]
    fn fewest_active() {
        let a = |id: &str, active: u32, idle: Option<u64>| AgentState {
            active,
            capacity: 5,
            idle_since: idle,
            last_assigned: Some(10),
            ..agent(id)
        };
        let agents = [
            a("two", 2, None),
            a("one-late", 1, None),
            a("one-early", 1, None),
            a("three", 3, None),
        ];
        // Equal active and equal idleness: given order.
        assert_eq!(id(by_fewest_active(&agents)), Some("one-late"));
        let agents = [
            a("one", 1, None),
            a("zero-late", 0, Some(50)),
            a("zero-early", 0, Some(10)),
        ];
        assert_eq!(id(by_fewest_active(&agents)), Some("zero-early"));
        assert_eq!(id(by_fewest_active(&[])), None);
    }

    #[test]
    fn skills() {
        let skilled = |id: &str, skills: &[&str]| AgentState {
            skills: skills.iter().map(|s| s.to_string()).collect(),
            ..agent(id)
        };
        let agents = [
            skilled("none", &[]),
            skilled("jp", &["Japanese"]),
            skilled("jp-billing", &["billing", "JAPANESE", "sales"]),
        ];
        let wanted = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(&with_skills(&agents, &wanted(&["japanese"]))),
            ["jp", "jp-billing"]
        );
        assert_eq!(
            ids(&with_skills(&agents, &wanted(&["Billing", "japanese"]))),
            ["jp-billing"]
        );
        assert!(with_skills(&agents, &wanted(&["french"])).is_empty());
        assert_eq!(
            ids(&with_skills(&agents, &[])),
            ["none", "jp", "jp-billing"]
        );
        assert!(has_skills(&agents[0], &[]));
    }

    #[test]
    fn rotation() {
        let assigned = |id: &str, t: Option<u64>| AgentState {
            last_assigned: t,
            ..agent(id)
        };
        let w = work(&[], &[]);
        // Nobody assigned yet: start at the first agent.
        let fresh = [agent("a"), agent("b"), agent("c")];
        assert_eq!(id(next_in_rotation(&w, &fresh)), Some("a"));
        // Continue after the most recently assigned.
        let agents = [
            assigned("a", Some(10)),
            assigned("b", Some(30)),
            assigned("c", Some(20)),
        ];
        assert_eq!(id(next_in_rotation(&w, &agents)), Some("c"));
        // Wrap around after the last agent.
        let agents = [
            assigned("a", Some(10)),
            assigned("b", Some(20)),
            assigned("c", Some(30)),
        ];
        assert_eq!(id(next_in_rotation(&w, &agents)), Some("a"));
        // Skip ineligible agents, even the last assigned's successor.
        let agents = [
            AgentState {
                presence: Presence::Away,
                ..assigned("a", Some(10))
            },
            assigned("b", None),
            assigned("c", Some(30)),
        ];
        assert_eq!(id(next_in_rotation(&w, &agents)), Some("b"));
        assert_eq!(id(next_in_rotation(&work(&["b"], &[]), &agents)), Some("c"));
        assert_eq!(id(next_in_rotation(&work(&["b", "c"], &[]), &agents)), None);
        // A tie for the latest assignment continues after the later agent.
        let agents = [
            assigned("a", Some(30)),
            assigned("b", Some(30)),
            assigned("c", None),
        ];
        assert_eq!(id(next_in_rotation(&w, &agents)), Some("c"));
        assert_eq!(id(next_in_rotation(&w, &[])), None);
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
        let agents = [agent("a"), agent("b")];
        assert_eq!(offer_one(agents.first()), Decision::Offer(vec!["a".into()]));
        assert_eq!(offer_one(None), Decision::Wait);
        assert_eq!(
            offer_all(&agents),
            Decision::Offer(vec!["a".into(), "b".into()])
        );
        assert_eq!(offer_all(&[]), Decision::Wait);
    }
}
