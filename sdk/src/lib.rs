//! Plugboard plugin SDK: everything a plugin author needs in one dependency.
//!
//! A Plugboard plugin is a WebAssembly component (`wasm32-wasip2`, `crate-type = ["cdylib"]`)
//! that implements one world of the `plugboard:plugin@0.3.0` contract (`wit/plugin.wit`):
//!
//! * a **channel** implements [`Channel`] and is exported with [`export_channel!`];
//! * a **router** implements [`Router`] and is exported with [`export_router!`];
//! * a **classifier** implements [`Classifier`] and is exported with [`export_classifier!`];
//! * a **bot** implements [`Bot`] and is exported with [`export_bot!`];
//! * a **CRM integration** implements [`Integration`] and is exported with
//!   [`export_integration!`].
//!
//! The contract's types are in [`types`] (and, for bots and classifiers, [`conversation`]; for
//! integrations, [`crm`]), the
//! host's functions (logging, HMAC, clock, randomness) in [`host`], and small pure helpers for
//! the usual webhook chores in [`form`], [`query`], [`json`], [`base64`], [`http`], [`settings`]
//! and [`e164`]. Routers share the eligibility rule and the usual agent orderings in
//! [`routing`]. A plugin's own native tests find what they need in `testing` (native builds
//! only): the host's functions run natively, and a channel's `fixtures/` folder replays through
//! its [`Channel`] functions without a host.
//!
//! # Instances and state
//!
//! The host may run every call in a fresh instance or reuse an instance for many calls, and that
//! choice may change between host versions and configurations. A plugin must therefore not rely
//! on global state either way: not to remember anything between calls, and not to start clean.
//! Everything a call needs arrives in its arguments (settings, the request, the `thread` facts
//! the plugin returned earlier).
//!
//! # A complete minimal channel
//!
//! A channel implements the four functions every provider needs; the token exchange, the
//! settings check and the credential check have defaults (see [`Channel`]).
//!
//! ```
//! use plugboard_sdk::types::{
//!     Capabilities, Event, HttpRequest, HttpResponse, InboundMessage, Manifest, OutboundMessage,
//!     SendError, SettingSpec, Settings, WebhookError, WebhookOutcome,
//! };
//! use plugboard_sdk::{Channel, ct_eq, form, header, host, http, json};
//!
//! struct Echo;
//!
//! impl Channel for Echo {
//!     fn describe() -> Manifest {
//!         Manifest {
//!             name: "echo".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             kind: "sms".into(),
//!             settings: vec![SettingSpec {
//!                 name: "token".into(),
//!                 required: true,
//!                 secret: true,
//!                 description: "Shared secret the provider sends in X-Token".into(),
//!             }],
//!             api_hosts: vec!["api.echo.example".into()],
//!             capabilities: Capabilities::empty(),
//!             rules: plugboard_sdk::rules::sms(),
//!         }
//!     }
//!
//!     fn check_settings(settings: Settings) -> Result<(), String> {
//!         match plugboard_sdk::Settings::new(&settings).require("token") {
//!             Ok(token) if token.len() < 16 => Err("setting `token` is shorter than 16 characters".into()),
//!             _ => Ok(()),
//!         }
//!     }
//!
//!     fn handle_webhook(req: HttpRequest, settings: Settings) -> Result<WebhookOutcome, WebhookError> {
//!         let settings = plugboard_sdk::Settings::new(&settings);
//!         let secret = settings.require("token").map_err(WebhookError::Misconfigured)?;
//!         let sent = header(&req.headers, "x-token").unwrap_or_default();
//!         if !ct_eq(sent.as_bytes(), secret.as_bytes()) {
//!             return Err(WebhookError::Unauthorized("X-Token missing or wrong".into()));
//!         }
//!         let fields = form::parse(&req.body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
//!         let get = |name: &str| form::get(&fields, name).map(str::to_string);
//!         let (Some(id), Some(from)) = (get("id"), get("from")) else {
//!             host::log(host::Level::Info, "ignored a call without id/from", &[]);
//!             return Ok(WebhookOutcome { events: vec![], response: http::ok() });
//!         };
//!         let message = InboundMessage {
//!             provider_id: id,
//!             from,
//!             to: get("to").unwrap_or_default(),
//!             text: get("text"),
//!             attachments: vec![],
//!             contact_name: None,
//!             thread: vec![],
//!         };
//!         Ok(WebhookOutcome {
//!             events: vec![Event::Message(message)],
//!             response: http::response(200, "text/plain", "ok"),
//!         })
//!     }
//!
//!     fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
//!         let settings = plugboard_sdk::Settings::new(&settings);
//!         let token = settings.require("token").map_err(SendError::Misconfigured)?;
//!         let body = form::encode([("to", msg.to.as_str()), ("text", msg.text.as_deref().unwrap_or(""))]);
//!         Ok(http::request(
//!             "POST",
//!             "https://api.echo.example/send",
//!             vec![
//!                 ("Authorization".into(), format!("Bearer {token}")),
//!                 ("Content-Type".into(), "application/x-www-form-urlencoded".into()),
//!             ],
//!             body,
//!         ))
//!     }
//!
//!     fn read_send_response(resp: HttpResponse, _settings: Settings) -> Result<String, SendError> {
//!         #[derive(plugboard_sdk::serde::Deserialize)]
//!         #[serde(crate = "plugboard_sdk::serde")]
//!         struct Sent {
//!             id: String,
//!         }
//!         match resp.status {
//!             200..=299 => json::parse::<Sent>(&resp.body)
//!                 .map(|sent| sent.id)
//!                 .map_err(|e| SendError::Invalid(e.to_string())),
//!             401 | 403 => Err(SendError::Unauthorized(format!("HTTP {}", resp.status))),
//!             429 => Err(SendError::RateLimited(http::retry_after(&resp.headers))),
//!             500..=599 => Err(SendError::Unavailable(format!("HTTP {}", resp.status))),
//!             status => Err(SendError::Invalid(format!("HTTP {status}"))),
//!         }
//!     }
//! }
//!
//! plugboard_sdk::export_channel!(Echo);
//! # fn main() {}
//! ```
//!
//! A fuller example, a JSON provider with signed webhooks, unit tests on `testing` and
//! `fixtures/`, is the workspace's `plugins/example-json` (under 100 lines).
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` that comes out is
//! already a component. A router is the same with [`Router`], [`export_router!`] and one
//! function, `decide`; a classifier with [`Classifier`], [`export_classifier!`] and `classify`.
//!
//! # A complete minimal bot
//!
//! ```
//! use plugboard_sdk::conversation::{BotManifest, BotTurn, ConversationFacts, Outcome, Step, Turn};
//! use plugboard_sdk::types::{Fields, HttpResponse, Settings};
//! use plugboard_sdk::Bot;
//!
//! struct Parrot;
//!
//! impl Bot for Parrot {
//!     fn describe() -> BotManifest {
//!         BotManifest {
//!             name: "parrot".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             settings: vec![],
//!             api_hosts: vec![],
//!         }
//!     }
//!
//!     fn check_settings(_settings: Settings) -> Result<(), String> {
//!         Ok(())
//!     }
//!
//!     fn respond(
//!         _facts: ConversationFacts,
//!         history: Vec<Turn>,
//!         memory: Fields,
//!         _answers: Vec<Result<HttpResponse, String>>,
//!         _settings: Settings,
//!     ) -> Result<Step, String> {
//!         let text = plugboard_sdk::conversation::latest_customer_text(&history).unwrap_or("");
//!         Ok(Step::Done(BotTurn {
//!             replies: vec![format!("You said: {text}")],
//!             outcome: Outcome::Keep,
//!             memory,
//!         }))
//!     }
//! }
//!
//! plugboard_sdk::export_bot!(Parrot);
//! # fn main() {}
//! ```
//!
//! # A complete minimal integration
//!
//! An integration turns the host's events into the CRM's API requests (the host performs them
//! and calls again with the answers) and reads the CRM's calls to the host. This one posts each
//! closed conversation's length to `https://crm.example/notes` and keeps the note's id in the
//! conversation's memory; it accepts no calls from the CRM.
//!
//! ```
//! use plugboard_sdk::crm::{Event, IntegrationManifest, Outcome, Step, WebhookOutcome};
//! use plugboard_sdk::types::{Fields, HttpRequest, HttpResponse, Settings, WebhookError};
//! use plugboard_sdk::{Integration, http};
//!
//! struct Notes;
//!
//! impl Integration for Notes {
//!     fn describe() -> IntegrationManifest {
//!         IntegrationManifest {
//!             name: "notes".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             settings: vec![],
//!             api_hosts: vec!["crm.example".into()],
//!             events: vec!["conversation.closed".into()],
//!         }
//!     }
//!
//!     fn check_settings(_settings: Settings) -> Result<(), String> {
//!         Ok(())
//!     }
//!
//!     fn on_event(
//!         event: Event,
//!         mut memory: Fields,
//!         answers: Vec<Result<HttpResponse, String>>,
//!         _settings: Settings,
//!     ) -> Result<Step, String> {
//!         let Some(answer) = answers.into_iter().next() else {
//!             let body = plugboard_sdk::serde_json::json!({
//!                 "conversation": event.conversation.conversation,
//!                 "turns": event.transcript.len(),
//!             });
//!             return Ok(Step::Fetch(vec![http::post_json("https://crm.example/notes", vec![], &body)]));
//!         };
//!         match answer {
//!             Ok(resp) if http::is_success(resp.status) => {
//!                 memory.push(("note".into(), String::from_utf8_lossy(&resp.body).into_owned()));
//!                 Ok(Step::Done(Outcome::done(memory)))
//!             }
//!             Ok(resp) if resp.status == 429 => Ok(Step::Done(Outcome::retry_after(30, memory))),
//!             Ok(resp) => Err(format!("POST /notes answered HTTP {}", resp.status)),
//!             Err(_transport) => Ok(Step::Done(Outcome::retry_after(5, memory))),
//!         }
//!     }
//!
//!     fn handle_webhook(_req: HttpRequest, _settings: Settings) -> Result<WebhookOutcome, WebhookError> {
//!         Err(WebhookError::BadRequest("this integration takes no calls".into()))
//!     }
//! }
//!
//! plugboard_sdk::export_integration!(Notes);
//! # fn main() {}
//! ```
//!
//! The bundled `plugins/bitrix24` is a full one: it finds or creates the CRM's lead, posts the
//! transcript to its timeline and starts conversations when the CRM asks.

