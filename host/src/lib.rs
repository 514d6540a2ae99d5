//! Plugboard: an omnichannel messaging host whose provider channels and routing strategies are
//! sandboxed WebAssembly components.
//!
//! Data flows one way: the HTTP edge ([`webhook`]) calls a channel plugin ([`plugin`],
//! [`sandbox`]), stores its events ([`storage`]), hands new work to the queue's router
//! ([`routing`], with [`agents`]' presence, telling agents through [`events`]); agents' replies ([`api`]) go through the [`outbox`] and the provider client
//! ([`provider_http`]).

pub mod agents;
pub mod api;
pub mod app;
pub mod bindings;
pub mod channel_rules;
pub mod config;
pub mod credential;
pub mod engine;
pub mod events;
pub mod health;
pub mod model;
pub mod nonce;
pub mod outbox;
pub mod plugin;
pub mod plugin_watch;
pub mod provider_http;
pub mod ratelimit;
pub mod replay;
pub mod routing;
pub mod sandbox;
pub mod server;
pub mod storage;
pub mod tokens;
pub mod wasi;
pub mod webchat;
pub mod webhook;
