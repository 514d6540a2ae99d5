//! Delivering one event to an integration plugin: the conversation's facts (and, at close,
//! its transcript) and what the integration kept about it are given to `on-event`; the
//! requests it asks for are performed under its allow-list; what it keeps is stored for the
//! conversation's next event.

use std::time::Duration;

use crate::clock::Clock;
use crate::model::Conversation;
use crate::runtime::bindings::{wit_conversations, wit_crm};
use crate::runtime::integration::EventInput;
use crate::runtime::provider_http::ProviderClient;
use crate::services::app::App;
use crate::services::catalog::IntegrationInstance;
use crate::services::hooks::delivery::{Attempt, Delivery};

/// Fetches one call of `on-event` may ask for before it answers.
const MAX_FETCHES: usize = 4;

/// Requests in one fetch.
const MAX_REQUESTS_PER_FETCH: usize = 8;

/// Times one attempt calls again at once when the integration asks for a pause of 0 s (it
/// kept what it learnt and goes on from there).
const MAX_RESTARTS: usize = 4;

/// The most an integration keeps about one conversation, in bytes.
pub const MAX_MEMORY_BYTES: usize = 4096;

/// The messages of a transcript, at most (the latest).
const TRANSCRIPT_MESSAGES: usize = 200;

/// The longest pause an integration may ask for.
const MAX_PAUSE_SECS: u64 = 900;

/// The store space of what integration `name` keeps, by conversation.
fn memory_space(name: &str) -> String {
    format!("memory/{name}")
}

/// One attempt of `delivery` to `integration`.
pub async fn attempt(
    app: &App,
    client: &ProviderClient,
    integration: &IntegrationInstance,
    delivery: &Delivery,
) -> Attempt {
    let event = match event_of(app, delivery).await {
        Ok(event) => event,
        Err(reason) => {
            return Attempt::Retry {
                reason,
                after: None,
            };
        }
    };
    let name = integration.config.name.as_str();
    let key = delivery.conversation.map(|c| c.to_string());
    let mut memory = match &key {
        Some(key) => match app.storage.document(&memory_space(name), key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Ok(None) => Vec::new(),
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("reading what the integration kept: {e}"),
                    after: None,
                };
            }
        },
        None => Vec::new(),
    };
    for _ in 0..MAX_RESTARTS {
        let outcome = match run(app, client, integration, &event, &memory).await {
            Ok(outcome) => outcome,
            Err(attempt) => return attempt,
        };
        let kept: usize = outcome.memory.iter().map(|(k, v)| k.len() + v.len()).sum();
        if kept > MAX_MEMORY_BYTES {
            return Attempt::Final(format!(
                "the integration kept {kept} bytes about the conversation; the limit is {MAX_MEMORY_BYTES}"
            ));
        }
        if let Some(key) = &key
            && outcome.memory != memory
        {
            let bytes = serde_json::to_vec(&outcome.memory).unwrap_or_default();
            if let Err(e) = app
                .storage
                .put_document(&memory_space(name), key, &bytes)
                .await
            {
                return Attempt::Retry {
                    reason: format!("keeping what the integration learnt: {e}"),
                    after: None,
                };
            }
        }
        memory = outcome.memory;
        match outcome.handled {
            wit_crm::Handled::Done => return Attempt::Delivered,
            wit_crm::Handled::RetryAfter(0) => continue,
            wit_crm::Handled::RetryAfter(secs) => {
                let secs = u64::from(secs).min(MAX_PAUSE_SECS);
                return Attempt::Retry {
                    reason: format!("the integration asked for a pause of {secs}s"),
                    after: Some(Duration::from_secs(secs)),
                };
            }
        }
    }
    Attempt::Retry {
        reason: format!("the integration asked to go on more than {MAX_RESTARTS} times in a row"),
        after: None,
    }
}

