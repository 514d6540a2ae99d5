//! Bitrix24's calls to the host (its outbound webhook, or an automation robot's webhook call):
//! authenticated by `auth[application_token]`, they ask to start a conversation with `to`,
//! `text` and optionally `channel`, read from the form body (plain or under `data[...]`) or the
//! URL's query.

use plugboard_sdk::crm::{Action, Start, WebhookOutcome};
use plugboard_sdk::serde::Serialize;
use plugboard_sdk::types::{HttpRequest, WebhookError};
use plugboard_sdk::{ct_eq, http, query};

use crate::config::Config;
use crate::phpform::Form;

/// The answer the CRM gets: `{"ok":true}`, with the event it ignored, if any.
#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct Answer<'a> {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<&'a str>,
}

/// Where a call's parameters are looked up: the form body first, then the query.
struct Params {
    body: Form,
    query: Form,
}

impl Params {
    /// The first of `paths` found, in the body, then in the query.
    fn find(&self, paths: &[&[&str]]) -> Option<&str> {
        [&self.body, &self.query]
            .into_iter()
            .find_map(|form| paths.iter().find_map(|path| form.get(path)))
    }

    /// Parameter `name`, plain or as `data[name]`, trimmed; none when empty.
    fn param(&self, name: &str) -> Option<&str> {
        self.find(&[&[name], &["data", name]])
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

/// Handles one call from the portal.
///
/// # Errors
///
/// `unauthorized` when `auth[application_token]` is missing or wrong; `bad-request` for a
/// method other than POST, a body or query that does not decode, or a message request without
/// `to`, `text` or a channel.
pub fn handle(req: &HttpRequest, config: &Config) -> Result<WebhookOutcome, WebhookError> {
    if req.method != "POST" {
        return Err(WebhookError::BadRequest(format!(
            "Bitrix24 calls with POST, not {}",
            req.method
        )));
    }
    let bad = |what: &str, e: plugboard_sdk::FormError| {
        WebhookError::BadRequest(format!("the {what} does not decode: {e}"))
    };
    let params = Params {
        body: Form::parse(&req.body).map_err(|e| bad("body", e))?,
        query: match query::split(&req.url).1 {
            Some(q) => Form::parse(q.as_bytes()).map_err(|e| bad("query", e))?,
            None => Form::default(),
        },
    };
    let token = params
        .find(&[&["auth", "application_token"]])
        .ok_or_else(|| WebhookError::Unauthorized("no auth[application_token]".into()))?;
    if !ct_eq(token.as_bytes(), config.application_token.as_bytes()) {
        return Err(WebhookError::Unauthorized(
            "auth[application_token] does not match the setting `application_token`".into(),
        ));
    }

    let (to, text) = (params.param("to"), params.param("text"));
    let event = params.find(&[&["event"]]).filter(|e| !e.is_empty());
    let (Some(to), Some(text)) = (to, text) else {
        if let Some(event) = event {
            return Ok(WebhookOutcome::reply(http::json(&Answer {
                ok: true,
                ignored: Some(event),
            })));
        }
        let missing: Vec<&str> = [("to", to), ("text", text)]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| name)
            .collect();
        return Err(WebhookError::BadRequest(format!(
            "a message request needs `to` and `text`; missing: {}",
            missing.join(", ")
        )));
    };
    let channel = params
        .param("channel")
        .or(config.default_channel.as_deref())
        .ok_or_else(|| {
            WebhookError::BadRequest(
                "no `channel` given and the setting `default_channel` is not set".into(),
            )
        })?;
    Ok(WebhookOutcome {
        response: http::json(&Answer {
            ok: true,
            ignored: None,
        }),
        actions: vec![Action::StartConversation(Start {
            channel: channel.to_string(),
            to: to.to_string(),
            text: text.to_string(),
        })],
    })
}
