//! What a CRM or a backend does on its own initiative, not as an agent: start a conversation
//! with a customer (an integration's `start-conversation` action, an integration key's
//! `POST /api/v1/integration/conversations`), post a message to one, add a contact. Each
//! message obeys its channel's rules as an agent's reply does, and is written by the host on
//! the integration's behalf (`automated: "integration:NAME"`). A conversation started this way
//! (or a closed one written to) waits in its channel's queue, so the customer's answer reaches
//! the agents with the message before it.

use serde_json::json;

use crate::clock::Clock;
use crate::model::{Contact, Conversation, ConversationTarget, Message};
use crate::services::app::App;
use crate::services::events::EventHub;
use crate::services::outbox::Outbox;
use crate::services::replies::{self, DraftError, ReplyRequest};
use crate::services::routing::Dispatcher;
use crate::store::{StoreError, UpdateError};

/// Why an integration's request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum OutreachError {
    /// It may not act on that channel.
    #[error(
        "{by} may not start conversations on channel {channel:?} (its `start_channels` say where it may)"
    )]
    NotAllowed {
        /// The integration or key.
        by: String,
        /// The channel asked for.
        channel: String,
    },
    /// The channel takes no traffic.
    #[error("channel {0:?} is not configured, or is disabled or deleted")]
    ChannelUnavailable(String),
    /// The address is not one the channel takes.
    #[error("`to` is not an address channel {channel} takes: {reason}")]
    BadAddress {
        /// The channel.
        channel: String,
        /// Why.
        reason: String,
    },
    /// No such conversation.
    #[error("no conversation {0}")]
    NoConversation(u64),
    /// The message breaks the channel's rules.
    #[error("{0}")]
    Refused(String),
    /// The update was refused on the current state.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl From<DraftError> for OutreachError {
    fn from(e: DraftError) -> Self {
        match e {
            DraftError::Refused(m) => OutreachError::Refused(m),
            DraftError::Storage(e) => OutreachError::Storage(e),
        }
    }
}

/// The services outreach uses, borrowed.
pub struct Outreach<'a> {
    /// Configuration, catalog, storage.
    pub app: &'a App,
    /// The event log.
    pub events: &'a EventHub,
    /// Offers waiting work.
    pub dispatcher: &'a Dispatcher,
    /// Sends.
    pub outbox: &'a std::sync::Arc<Outbox>,
}

impl Outreach<'_> {
    /// `by` (an integration or key, allowed `channels`) writes `text` to `to` on `channel`: the
    /// conversation with them (new, or the existing one) and the message queued.
    pub async fn start(
        &self,
        by: &str,
        channels: &[String],
        channel: &str,
        to: &str,
        text: &str,
    ) -> Result<(Conversation, Message), OutreachError> {
        if !channels.iter().any(|c| c == channel) {
            return Err(OutreachError::NotAllowed {
                by: by.to_owned(),
                channel: channel.to_owned(),
            });
        }
        let Some(instance) = self.app.live_channel(channel) else {
            return Err(OutreachError::ChannelUnavailable(channel.to_owned()));
        };
        let customer = instance
            .rules()
            .address
            .parse_customer(to)
            .map_err(|reason| OutreachError::BadAddress {
                channel: channel.to_owned(),
                reason,
            })?;
        let storage = self.app.storage.as_ref();
        let now = Clock::System.now_millis();
        let existing = storage.conversation_by_key(channel, &customer).await?;
        let created = existing.is_none();
        let conv = match existing {
            Some(c) => c,
            None => {
                let queue = match &instance.target {
                    ConversationTarget::Queue { queue, .. } => queue.clone(),
                    ConversationTarget::Agent(_) => String::new(),
                };
                storage
                    .start_conversation(channel, &customer, &queue, by, now)
                    .await?
            }
        };
        let conv = self.open(conv, by, &instance.target, now).await?;
        if created {
            self.events
                .publish("created", Vec::new(), Some(conv.id), json!({"by": by}))
                .await;
        }
        let message = self.send(by, &conv, text, now).await?;
        Ok((conv, message))
    }

    /// `by` writes `text` into conversation `id`, whose channel must be among `channels`.
    pub async fn post(
        &self,
        by: &str,
        channels: &[String],
        id: u64,
        text: &str,
    ) -> Result<(Conversation, Message), OutreachError> {
        let Some(conv) = self.app.storage.conversation(id).await? else {
            return Err(OutreachError::NoConversation(id));
        };
        if !channels.contains(&conv.channel) {
            return Err(OutreachError::NotAllowed {
                by: by.to_owned(),
                channel: conv.channel.clone(),
            });
        }
        let Some(instance) = self.app.live_channel(&conv.channel) else {
            return Err(OutreachError::ChannelUnavailable(conv.channel.clone()));
        };
        let now = Clock::System.now_millis();
        let conv = self.open(conv, by, &instance.target, now).await?;
        let message = self.send(by, &conv, text, now).await?;
        Ok((conv, message))
    }

    /// Adds `contact` to the directory (or renames it).
    pub async fn add_contact(&self, by: &str, contact: &Contact) -> Result<(), OutreachError> {
        self.app.storage.put_contact(contact).await?;
        crate::services::audit::record(by, "add_contact", None, &contact.address);
        Ok(())
    }

    /// `conv` open for the agents: a closed one (or one just started on `by`'s behalf) waits
    /// in its queue, or goes to the channel's one agent.
    async fn open(
        &self,
        conv: Conversation,
        by: &str,
        target: &ConversationTarget,
        now: u64,
    ) -> Result<Conversation, OutreachError> {
        let ours = conv.owner.as_deref() == Some(by);
        if conv.state != crate::model::ConversationState::Closed && !ours {
            return Ok(conv);
        }
        let (after, ()) = crate::store::update(self.app.storage.as_ref(), conv.id, |c| {
            c.handled_by.retain(|h| h != by);
            match target {
                ConversationTarget::Queue { queue, .. } => c.enqueue(queue, now),
                ConversationTarget::Agent(agent) => c.assign(agent),
            }
            Ok(())
        })
        .await?;
        if after.state == crate::model::ConversationState::Queued {
            self.dispatcher.kick_conversations(&[after.id]);
        }
        Ok(after)
    }

    /// Queues `text` in `conv` from the host, on `by`'s behalf.
    async fn send(
        &self,
        by: &str,
        conv: &Conversation,
        text: &str,
        now: u64,
    ) -> Result<Message, OutreachError> {
        let request = ReplyRequest {
            text: Some(text.to_owned()),
            ..ReplyRequest::default()
        };
        let mut draft = replies::draft(self.app, conv, request, now).await?;
        draft.automated = Some(format!("integration:{by}"));
        let config = self.app.config();
        let notices = |after: &Conversation, message: &Message| {
            let notice = self.events.outbound_notice(&config, None, after, message);
            notice.into_iter().collect()
        };
        let (_, message, logged) = self
            .app
            .storage
            .add_outbound_with(conv.id, None, draft, now, &notices)
            .await?;
        self.outbox.submit(message.conversation, message.seq);
        crate::services::audit::record(by, "send", Some(conv.id), "");
        self.events.broadcast(logged);
        Ok(message)
    }
}

