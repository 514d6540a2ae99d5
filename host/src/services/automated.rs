//! Automated messages (the seeds' "automated messages"): a channel's or queue's greeting when a
//! conversation is created, its take message when an agent takes it (`{agent}` becomes the
//! agent's name) and its closing message when it is closed. Each goes out at most once per
//! conversation, through the outbox, marked `automated` in the history (no agent wrote it).
//! It follows the rules of any reply ([`crate::services::replies::rules`]): never to an address
//! that opted out, a channel gone or disabled, on WhatsApp outside the 24-hour window, or
//! longer than the channel carries;
//! then an internal note in the history says why it was not sent. A queue's survey question
//! goes out after the closing message; the customer's answer (1 to 5) within the queue's
//! window is the conversation's rating (see [`crate::store::rules::parse_rating`]).

use serde_json::json;

use crate::clock::Clock;
use crate::config::Config;
use crate::model::{Conversation, Message, OutboundDraft};
use crate::services::app::App;
use crate::services::events::{self, EventHub};
use crate::services::outbox::Outbox;
use crate::store::UpdateError;

/// The author of the notes that say why an automated message was not sent.
pub const HOST_AUTHOR: &str = "plugboard";

/// Which automated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Automated {
    /// When a customer's conversation is created.
    Greeting,
    /// When an agent takes it.
    Take,
    /// When it is closed.
    Closing,
    /// After it is closed: the queue's survey question; the answer is the rating.
    Survey,
}

impl Automated {
    /// The name the history and the configuration use (`greeting`, `take_message`,
    /// `closing_message`).
    pub fn name(self) -> &'static str {
        match self {
            Automated::Greeting => "greeting",
            Automated::Take => "take_message",
            Automated::Closing => "closing_message",
            Automated::Survey => "survey",
        }
    }
}

/// The text configured for `which` on `channel` (its own, else its queue's `queue`).
pub fn configured<'c>(
    config: &'c Config,
    channel: &str,
    queue: &str,
    which: Automated,
) -> Option<&'c str> {
    let pick =
        |greeting: &'c Option<String>, take: &'c Option<String>, closing: &'c Option<String>| {
            match which {
                Automated::Greeting => greeting.as_deref(),
                Automated::Take => take.as_deref(),
                Automated::Closing => closing.as_deref(),
                // Only a queue asks its question (handled above).
                Automated::Survey => None,
            }
        };
    if which == Automated::Survey {
        return config
            .queue(queue)
            .and_then(|q| q.survey_question.as_deref())
            .filter(|t| !t.trim().is_empty());
    }
    let own = config
        .channel(channel)
        .and_then(|c| pick(&c.greeting, &c.take_message, &c.closing_message));
    own.or_else(|| {
        config
            .queue(queue)
            .and_then(|q| pick(&q.greeting, &q.take_message, &q.closing_message))
    })
    .filter(|t| !t.trim().is_empty())
}

/// What sending automated messages needs.
#[derive(Clone, Copy)]
pub struct Sender<'a> {
    /// Configuration, catalog, storage.
    pub app: &'a App,
    /// Where the message is sent from.
    pub outbox: &'a std::sync::Arc<Outbox>,
    /// Tells the conversation's agents.
    pub events: &'a EventHub,
}

impl Sender<'_> {
    /// Sends `which` for `conv` unless none is configured or it went out before; `agent` is
    /// the name `{agent}` stands for.
    pub async fn send(
        &self,
        conv: &Conversation,
        which: Automated,
        agent: Option<&str>,
    ) -> Result<(), UpdateError> {
        let config = self.app.config();
        let Some(text) = configured(&config, &conv.channel, &conv.queue, which) else {
            return Ok(());
        };
        let text = text.replace("{agent}", agent.unwrap_or("An agent"));
        let now = Clock::System.now_millis();
        let refusal = self.refusal(conv, &text, now).await?;
        // A survey sent opens the window in which the customer's answer is their rating.
        let answer_until = (which == Automated::Survey && refusal.is_none()).then(|| {
            let window = config
                .queue(&conv.queue)
                .map_or(0, |q| q.survey_window_secs);
            now.saturating_add(window.saturating_mul(1000))
        });
        let (conv, first) = crate::store::update(self.app.storage.as_ref(), conv.id, |c| {
            let first = !c.automated.iter().any(|s| s == which.name());
            if first {
                c.automated.push(which.name().to_owned());
                if answer_until.is_some() {
                    c.survey_until = answer_until;
                }
            }
            Ok(first)
        })
        .await?;
        if !first {
            return Ok(());
        }
        let what = format!("automated {}", which.name().replace('_', " "));
        self.deliver(&conv, which.name(), &what, text, refusal, now)
            .await
            .map(|_| ())
    }

    /// Why `text` may not go to `conv`'s customer at `now` (the rules any reply follows:
    /// opted out, a channel gone or disabled, the WhatsApp window, the channel's longest
    /// text), or `None`.
    pub async fn refusal(
        &self,
        conv: &Conversation,
        text: &str,
        now: u64,
    ) -> Result<Option<String>, UpdateError> {
        let rules = crate::services::replies::rules(self.app, conv, now).await?;
        Ok(if rules.opted_out {
            Some("the customer opted out of this channel".to_owned())
        } else if let Some(why) = rules.read_only {
            Some(why)
        } else if rules.window.as_ref().is_some_and(|w| !w.open) {
            Some(
                "it is outside WhatsApp's 24-hour window, where only approved templates may go out"
                    .to_owned(),
            )
        } else if text.chars().count() > rules.max_chars {
            Some(format!(
                "it is longer than the {} characters this channel carries",
                rules.max_chars
            ))
        } else {
            None
        })
    }

    /// Sends `text` to `conv`'s customer through the outbox, marked `automated = label`, and
    /// tells its agents; with a `refusal`, stores an internal note saying `what` was not sent
    /// and why instead. Returns whether it was sent.
    pub async fn deliver(
        &self,
        conv: &Conversation,
        label: &str,
        what: &str,
        text: String,
        refusal: Option<String>,
        now: u64,
    ) -> Result<bool, UpdateError> {
        let config = self.app.config();
        let storage = self.app.storage.as_ref();
        let audience = events::audience(&config, conv, None);
        if let Some(why) = refusal {
            let mut what = what.to_owned();
            if let Some(first) = what.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            let note = format!("{what} not sent: {why}.");
            let (_, message) = storage.add_note(conv.id, HOST_AUTHOR, &note, now).await?;
            tracing::info!(
                conversation = conv.id,
                automated = label,
                "automated message not sent: {why}"
            );
            self.events
                .publish(
                    "note",
                    audience,
                    Some(conv.id),
                    json!({"seq": message.seq, "id": message.id(), "author": HOST_AUTHOR, "text": message.text}),
                )
                .await;
            return Ok(false);
        }
        let draft = OutboundDraft {
            text: Some(text),
            automated: Some(label.to_owned()),
            ..OutboundDraft::default()
        };
        let notices = |after: &Conversation, message: &Message| {
            let notice = self.events.outbound_notice(&config, None, after, message);
            notice.into_iter().collect()
        };
        let (_, message, logged) = storage
            .add_outbound_with(conv.id, None, draft, now, &notices)
            .await?;
        self.outbox.submit(message.conversation, message.seq);
        self.app
            .metrics
            .messages(&conv.channel, crate::metrics::Direction::Outbound, 1);
        tracing::info!(
            conversation = conv.id,
            automated = label,
            "automated message sent"
        );
        self.events.broadcast(logged);
        Ok(true)
    }
}
