//! Bots in front of the queue (the seeds' "bot"): a conversation created or reopened on a
//! channel or queue with a `bot` is held by that bot (state `bot`) and not offered to agents.
//! Each customer message is the bot's turn: the host gives the bot plugin the conversation's
//! recent history and what it kept from its last turn, performs the requests it asks for (the
//! allow-list, timeouts and size limits channels have), sends its replies through the outbox
//! (automated, under the rules any reply follows), and applies its outcome: keep the
//! conversation, hand it to a queue with a note for the agent, or resolve it.
//!
//! A customer always reaches a person: one of the bot's `handoff_keywords` hands off before
//! the bot is asked, and a bot that fails in any way (a trap, the deadline, an error, too many
//! fetches, too much memory) hands off at once, so a broken bot never strands a customer.
//!
//! Turns of one conversation run one at a time, in order; a message that arrives during a turn
//! gets a turn after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::clock::Clock;
use crate::model::{Conversation, ConversationState, Direction, Message, Rejection};
use crate::runtime::bindings::wit_bot::{BotTurn, HandOff, Outcome, Step};
use crate::runtime::bindings::wit_conversations::{Author, ConversationFacts, Turn};
use crate::runtime::bot::BotInput;
use crate::runtime::provider_http::ProviderClient;
use crate::services::app::App;
use crate::services::automated::Sender;
use crate::services::catalog::BotInstance;
use crate::services::events::{self, EventHub};
use crate::services::outbox::Outbox;
use crate::services::routing::Dispatcher;
use crate::store::{ConversationQuery, Selector, UpdateError};

/// Messages of history a bot is shown, the latest last.
pub const HISTORY: usize = 20;
/// Fetch steps a bot may take in one turn.
pub const MAX_FETCHES: usize = 3;
/// Requests one fetch step may ask for.
pub const MAX_REQUESTS_PER_FETCH: usize = 4;
/// The most a bot may keep about one conversation, names and values together, bytes.
pub const MAX_MEMORY_BYTES: usize = 4096;
/// Replies one turn may send.
pub const MAX_REPLIES: usize = 5;

/// The prefix of a bot's name where the history records who wrote (`bot:helpdesk`).
pub const BOT_AUTHOR_PREFIX: &str = "bot:";

/// The author (and automated label) of bot `name`'s messages.
pub fn author(name: &str) -> String {
    format!("{BOT_AUTHOR_PREFIX}{name}")
}

/// Runs the bots' turns.
pub struct Bots {
    app: Arc<App>,
    events: Arc<EventHub>,
    dispatcher: Arc<Dispatcher>,
    outbox: Arc<Outbox>,
    client: ProviderClient,
    /// Conversations with a turn running, and whether another is due after it.
    running: Mutex<HashMap<u64, bool>>,
}

/// How a turn ended, for the conversation.
enum Ending {
    /// The bot answered; this is its turn.
    Answered(BotTurn),
    /// The customer asked for a person with one of these words.
    Asked(String),
    /// The bot failed; why.
    Failed(String),
}

