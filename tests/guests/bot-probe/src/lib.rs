//! Test guest bot that does what the customer's latest message asks, so host tests can drive
//! every outcome of the `chat-bot` interface. The first of these found in the lowercased text
//! decides:
//!
//! * `trap`: panics; `spin`: never returns (the host must stop it at its deadline);
//! * `fetch`: asks the host for `GET {api_base}/answer?q=<text>`, then replies with the body
//!   (or `fetch failed: <error>`);
//! * `resolve`: replies `bye from probe` and resolves;
//! * `handoff`: replies `handing off` and hands off (queue from `handoff_queue`, skill
//!   `billing`);
//! * `remember`: increments memory `count` and replies `turn <count>`;
//! * `memory-bomb`: keeps 8 KiB of memory (over the contract's 4 KiB);
//! * anything else: replies `probe heard: <text>`.
//!
//! Except for `memory-bomb` and `remember`, memory is returned unchanged.

use plugboard_sdk::conversation::{
    BotManifest, BotTurn, ConversationFacts, HandOff, Outcome, Step, Turn, latest_customer_text,
};
use plugboard_sdk::types::{Fields, HttpResponse, SettingSpec, Settings};
use plugboard_sdk::{Settings as SettingsView, http};

/// The panic message of `trap`.
pub const TRAP_MESSAGE: &str = "bot-probe asked to trap";

/// The size of the memory value `memory-bomb` keeps.
pub const BOMB_BYTES: usize = 8192;

/// The probe bot.
pub struct BotProbe;

/// Percent-encodes `text` for a query string: unreserved characters are kept, everything else
/// (a space included) becomes `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A finished turn.
fn done(reply: String, outcome: Outcome, memory: Fields) -> Result<Step, String> {
    Ok(Step::Done(BotTurn {
        replies: vec![reply],
        outcome,
        memory,
    }))
}

impl plugboard_sdk::Bot for BotProbe {
    fn describe() -> BotManifest {
        let spec = |name: &str, description: &str| SettingSpec {
            name: name.to_string(),
            required: false,
            secret: false,
            description: description.to_string(),
        };
        BotManifest {
            name: "bot-probe".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            settings: vec![
                spec(
                    "api_base",
                    "base URL the `fetch` message asks for `/answer`",
                ),
                spec("handoff_queue", "queue the `handoff` message hands off to"),
            ],
            api_hosts: Vec::new(),
        }
    }

    fn check_settings(_settings: Settings) -> Result<(), String> {
        Ok(())
    }

    fn respond(
        _facts: ConversationFacts,
        history: Vec<Turn>,
        memory: Fields,
        answers: Vec<Result<HttpResponse, String>>,
        settings: Settings,
    ) -> Result<Step, String> {
        let settings = SettingsView::new(&settings);
        let text = latest_customer_text(&history).unwrap_or_default();
        let lower = text.to_lowercase();
        if lower.contains("trap") {
            panic!("{TRAP_MESSAGE}");
        }
        if lower.contains("spin") {
            let mut n: u64 = 0;
            loop {
                // `black_box` keeps the optimizer from proving the loop useless and removing it.
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if lower.contains("fetch") {
            return match answers.first() {
                None => {
                    let base = settings.get("api_base").ok_or("api_base is not set")?;
                    let url = format!(
                        "{}/answer?q={}",
                        base.trim_end_matches('/'),
                        percent_encode(text)
                    );
                    Ok(Step::Fetch(vec![http::request(
                        "GET",
                        url,
                        Vec::new(),
                        Vec::new(),
                    )]))
                }
                Some(Ok(resp)) => done(
                    String::from_utf8_lossy(&resp.body).into_owned(),
                    Outcome::Keep,
                    memory,
                ),
                Some(Err(e)) => done(format!("fetch failed: {e}"), Outcome::Keep, memory),
            };
        }
        if lower.contains("resolve") {
            return done("bye from probe".to_string(), Outcome::Resolved, memory);
        }
        if lower.contains("handoff") {
            let hand_off = HandOff {
                queue: settings.get("handoff_queue").map(str::to_string),
                skills: vec!["billing".to_string()],
                summary: Some(format!("probe handed off: {text}")),
            };
            return done(
                "handing off".to_string(),
                Outcome::HandOff(hand_off),
                memory,
            );
        }
        if lower.contains("remember") {
            let count = memory
                .iter()
                .rev()
                .find(|(k, _)| k == "count")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            let mut kept: Fields = memory.into_iter().filter(|(k, _)| k != "count").collect();
            kept.push(("count".to_string(), count.to_string()));
            return done(format!("turn {count}"), Outcome::Keep, kept);
        }
        if lower.contains("memory-bomb") {
            let bomb = vec![("bomb".to_string(), "x".repeat(BOMB_BYTES))];
            return done("big memory".to_string(), Outcome::Keep, bomb);
        }
        done(format!("probe heard: {text}"), Outcome::Keep, memory)
    }
}

plugboard_sdk::export_bot!(BotProbe);
