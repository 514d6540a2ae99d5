//! Quarantine instead of loss: a webhook whose channel plugin failed on it (a trap, its
//! deadline, its memory cap, no call slot) or whose channel is quarantined for failing is kept
//! durably, raw (method, public URL, headers, body, time, the error), before the provider is
//! answered `200`; an admin redrives the kept requests through the channel's plugin once it is
//! fixed or replaced, and what they carry is stored once (messages by provider id, as always).
//!
//! Why `200`: most providers never retry a webhook (Twilio's SMS and WhatsApp, TeleSign) or
//! give up within hours (Mailgun 8 h, Meta 36 h, LINE only on request), and those that do retry
//! would only hit the same broken plugin: once the request is durable, the host owns it.
//! A request the host cannot keep (the channel's quota of kept requests is full, or storage
//! fails) gets the failure answer as before (`5xx`), so a provider that retries does; so does
//! every request of a channel with `keep_failed = false`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::runtime::bindings::wit;
use crate::services::intake::{self, Services};
use crate::store::StoreError;

/// Requests kept per channel at most; past it, failures are answered as before.
pub const MAX_KEPT_PER_CHANNEL: usize = 1000;

/// One kept request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptRequest {
    /// Its id (the time it arrived and a random part): its key, in arrival order.
    pub id: String,
    /// The channel it came to.
    pub channel: String,
    /// The HTTP method.
    pub method: String,
    /// The public URL called (what URL-covering signatures cover).
    pub url: String,
    /// Headers in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body, base64.
    pub body: String,
    /// When it arrived, Unix milliseconds.
    pub received_at: u64,
    /// Why it is kept: the failure it met last.
    pub error: String,
    /// Redrives tried.
    pub redrives: u32,
}

impl KeptRequest {
    /// The request as plugins see it.
    pub fn request(&self) -> wit::HttpRequest {
        wit::HttpRequest {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: base64::engine::general_purpose::STANDARD
                .decode(&self.body)
                .unwrap_or_default(),
        }
    }
}

/// Why a request could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// The channel's `keep_failed` is off.
    #[error("channel {0} does not keep failed requests (keep_failed = false)")]
    Off(String),
    /// The channel keeps as many as it may.
    #[error("channel {0} already keeps {MAX_KEPT_PER_CHANNEL} failed requests; redrive them first")]
    Full(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// What one redrive did.
#[derive(Debug, Default, Serialize)]
pub struct RedriveReport {
    /// Requests the plugin read and intake stored (or found stored already).
    pub redriven: usize,
    /// Requests still kept, with why they failed again.
    pub still_failing: Vec<Failure>,
}

/// A kept request that failed again.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// The kept request's id.
    pub id: String,
    /// What went wrong this time.
    pub error: String,
}

fn space(channel: &str) -> String {
    format!("quarantine/{channel}")
}

/// Keeps `request` to `channel`, which failed with `error`; its id.
pub async fn keep(
    app: &crate::services::app::App,
    channel: &str,
    request: &wit::HttpRequest,
    error: &str,
) -> Result<String, KeepError> {
    if !app.config().channel(channel).is_none_or(|c| c.keep_failed) {
        return Err(KeepError::Off(channel.to_owned()));
    }
    let space = space(channel);
    let kept = app
        .storage
        .documents(&space, "", MAX_KEPT_PER_CHANNEL)
        .await?;
    if kept.len() >= MAX_KEPT_PER_CHANNEL {
        return Err(KeepError::Full(channel.to_owned()));
    }
    let now = Clock::System.now_millis();
    let id = format!("{now:015}-{:08x}", rand::random::<u32>());
    let record = KeptRequest {
        id: id.clone(),
        channel: channel.to_owned(),
        method: request.method.clone(),
        url: request.url.clone(),
        headers: request.headers.clone(),
        body: base64::engine::general_purpose::STANDARD.encode(&request.body),
        received_at: now,
        error: error.to_owned(),
        redrives: 0,
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| StoreError::Backend(e.to_string()))?;
    app.storage.put_document(&space, &id, &bytes).await?;
    tracing::warn!(channel, kept = %id, "webhook kept for a redrive: {error}");
    Ok(id)
}

/// Every request `channel` keeps, oldest first.
pub async fn kept(
    app: &crate::services::app::App,
    channel: &str,
) -> Result<Vec<KeptRequest>, StoreError> {
    let docs = app
        .storage
        .documents(&space(channel), "", MAX_KEPT_PER_CHANNEL)
        .await?;
    Ok(docs
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
        .collect())
}

/// Why a redrive could not run.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// The channel takes no traffic now.
    #[error("channel {0:?} is not configured, or is disabled or deleted")]
    ChannelUnavailable(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Runs every request `channel` keeps, oldest first, through its plugin as it is now: what
/// the plugin reads is taken in as a webhook's would be, and the request forgotten; one that
/// fails again stays kept with its new error.
pub async fn redrive(services: Services<'_>, channel: &str) -> Result<RedriveReport, RedriveError> {
    let app = services.app;
    let Some(instance) = app.live_channel(channel) else {
        return Err(RedriveError::ChannelUnavailable(channel.to_owned()));
    };
    let mut report = RedriveReport::default();
    for mut kept in kept(app, channel).await? {
        let outcome = instance
            .plugin
            .handle_webhook(
                &app.sandbox,
                &instance.name,
                kept.request(),
                instance.settings.clone(),
            )
            .await;
        let failure = match outcome {
            Ok(Ok(outcome)) => match intake::check_outcome_size(&outcome) {
                Err(reason) => Some(reason),
                Ok(()) => match intake::accept(services, &instance, outcome.events).await {
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                },
            },
            Ok(Err(e)) => Some(format!("the plugin refuses it now: {e:?}")),
            Err(e) => Some(e.to_string()),
        };
        let space = space(channel);
        match failure {
            None => {
                app.storage.delete_document(&space, &kept.id).await?;
                app.health.succeeded(channel);
                report.redriven += 1;
            }
            Some(error) => {
                kept.error = error.clone();
                kept.redrives += 1;
                let bytes =
                    serde_json::to_vec(&kept).map_err(|e| StoreError::Backend(e.to_string()))?;
                app.storage.put_document(&space, &kept.id, &bytes).await?;
                report.still_failing.push(Failure { id: kept.id, error });
            }
        }
    }
    tracing::info!(
        channel,
        redriven = report.redriven,
        still_failing = report.still_failing.len(),
        "kept webhooks redriven"
    );
    Ok(report)
}
