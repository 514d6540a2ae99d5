//! Plugboard CRM integration "bitrix24": links each conversation to the portal's contact or
//! lead, posts closed conversations' transcripts to its timeline, makes the assigned agent
//! responsible for it, and starts conversations when the portal asks.
//!
//! Every call goes through the portal's inbound webhook (`POST {webhook_url}{method}.json`,
//! see [`rest`]). Per event:
//!
//! * `contact.unknown`, `conversation.created`: unless the conversation is linked already, find
//!   the customer (`crm.duplicate.findbycomm` by phone number or e-mail address, see
//!   [`contact`]); a contact found is preferred to a lead; found none, create a lead
//!   (`crm.lead.add`). The record is kept in the conversation's memory ([`entity`]), so later
//!   events never create another.
//! * `conversation.closed`: `crm.timeline.comment.add` of the [`transcript`] to the linked
//!   record (linking it first if need be).
//! * `conversation.assigned` / `conversation.transferred` to an agent `user_map` maps:
//!   `crm.lead.update` / `crm.contact.update` of `ASSIGNED_BY_ID` (linking first if need be);
//!   other agents change nothing.
//!
//! The host hands a call only the answers of the fetch it follows, so each step is told apart
//! by what the memory holds and the answer's shape: unlinked, an array or object answers the
//! search and a number the creation; linked, the answer is the event's own request's. When an
//! event that must still comment or assign has just been linked, it ends with `retry-after(0)`
//! and the link in memory, and its next call does the rest: so a record found or created is
//! never looked for or created again, whatever fails after.
//!
//! Bitrix24's limits (`503`, `QUERY_LIMIT_EXCEEDED`, `OVERLOAD_LIMIT`) pause the event for
//! [`rest::LIMIT_PAUSE_SECS`] with the memory kept; a transport error for
//! [`rest::TRANSPORT_PAUSE_SECS`]; any other error dead-letters it with the method and
//! Bitrix24's code. The portal's own calls are read by [`webhook`].

pub mod config;
pub mod contact;
pub mod entity;
pub mod phpform;
pub mod rest;
pub mod transcript;
pub mod webhook;

use config::Config;
use contact::Comm;
use entity::{Entity, Kind};
use plugboard_sdk::crm::{Event, IntegrationManifest, Outcome, Step, WebhookOutcome};
use plugboard_sdk::serde_json::{Map, Value, json};
use plugboard_sdk::types::{Fields, HttpRequest, HttpResponse, Settings, WebhookError};
use plugboard_sdk::{Integration, host};
use rest::Stop;

/// The event types the integration handles.
pub const EVENTS: &[&str] = &[
    "contact.unknown",
    "conversation.created",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.closed",
];

/// The pause that ends a call once an event still to comment or assign has been linked: the
/// host keeps the link in memory and calls again at once.
pub const LINKED_PAUSE_SECS: u32 = 0;

/// The Bitrix24 integration.
pub struct Bitrix24;

/// The integration's manifest. No API hosts: the host allows the origin of `webhook_url`.
pub fn manifest() -> IntegrationManifest {
    IntegrationManifest {
        name: "bitrix24".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        settings: config::setting_specs(),
        api_hosts: Vec::new(),
        events: EVENTS.iter().map(|e| e.to_string()).collect(),
    }
}

/// What an event asks of the portal once its conversation is linked to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Work {
    /// Nothing at all (not even linking).
    Nothing,
    /// Only the link.
    Link,
    /// Comment this on the record's timeline.
    Comment(String),
    /// Make this Bitrix24 user responsible for the record.
    Assign(u64),
}

/// The event's `data`, `{}` when empty.
fn data(event: &Event) -> Result<Value, String> {
    if event.data.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    event
        .data_json()
        .map_err(|e| format!("the event's data is not JSON: {e}"))
}

/// What `event` asks for.
fn work_of(event: &Event, config: &Config) -> Result<Work, String> {
    let assign = |agent: Option<&Value>| match agent.and_then(Value::as_str) {
        Some(agent) => config
            .bitrix_user(agent)
            .map_or(Work::Nothing, Work::Assign),
        None => Work::Nothing,
    };
    Ok(match event.kind.as_str() {
        "contact.unknown" | "conversation.created" => Work::Link,
        "conversation.closed" => Work::Comment(transcript::comment(event, &data(event)?, config)),
        "conversation.assigned" => assign(data(event)?.get("agent")),
        "conversation.transferred" => assign(data(event)?.get("to_agent")),
        _ => Work::Nothing,
    })
}

/// The fields of the lead created for `event`'s customer.
fn lead_fields(event: &Event, comm: Option<&Comm>, config: &Config) -> Value {
    let facts = &event.conversation;
    let mut fields = Map::new();
    fields.insert(
        "TITLE".into(),
        json!(format!("Plugboard: {}", contact::display_name(facts))),
    );
    if let Some(name) = facts.contact_name.as_deref().map(str::trim)
        && !name.is_empty()
    {
        fields.insert("NAME".into(), json!(name));
    }
    if let Some(comm) = comm {
        fields.insert(
            comm.kind().into(),
            json!([{"VALUE": comm.value(), "VALUE_TYPE": "WORK"}]),
        );
    }
    fields.insert("SOURCE_ID".into(), json!(config.source_id));
    fields.insert("SOURCE_DESCRIPTION".into(), json!(facts.channel));
    Value::Object(fields)
}

