//! `GET /api/v1/stats/{channels,agents,queues}`: the statistics reports, as JSON or (with
//! `Accept: text/csv`) CSV. The admin token sees everything; an agent's token or console
//! session what [`crate::services::reports`] lets them see.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::config::AgentConfig;
use crate::http::api::{Agent, storage_error};
use crate::http::edge::{AppState, error_response};
use crate::services::reports::{self, Period, ReportError, Viewer};
use crate::stats::Scope;

/// The caller of a report: the admin token, or an agent.
pub enum Reader {
    /// The admin token.
    Admin,
    /// An agent, by token or console session.
    Agent(AgentConfig),
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let config = state.app.config();
        let sent = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::http::edge::bearer_token);
        if let (Some(sent), Some(admin)) = (sent, &config.server.admin_token)
            && bool::from(sent.as_bytes().ct_eq(admin.as_bytes()))
        {
            return Ok(Reader::Admin);
        }
        let Agent(agent) = Agent::from_request_parts(parts, state).await?;
        Ok(Reader::Agent(agent))
    }
}

/// The query of a report.
#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    /// `day` (the default), `week` or `month`.
    period: Option<String>,
    /// The first day, `YYYY-MM-DD` (default: 29 days before `to`).
    from: Option<String>,
    /// The last day, `YYYY-MM-DD` (default: today in the deployment's time zone).
    to: Option<String>,
}

/// The period and days `q` asks for; today (in `zone`) and the 29 days before by default.
fn range(
    q: &StatsQuery,
    zone: &jiff::tz::TimeZone,
) -> Result<(Period, jiff::civil::Date, jiff::civil::Date), String> {
    let period = match q.period.as_deref() {
        None => Period::Day,
        Some(p) => Period::parse(p).ok_or("`period` must be day, week or month")?,
    };
    let date = |key: &str, value: &str| -> Result<jiff::civil::Date, String> {
        value
            .parse()
            .map_err(|_| format!("`{key}` must be a date like 2026-12-01, not {value:?}"))
    };
    let to = match &q.to {
        Some(v) => date("to", v)?,
        None => crate::stats::date_of(crate::stats::day_of(Clock::System.now_millis(), zone)),
    };
    let from = match &q.from {
        Some(v) => date("from", v)?,
        None => to.checked_sub(jiff::Span::new().days(29)).unwrap_or(to),
    };
    Ok((period, from, to))
}

/// `GET /api/v1/stats/{scope}`.
pub async fn stats(
    State(state): State<AppState>,
    reader: Reader,
    Path(scope): Path<String>,
    Query(q): Query<StatsQuery>,
    headers: HeaderMap,
) -> Response {
    let scope = match scope.as_str() {
        "channels" => Scope::Channel,
        "agents" => Scope::Agent,
        "queues" => Scope::Queue,
        other => {
            return error_response(
                StatusCode::NOT_FOUND,
                format!("no statistics of {other:?}: ask for channels, agents or queues"),
            );
        }
    };
    let config = state.app.config();
    let (period, from, to) = match range(&q, &config.server.zone()) {
        Ok(r) => r,
        Err(m) => return error_response(StatusCode::BAD_REQUEST, m),
    };
    let viewer = match &reader {
        Reader::Admin => Viewer::Admin,
        Reader::Agent(a) => Viewer::Agent(a),
    };
    let lines = match reports::report(
        state.app.storage.as_ref(),
        &config,
        &viewer,
        scope,
        period,
        from,
        to,
    )
    .await
    {
        Ok(lines) => lines,
        Err(ReportError::Invalid(m)) => return error_response(StatusCode::BAD_REQUEST, m),
        Err(ReportError::Forbidden(m)) => return error_response(StatusCode::FORBIDDEN, m),
        Err(ReportError::Storage(e)) => return storage_error(e),
    };
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        return (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            reports::csv(scope, &lines),
        )
            .into_response();
    }
    Json(json!({
        "scope": scope.as_str(),
        "timezone": config.server.timezone,
        "period": match period { Period::Day => "day", Period::Week => "week", Period::Month => "month" },
        "from": from.to_string(),
        "to": to.to_string(),
        "lines": lines,
    }))
    .into_response()
}
