//! The bundled routing strategies, each loaded through the host's real plugin machinery
//! (`PluginSet::load` over `plugboard_artifacts::BUNDLED`, calls in the sandbox) and checked
//! against tables of agent states: presence, capacity, `tried`, idle ordering, round-robin
//! wrap-around, skills, and waiting when nobody is eligible.
//!
//! The plugin set is loaded once per test binary, since loading compiles every component.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use plugboard::clock::Clock;
use plugboard::config::LimitsConfig;
use plugboard::runtime::bindings::wit::{AgentState, Decision, Presence, WaitingWork};
use plugboard::runtime::plugin::PluginSet;
use plugboard::runtime::sandbox::Sandbox;

/// "Now" for every case, in Unix seconds.
const NOW: u64 = 10_000;

/// The sandbox and the bundled plugins, loaded on first use.
fn plugins() -> &'static (Arc<Sandbox>, PluginSet) {
    static PLUGINS: OnceLock<(Arc<Sandbox>, PluginSet)> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        // A generous deadline: the test machine may be busy compiling.
        let limits = LimitsConfig {
            call_timeout_ms: 10_000,
            ..LimitsConfig::default()
        };
        let sandbox = Arc::new(Sandbox::new(limits, Clock::Fixed(NOW * 1000)).expect("sandbox"));
        let cache_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("routers-plugin-cache");
        let set = PluginSet::load(&sandbox, plugboard_artifacts::BUNDLED, None, &cache_dir)
            .expect("load the bundled plugins");
        let refused: Vec<String> = set
            .refused
            .iter()
            .map(|r| format!("{}: {}", r.name, r.error))
            .collect();
        assert!(refused.is_empty(), "bundled plugins refused: {refused:?}");
        (sandbox, set)
    })
}

/// Builds an agent: online, no active work, capacity 2, never idle-timed, offered or assigned,
/// no skills. [`check`] turns it into the contract's [`AgentState`] as the host does: `index`
/// is its position, `skills` the set of the work's skills it holds, `tried` from the case.
struct Agent {
    id: String,
    skills: Vec<String>,
    state: AgentState,
}

/// Starts an [`Agent`] with id `id`.
fn agent(id: &str) -> Agent {
    Agent {
        id: id.to_string(),
        skills: Vec::new(),
        state: AgentState {
            index: 0,
            presence: Presence::Online,
            active: 0,
            capacity: 2,
            idle_since: None,
            last_offered: None,
            last_assigned: None,
            skills: 0,
            tried: false,
        },
    }
}

impl Agent {
    /// Signed in but not taking work.
    fn away(mut self) -> Self {
        self.state.presence = Presence::Away;
        self
    }

    /// Not signed in.
    fn offline(mut self) -> Self {
        self.state.presence = Presence::Offline;
        self
    }

    /// Owns `active` conversations out of `capacity`.
    fn load(mut self, active: u32, capacity: u32) -> Self {
        self.state.active = active;
        self.state.capacity = capacity;
        self
    }

    /// At capacity (2 of 2).
    fn full(self) -> Self {
        self.load(2, 2)
    }

    /// Idle since `t`.
    fn idle(mut self, t: u64) -> Self {
        self.state.idle_since = Some(t);
        self
    }

    /// Busy with one conversation out of 2 (so not idle, still eligible).
    fn busy(self) -> Self {
        self.load(1, 2)
    }

    /// Last assigned a conversation at `t`.
    fn assigned(mut self, t: u64) -> Self {
        self.state.last_assigned = Some(t);
        self
    }

    /// Holds `skills`.
    fn skills(mut self, skills: &[&str]) -> Self {
        self.skills = skills.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// What a case expects the router to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Offer to exactly these agents, in this order.
    Offer(Vec<String>),
    /// Keep waiting.
    Wait,
    /// Move to the overflow queue (no bundled router does).
    Overflow,
}

impl Expect {
    /// The expectation a decision meets, naming offered agents by `ids[index]` (an index out
    /// of range shows as `?N`).
    fn from_decision(d: Decision, ids: &[String]) -> Self {
        match d {
            Decision::Offer(indices) => Expect::Offer(
                indices
                    .into_iter()
                    .map(|i| ids.get(i as usize).cloned().unwrap_or(format!("?{i}")))
                    .collect(),
            ),
            Decision::Wait => Expect::Wait,
            Decision::Overflow => Expect::Overflow,
        }
    }
}

/// Expect an offer to `ids`, in order.
fn offer(ids: &[&str]) -> Expect {
    Expect::Offer(ids.iter().map(|s| s.to_string()).collect())
}

/// One row of a router's table.
struct Case {
    /// What the row checks.
    name: &'static str,
    /// The queue's agents, in configuration order.
    agents: Vec<Agent>,
    /// Agents who already let this work's offer lapse.
    tried: &'static [&'static str],
    /// Skills the work needs.
    skills: &'static [&'static str],
    /// The expected decision.
    expect: Expect,
}

