//! Test guest built against the frozen contract `plugboard:plugin@0.2.0`
//! (`wit/frozen/0.2.0`), with `wit-bindgen` directly: a router that offers waiting work to
//! every online agent with room, as the 0.2.0 ring-all did. The host must keep serving it.

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "router",
        path: "../../../wit/frozen/0.2.0",
    });
}

use bindings::exports::plugboard::plugin::routing::Guest;
use bindings::plugboard::plugin::types::{AgentState, Decision, Presence, WaitingWork};

/// The router built against contract 0.2.0.
pub struct Router02;

impl Guest for Router02 {
    fn decide(_work: WaitingWork, agents: Vec<AgentState>) -> Decision {
        let offer: Vec<u32> = agents
            .iter()
            .filter(|a| a.presence == Presence::Online && a.active < a.capacity)
            .map(|a| a.index)
            .collect();
        if offer.is_empty() {
            Decision::Wait
        } else {
            Decision::Offer(offer)
        }
    }
}

#[allow(unsafe_code)]
const _: () = {
    bindings::export!(Router02 with_types_in bindings);
};
