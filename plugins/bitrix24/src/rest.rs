//! Bitrix24's REST API through an inbound webhook: building the method calls the integration
//! makes (`POST {webhook_url}{method}.json` with a JSON body) and reading their answers
//! (`{"result": ..., "time": {...}}`, or `{"error": "CODE", "error_description": "..."}`).

use plugboard_sdk::serde_json::{Value, json};
use plugboard_sdk::types::{HttpRequest, HttpResponse};
use plugboard_sdk::{http, serde_json};

use crate::contact::Comm;
use crate::entity::{Entity, Kind};

/// Finds the contacts, leads and companies with a phone number or e-mail address.
pub const FIND: &str = "crm.duplicate.findbycomm";
/// Creates a lead.
pub const ADD_LEAD: &str = "crm.lead.add";
/// Adds a comment to a record's timeline.
pub const ADD_COMMENT: &str = "crm.timeline.comment.add";

/// Error codes of Bitrix24's request limits: the call was refused before it did anything, so it
/// is retried after [`LIMIT_PAUSE_SECS`].
const LIMIT_CODES: &[&str] = &["QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT"];
/// The error code of a method blocked by the resource (execution time) limit.
const TIME_LIMIT_CODE: &str = "OPERATION_TIME_LIMIT";
/// The pause after a request-limit refusal (the portal's counter drains by 2 a second).
pub const LIMIT_PAUSE_SECS: u32 = 2;
/// The pause after a method blocked by the execution time limit, unless `Retry-After` says.
pub const TIME_LIMIT_PAUSE_SECS: u32 = 60;
/// The pause after the host could not reach the portal (or a gateway could not).
pub const TRANSPORT_PAUSE_SECS: u32 = 5;

/// Why an answer gives no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Call again after this many seconds.
    Pause(u32),
    /// The portal refused the call for good: the message names the method and why.
    Fail(String),
}

/// The call of `method` with `params` as its JSON body.
pub fn call(webhook_url: &str, method: &str, params: &Value) -> HttpRequest {
    http::post_json(
        format!("{webhook_url}{method}.json"),
        vec![("Accept".into(), "application/json".into())],
        params,
    )
}

/// `crm.duplicate.findbycomm` of one phone number or e-mail address, over every record type.
pub fn find(webhook_url: &str, comm: &Comm) -> HttpRequest {
    let params = json!({"type": comm.kind(), "values": [comm.value()]});
    call(webhook_url, FIND, &params)
}

/// `crm.lead.add` with `fields`.
pub fn add_lead(webhook_url: &str, fields: Value) -> HttpRequest {
    call(webhook_url, ADD_LEAD, &json!({ "fields": fields }))
}

/// `crm.timeline.comment.add` of `comment` to `entity`'s timeline.
pub fn add_comment(webhook_url: &str, entity: Entity, comment: &str) -> HttpRequest {
    let params = json!({"fields": {
        "ENTITY_ID": entity.id,
        "ENTITY_TYPE": entity.kind.name(),
        "COMMENT": comment,
    }});
    call(webhook_url, ADD_COMMENT, &params)
}

/// `crm.lead.update` or `crm.contact.update` making Bitrix24 user `user` responsible for `entity`.
pub fn assign(webhook_url: &str, entity: Entity, user: u64) -> HttpRequest {
    let params = json!({"id": entity.id, "fields": {"ASSIGNED_BY_ID": user}});
    call(webhook_url, entity.kind.update_method(), &params)
}

