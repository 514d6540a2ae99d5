//! What Plugboard's Twilio channels (`twilio-sms`, `twilio-whatsapp`) share, so both parse,
//! authenticate and answer Twilio identically: the `X-Twilio-Signature` check ([`signature`])
//! and the Messages API wire format ([`twilio`]).
//!
//! A plain library, not a plugin: each channel crate links it into its own component.

pub mod signature;
pub mod twilio;
