//! Plugboard: an omnichannel messaging host whose provider channels, routing strategies and
//! integrations are sandboxed WebAssembly components.
//!
//! The crate is layered, each layer using only those below it:
//! - [`model`], [`clock`], [`hours`], [`stats`], [`config`] and [`metrics`]: the domain types
//!   and their transitions, the host's clock, business hours, the statistics each change
//!   counts, the configuration, and the metric families every layer records into;
//! - [`store`]: the storage interface and its backends (sled, the embedded default);
//! - [`runtime`]: the wasmtime engine, the sandbox and the plugins loaded into it;
//! - [`services`]: intake, routing, the outbox, tokens, events, agents and their walls;
//! - [`http`] and [`cli`]: the server's endpoints and the command-line tools.
//!
//! Data flows one way: a webhook ([`http::webhook`]) goes to intake, which calls the channel
//! plugin and stores its events; the router offers new work to agents; agents' replies
//! ([`http::api`]) go through the [`services::outbox`] to the provider client.

pub mod cli;
pub mod clock;
pub mod config;
pub mod hours;
pub mod http;
pub mod metrics;
pub mod model;
pub mod runtime;
pub mod services;
pub mod stats;
pub mod store;
