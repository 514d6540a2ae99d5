//! The outbox worker: sends agents' messages through their channel plugin and the provider
//! client, and records the provider's message id or error.
//!
//! Sends are queued durably by [`crate::storage::Storage::add_outbound`] before they are
//! submitted here, and every pending send is resubmitted at start-up, so a crash between
//! queueing and sending loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::app::App;
use crate::bindings::wit;
use crate::provider_http::ProviderClient;
use crate::sandbox::Clock;
use crate::storage::{Attachment, Message, StorageError};

/// How many sends run at once.
const MAX_CONCURRENT_SENDS: usize = 32;

type SendKey = (u64, u64);

/// The handle request handlers use to submit sends and wait for their outcome.
pub struct Outbox {
    submit: mpsc::UnboundedSender<SendKey>,
    waiters: Mutex<HashMap<SendKey, Vec<oneshot::Sender<Message>>>>,
}

impl Outbox {
    /// Starts the worker and resubmits every send left pending by an earlier run.
    pub fn start(app: Arc<App>, client: ProviderClient) -> Result<Arc<Outbox>, StorageError> {
        let (submit, mut rx) = mpsc::unbounded_channel::<SendKey>();
        let outbox = Arc::new(Outbox {
            submit,
            waiters: Mutex::new(HashMap::new()),
        });
        let pending = app.storage.pending_sends()?;
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "resuming pending sends");
        }
        for entry in pending {
            let _ = outbox.submit.send((entry.conversation, entry.seq));
        }
        let worker = outbox.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_SENDS));
            while let Some(key) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (app, client, worker) = (app.clone(), client.clone(), worker.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match send_one(&app, &client, key).await {
                        Ok(Some(message)) => worker.notify(key, message),
                        Ok(None) => {}
                        Err(e) => tracing::error!(
                            conversation = key.0,
                            seq = key.1,
                            "send not recorded: {e}"
                        ),
                    }
                });
            }
        });
        Ok(outbox)
    }

    /// Registers interest in a send's outcome; call before [`Outbox::submit`].
    pub fn watch(&self, conversation: u64, seq: u64) -> oneshot::Receiver<Message> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("outbox waiters lock")
            .entry((conversation, seq))
            .or_default()
            .push(tx);
        rx
    }

    /// Submits a durably queued send.
    pub fn submit(&self, conversation: u64, seq: u64) {
        let _ = self.submit.send((conversation, seq));
    }

    fn notify(&self, key: SendKey, message: Message) {
        let waiters = self
            .waiters
            .lock()
            .expect("outbox waiters lock")
            .remove(&key)
            .unwrap_or_default();
        for w in waiters {
            let _ = w.send(message.clone());
        }
    }

    /// Waits up to `timeout` for a watched send's outcome.
    pub async fn wait(&self, rx: oneshot::Receiver<Message>, timeout: Duration) -> Option<Message> {
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }
}

/// Describes a plugin's send error for the stored message and the API.
pub fn describe_send_error(e: &wit::SendError) -> String {
    match e {
        wit::SendError::Invalid(m) => format!("invalid: {m}"),
        wit::SendError::OptedOut(m) => format!("opted out: {m}"),
        wit::SendError::Unauthorized(m) => format!("unauthorized: {m}"),
        wit::SendError::RateLimited(Some(s)) => format!("rate limited: retry after {s}s"),
        wit::SendError::RateLimited(None) => "rate limited".to_owned(),
        wit::SendError::Unavailable(m) => format!("provider unavailable: {m}"),
        wit::SendError::Misconfigured(m) => format!("channel misconfigured: {m}"),
    }
}

async fn send_one(
    app: &Arc<App>,
    client: &ProviderClient,
    (conversation, seq): SendKey,
) -> Result<Option<Message>, StorageError> {
    let Some(conv) = app.storage.conversation(conversation)? else {
        return Ok(None);
    };
    let Some(message) = app.storage.message(conversation, seq)? else {
        return Ok(None);
    };
    let outcome = attempt(app, client, &conv, &message).await;
    match &outcome {
        Ok(id) => {
            tracing::info!(event = "sent", conversation, seq, channel = %conv.channel, provider_id = %id, "message sent")
        }
        Err(e) => {
            tracing::warn!(event = "send_failed", conversation, seq, channel = %conv.channel, "send failed: {e}")
        }
    }
    let updated = app
        .storage
        .complete_send(&conv.channel, conversation, seq, outcome)?;
    app.storage.wait_durable().await?;
    Ok(updated)
}

async fn attempt(
    app: &Arc<App>,
    client: &ProviderClient,
    conv: &crate::storage::Conversation,
    message: &Message,
) -> Result<String, String> {
    let channel = app
        .channels
        .get(&conv.channel)
        .ok_or_else(|| format!("channel {} is no longer configured", conv.channel))?;
    if app
        .storage
        .is_opted_out(&conv.channel, &conv.customer)
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "opted out: {} opted out of this channel",
            conv.customer
        ));
    }
    let now = Clock::System.now_millis();
    let outbound = wit::OutboundMessage {
        id: message.id(),
        to: conv.customer.clone(),
        text: message.text.clone(),
        attachments: message
            .attachments
            .iter()
            .map(|a: &Attachment| wit::Attachment {
                url: a.url.clone(),
                content_type: a.content_type.clone(),
            })
            .collect(),
        thread: conv.thread.clone(),
        since_last_inbound: conv.last_inbound_at.map(|t| now.saturating_sub(t) / 1000),
        token: None,
    };
    let plugin = &channel.plugin;
    let request = plugin
        .prepare_send(
            &app.sandbox,
            &channel.name,
            outbound,
            channel.settings.clone(),
        )
        .await
        .map_err(|e| format!("plugin error: {e}"))?
        .map_err(|e| describe_send_error(&e))?;
    let response = client
        .perform(&channel.allowed_hosts, request)
        .await
        .map_err(|e| e.to_string())?;
    plugin
        .read_send_response(
            &app.sandbox,
            &channel.name,
            response,
            channel.settings.clone(),
        )
        .await
        .map_err(|e| format!("plugin error: {e}"))?
        .map_err(|e| describe_send_error(&e))
}
