//! The plugin runtime (channels, routers, bots, classifiers, integrations): the wasmtime engine, the sandbox every call runs in (fuel, memory,
//! deadlines, bounded WASI), loading and checking components against the WIT contract, and
//! the HTTP client plugins reach providers through. Knows nothing of conversations or agents.

pub mod bindings;
pub mod bot;
pub mod classifier;
pub mod engine;
pub mod integration;
pub mod plugin;
pub mod provider_http;
pub mod sandbox;
pub mod wasi;
