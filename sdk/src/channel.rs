//! The [`Channel`] trait a channel plugin implements, and the adapter
//! [`export_channel!`](crate::export_channel) exports it through.
//!
//! The contract's `messaging` interface has nine functions; most channels need five of them.
//! wit-bindgen's generated `Guest` trait cannot give the other four defaults, so the SDK has its
//! own trait with the same functions, and the export macro wraps the plugin's type in
//! [`ChannelAdapter`], which implements the generated trait by delegating to it.

use std::marker::PhantomData;

use crate::bindings::channel::exports::plugboard::plugin::messaging::Guest;
use crate::types::{
    HttpRequest, HttpResponse, Manifest, OutboundMessage, SendError, Settings, TokenGrant,
    WebhookError, WebhookOutcome,
};

/// The functions a channel plugin implements (the contract's `messaging` interface; see
/// `wit/plugin.wit` for what each one is for).
///
/// `describe`, `handle_webhook`, `prepare_send` and `read_send_response` are required. The
/// others have defaults for a channel that needs no settings check beyond the host's (required
/// settings), authenticates every request with its settings alone (no token exchange) and offers
/// no credential check.
pub trait Channel {
    /// Says what the plugin is, which settings it takes and what it can do.
    fn describe() -> Manifest;

    /// Checks one channel instance's settings when the configuration loads. Default: every
    /// setting is accepted.
    fn check_settings(_settings: Settings) -> Result<(), String> {
        Ok(())
    }

    /// Authenticates one provider call to the channel's webhook URL and turns it into events
    /// plus the exact HTTP answer.
    fn handle_webhook(req: HttpRequest, settings: Settings)
    -> Result<WebhookOutcome, WebhookError>;

    /// Builds the provider API request that sends `msg`.
    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError>;

    /// Reads the provider's answer to a send: the provider's message id on success.
    fn read_send_response(resp: HttpResponse, settings: Settings) -> Result<String, SendError>;

    /// Builds the request that obtains an access token. Default: none, the channel authenticates
    /// every request with its settings.
    fn prepare_token(_settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        Ok(None)
    }

    /// Reads the token endpoint's answer. The host calls it only after `prepare_token` built a
    /// request, so the default (for channels without one) refuses as misconfigured.
    fn read_token_response(
        _resp: HttpResponse,
        _settings: Settings,
    ) -> Result<TokenGrant, SendError> {
        Err(SendError::Misconfigured(
            "this channel uses no token".to_string(),
        ))
    }

    /// Builds a harmless authenticated request that proves the credentials work. Default: none,
    /// the provider offers no such call.
    fn prepare_check(_settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        Ok(None)
    }

    /// Reads the answer to the check request. The host calls it only after `prepare_check` built
    /// a request; the default accepts any answer.
    fn read_check_response(_resp: HttpResponse, _settings: Settings) -> Result<(), SendError> {
        Ok(())
    }
}

/// Implements the generated `messaging` trait for `T` by delegating every function to
/// `<T as Channel>`. Used by [`export_channel!`](crate::export_channel); not meant to be named
/// by plugins.
#[doc(hidden)]
pub struct ChannelAdapter<T>(PhantomData<fn() -> T>);

impl<T: Channel + 'static> Guest for ChannelAdapter<T> {
    fn describe() -> Manifest {
        T::describe()
    }

    fn check_settings(settings: Settings) -> Result<(), String> {
        T::check_settings(settings)
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        T::handle_webhook(req, settings)
    }

    fn prepare_send(msg: OutboundMessage, settings: Settings) -> Result<HttpRequest, SendError> {
        T::prepare_send(msg, settings)
    }

    fn read_send_response(resp: HttpResponse, settings: Settings) -> Result<String, SendError> {
        T::read_send_response(resp, settings)
    }

    fn prepare_token(settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        T::prepare_token(settings)
    }

    fn read_token_response(
        resp: HttpResponse,
        settings: Settings,
    ) -> Result<TokenGrant, SendError> {
        T::read_token_response(resp, settings)
    }

    fn prepare_check(settings: Settings) -> Result<Option<HttpRequest>, SendError> {
        T::prepare_check(settings)
    }

    fn read_check_response(resp: HttpResponse, settings: Settings) -> Result<(), SendError> {
        T::read_check_response(resp, settings)
    }
}
