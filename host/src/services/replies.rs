//! Agents' replies before they are queued: each is checked against its channel's rules and
//! turned into a draft the store queues. The rules: text, attachments or a template present;
//! text length for the channel kind; the recipient not opted out; attachments allowed and
//! supported; on WhatsApp, outside the 24-hour window, only an approved template.

use crate::model::{Attachment, Conversation, OutboundDraft, TemplateSend};
use crate::services::app::App;
use crate::services::catalog::ChannelState;
use crate::services::channel_rules;
use crate::store::StoreError;

/// A reply as an agent asked for it.
#[derive(Debug, Default)]
pub struct ReplyRequest {
    /// The text, if any.
    pub text: Option<String>,
    /// Media to attach.
    pub attachments: Vec<Attachment>,
    /// An approved template to send instead of free text.
    pub template: Option<TemplateChoice>,
}

/// An approved template picked by name (and language, when several share the name).
#[derive(Debug)]
pub struct TemplateChoice {
    /// The template's name.
    pub name: String,
    /// Its language, when several share the name.
    pub language: Option<String>,
    /// Values for its variables.
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// Why a reply cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    /// It breaks one of the channel's rules (the message names it).
    #[error("{0}")]
    Refused(String),
    /// Storage could not say whether the recipient opted out.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Checks an outbound message against its channel's rules and turns it into a draft: text or
/// attachments present, text length for the channel kind, the recipient not opted out,
/// attachments allowed and supported, and on WhatsApp the 24-hour window (outside it, only an
/// approved template).
pub async fn draft(
    app: &App,
    conv: &Conversation,
    body: ReplyRequest,
    now: u64,
) -> Result<OutboundDraft, DraftError> {
    let unprocessable = DraftError::Refused;
    let Some(channel) = app.live_channel(&conv.channel) else {
        return Err(unprocessable(format!(
            "channel {} is {}; the conversation is read-only",
            conv.channel,
            match app.channel_state(&conv.channel) {
                ChannelState::Enabled => "no longer configured",
                other => other.as_str(),
            }
        )));
    };
    let kind = channel.kind().to_owned();
    let text = body.text.filter(|t| !t.trim().is_empty());
    if text.is_none() && body.attachments.is_empty() && body.template.is_none() {
        return Err(unprocessable(
            "a message needs a non-empty `text`, an attachment or a `template`".into(),
        ));
    }
    if let Some(t) = &text {
        let chars = t.chars().count();
        let limit = channel.rules().max_text_chars;
        if chars > limit {
            return Err(unprocessable(format!(
                "text is {chars} characters; {kind} messages take at most {limit}"
            )));
        }
    }
    match app
        .storage
        .is_opted_out(&conv.channel, &conv.customer)
        .await
    {
        Ok(true) => {
            return Err(unprocessable(format!(
                "{} opted out of channel {} (they sent STOP or the provider reported it); nothing was sent",
                conv.customer, conv.channel
            )));
        }
        Ok(false) => {}
        Err(e) => return Err(DraftError::Storage(e)),
    }
    if !body.attachments.is_empty() {
        if !channel.agent_attachments {
            return Err(unprocessable(format!(
                "agent attachments are off for channel {}",
                conv.channel
            )));
        }
        if !channel.plugin.manifest.attachments {
            return Err(unprocessable(format!(
                "channel {} ({}) cannot send attachments",
                conv.channel, channel.plugin.info.name
            )));
        }
    }
    for a in &body.attachments {
        if url::Url::parse(&a.url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            return Err(unprocessable(format!(
                "attachment url {:?} is not an absolute http(s) URL",
                a.url
            )));
        }
    }
    let template_names = || {
        let names: Vec<String> = channel
            .templates
            .iter()
            .map(|t| format!("{} ({})", t.name, t.language))
            .collect();
        if names.is_empty() {
            "none is configured".to_owned()
        } else {
            format!("configured: {}", names.join(", "))
        }
    };
    let template = match body.template {
        None => None,
        Some(choice) => {
            let found = channel.templates.iter().find(|t| {
                t.name == choice.name && choice.language.as_ref().is_none_or(|l| &t.language == l)
            });
            let Some(t) = found else {
                return Err(unprocessable(format!(
                    "no template {:?} on channel {}; {}",
                    choice.name,
                    conv.channel,
                    template_names()
                )));
            };
            let missing: Vec<&String> = t
                .variables
                .iter()
                .filter(|v| !choice.variables.contains_key(v.as_str()))
                .collect();
            if !missing.is_empty() {
                return Err(unprocessable(format!(
                    "template {} needs variables {:?}",
                    t.name, missing
                )));
            }
            Some(TemplateSend {
                name: t.name.clone(),
                content_sid: t.content_sid.clone(),
                variables: serde_json::Value::Object(choice.variables).to_string(),
            })
        }
    };
    if let Some(hours) = channel.rules().reply_window_hours
        && template.is_none()
        && !channel_rules::window_open(hours, conv.last_inbound_at, now)
    {
        return Err(unprocessable(format!(
            "the {hours}-hour {kind} reply window is closed (the customer has not written in the last {hours} hours); only an approved template may be sent: {}",
            template_names()
        )));
    }
    Ok(OutboundDraft {
        text,
        attachments: body.attachments,
        template,
        automated: None,
    })
}

/// What the console's reply box obeys for one conversation: the same rules [`draft`] enforces,
/// stated ahead so an agent sees them before sending.
#[derive(Debug, serde::Serialize)]
pub struct ReplyRules {
    /// The longest text the channel takes, in characters.
    pub max_chars: usize,
    /// Whether texts are counted in SMS segments (SMS channels).
    pub segments: bool,
    /// Whether agents may send attachments here.
    pub attachments: bool,
    /// The channel's reply window (WhatsApp's 24 hours), on channels that declare one.
    pub window: Option<ReplyWindow>,
    /// The approved templates the channel offers.
    pub templates: Vec<channel_rules::Template>,
    /// Whether the customer opted out of the channel (nothing can be sent).
    pub opted_out: bool,
    /// Why nothing can be sent at all (the channel is gone, disabled or deleted), if so.
    pub read_only: Option<String>,
}

/// Whether free text may go out within the channel's reply window, and until when.
#[derive(Debug, serde::Serialize)]
pub struct ReplyWindow {
    /// How long the window lasts after the customer's last message.
    pub hours: u32,
    /// Whether the customer wrote within the window.
    pub open: bool,
    /// When the window closes (or closed), Unix milliseconds; `None` if the customer never wrote.
    pub closes_at: Option<u64>,
}

/// The rules a reply to `conv` must follow at `now`.
pub async fn rules(app: &App, conv: &Conversation, now: u64) -> Result<ReplyRules, StoreError> {
    let opted_out = app
        .storage
        .is_opted_out(&conv.channel, &conv.customer)
        .await?;
    let Some(channel) = app.live_channel(&conv.channel) else {
        return Ok(ReplyRules {
            max_chars: 0,
            segments: false,
            attachments: false,
            window: None,
            templates: Vec::new(),
            opted_out,
            read_only: Some(format!(
                "channel {} is {}",
                conv.channel,
                match app.channel_state(&conv.channel) {
                    ChannelState::Enabled => "no longer configured",
                    other => other.as_str(),
                }
            )),
        });
    };
    let rules = channel.rules();
    Ok(ReplyRules {
        max_chars: rules.max_text_chars,
        segments: rules.segments,
        attachments: channel.agent_attachments && channel.plugin.manifest.attachments,
        window: rules.reply_window_hours.map(|hours| ReplyWindow {
            hours,
            open: channel_rules::window_open(hours, conv.last_inbound_at, now),
            closes_at: conv
                .last_inbound_at
                .map(|t| t.saturating_add(channel_rules::window_ms(hours))),
        }),
        templates: channel.templates.clone(),
        opted_out,
        read_only: None,
    })
}
