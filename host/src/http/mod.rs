//! The HTTP edge: the server and its lifecycle, the agents' and admins' API, the agent
//! console, provider webhooks and the web chat endpoints. Handlers parse a request, call a service and map its
//! answer or typed error to a status code and JSON.

pub mod api;
pub mod console;
pub mod cors;
pub mod edge;
pub mod integrations;
pub mod metrics;
pub mod server;
pub mod stats;
pub mod traffic;
pub mod webchat;
pub mod webhook;
