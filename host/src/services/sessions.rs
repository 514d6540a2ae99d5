//! Console sessions: an agent signs in once with their API token and gets a random session
//! token for an HttpOnly cookie, so the browser never keeps the API token and `EventSource`
//! can authenticate. The store keeps only the token's SHA-256, beside the CSRF value every
//! state-changing request must echo; signing out deletes it, on every host sharing the store.

use rand::RngCore;
use sha2::Digest;

use crate::config::AgentConfig;
use crate::model::AgentSession;
use crate::store::{Store, StoreError};

/// How long a session lasts: a long shift.
pub const SESSION_TTL_MS: u64 = 12 * 60 * 60 * 1000;

/// 32 random bytes, hex: a bearer secret (a session, a visitor, a CSRF value).
pub fn secret_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// What the store keys a secret token by: its SHA-256, so a copy of the store signs nobody in.
pub fn token_hash(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

/// A session just begun: the token for the cookie, and what the store keeps.
pub struct SignedIn {
    /// The session token (the cookie's value); shown once.
    pub token: String,
    /// The session.
    pub session: AgentSession,
}

/// Begins a session for `agent` at `now`, tied to their current API token.
pub async fn sign_in(
    store: &dyn Store,
    agent: &AgentConfig,
    now: u64,
) -> Result<SignedIn, StoreError> {
    let token = secret_token();
    let session = AgentSession {
        agent: agent.id.clone(),
        csrf: secret_token(),
        credential: credential_of(agent),
        created_at: now,
        expires_at: now.saturating_add(SESSION_TTL_MS),
    };
    store
        .put_session(&token_hash(&token), &session, now)
        .await?;
    Ok(SignedIn { token, session })
}

/// What a session keeps of the agent's API token: its SHA-256, hex.
pub fn credential_of(agent: &AgentConfig) -> String {
    hex::encode(sha2::Sha256::digest(agent.token.as_bytes()))
}

/// Whether `session` was begun with `agent`'s current API token.
pub fn still_valid_for(session: &AgentSession, agent: &AgentConfig) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(
        session
            .credential
            .as_bytes()
            .ct_eq(credential_of(agent).as_bytes()),
    )
}

/// The live session of a cookie's token at `now`, if any.
pub async fn find(
    store: &dyn Store,
    token: &str,
    now: u64,
) -> Result<Option<AgentSession>, StoreError> {
    Ok(store
        .session(&token_hash(token))
        .await?
        .filter(|s| s.expires_at > now))
}

/// Ends the session of a cookie's token (signing out).
pub async fn sign_out(store: &dyn Store, token: &str) -> Result<(), StoreError> {
    store.end_session(&token_hash(token)).await
}
