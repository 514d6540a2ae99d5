//! What the host does, over the runtime and the store: intake of webhooks, routing work to
//! agents, bots in front of them, the outbox and its retries, provider tokens, the event log, agents' presence and the
//! walls between them, visitor and console sessions, channel health. HTTP handlers call these and map
//! their typed errors to status codes.

pub mod agents;
pub mod app;
pub mod audit;
pub mod automated;
pub mod bots;
pub mod catalog;
pub mod channel_rules;
pub mod classify;
pub mod cluster;
pub mod conversations;
pub mod corpus;
pub mod credential;
pub mod decisions;
pub mod events;
pub mod gauges;
pub mod golden;
pub mod health;
pub mod hooks;
pub mod intake;
pub mod nonce;
pub mod outbox;
pub mod outreach;
pub mod plugin_watch;
pub mod quarantine;
pub mod ratelimit;
pub mod recording;
pub mod reload;
pub mod replies;
pub mod reports;
pub mod routing;
pub mod search;
pub mod sessions;
pub mod shadow;
pub mod tokens;
pub mod visitors;