/// The plugin's steps for one call: its outcome, or the attempt's failure.
async fn run(
    app: &App,
    client: &ProviderClient,
    integration: &IntegrationInstance,
    event: &wit_crm::Event,
    memory: &[(String, String)],
) -> Result<wit_crm::Outcome, Attempt> {
    let mut answers = Vec::new();
    let mut fetches = 0;
    loop {
        let input = EventInput {
            event: event.clone(),
            memory: memory.to_vec(),
            answers: std::mem::take(&mut answers),
            settings: integration.settings.clone(),
        };
        let step = integration
            .plugin
            .on_event(&app.sandbox, &integration.config.name, input)
            .await;
        let requests = match step {
            // A trap or a deadline: the plugin may be fixed or replaced; try again later.
            Err(e) => {
                return Err(Attempt::Retry {
                    reason: e.to_string(),
                    after: None,
                });
            }
            Ok(Err(reason)) => return Err(Attempt::Final(format!("the integration: {reason}"))),
            Ok(Ok(wit_crm::Step::Done(outcome))) => return Ok(outcome),
            Ok(Ok(wit_crm::Step::Fetch(requests))) => requests,
        };
        fetches += 1;
        if fetches > MAX_FETCHES {
            return Err(Attempt::Final(format!(
                "the integration asked for more than {MAX_FETCHES} fetches for one event"
            )));
        }
        if requests.len() > MAX_REQUESTS_PER_FETCH {
            return Err(Attempt::Final(format!(
                "the integration asked for {} requests in one fetch; the limit is {MAX_REQUESTS_PER_FETCH}",
                requests.len()
            )));
        }
        for request in requests {
            let answer = client
                .perform(&integration.allowed_hosts, request)
                .await
                .map_err(|e| e.to_string());
            answers.push(answer);
        }
    }
}

/// The event as the contract gives it: the envelope's type and data, the conversation's
/// facts as it stands, and at close its transcript.
async fn event_of(app: &App, delivery: &Delivery) -> Result<wit_crm::Event, String> {
    let envelope: serde_json::Value = serde_json::from_str(&delivery.body)
        .map_err(|e| format!("the stored envelope does not parse: {e}"))?;
    let data = envelope.get("data").cloned().unwrap_or_default();
    let conversation = match delivery.conversation {
        Some(id) => app
            .storage
            .conversation(id)
            .await
            .map_err(|e| format!("reading conversation {id}: {e}"))?,
        None => None,
    };
    let facts = match &conversation {
        Some(c) => facts_of(app, c).await,
        None => empty_facts(&data),
    };
    let transcript = match (&conversation, delivery.kind.as_str()) {
        (Some(c), "conversation.closed") => transcript_of(app, c).await?,
        _ => Vec::new(),
    };
    let at = envelope
        .get("timestamp")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second().max(0) as u64)
        .unwrap_or(delivery.created_at / 1000);
    Ok(wit_crm::Event {
        id: delivery.event.clone(),
        kind: delivery.kind.clone(),
        at,
        conversation: facts,
        data: data.to_string(),
        transcript,
    })
}

async fn facts_of(app: &App, c: &Conversation) -> wit_conversations::ConversationFacts {
    let known = matches!(app.storage.contact(&c.customer).await, Ok(Some(_)));
    wit_conversations::ConversationFacts {
        conversation: c.id.to_string(),
        channel: c.channel.clone(),
        kind: app
            .catalog()
            .channels
            .get(&c.channel)
            .map(|ch| ch.kind().to_owned())
            .unwrap_or_default(),
        queue: c.queue.clone(),
        contact: c.customer.clone(),
        contact_name: c.contact_name.clone(),
        known_contact: known,
        now: Clock::System.now_millis() / 1000,
    }
}

/// The facts of an event of no conversation: its channel and address only.
fn empty_facts(data: &serde_json::Value) -> wit_conversations::ConversationFacts {
    let field = |name: &str| {
        data.get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    wit_conversations::ConversationFacts {
        conversation: String::new(),
        channel: field("channel"),
        kind: String::new(),
        queue: String::new(),
        contact: field("address"),
        contact_name: None,
        known_contact: false,
        now: Clock::System.now_millis() / 1000,
    }
}

/// The conversation's latest messages, oldest first, notes left out.
async fn transcript_of(
    app: &App,
    c: &Conversation,
) -> Result<Vec<wit_conversations::Turn>, String> {
    let after = c.last_seq.saturating_sub(TRANSCRIPT_MESSAGES as u64);
    let page = app
        .storage
        .messages(c.id, (after > 0).then_some(after), TRANSCRIPT_MESSAGES)
        .await
        .map_err(|e| format!("reading conversation {}'s messages: {e}", c.id))?;
    Ok(page
        .items
        .iter()
        .filter_map(crate::services::bots::turn_of)
        .collect())
}