/// A case with no `tried` agents and no skills needed.
fn case(name: &'static str, agents: Vec<Agent>, expect: Expect) -> Case {
    Case {
        name,
        agents,
        tried: &[],
        skills: &[],
        expect,
    }
}

impl Case {
    /// Sets the agents already tried.
    fn tried(mut self, tried: &'static [&'static str]) -> Self {
        self.tried = tried;
        self
    }

    /// Sets the skills the work needs.
    fn skills(mut self, skills: &'static [&'static str]) -> Self {
        self.skills = skills;
        self
    }
}

/// The waiting work of a case.
fn work(skills: &[&str]) -> WaitingWork {
    WaitingWork {
        conversation: "conv-1".into(),
        queue: "support".into(),
        channel: "sms".into(),
        skills: skills.iter().map(|s| s.to_lowercase()).collect(),
        waiting_since: NOW - 60,
        now: NOW,
    }
}

/// The agents as the host passes them to a router for `work` (index = position, skills as the
/// set of the work's skills held, `tried` marked), with their ids by index.
fn contract_view(
    agents: Vec<Agent>,
    work: &WaitingWork,
    tried: &[&str],
) -> (Vec<String>, Vec<AgentState>) {
    let ids = agents.iter().map(|a| a.id.clone()).collect();
    let states = agents
        .into_iter()
        .enumerate()
        .map(|(i, a)| AgentState {
            index: i as u32,
            skills: work
                .skills
                .iter()
                .enumerate()
                .filter(|(_, wanted)| a.skills.iter().any(|h| h.to_lowercase() == **wanted))
                .fold(0, |set, (bit, _)| set | (1 << bit)),
            tried: tried.contains(&a.id.as_str()),
            ..a.state
        })
        .collect();
    (ids, states)
}

/// Asks router `name` to decide `work` among `agents`.
async fn decide(name: &str, work: WaitingWork, agents: Vec<AgentState>) -> Decision {
    let (sandbox, set) = plugins();
    let router = set
        .routers
        .get(name)
        .unwrap_or_else(|| panic!("router {name} not loaded; have {:?}", set.routers.keys()));
    router
        .decide(sandbox, work, agents)
        .await
        .unwrap_or_else(|e| panic!("{name}: decide failed: {e}"))
}