pub mod base64;
pub mod bindings;
mod channel;
pub mod e164;
pub mod form;
pub mod http;
pub mod json;
pub mod query;
pub mod routing;
pub mod rules;
pub mod settings;

pub use channel::Channel;
#[doc(hidden)]
pub use channel::ChannelAdapter;
pub use e164::{E164, E164Error};
pub use form::FormError;
pub use http::{basic_auth, header};
pub use settings::Settings;

/// `serde`, re-exported so plugins need no extra dependency (use
/// `#[serde(crate = "plugboard_sdk::serde")]` on derives).
pub use serde;
/// `serde_json`, re-exported so plugins need no extra dependency.
pub use serde_json;

/// The contract's value types (`plugboard:plugin/types`), shared by every world.
pub mod types {
    pub use crate::bindings::channel::plugboard::plugin::types::*;

    impl SettingSpec {
        /// One setting of a channel's manifest: its name, whether the host must refuse an
        /// instance without it, whether it is a credential (never logged or shown), and what it
        /// is, for operators.
        pub fn new(name: &str, required: bool, secret: bool, description: &str) -> Self {
            SettingSpec {
                name: name.to_string(),
                required,
                secret,
                description: description.to_string(),
            }
        }
    }

    impl InboundMessage {
        /// A message with the provider's id, the customer's and the business's addresses and
        /// the text; no attachments, contact name or `thread` facts (set those fields after).
        pub fn new(
            provider_id: impl Into<String>,
            from: impl Into<String>,
            to: impl Into<String>,
            text: Option<String>,
        ) -> Self {
            InboundMessage {
                provider_id: provider_id.into(),
                from: from.into(),
                to: to.into(),
                text,
                attachments: Vec::new(),
                contact_name: None,
                thread: Vec::new(),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn constructors_fill_the_rest_empty() {
            let spec = SettingSpec::new("token", true, true, "the API token");
            assert_eq!(
                (spec.name.as_str(), spec.required, spec.secret),
                ("token", true, true)
            );
            assert_eq!(spec.description, "the API token");
            let m = InboundMessage::new("m1", "+1", "+2", Some("hi".into()));
            assert_eq!(
                (m.provider_id.as_str(), m.from.as_str(), m.to.as_str()),
                ("m1", "+1", "+2")
            );
            assert_eq!(m.text.as_deref(), Some("hi"));
            assert!(m.attachments.is_empty() && m.contact_name.is_none() && m.thread.is_empty());
        }
    }
}

/// The host's functions (`plugboard:plugin/host`): `log`, `hmac_sha1`, `hmac_sha256`, `sha256`,
/// `now_millis`, `random_bytes`. In a component they call the host; in a native build (a
/// plugin's `cargo test`) the SDK implements them (see `testing`).
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::channel::plugboard::plugin::host;
#[cfg(not(target_arch = "wasm32"))]
pub mod host;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// The function a routing strategy implements (the contract's `routing` interface).
pub use crate::bindings::router::exports::plugboard::plugin::routing::Guest as Router;

/// The functions a bot implements (the contract's `chat-bot` interface).
pub use crate::bindings::bot::exports::plugboard::plugin::chat_bot::Guest as Bot;

/// The function a custom classifier implements (the contract's `classification` interface).
pub use crate::bindings::classifier::exports::plugboard::plugin::classification::Guest as Classifier;

/// The functions a CRM integration implements (the contract's `crm` interface).
pub use crate::bindings::integration::exports::plugboard::plugin::crm::Guest as Integration;

/// What bots and classifiers see of a conversation (`plugboard:plugin/conversations`) and the
/// records they return: the `chat-bot` types ([`BotManifest`](conversation::BotManifest),
/// [`Step`](conversation::Step), ...) and the `classification` record.
pub mod conversation {
    pub use crate::bindings::bot::exports::plugboard::plugin::chat_bot::{
        BotManifest, BotTurn, HandOff, Outcome, Step,
    };
    pub use crate::bindings::bot::plugboard::plugin::conversations::*;
    pub use crate::bindings::classifier::exports::plugboard::plugin::classification::Classification;