/// Why a CRM's call to the host was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CrmCallError {
    /// No integration has that name.
    #[error("no integration named {0:?} is configured")]
    UnknownIntegration(String),
    /// The plugin refused the call (its signature or token; malformed; misconfigured).
    #[error("{0}")]
    Refused(String, CrmRefusal),
    /// The plugin failed on the call.
    #[error("the integration's plugin failed: {0}")]
    Plugin(String),
    /// Every action the CRM asked for was refused.
    #[error("{0}")]
    Actions(String),
}

/// How a plugin refused a CRM's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrmRefusal {
    /// Not from the CRM (403).
    Unauthorized,
    /// Malformed (400).
    BadRequest,
    /// The integration's settings are unusable (500).
    Misconfigured,
}

impl Outreach<'_> {
    /// A call from the CRM of integration `name` (its outbound webhook): its plugin
    /// authenticates and reads it, then each action it asks for is carried out. The plugin's
    /// answer, unless every action was refused.
    pub async fn crm_call(
        &self,
        name: &str,
        request: crate::runtime::bindings::wit::HttpRequest,
    ) -> Result<crate::runtime::bindings::wit::HttpResponse, CrmCallError> {
        use crate::runtime::bindings::{wit, wit_crm};
        let Some(integration) = self.app.catalog().integrations.get(name).cloned() else {
            return Err(CrmCallError::UnknownIntegration(name.to_owned()));
        };
        let outcome = integration
            .plugin
            .handle_webhook(
                &self.app.sandbox,
                name,
                request,
                integration.settings.clone(),
            )
            .await
            .map_err(|e| CrmCallError::Plugin(e.to_string()))?;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(wit::WebhookError::Unauthorized(m)) => {
                tracing::warn!(integration = name, "call from the CRM refused: {m}");
                return Err(CrmCallError::Refused(m, CrmRefusal::Unauthorized));
            }
            Err(wit::WebhookError::BadRequest(m)) => {
                return Err(CrmCallError::Refused(m, CrmRefusal::BadRequest));
            }
            Err(wit::WebhookError::Misconfigured(m)) => {
                return Err(CrmCallError::Refused(m, CrmRefusal::Misconfigured));
            }
        };
        let mut refused = Vec::new();
        let total = outcome.actions.len();
        for action in outcome.actions {
            match action {
                wit_crm::Action::StartConversation(start) => {
                    let by = integration.config.name.as_str();
                    match self
                        .start(
                            by,
                            &integration.config.start_channels,
                            &start.channel,
                            &start.to,
                            &start.text,
                        )
                        .await
                    {
                        Ok((conv, _)) => tracing::info!(
                            integration = name,
                            conversation = conv.id,
                            "the CRM started a conversation"
                        ),
                        Err(e) => {
                            tracing::warn!(integration = name, "the CRM's start refused: {e}");
                            refused.push(e.to_string());
                        }
                    }
                }
            }
        }
        if total > 0 && refused.len() == total {
            return Err(CrmCallError::Actions(refused.join("; ")));
        }
        Ok(outcome.response)
    }
}
