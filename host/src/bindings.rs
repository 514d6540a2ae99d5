//! Host bindings for the contract in `wit/`, generated once for both worlds.
//!
//! The router world reuses the channel world's `types` and `host` bindings, so one set of Rust
//! types and one `host` implementation serve every plugin.

#![allow(missing_docs)]

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

/// The `host` interface plugins import.
pub use channel::plugboard::plugin::host as wit_host;
/// The contract's value types (`http-request`, `event`, `decision`, ...).
pub use channel::plugboard::plugin::types as wit;