/// Runs every case of `table` against router `name`, reporting all mismatches at once.
async fn check(name: &str, table: Vec<Case>) {
    let mut failures = Vec::new();
    for case in table {
        let work = work(case.skills);
        let (ids, agents) = contract_view(case.agents, &work, case.tried);
        let got = Expect::from_decision(decide(name, work, agents).await, &ids);
        if got != case.expect {
            failures.push(format!(
                "{name} / {}: expected {:?}, got {got:?}",
                case.name, case.expect
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Rows every router must pass: nobody eligible means waiting.
fn nobody_eligible() -> Vec<Case> {
    vec![
        case("no agents", vec![], Expect::Wait),
        case(
            "all away, offline or at capacity",
            vec![
                agent("a").away().idle(100),
                agent("b").offline().idle(100),
                agent("c").full().assigned(100),
                agent("d").load(0, 0).idle(100),
            ],
            Expect::Wait,
        ),
        case(
            "everyone eligible already tried",
            vec![agent("a").idle(100), agent("b").busy(), agent("c").away()],
            Expect::Wait,
        )
        .tried(&["b", "a"]),
    ]
}

#[tokio::test]
async fn every_bundled_router_is_loaded() {
    let (_, set) = plugins();
    let names: Vec<&str> = set.routers.keys().map(String::as_str).collect();
    for name in [
        "ring-all",
        "longest-idle",
        "round-robin",
        "random",
        "least-busy",
        "skills",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

#[tokio::test]
async fn ring_all() {
    let mut table = vec![
        case(
            "offers every eligible agent in given order",
            vec![
                agent("c").idle(300),
                agent("a").away(),
                agent("b").full(),
                agent("d").offline(),
                agent("e").busy(),
                agent("f").idle(100),
            ],
            offer(&["c", "e", "f"]),
        ),
        case(
            "tried agents are left out",
            vec![agent("a"), agent("b"), agent("c").busy()],
            offer(&["b"]),
        )
        .tried(&["c", "a"]),
        case(
            "skills are not this router's business",
            vec![agent("a").skills(&["french"]), agent("b")],
            offer(&["a", "b"]),
        )
        .skills(&["japanese"]),
    ];
    table.extend(nobody_eligible());
    check("ring-all", table).await;
}

#[tokio::test]
async fn longest_idle() {
    let mut table = vec![
        case(
            "smallest idle-since wins",
            vec![
                agent("a").idle(300),
                agent("b").idle(100),
                agent("c").idle(200),
            ],
            offer(&["b"]),
        ),
        case(
            "idle agents before busy ones",
            vec![
                agent("a").busy(),
                agent("b").busy().assigned(5),
                agent("c").idle(9_000),
            ],
            offer(&["c"]),
        ),
        case(
            "busy agents: never assigned first",
            vec![
                agent("a").busy().assigned(50),
                agent("b").busy(),
                agent("c").busy().assigned(20),
            ],
            offer(&["b"]),
        ),
        case(
            "busy agents: oldest last-assigned first",
            vec![
                agent("a").busy().assigned(50),
                agent("b").busy().assigned(20),
                agent("c").busy().assigned(30),
            ],
            offer(&["b"]),
        ),
        case(
            "tie goes to the earlier agent",
            vec![
                agent("a").idle(300),
                agent("b").idle(100),
                agent("c").idle(100),
            ],
            offer(&["b"]),
        ),
        case(
            "away and offline agents are left out",
            vec![
                agent("a").away().idle(10),
                agent("b").offline().idle(20),
                agent("c").idle(300),
            ],
            offer(&["c"]),
        ),
        case(
            "agents at capacity are left out",
            vec![
                agent("a").full().assigned(1),
                agent("b").load(3, 3).assigned(2),
                agent("c").busy().assigned(500),
            ],
            offer(&["c"]),
        ),
        case(
            "a missed offer moves to the next longest idle",
            vec![
                agent("a").idle(100),
                agent("b").idle(200),
                agent("c").idle(300),
            ],
            offer(&["b"]),
        )
        .tried(&["a"]),
        case(
            "two missed offers move to the third",
            vec![
                agent("a").idle(100),
                agent("b").idle(200),
                agent("c").busy(),
            ],
            offer(&["c"]),
        )
        .tried(&["a", "b"]),
    ];
    table.extend(nobody_eligible());
    check("longest-idle", table).await;
}

#[tokio::test]
async fn round_robin() {
    let mut table = vec![
        case(
            "nobody assigned yet: first agent",
            vec![agent("a"), agent("b"), agent("c")],
            offer(&["a"]),
        ),
        case(
            "nobody assigned yet: first eligible agent",
            vec![agent("a").away(), agent("b"), agent("c")],
            offer(&["b"]),
        ),
        case(
            "continues after the last assigned",
            vec![
                agent("a").assigned(10),
                agent("b").assigned(30),
                agent("c").assigned(20),
            ],
            offer(&["c"]),
        ),
        case(
            "wraps around after the last agent",
            vec![
                agent("a").assigned(10),
                agent("b").assigned(20),
                agent("c").assigned(30),
            ],
            offer(&["a"]),
        ),
        case(
            "skips ineligible agents and wraps",
            vec![
                agent("a").assigned(10),
                agent("b").assigned(30),
                agent("c").away().assigned(5),
                agent("d").full().assigned(6),
                agent("e").offline(),
            ],
            offer(&["a"]),
        ),
        case(
            "skips tried agents",
            vec![
                agent("a").assigned(10),
                agent("b").assigned(30),
                agent("c").assigned(20),
            ],
            offer(&["a"]),
        )
        .tried(&["c"]),
        case(
            "the last assigned agent comes round again when alone",
            vec![
                agent("a").away().assigned(10),
                agent("b").busy().assigned(30),
                agent("c").full(),
            ],
            offer(&["b"]),
        ),
        case(
            "an at-capacity last assigned still sets the turn",
            vec![
                agent("a").assigned(10),
                agent("b").full().assigned(30),
                agent("c").assigned(20),
            ],
            offer(&["c"]),
        ),
        case(
            "a tie on last-assigned continues after the later agent",
            vec![agent("a").assigned(30), agent("b").assigned(30), agent("c")],
            offer(&["c"]),
        ),
    ];
    table.extend(nobody_eligible());
    check("round-robin", table).await;
}

#[tokio::test]
async fn least_busy() {
    let mut table = vec![
        case(
            "fewest active wins",
            vec![
                agent("a").load(2, 5),
                agent("b").load(1, 5),
                agent("c").load(3, 5),
            ],
            offer(&["b"]),
        ),
        case(
            "capacity respected",
            vec![
                agent("a").load(1, 1),
                agent("b").load(0, 0),
                agent("c").load(4, 5),
            ],
            offer(&["c"]),
        ),
        case(
            "ties go to the longest idle",
            vec![
                agent("a").idle(300),
                agent("b").idle(100),
                agent("c").load(1, 5),
            ],
            offer(&["b"]),
        ),
        case(
            "busy ties go to the oldest last-assigned",
            vec![
                agent("a").load(1, 3).assigned(50),
                agent("b").load(1, 3).assigned(20),
                agent("c").load(2, 3),
            ],
            offer(&["b"]),
        ),
        case(
            "full ties go to the earlier agent",
            vec![
                agent("a").load(2, 3).assigned(20),
                agent("b").load(1, 3).assigned(20),
                agent("c").load(1, 3).assigned(20),
            ],
            offer(&["b"]),
        ),
        case(
            "away and offline agents are left out even when free",
            vec![
                agent("a").away().idle(1),
                agent("b").offline().idle(1),
                agent("c").load(2, 3),
            ],
            offer(&["c"]),
        ),
        case(
            "tried agents are left out",
            vec![agent("a").idle(100), agent("b").load(2, 3)],
            offer(&["b"]),
        )
        .tried(&["a"]),
    ];
    table.extend(nobody_eligible());
    check("least-busy", table).await;
}

#[tokio::test]
async fn skills() {
    let mut table = vec![
        case(
            "longest idle among the skilled",
            vec![
                agent("a").skills(&["japanese"]).idle(10),
                agent("b").skills(&["billing", "japanese"]).idle(300),
                agent("c").skills(&["billing"]).idle(100),
            ],
            offer(&["c"]),
        )
        .skills(&["billing"]),
        case(
            "every skill needed, compared case-insensitively",
            vec![
                agent("a").skills(&["billing"]).idle(10),
                agent("b")
                    .skills(&["JAPANESE", "sales", "Billing"])
                    .idle(300),
            ],
            offer(&["b"]),
        )
        .skills(&["Japanese", "billing"]),
        case(
            "eligible agents without the skills: wait",
            vec![
                agent("a").skills(&["japanese"]).idle(10),
                agent("b").skills(&["billing"]).idle(20),
                agent("c").idle(30),
            ],
            Expect::Wait,
        )
        .skills(&["japanese", "billing"]),
        case(
            "skilled agents that are not eligible are left out",
            vec![
                agent("a").skills(&["billing"]).away().idle(1),
                agent("b").skills(&["billing"]).full(),
                agent("c").skills(&["billing"]).offline().idle(2),
                agent("d").skills(&["billing"]).busy().assigned(40),
                agent("e").idle(3),
            ],
            offer(&["d"]),
        )
        .skills(&["billing"]),
        case(
            "skilled but tried: wait",
            vec![
                agent("a").skills(&["billing"]).idle(10),
                agent("b").idle(20),
            ],
            Expect::Wait,
        )
        .skills(&["billing"])
        .tried(&["a"]),
        case(
            "a missed offer moves to the next skilled agent",
            vec![
                agent("a").skills(&["billing"]).idle(10),
                agent("b").idle(5),
                agent("c").skills(&["billing"]).idle(20),
            ],
            offer(&["c"]),
        )
        .skills(&["billing"])
        .tried(&["a"]),
        case(
            "no skills needed: plain longest idle",
            vec![agent("a").idle(200), agent("b").skills(&["x"]).idle(100)],
            offer(&["b"]),
        ),
    ];
    table.extend(nobody_eligible());
    check("skills", table).await;
}

#[tokio::test]
async fn random() {
    let agents = || {
        vec![
            agent("a").idle(100),
            agent("x").away().idle(1),
            agent("b").busy(),
            agent("y").full(),
            agent("c").load(4, 5),
            agent("z").idle(2),
            agent("d").idle(900),
            agent("w").offline(),
        ]
    };
    let eligible = ["a", "b", "c", "d"];
    let mut counts = [0u32; 4];
    for run in 0..200 {
        let work = work(&[]);
        let (all, states) = contract_view(agents(), &work, &["z"]);
        let got = Expect::from_decision(decide("random", work, states).await, &all);
        let Expect::Offer(ids) = &got else {
            panic!("run {run}: expected an offer, got {got:?}");
        };
        assert_eq!(
            ids.len(),
            1,
            "run {run}: offer to exactly one agent: {ids:?}"
        );
        let i = eligible
            .iter()
            .position(|e| *e == ids[0])
            .unwrap_or_else(|| panic!("run {run}: offered ineligible agent {:?}", ids[0]));
        counts[i] += 1;
    }
    for (id, n) in eligible.iter().zip(counts) {
        assert!(n > 0, "{id} never chosen in 200 runs: {counts:?}");
    }

    let mut table = vec![case(
        "a single eligible agent is always chosen",
        vec![agent("a").away(), agent("b").busy(), agent("c").full()],
        offer(&["b"]),
    )];
    table.extend(nobody_eligible());
    check("random", table).await;
}
