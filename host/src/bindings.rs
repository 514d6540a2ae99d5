//! Host bindings for the contract in `wit/`: the current version, generated once for both
//! worlds, and every older version the host still serves (see [`compat`]).
//!
//! The router world reuses the channel world's `types` and `host` bindings, so one set of Rust
//! types and one `host` implementation serve every plugin of a version.

#![allow(missing_docs)]

pub mod compat;

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

/// The `host` interface plugins import.
pub use channel::plugboard::plugin::host as wit_host;
/// The contract's value types (`http-request`, `event`, `decision`, ...).
pub use channel::plugboard::plugin::types as wit;