    /// The text of the customer's latest message in `history`: the last turn written by the
    /// customer, if it has text. This is the message a bot's `respond` answers.
    pub fn latest_customer_text(history: &[Turn]) -> Option<&str> {
        history
            .iter()
            .rev()
            .find(|turn| turn.author == Author::Customer)
            .and_then(|turn| turn.text.as_deref())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn turn(author: Author, text: Option<&str>) -> Turn {
            Turn {
                author,
                name: None,
                text: text.map(str::to_string),
                at: 0,
            }
        }

        #[test]
        fn latest_customer_text_skips_other_authors() {
            let history = [
                turn(Author::Customer, Some("first")),
                turn(Author::Bot, Some("reply")),
                turn(Author::Customer, Some("second")),
                turn(Author::Host, Some("notice")),
            ];
            assert_eq!(latest_customer_text(&history), Some("second"));
            assert_eq!(latest_customer_text(&history[1..2]), None);
            assert_eq!(latest_customer_text(&[turn(Author::Customer, None)]), None);
            assert_eq!(latest_customer_text(&[]), None);
        }
    }
}

/// What a CRM integration exchanges with the host (the contract's `crm` interface): its
/// manifest, the [`Event`](crm::Event) it handles, the [`Step`](crm::Step) and
/// [`Outcome`](crm::Outcome) it answers with, and what a call from the CRM comes to
/// ([`WebhookOutcome`](crm::WebhookOutcome) with its [`Action`](crm::Action)s). The
/// conversation types an event carries ([`ConversationFacts`](crm::ConversationFacts),
/// [`Turn`](crm::Turn), [`Author`](crm::Author)) are re-exported here too.
pub mod crm {
    pub use crate::bindings::bot::plugboard::plugin::conversations::{
        Author, ConversationFacts, Turn,
    };
    pub use crate::bindings::integration::exports::plugboard::plugin::crm::{
        Action, Event, Handled, IntegrationManifest, Outcome, Start, Step, WebhookOutcome,
    };