/// The end of an event's handling that `stop` asks for.
fn stopped(stop: Stop, memory: Fields) -> Result<Step, String> {
    match stop {
        Stop::Pause(seconds) => Ok(Step::Done(Outcome::retry_after(seconds, memory))),
        Stop::Fail(reason) => Err(reason),
    }
}

/// Handles one event: the next step given the conversation's `memory` and the answers of the
/// previous fetch (see the crate documentation).
///
/// # Errors
///
/// The portal's refusal of a call, naming the method, or an event whose data is not JSON: the
/// host dead-letters the event.
pub fn handle_event(
    event: &Event,
    memory: Fields,
    answers: &[Result<HttpResponse, String>],
    config: &Config,
) -> Result<Step, String> {
    let work = work_of(event, config)?;
    if work == Work::Nothing {
        return Ok(Step::Done(Outcome::done(memory)));
    }
    match Entity::recall(&memory) {
        None => link(event, memory, answers.first(), config, &work),
        Some(entity) => act(entity, memory, answers.first(), config, work),
    }
}

/// Links the conversation: the search, the creation, or reading the answer to either.
fn link(
    event: &Event,
    memory: Fields,
    answer: Option<&Result<HttpResponse, String>>,
    config: &Config,
    work: &Work,
) -> Result<Step, String> {
    let facts = &event.conversation;
    let comm = contact::comm_of(&facts.contact, &facts.kind);
    let create = || {
        rest::add_lead(
            &config.webhook_url,
            lead_fields(event, comm.as_ref(), config),
        )
    };
    let Some(answer) = answer else {
        let first = match &comm {
            Some(comm) => rest::find(&config.webhook_url, comm),
            None => create(),
        };
        return Ok(Step::Fetch(vec![first]));
    };
    // Unlinked, the previous request was the search or the creation; without a phone number or
    // an e-mail address there is no search.
    let method = match comm {
        Some(_) => "crm.duplicate.findbycomm or crm.lead.add",
        None => rest::ADD_LEAD,
    };
    let result = match rest::read(method, answer) {
        Ok(result) => result,
        Err(stop) => return stopped(stop, memory),
    };
    let (entity, how) = if result.is_array() || result.is_object() {
        match rest::found(&result) {
            Some(entity) => (entity, "found"),
            None => return Ok(Step::Fetch(vec![create()])),
        }
    } else {
        let id = rest::id_of(&result).ok_or_else(|| {
            format!("Bitrix24's answer to crm.lead.add is not a lead id: {result}")
        })?;
        (
            Entity {
                kind: Kind::Lead,
                id,
            },
            "created",
        )
    };
    host::log(
        host::Level::Info,
        &format!("{how} the customer's {}", entity.kind.name()),
        &[
            ("conversation".into(), facts.conversation.clone()),
            ("entity_id".into(), entity.id.to_string()),
        ],
    );
    let memory = entity.remember(memory);
    Ok(Step::Done(match work {
        Work::Link => Outcome::done(memory),
        _ => Outcome::retry_after(LINKED_PAUSE_SECS, memory),
    }))
}

/// The event's own request for the linked `entity`, or reading its answer.
fn act(
    entity: Entity,
    memory: Fields,
    answer: Option<&Result<HttpResponse, String>>,
    config: &Config,
    work: Work,
) -> Result<Step, String> {
    let (method, request): (&str, HttpRequest) = match work {
        Work::Nothing | Work::Link => return Ok(Step::Done(Outcome::done(memory))),
        Work::Comment(text) => (
            rest::ADD_COMMENT,
            rest::add_comment(&config.webhook_url, entity, &text),
        ),
        Work::Assign(user) => (
            entity.kind.update_method(),
            rest::assign(&config.webhook_url, entity, user),
        ),
    };
    let Some(answer) = answer else {
        return Ok(Step::Fetch(vec![request]));
    };
    match rest::read(method, answer) {
        Ok(_) => Ok(Step::Done(Outcome::done(memory))),
        Err(stop) => stopped(stop, memory),
    }
}

impl Integration for Bitrix24 {
    fn describe() -> IntegrationManifest {
        manifest()
    }

    fn check_settings(settings: Settings) -> Result<(), String> {
        config::parse(&settings).map(|_| ())
    }

    fn on_event(
        event: Event,
        memory: Fields,
        answers: Vec<Result<HttpResponse, String>>,
        settings: Settings,
    ) -> Result<Step, String> {
        let config = config::parse(&settings)?;
        handle_event(&event, memory, &answers, &config)
    }

    fn handle_webhook(
        req: HttpRequest,
        settings: Settings,
    ) -> Result<WebhookOutcome, WebhookError> {
        let config = config::parse(&settings).map_err(WebhookError::Misconfigured)?;
        webhook::handle(&req, &config)
    }
}

plugboard_sdk::export_integration!(Bitrix24);

#[cfg(test)]
mod tests;
