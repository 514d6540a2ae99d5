//! Host bindings for the contract in `wit/`: the current version, generated once for its five
//! worlds, and every older version the host still serves (see [`compat`]).
//!
//! The router, bot, classifier and integration worlds reuse the channel world's `types` and `host` bindings
//! (the classifier and the integration also the bot's `conversations`), so one set of Rust types and one `host`
//! implementation serve every plugin of a version.

#![allow(missing_docs)]

pub mod compat;

/// The contract version this host implements; `wit/plugin.wit` declares the same. Plugins of
/// the older versions in [`crate::runtime::bindings::compat::SERVED`] load too.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// Bindings for the `channel` world.
pub mod channel {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "channel",
    });
}

/// Bindings for the `router` world.
pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "router",
        with: {
            "plugboard:plugin/types": super::channel::plugboard::plugin::types,
            "plugboard:plugin/host": super::channel::plugboard::plugin::host,
        },
    });
}

/// Bindings for the `bot` world (new in 0.3.0).
pub mod bot {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "bot",
        with: {
            "plugboard:plugin/types": super::channel::plugboard::plugin::types,
            "plugboard:plugin/host": super::channel::plugboard::plugin::host,
        },
    });
}

/// Bindings for the `classifier` world (new in 0.3.0).
pub mod classifier {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "classifier",
        with: {
            "plugboard:plugin/types": super::channel::plugboard::plugin::types,
            "plugboard:plugin/host": super::channel::plugboard::plugin::host,
            "plugboard:plugin/conversations": super::bot::plugboard::plugin::conversations,
        },
    });
}

/// Bindings for the `integration` world (new in 0.3.0).
pub mod integration {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "integration",
        with: {
            "plugboard:plugin/types": super::channel::plugboard::plugin::types,
            "plugboard:plugin/host": super::channel::plugboard::plugin::host,
            "plugboard:plugin/conversations": super::bot::plugboard::plugin::conversations,
        },
    });
}

/// The frozen `plugboard:plugin@0.2.0` (`wit/frozen/0.2.0/`), for plugins built against it.
pub mod v0_2 {
    /// Bindings for the 0.2.0 `channel` world.
    pub mod channel {
        wasmtime::component::bindgen!({
            path: "../wit/frozen/0.2.0",
            world: "channel",
        });
    }

    /// Bindings for the 0.2.0 `router` world.
    pub mod router {
        wasmtime::component::bindgen!({
            path: "../wit/frozen/0.2.0",
            world: "router",
            with: {
                "plugboard:plugin/types": super::channel::plugboard::plugin::types,
                "plugboard:plugin/host": super::channel::plugboard::plugin::host,
            },
        });
    }

    /// The 0.2.0 value types.
    pub use channel::plugboard::plugin::types as wit;
}

/// The bot world's own types (`step`, `bot-turn`, `outcome`).
pub use bot::exports::plugboard::plugin::chat_bot as wit_bot;
/// What bots and classifiers see of a conversation (`conversation-facts`, `turn`).
pub use bot::plugboard::plugin::conversations as wit_conversations;
/// The `host` interface plugins import.
pub use channel::plugboard::plugin::host as wit_host;
/// The contract's value types (`http-request`, `event`, `decision`, ...).
pub use channel::plugboard::plugin::types as wit;
/// The classifier world's own types (`classification`).
pub use classifier::exports::plugboard::plugin::classification as wit_classification;
/// The integration world's own types (`event`, `step`, `outcome`, `action`).
pub use integration::exports::plugboard::plugin::crm as wit_crm;

/// Describes a plugin's send error for the stored message and the API.
pub fn describe_send_error(e: &wit::SendError) -> String {
    match e {
        wit::SendError::Invalid(m) => format!("invalid: {m}"),
        wit::SendError::OptedOut(m) => format!("opted out: {m}"),
        wit::SendError::Unauthorized(m) => format!("unauthorized: {m}"),
        wit::SendError::RateLimited(Some(s)) => format!("rate limited: retry after {s}s"),
        wit::SendError::RateLimited(None) => "rate limited".to_owned(),
        wit::SendError::Unavailable(m) => format!("provider unavailable: {m}"),
        wit::SendError::Misconfigured(m) => format!("channel misconfigured: {m}"),
    }
}