    use crate::types::{Fields, HttpResponse};

    impl Outcome {
        /// Handled: the host moves on to the conversation's next event and keeps `memory`.
        pub fn done(memory: Fields) -> Self {
            Outcome {
                handled: Handled::Done,
                memory,
            }
        }

        /// The CRM asked for a pause: the host calls again with the same event after at least
        /// `seconds`, keeping `memory` (so what was learned before the pause is not redone).
        pub fn retry_after(seconds: u32, memory: Fields) -> Self {
            Outcome {
                handled: Handled::RetryAfter(seconds),
                memory,
            }
        }
    }

    impl Event {
        /// The event's `data` object, parsed.
        ///
        /// # Errors
        ///
        /// A [`JsonError`](crate::json::JsonError) when `data` is not JSON.
        pub fn data_json(&self) -> Result<serde_json::Value, crate::json::JsonError> {
            crate::json::parse(self.data.as_bytes())
        }
    }

    impl WebhookOutcome {
        /// An answer to the CRM that asks the host for nothing.
        pub fn reply(response: HttpResponse) -> Self {
            WebhookOutcome {
                response,
                actions: Vec::new(),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn event(data: &str) -> Event {
            Event {
                id: "evt_1".into(),
                kind: "conversation.closed".into(),
                at: 0,
                conversation: ConversationFacts {
                    conversation: "17".into(),
                    channel: "sms".into(),
                    kind: "sms".into(),
                    queue: "support".into(),
                    contact: "+14155550100".into(),
                    contact_name: None,
                    known_contact: false,
                    now: 0,
                },
                data: data.into(),
                transcript: Vec::new(),
            }
        }

        #[test]
        fn constructors_and_data() {
            let memory = vec![("lead".to_string(), "7".to_string())];
            let done = Outcome::done(memory.clone());
            assert_eq!((done.handled, &done.memory), (Handled::Done, &memory));
            let pause = Outcome::retry_after(2, memory.clone());
            assert_eq!(pause.handled, Handled::RetryAfter(2));
            assert_eq!(pause.memory, memory);
            let data = event(r#"{"by":"alice"}"#).data_json().unwrap();
            assert_eq!(data["by"], "alice");
            assert!(event("not json").data_json().is_err());
            let reply = WebhookOutcome::reply(crate::http::ok());
            assert!(reply.actions.is_empty() && reply.response.status == 200);
        }
    }
}

/// Lowercase hexadecimal of `bytes`, two digits a byte: how most providers print an HMAC or a
/// digest in a header.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Compares two byte strings in constant time (for a given length): use it for signatures and
/// tokens. Different lengths compare unequal immediately; lengths are not secret.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= std::hint::black_box(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Exports a type implementing [`Channel`] as the plugin's `messaging` interface.
///
/// Invoke it once, at the crate root or in any module, with the type's name:
/// `plugboard_sdk::export_channel!(MyChannel);`. The export goes through a hidden adapter that
/// implements wit-bindgen's generated trait by delegating to `<MyChannel as Channel>`, so the
/// trait's default functions are exported too.
#[macro_export]
macro_rules! export_channel {
    ($ty:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            type __PlugboardChannel = $crate::ChannelAdapter<$ty>;
            $crate::bindings::channel::__export_channel_world!(
                __PlugboardChannel with_types_in $crate::bindings::channel
            );
        };
    };
}

/// Exports a type implementing [`Router`] as the plugin's `routing` interface.
///
/// Invoke it once, at the crate root or in any module, with the type's name:
/// `plugboard_sdk::export_router!(MyRouter);`
#[macro_export]
macro_rules! export_router {
    ($ty:ident) => {
        #[allow(unsafe_code)]
        const _: () = {
            $crate::bindings::router::__export_router_world!(
                $ty with_types_in $crate::bindings::router
            );
        };
    };
}

/// Exports a type implementing [`Bot`] as the plugin's `chat-bot` interface.
///
/// Invoke it once, at the crate root or in any module, with the type's name:
/// `plugboard_sdk::export_bot!(MyBot);`
#[macro_export]
macro_rules! export_bot {
    ($ty:ident) => {
        #[allow(unsafe_code)]
        const _: () = {
            $crate::bindings::bot::__export_bot_world!(
                $ty with_types_in $crate::bindings::bot
            );
        };
    };
}

/// Exports a type implementing [`Classifier`] as the plugin's `classification` interface.
///
/// Invoke it once, at the crate root or in any module, with the type's name:
/// `plugboard_sdk::export_classifier!(MyClassifier);`
#[macro_export]
macro_rules! export_classifier {
    ($ty:ident) => {
        #[allow(unsafe_code)]
        const _: () = {
            $crate::bindings::classifier::__export_classifier_world!(
                $ty with_types_in $crate::bindings::classifier
            );
        };
    };
}

/// Exports a type implementing [`Integration`] as the plugin's `crm` interface.
///
/// Invoke it once, at the crate root or in any module, with the type's name:
/// `plugboard_sdk::export_integration!(MyIntegration);`
#[macro_export]
macro_rules! export_integration {
    ($ty:ident) => {
        #[allow(unsafe_code)]
        const _: () = {
            $crate::bindings::integration::__export_integration_world!(
                $ty with_types_in $crate::bindings::integration
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::{ct_eq, hex};

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
