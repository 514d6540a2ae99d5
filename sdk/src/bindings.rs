//! Generated bindings for the `plugboard:plugin@0.3.0` contract.
//!
//! Five worlds are generated from `wit/plugin.wit`: [`channel`] (exports `messaging`),
//! [`router`] (exports `routing`), [`bot`] (exports `chat-bot`), [`classifier`] (exports
//! `classification`) and [`integration`] (exports `crm`). The other worlds reuse the `types`
//! and `host` modules of the channel bindings, and the classifier and the integration also the
//! bot's `conversations`, through `wit-bindgen`'s `with` option, so exactly one set of contract
//! types exists. Plugin authors normally use the re-exports at the crate root instead.

/// Bindings for the `channel` world: imports `host`, exports `messaging`.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod channel {
    wit_bindgen::generate!({
        world: "channel",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_channel_world",
        default_bindings_module: "plugboard_sdk::bindings::channel",
        additional_derives: [PartialEq, Eq],
    });
}

/// Bindings for the `router` world: imports `host`, exports `routing`.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod router {
    wit_bindgen::generate!({
        world: "router",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_router_world",
        default_bindings_module: "plugboard_sdk::bindings::router",
        with: {
            "plugboard:plugin/types@0.3.0": crate::bindings::channel::plugboard::plugin::types,
            "plugboard:plugin/host@0.3.0": crate::bindings::channel::plugboard::plugin::host,
        },
    });
}

/// Bindings for the `bot` world: imports `host`, exports `chat-bot` (and generates the shared
/// `conversations` types).
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bot {
    wit_bindgen::generate!({
        world: "bot",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bot_world",
        default_bindings_module: "plugboard_sdk::bindings::bot",
        additional_derives: [PartialEq, Eq],
        with: {
            "plugboard:plugin/types@0.3.0": crate::bindings::channel::plugboard::plugin::types,
            "plugboard:plugin/host@0.3.0": crate::bindings::channel::plugboard::plugin::host,
        },
    });
}

/// Bindings for the `classifier` world: imports `host`, exports `classification`.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod classifier {
    wit_bindgen::generate!({
        world: "classifier",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_classifier_world",
        default_bindings_module: "plugboard_sdk::bindings::classifier",
        additional_derives: [PartialEq, Eq],
        with: {
            "plugboard:plugin/types@0.3.0": crate::bindings::channel::plugboard::plugin::types,
            "plugboard:plugin/host@0.3.0": crate::bindings::channel::plugboard::plugin::host,
            "plugboard:plugin/conversations@0.3.0": crate::bindings::bot::plugboard::plugin::conversations,
        },
    });
}

/// Bindings for the `integration` world: imports `host`, exports `crm`.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod integration {
    wit_bindgen::generate!({
        world: "integration",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_integration_world",
        default_bindings_module: "plugboard_sdk::bindings::integration",
        additional_derives: [PartialEq, Eq],
        with: {
            "plugboard:plugin/types@0.3.0": crate::bindings::channel::plugboard::plugin::types,
            "plugboard:plugin/host@0.3.0": crate::bindings::channel::plugboard::plugin::host,
            "plugboard:plugin/conversations@0.3.0": crate::bindings::bot::plugboard::plugin::conversations,
        },
    });
}