/// The `result` of an answer to `method` (named in failure messages).
///
/// # Errors
///
/// [`Stop::Pause`] for a transport error, a gateway's 502/504 or a limit (`503`,
/// `QUERY_LIMIT_EXCEEDED`, `OVERLOAD_LIMIT`, `429`, `OPERATION_TIME_LIMIT`); [`Stop::Fail`] for
/// any other error, naming `method`, Bitrix24's code and description and the HTTP status.
pub fn read(method: &str, answer: &Result<HttpResponse, String>) -> Result<Value, Stop> {
    let resp = match answer {
        Ok(resp) => resp,
        Err(_transport) => return Err(Stop::Pause(TRANSPORT_PAUSE_SECS)),
    };
    let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
    let error = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string));
    let code = error.as_deref().unwrap_or_default();
    if resp.status == 503 || LIMIT_CODES.contains(&code) {
        return Err(Stop::Pause(LIMIT_PAUSE_SECS));
    }
    if resp.status == 429 || code == TIME_LIMIT_CODE {
        let wait = http::retry_after(&resp.headers).unwrap_or(TIME_LIMIT_PAUSE_SECS);
        return Err(Stop::Pause(wait));
    }
    if error.is_none() && matches!(resp.status, 502 | 504) {
        return Err(Stop::Pause(TRANSPORT_PAUSE_SECS));
    }
    if let Some(code) = error {
        let description = body
            .as_ref()
            .and_then(|b| b.get("error_description"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let code = if code.is_empty() { "(no code)" } else { &code };
        return Err(Stop::Fail(format!(
            "Bitrix24 refused {method}: {code}: {description} (HTTP {})",
            resp.status
        )));
    }
    if !http::is_success(resp.status) {
        return Err(Stop::Fail(format!(
            "Bitrix24 answered {method} with HTTP {}",
            resp.status
        )));
    }
    match body.and_then(|mut b| b.get_mut("result").map(Value::take)) {
        Some(result) => Ok(result),
        None => Err(Stop::Fail(format!(
            "Bitrix24's answer to {method} has no `result`"
        ))),
    }
}

/// The record a `crm.duplicate.findbycomm` result names: its first contact, else its first lead;
/// none for `[]` (PHP's empty array: nothing matched) or an object without either.
pub fn found(result: &Value) -> Option<Entity> {
    let first = |key: &str| result.get(key)?.as_array()?.iter().find_map(id_of);
    if let Some(id) = first("CONTACT") {
        return Some(Entity {
            kind: Kind::Contact,
            id,
        });
    }
    first("LEAD").map(|id| Entity {
        kind: Kind::Lead,
        id,
    })
}

/// A record id as Bitrix24 writes it: a positive number, or its digits as a string.
pub fn id_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::header;
    use plugboard_sdk::testing::pairs;

    const URL: &str = "http://127.0.0.1:18998/rest/1/abc123/";

    fn answer(status: u16, body: &str) -> Result<HttpResponse, String> {
        Ok(http::response(status, "application/json", body))
    }

    fn body(req: &HttpRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    #[test]
    fn calls_post_json_to_the_method() {
        let req = find(URL, &Comm::Phone("+14155550100".into()));
        assert_eq!(req.method, "POST");
        assert_eq!(req.url, format!("{URL}crm.duplicate.findbycomm.json"));
        assert_eq!(
            header(&req.headers, "content-type"),
            Some("application/json")
        );
        assert_eq!(
            body(&req),
            json!({"type": "PHONE", "values": ["+14155550100"]})
        );
        let lead = Entity {
            kind: Kind::Lead,
            id: 7,
        };
        let req = assign(URL, lead, 5);
        assert_eq!(req.url, format!("{URL}crm.lead.update.json"));
        assert_eq!(
            body(&req),
            json!({"id": 7, "fields": {"ASSIGNED_BY_ID": 5}})
        );
        let contact = Entity {
            kind: Kind::Contact,
            id: 5,
        };
        assert_eq!(
            assign(URL, contact, 9).url,
            format!("{URL}crm.contact.update.json")
        );
        let req = add_comment(URL, contact, "hi");
        assert_eq!(
            body(&req),
            json!({"fields": {"ENTITY_ID": 5, "ENTITY_TYPE": "contact", "COMMENT": "hi"}})
        );
    }

    #[test]
    fn findbycomm_empty_array_or_found() {
        let found_in = |text: &str| {
            let result = read(FIND, &answer(200, text)).unwrap();
            found(&result)
        };
        assert_eq!(found_in(r#"{"result":[],"time":{"start":1}}"#), None);
        assert_eq!(found_in(r#"{"result":{}}"#), None);
        assert_eq!(found_in(r#"{"result":{"COMPANY":[3]}}"#), None);
        assert_eq!(
            found_in(r#"{"result":{"CONTACT":[5],"LEAD":[7]}}"#),
            Some(Entity {
                kind: Kind::Contact,
                id: 5
            })
        );
        assert_eq!(
            found_in(r#"{"result":{"LEAD":["7", 9]}}"#),
            Some(Entity {
                kind: Kind::Lead,
                id: 7
            })
        );
        assert_eq!(
            found_in(r#"{"result":{"CONTACT":[],"LEAD":[8]}}"#).map(|e| e.id),
            Some(8)
        );
    }

    #[test]
    fn limits_pause_and_errors_fail() {
        let limit = r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#;
        assert_eq!(read(ADD_LEAD, &answer(503, limit)), Err(Stop::Pause(2)));
        assert_eq!(read(ADD_LEAD, &answer(503, "")), Err(Stop::Pause(2)));
        assert_eq!(
            read(ADD_LEAD, &answer(401, r#"{"error":"OVERLOAD_LIMIT"}"#)),
            Err(Stop::Pause(2))
        );
        let mut blocked = http::response(429, "", r#"{"error":"OPERATION_TIME_LIMIT"}"#);
        assert_eq!(read(ADD_LEAD, &Ok(blocked.clone())), Err(Stop::Pause(60)));
        blocked.headers = pairs(&[("Retry-After", "30")]);
        assert_eq!(read(ADD_LEAD, &Ok(blocked)), Err(Stop::Pause(30)));
        assert_eq!(
            read(ADD_LEAD, &Err("connection refused".into())),
            Err(Stop::Pause(5))
        );
        assert_eq!(read(ADD_LEAD, &answer(502, "<html>")), Err(Stop::Pause(5)));
        let denied = r#"{"error":"ACCESS_DENIED","error_description":"Access denied."}"#;
        assert_eq!(
            read(ADD_LEAD, &answer(403, denied)),
            Err(Stop::Fail(
                "Bitrix24 refused crm.lead.add: ACCESS_DENIED: Access denied. (HTTP 403)".into()
            ))
        );
        let Err(Stop::Fail(message)) = read(
            ADD_LEAD,
            &answer(
                400,
                r#"{"error":"","error_description":"ID is not defined"}"#,
            ),
        ) else {
            panic!("an error without a code fails");
        };
        assert!(
            message.contains("(no code): ID is not defined"),
            "{message}"
        );
        let Err(Stop::Fail(message)) = read(ADD_COMMENT, &answer(500, "oops")) else {
            panic!("a 500 without a body fails");
        };
        assert!(
            message.contains("crm.timeline.comment.add with HTTP 500"),
            "{message}"
        );
        assert!(matches!(
            read(ADD_LEAD, &answer(200, "{}")),
            Err(Stop::Fail(_))
        ));
        assert_eq!(
            read(ADD_LEAD, &answer(200, r#"{"result":3465,"time":{}}"#)),
            Ok(json!(3465))
        );
    }

    #[test]
    fn ids_are_numbers_or_digit_strings() {
        assert_eq!(id_of(&json!(7)), Some(7));
        assert_eq!(id_of(&json!("12")), Some(12));
        assert_eq!(id_of(&json!(0)), None);
        assert_eq!(id_of(&json!(-1)), None);
        assert_eq!(id_of(&json!(true)), None);
    }
}
