//! Single-use values that a provider's signature covers, so a captured signature cannot be
//! replayed with other content.
//!
//! Mailgun signs only `timestamp` + `token`, not the message: anybody who saw one signed call
//! can post a different message under the same three fields within the plugin's timestamp
//! tolerance. The plugin reports the token as a thread fact named `nonce:...` on the message it
//! authenticated; the host claims each such value per plugin (not per channel: two channels of
//! one provider account share its signing key, so a call captured on one must not pass on the
//! other) for [`WINDOW_MS`] (longer than any plugin's tolerance) before storing anything. The
//! same value with the same message is the provider retrying one delivery (acknowledged as
//! usual); with a different message it is a replay, refused with `403` and nothing stored. A
//! claim is never given back: a call that claimed and then failed to store is retried by the
//! provider with the same value and message, which the claim lets through. `nonce:` facts are
//! not kept as thread facts.

use crate::model::InboundEvent;
use crate::store::{NonceClaim, Store, StoreError};

/// The thread-fact name prefix that marks a single-use value.
pub const PREFIX: &str = "nonce:";

/// How long a claimed value stays claimed: a day.
pub const WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// One value to claim: (nonce, the message's provider id).
pub type Nonce = (String, String);

/// Why a call's nonces could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum NonceError {
    /// A value was used before for a different message.
    #[error("this call's signature was already used for another message (replayed)")]
    Replayed,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Takes the `nonce:` facts out of the messages' thread facts.
pub fn take(events: &mut [InboundEvent]) -> Vec<Nonce> {
    let mut nonces = Vec::new();
    for event in events {
        if let InboundEvent::Message {
            provider_id,
            thread,
            ..
        } = event
        {
            thread.retain(|(name, value)| {
                if name.starts_with(PREFIX) {
                    nonces.push((value.clone(), provider_id.clone()));
                    false
                } else {
                    true
                }
            });
        }
    }
    nonces
}

/// Claims every nonce of one call for `plugin`; refuses a call whose value was claimed for
/// another message.
pub async fn claim(
    storage: &dyn Store,
    plugin: &str,
    nonces: &[Nonce],
    now: u64,
) -> Result<(), NonceError> {
    for (nonce, provider_id) in nonces {
        match storage
            .claim_nonce(plugin, nonce, provider_id, now, WINDOW_MS)
            .await?
        {
            NonceClaim::Claimed | NonceClaim::Retry => {}
            NonceClaim::Replayed => return Err(NonceError::Replayed),
        }
    }
    Ok(())
}