impl Bots {
    /// The bot runner; `client` performs the requests bots ask for.
    pub fn new(
        app: Arc<App>,
        events: Arc<EventHub>,
        dispatcher: Arc<Dispatcher>,
        outbox: Arc<Outbox>,
        client: ProviderClient,
    ) -> Arc<Bots> {
        Arc::new(Bots {
            app,
            events,
            dispatcher,
            outbox,
            client,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Gives each conversation its bot's turn (after the running one, if any).
    pub fn kick(self: &Arc<Self>, ids: &[u64]) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for &id in ids {
            if let Some(again) = running.get_mut(&id) {
                *again = true;
                continue;
            }
            running.insert(id, false);
            let bots = self.clone();
            tokio::spawn(async move { bots.run(id).await });
        }
    }

    /// At start: a turn for every conversation a bot holds whose customer wrote last (a turn a
    /// restart interrupted), the 200 most recent of each queue.
    pub async fn resume(self: &Arc<Self>) {
        let config = self.app.config();
        let mut ids = Vec::new();
        for q in &config.queues {
            let query = ConversationQuery {
                any_of: vec![Selector::Queue {
                    queue: q.name.clone(),
                    state: ConversationState::Bot,
                }],
                limit: 200,
                ..ConversationQuery::default()
            };
            match self.app.storage.conversations(&query).await {
                Ok(page) => ids.extend(page.items.iter().map(|c| c.id)),
                Err(e) => {
                    tracing::error!(queue = %q.name, "cannot list the bots' conversations: {e}")
                }
            }
        }
        if !ids.is_empty() {
            tracing::info!(conversations = ids.len(), "resuming bot turns");
        }
        self.kick(&ids);
    }

    async fn run(self: Arc<Self>, id: u64) {
        loop {
            if let Err(e) = self.turn(id).await {
                tracing::error!(conversation = id, "bot turn failed: {e}");
            }
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if running.get(&id) == Some(&true) {
                running.insert(id, false);
                continue;
            }
            running.remove(&id);
            return;
        }
    }

    /// One turn for conversation `id`, if a bot holds it and the customer wrote since the
    /// bot last answered.
    async fn turn(&self, id: u64) -> Result<(), UpdateError> {
        let storage = self.app.storage.as_ref();
        let Some(conv) = storage.conversation(id).await? else {
            return Ok(());
        };
        let Some(name) = conv
            .bot
            .clone()
            .filter(|_| conv.state == ConversationState::Bot)
        else {
            return Ok(());
        };
        let history = storage
            .messages(
                id,
                Some(conv.last_seq.saturating_sub(HISTORY as u64)),
                HISTORY,
            )
            .await?
            .items;
        let Some(latest) = unanswered(&history) else {
            return Ok(());
        };
        let catalog = self.app.catalog();
        let Some(bot) = catalog.bots.get(&name).cloned() else {
            let ending = Ending::Failed(format!("bot `{name}` is no longer configured"));
            return self.end_turn(&conv, &name, ending).await;
        };
        let text = latest.text.clone().unwrap_or_default();
        let ending = match asks_for_person(&bot.handoff_keywords, &text) {
            true => Ending::Asked(text),
            false => self.ask(&bot, &conv, &history).await,
        };
        self.end_turn(&conv, &name, ending).await
    }

    /// Runs the bot plugin's steps for one turn: its answer, or why it failed.
    async fn ask(&self, bot: &BotInstance, conv: &Conversation, history: &[Message]) -> Ending {
        let catalog = self.app.catalog();
        let now = Clock::System.now_millis();
        let known = matches!(self.app.storage.contact(&conv.customer).await, Ok(Some(_)));
        let facts = ConversationFacts {
            conversation: conv.id.to_string(),
            channel: conv.channel.clone(),
            kind: catalog
                .channels
                .get(&conv.channel)
                .map(|c| c.kind().to_owned())
                .unwrap_or_default(),
            queue: conv.queue.clone(),
            contact: conv.customer.clone(),
            contact_name: conv.contact_name.clone(),
            known_contact: known,
            now: now / 1000,
        };
        let turns: Vec<Turn> = history.iter().filter_map(turn_of).collect();
        let mut answers = Vec::new();
        let mut fetches = 0;
        loop {
            let input = BotInput {
                facts: facts.clone(),
                history: turns.clone(),
                memory: conv.bot_memory.clone(),
                answers: std::mem::take(&mut answers),
                settings: bot.settings.clone(),
            };
            let step = bot
                .plugin
                .respond(&self.app.sandbox, &bot.name, &conv.channel, input)
                .await;
            let requests = match step {
                Err(e) => return Ending::Failed(e.to_string()),
                Ok(Err(reason)) => {
                    return Ending::Failed(format!("it answered an error: {reason}"));
                }
                Ok(Ok(Step::Done(turn))) => {
                    return match check_turn(&turn) {
                        Ok(()) => Ending::Answered(turn),
                        Err(why) => Ending::Failed(why),
                    };
                }
                Ok(Ok(Step::Fetch(requests))) => requests,
            };
            fetches += 1;
            if fetches > MAX_FETCHES {
                return Ending::Failed(format!(
                    "it asked for more than {MAX_FETCHES} fetches in one turn"
                ));
            }
            if requests.len() > MAX_REQUESTS_PER_FETCH {
                return Ending::Failed(format!(
                    "it asked for {} requests in one fetch; the limit is {MAX_REQUESTS_PER_FETCH}",
                    requests.len()
                ));
            }
            for request in requests {
                let answer = self
                    .client
                    .perform(&bot.allowed_hosts, request)
                    .await
                    .map_err(|e| e.to_string());
                answers.push(answer);
            }
        }
    }

    /// Applies how a turn ended: the bot's replies, then its outcome.
    async fn end_turn(
        &self,
        conv: &Conversation,
        name: &str,
        ending: Ending,
    ) -> Result<(), UpdateError> {
        let turn = match ending {
            Ending::Answered(turn) => turn,
            Ending::Asked(text) => {
                tracing::info!(
                    conversation = conv.id,
                    bot = name,
                    "customer asked for a person"
                );
                let summary = format!("Customer asked for a person: \"{}\".", clip(&text));
                let handoff = HandOff {
                    queue: None,
                    skills: Vec::new(),
                    summary: Some(summary),
                };
                return self.hand_off(conv, name, handoff).await;
            }
            Ending::Failed(why) => {
                tracing::warn!(
                    conversation = conv.id,
                    bot = name,
                    "bot failed, handing off: {why}"
                );
                let handoff = HandOff {
                    queue: None,
                    skills: Vec::new(),
                    summary: Some(format!("Bot {name} failed ({why}); handed to the agents.")),
                };
                return self.hand_off(conv, name, handoff).await;
            }
        };
        let sender = Sender {
            app: &self.app,
            outbox: &self.outbox,
            events: &self.events,
        };
        let label = author(name);
        for reply in turn.replies.into_iter().filter(|r| !r.trim().is_empty()) {
            // Taken from the bot during a slow turn (an agent, a manager): nothing more from it.
            let storage = self.app.storage.as_ref();
            let Some(now_conv) = storage.conversation(conv.id).await? else {
                return Ok(());
            };
            if !now_conv.is_held_by(name) {
                return Ok(());
            }
            let now = Clock::System.now_millis();
            let refusal = sender.refusal(&now_conv, &reply, now).await?;
            let what = format!("reply of bot {name}");
            let why = refusal.clone();
            let sent = sender
                .deliver(&now_conv, &label, &what, reply, refusal, now)
                .await?;
            if !sent {
                // The customer would hear nothing: the agents take over.
                let handoff = HandOff {
                    queue: None,
                    skills: Vec::new(),
                    summary: Some(format!(
                        "A reply of bot {name} could not be sent ({}); handed to the agents.",
                        why.unwrap_or_default()
                    )),
                };
                return self.hand_off(&now_conv, name, handoff).await;
            }
        }
        match turn.outcome {
            Outcome::Keep => {
                let memory = turn.memory;
                let kept = crate::store::update(self.app.storage.as_ref(), conv.id, |c| {
                    held(c, name)?;
                    c.bot_memory = memory.clone();
                    Ok(())
                })
                .await;
                match kept {
                    Ok(_) | Err(UpdateError::Rejected(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Outcome::HandOff(handoff) => self.hand_off(conv, name, handoff).await,
            Outcome::Resolved => self.resolve(conv, name).await,
        }
    }

    /// Hands `conv` from bot `name` to a queue (the hand-off's, if configured, else its own),
    /// with the summary as a note for the agent, and has the dispatcher offer it.
    async fn hand_off(
        &self,
        conv: &Conversation,
        name: &str,
        handoff: HandOff,
    ) -> Result<(), UpdateError> {
        let catalog = self.app.catalog();
        let queue = match handoff.queue {
            Some(q) if catalog.queues.contains_key(&q) => q,
            Some(q) => {
                tracing::warn!(
                    conversation = conv.id,
                    bot = name,
                    "bot handed off to queue {q:?}, which is not configured; its own queue takes it"
                );
                conv.queue.clone()
            }
            None => conv.queue.clone(),
        };
        let mut skills: Vec<String> = handoff
            .skills
            .iter()
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        skills.truncate(crate::config::MAX_WORK_SKILLS);
        let now = Clock::System.now_millis();
        // The summary first: whoever is offered the work finds it in the history. Its
        // managers are told now; the queue's agents read it with the history.
        if let Some(summary) = handoff.summary.filter(|s| !s.trim().is_empty()) {
            let by = author(name);
            let (held_now, note) = self
                .app
                .storage
                .add_note(conv.id, &by, &summary, now)
                .await?;
            self.events
                .publish(
                    "note",
                    events::audience(&self.app.config(), &held_now, None),
                    Some(conv.id),
                    json!({"seq": note.seq, "id": note.id(), "author": by, "text": note.text}),
                )
                .await;
        }
        let moved = crate::store::update(self.app.storage.as_ref(), conv.id, |c| {
            held(c, name)?;
            c.enqueue(&queue, now);
            if !skills.is_empty() {
                c.skills = skills.clone();
            }
            c.bot_memory.clear();
            c.updated_at = now;
            Ok(())
        })
        .await;
        let (after, ()) = match moved {
            Ok(done) => done,
            // Someone took it from the bot meanwhile (an agent's transfer): theirs now.
            Err(UpdateError::Rejected(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        tracing::info!(conversation = conv.id, bot = name, queue = %queue, "bot handed off");
        let config = self.app.config();
        let by = author(name);
        self.events
            .publish(
                "transferred",
                events::audience(&config, &after, None),
                Some(after.id),
                json!({"from": null, "to": null, "queue": queue, "by": by}),
            )
            .await;
        self.dispatcher.kick_conversations(&[after.id]);
        Ok(())
    }

    /// Closes `conv`, resolved by bot `name`.
    async fn resolve(&self, conv: &Conversation, name: &str) -> Result<(), UpdateError> {
        let now = Clock::System.now_millis();
        let closed = crate::store::update(self.app.storage.as_ref(), conv.id, |c| {
            held(c, name)?;
            c.resolve_by_bot(now);
            c.bot_memory.clear();
            Ok(())
        })
        .await;
        let (after, ()) = match closed {
            Ok(done) => done,
            Err(UpdateError::Rejected(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        tracing::info!(
            conversation = conv.id,
            bot = name,
            "bot resolved the conversation"
        );
        let audience = events::audience(&self.app.config(), &after, None);
        self.events
            .publish(
                "closed",
                audience,
                Some(after.id),
                json!({"by": author(name)}),
            )
            .await;
        Ok(())
    }
}

/// Refuses a change to a conversation bot `name` no longer holds.
fn held(c: &Conversation, name: &str) -> Result<(), Rejection> {
    match c.is_held_by(name) {
        true => Ok(()),
        false => Err(Rejection::Conflict(format!(
            "conversation {} is no longer held by bot {name}",
            c.id
        ))),
    }
}

/// The customer's latest message when the bot has not answered since (a note or the host's
/// automated message in between changes nothing).
fn unanswered(history: &[Message]) -> Option<&Message> {
    let from_bot = |m: &Message| {
        m.automated
            .as_deref()
            .is_some_and(|a| a.starts_with(BOT_AUTHOR_PREFIX))
    };
    history
        .iter()
        .rev()
        .find(|m| m.direction == Direction::Inbound || from_bot(m))
        .filter(|m| m.direction == Direction::Inbound)
}

/// How a stored message reads in a plugin's view of a conversation (a bot's history, an
/// integration's transcript); notes are not shown.
pub fn turn_of(m: &Message) -> Option<Turn> {
    let (author, name) = match (m.direction, m.automated.as_deref(), m.author.as_deref()) {
        (Direction::Note, ..) => return None,
        (Direction::Inbound, ..) => (Author::Customer, None),
        (Direction::Outbound, Some(a), _) if a.starts_with(BOT_AUTHOR_PREFIX) => {
            (Author::Bot, Some(a[BOT_AUTHOR_PREFIX.len()..].to_owned()))
        }
        (Direction::Outbound, _, Some(agent)) => (Author::Agent, Some(agent.to_owned())),
        (Direction::Outbound, ..) => (Author::Host, None),
    };
    Some(Turn {
        author,
        name,
        text: m.text.clone(),
        at: m.created_at / 1000,
    })
}

/// Whether `text` holds one of `keywords` (whole words, any case; a keyword of several words
/// matches them in a row).
fn asks_for_person(keywords: &[String], text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    keywords.iter().any(|k| {
        let wanted: Vec<&str> = k.split_whitespace().collect();
        !wanted.is_empty() && words.windows(wanted.len()).any(|w| w == wanted.as_slice())
    })
}

/// Refuses a turn that sends too many replies or keeps too much.
fn check_turn(turn: &BotTurn) -> Result<(), String> {
    if turn.replies.len() > MAX_REPLIES {
        return Err(format!(
            "it sent {} replies in one turn; the limit is {MAX_REPLIES}",
            turn.replies.len()
        ));
    }
    let memory: usize = turn.memory.iter().map(|(k, v)| k.len() + v.len()).sum();
    if memory > MAX_MEMORY_BYTES {
        return Err(format!(
            "it kept {memory} bytes of memory; the limit is {MAX_MEMORY_BYTES}"
        ));
    }
    Ok(())
}

/// `text` cut to 200 characters for a note.
fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageStatus;

    fn message(seq: u64, direction: Direction, automated: Option<&str>) -> Message {
        Message {
            conversation: 1,
            seq,
            direction,
            provider_id: None,
            text: Some(format!("m{seq}")),
            attachments: Vec::new(),
            author: None,
            created_at: seq * 1000,
            status: MessageStatus::Received,
            error: None,
            note: None,
            template: None,
            automated: automated.map(str::to_owned),
            failover: None,
        }
    }

    #[test]
    fn a_customer_message_after_the_bots_last_reply_is_unanswered() {
        let greeting = message(2, Direction::Outbound, Some("greeting"));
        let asked = vec![message(1, Direction::Inbound, None), greeting.clone()];
        assert_eq!(
            unanswered(&asked).map(|m| m.seq),
            Some(1),
            "a greeting is not the bot's answer"
        );
        let answered = vec![
            message(1, Direction::Inbound, None),
            message(2, Direction::Outbound, Some("bot:faq")),
            message(3, Direction::Note, None),
        ];
        assert!(unanswered(&answered).is_none());
        assert!(unanswered(&[]).is_none());
    }

    #[test]
    fn history_names_who_wrote_and_hides_notes() {
        let mut agent = message(3, Direction::Outbound, None);
        agent.author = Some("alice".into());
        let turns: Vec<Author> = [
            message(1, Direction::Inbound, None),
            message(2, Direction::Outbound, Some("bot:faq")),
            agent,
            message(4, Direction::Outbound, Some("greeting")),
            message(5, Direction::Note, None),
        ]
        .iter()
        .filter_map(turn_of)
        .map(|t| t.author)
        .collect();
        assert_eq!(
            turns,
            [Author::Customer, Author::Bot, Author::Agent, Author::Host]
        );
    }

    #[test]
    fn handoff_keywords_are_whole_words_in_any_case() {
        let keywords = vec!["agent".to_owned(), "real person".to_owned()];
        assert!(asks_for_person(&keywords, "I want an AGENT please"));
        assert!(asks_for_person(&keywords, "a real  person!"));
        assert!(!asks_for_person(&keywords, "agents of change"));
        assert!(!asks_for_person(&keywords, "person"));
    }

    #[test]
    fn a_turn_is_bounded_in_replies_and_memory() {
        let turn = |replies: usize, memory: usize| BotTurn {
            replies: vec!["hi".into(); replies],
            outcome: Outcome::Keep,
            memory: vec![("k".into(), "x".repeat(memory))],
        };
        assert!(check_turn(&turn(MAX_REPLIES, 10)).is_ok());
        assert!(check_turn(&turn(MAX_REPLIES + 1, 10)).is_err());
        assert!(
            check_turn(&turn(1, MAX_MEMORY_BYTES))
                .unwrap_err()
                .contains("memory")
        );
    }
}
