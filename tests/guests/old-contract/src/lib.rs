//! Test guest built against an incompatible contract version, `plugboard:plugin@0.0.1` (its own
//! `wit/` folder), with `wit-bindgen` directly rather than the SDK. The host must refuse it with
//! an error naming both versions.

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "channel",
        path: "wit",
    });
}

use bindings::exports::plugboard::plugin::messaging::Guest;
use bindings::plugboard::plugin::types::{Capabilities, Manifest};

/// The channel built against contract 0.0.1.
pub struct OldContract;

impl Guest for OldContract {
    fn describe() -> Manifest {
        Manifest {
            name: "old-contract".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: "sms".to_string(),
            settings: Vec::new(),
            api_hosts: Vec::new(),
            capabilities: Capabilities::empty(),
        }
    }
}

#[allow(unsafe_code)]
const _: () = {
    bindings::export!(OldContract with_types_in bindings);
};
