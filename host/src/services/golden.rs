//! Golden replay: recorded webhook requests (a channel's corpus, see [`crate::services::corpus`])
//! through a candidate channel plugin and a baseline, each request at the time it was recorded
//! and with the channel's settings, and how their outcomes differ.
//!
//! `plugboard replay --corpus|--channel` runs it on plugin files ([`compare`]); the admin API
//! runs it inside a running host on its own corpus and loaded plugins ([`replay_in_host`]).
//! Both read time from [`Clock::Replayed`], a process-wide instant, so a host runs one replay
//! at a time.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::runtime::bindings::wit;
use crate::runtime::plugin::{ChannelPlugin, Loaded, PluginSource, load_plugin};
use crate::runtime::sandbox::{PluginError, Sandbox};
use crate::services::app::App;
use crate::store::StoreError;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Its id in the corpus.
    pub id: String,
    /// The request as the plugin got it.
    pub request: wit::HttpRequest,
    /// When it was received, Unix milliseconds (the replay's clock).
    pub at_ms: u64,
}

/// Why a replay in the host could not run.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    /// No channel of that name is configured, or it is not serving.
    #[error("no channel named {0:?} is configured and serving")]
    UnknownChannel(String),
    /// No channel plugin of that name is loaded.
    #[error("no channel plugin named {0:?} is loaded (drop it into plugins_dir first)")]
    UnknownPlugin(String),
    /// The channel records nothing yet.
    #[error("channel {0:?} has recorded no request (set `record = N` on it)")]
    EmptyCorpus(String),
    /// A plugin could not be loaded into the replay's sandbox.
    #[error("cannot load plugin {plugin:?} for the replay: {reason}")]
    Load {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The store could not be read.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Runs every request of `corpus` through `candidate`, and `baseline` when given, and reports
/// `{"requests", "agree", "accepted", "differ", "failed", "differences": [{"id", "baseline",
/// "candidate"}]}`; without a baseline a request the candidate fails or refuses is a difference.
/// Differences of the ids in `accepted` are counted, not listed. Whether any remain.
pub async fn compare(
    sandbox: &Arc<Sandbox>,
    candidate: &Arc<ChannelPlugin>,
    baseline: Option<&Arc<ChannelPlugin>>,
    corpus: &[Recorded],
    settings: &Arc<Vec<(String, String)>>,
    accepted: &BTreeSet<String>,
) -> (Value, bool) {
    let mut differences = Vec::new();
    let (mut agree, mut accepted_count, mut failed) = (0, 0, 0);
    for recorded in corpus {
        let cand = outcome(sandbox, candidate, recorded, settings).await;
        match baseline {
            Some(base) => {
                let base = outcome(sandbox, base, recorded, settings).await;
                if base == cand {
                    agree += 1;
                } else if accepted.contains(&recorded.id) {
                    accepted_count += 1;
                } else {
                    differences
                        .push(json!({"id": recorded.id, "baseline": base, "candidate": cand}));
                }
            }
            None if cand["ok"] == true => agree += 1,
            None => {
                failed += 1;
                differences.push(json!({"id": recorded.id, "candidate": cand}));
            }
        }
    }
    let differ = !differences.is_empty();
    let report = json!({
        "requests": corpus.len(),
        "agree": agree,
        "accepted": accepted_count,
        "differ": if baseline.is_some() { differences.len() } else { 0 },
        "failed": failed,
        "differences": differences,
    });
    (report, differ)
}

/// One request through `plugin` at its recorded time.
async fn outcome(
    sandbox: &Arc<Sandbox>,
    plugin: &Arc<ChannelPlugin>,
    recorded: &Recorded,
    settings: &Arc<Vec<(String, String)>>,
) -> Value {
    Clock::replay_at(recorded.at_ms);
    let name = plugin.info.name.clone();
    let result = plugin
        .handle_webhook(sandbox, &name, recorded.request.clone(), settings.clone())
        .await;
    outcome_value(&result)
}

/// Serializes replays in this process: they share [`Clock::Replayed`].
static ONE_REPLAY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Golden replay inside the running host: `channel`'s corpus through the loaded channel plugin
/// `candidate` and `baseline` (default: the plugin serving the channel now), with the
/// channel's settings, each request at its recorded time. Both are loaded afresh into a
/// sandbox of the replay's own (the host's limits, the replayed clock), so the live channel's
/// instances are untouched. The report of [`compare`], with `channel`, `candidate`, `baseline`.
pub async fn replay_in_host(
    app: &Arc<App>,
    channel: &str,
    candidate: &str,
    baseline: Option<&str>,
    accepted: &BTreeSet<String>,
) -> Result<(Value, bool), GoldenError> {
    let live = app
        .live_channel(channel)
        .ok_or_else(|| GoldenError::UnknownChannel(channel.to_owned()))?;
    let baseline = baseline.unwrap_or(&live.plugin.info.name).to_owned();
    let loaded = |name: &str| {
        app.catalog()
            .plugins
            .channels
            .get(name)
            .cloned()
            .ok_or_else(|| GoldenError::UnknownPlugin(name.to_owned()))
    };
    let (candidate, baseline) = (loaded(candidate)?, loaded(&baseline)?);
    let corpus: Vec<Recorded> = crate::services::corpus::requests(app, channel)
        .await?
        .iter()
        .map(|k| Recorded {
            id: k.id.clone(),
            request: k.request(),
            at_ms: k.received_at,
        })
        .collect();
    if corpus.is_empty() {
        return Err(GoldenError::EmptyCorpus(channel.to_owned()));
    }
    let _one = ONE_REPLAY.lock().await;
    let config = app.config();
    let cache_dir = config.server.data_dir.join("plugin-cache");
    let limits = config.limits.clone();
    let (sandbox, candidate, baseline) = tokio::task::spawn_blocking(move || {
        let sandbox = Sandbox::new(limits, Clock::Replayed).map_err(|e| GoldenError::Load {
            plugin: candidate.info.name.clone(),
            reason: e.to_string(),
        })?;
        let candidate = reload(&sandbox, &candidate, &cache_dir)?;
        let baseline = reload(&sandbox, &baseline, &cache_dir)?;
        Ok::<_, GoldenError>((Arc::new(sandbox), candidate, baseline))
    })
    .await
    .map_err(|e| GoldenError::Load {
        plugin: "replay".to_owned(),
        reason: e.to_string(),
    })??;
    let (mut report, differ) = compare(
        &sandbox,
        &candidate,
        Some(&baseline),
        &corpus,
        &live.settings,
        accepted,
    )
    .await;
    report["channel"] = json!(channel);
    report["candidate"] = json!(candidate.info.name);
    report["baseline"] = json!(baseline.info.name);
    Ok((report, differ))
}

/// `plugin` loaded again from its bytes (its file, or the bundled copy) into `sandbox`, through
/// the host's compiled-plugin cache.
fn reload(
    sandbox: &Sandbox,
    plugin: &ChannelPlugin,
    cache_dir: &std::path::Path,
) -> Result<Arc<ChannelPlugin>, GoldenError> {
    let name = plugin.info.name.clone();
    let failed = |reason: String| GoldenError::Load {
        plugin: name.clone(),
        reason,
    };
    let bytes = match &plugin.info.source {
        PluginSource::File(path) => std::fs::read(path)
            .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?,
        PluginSource::Bundled => plugboard_artifacts::BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| bytes.to_vec())
            .ok_or_else(|| failed("not bundled".to_owned()))?,
    };
    match load_plugin(
        sandbox,
        &name,
        plugin.info.source.clone(),
        &bytes,
        cache_dir,
    ) {
        Ok(Loaded::Channel(p)) => Ok(Arc::from(p)),
        Ok(_) => Err(failed("it is no longer a channel plugin".to_owned())),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// One `handle-webhook` outcome as JSON: `{"ok": true, "events": [...], "response"}`, or
/// `{"ok": false, "error": {"kind", "message"}}` (`unauthorized`, `bad-request`,
/// `misconfigured`, `plugin-failure`).
pub fn outcome_value(
    outcome: &Result<Result<wit::WebhookOutcome, wit::WebhookError>, PluginError>,
) -> Value {
    let failure = |kind: &str, message: &str| json!({"ok": false, "error": {"kind": kind, "message": message}});
    match outcome {
        Ok(Ok(outcome)) => json!({
            "ok": true,
            "events": outcome.events.iter().map(event_json).collect::<Vec<_>>(),
            "response": response_json(&outcome.response),
        }),
        Ok(Err(wit::WebhookError::Unauthorized(m))) => failure("unauthorized", m),
        Ok(Err(wit::WebhookError::BadRequest(m))) => failure("bad-request", m),
        Ok(Err(wit::WebhookError::Misconfigured(m))) => failure("misconfigured", m),
        Err(e) => failure("plugin-failure", &e.to_string()),
    }
}

fn state_name(state: wit::DeliveryState) -> &'static str {
    match state {
        wit::DeliveryState::Queued => "queued",
        wit::DeliveryState::Sent => "sent",
        wit::DeliveryState::Delivered => "delivered",
        wit::DeliveryState::Read => "read",
        wit::DeliveryState::Failed => "failed",
    }
}

fn pairs_json(pairs: &[(String, String)]) -> Value {
    pairs.iter().map(|(k, v)| json!([k, v])).collect()
}

/// One event as JSON, tagged by `type`.
fn event_json(event: &wit::Event) -> Value {
    match event {
        wit::Event::Message(m) => json!({
            "type": "message",
            "provider_id": m.provider_id,
            "from": m.from,
            "to": m.to,
            "text": m.text,
            "attachments": m.attachments.iter().map(|a| json!({
                "url": a.url,
                "content_type": a.content_type,
            })).collect::<Vec<_>>(),
            "contact_name": m.contact_name,
            "thread": pairs_json(&m.thread),
        }),
        wit::Event::Status(s) => json!({
            "type": "status",
            "provider_id": s.provider_id,
            "state": state_name(s.state),
            "error_code": s.error_code,
            "error_message": s.error_message,
        }),
        wit::Event::OptOut(c) => {
            json!({"type": "opt-out", "address": c.address, "provider_id": c.provider_id})
        }
        wit::Event::OptIn(c) => {
            json!({"type": "opt-in", "address": c.address, "provider_id": c.provider_id})
        }
    }
}

/// The webhook answer as JSON: the body as text when it is UTF-8, else Base64.
fn response_json(response: &wit::HttpResponse) -> Value {
    let body = match std::str::from_utf8(&response.body) {
        Ok(text) => text.to_owned(),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(&response.body),
    };
    json!({
        "status": response.status,
        "headers": pairs_json(&response.headers),
        "body": body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_snake_case_fields() {
        let event = wit::Event::Status(wit::DeliveryStatus {
            provider_id: "SM1".into(),
            state: wit::DeliveryState::Failed,
            error_code: Some("63016".into()),
            error_message: None,
        });
        assert_eq!(
            event_json(&event),
            json!({"type": "status", "provider_id": "SM1", "state": "failed",
                   "error_code": "63016", "error_message": null})
        );
        assert_eq!(
            event_json(&wit::Event::OptOut(wit::OptChange {
                address: "+1".into(),
                provider_id: Some("E1".into()),
            })),
            json!({"type": "opt-out", "address": "+1", "provider_id": "E1"})
        );
        let response = wit::HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/xml".into())],
            body: vec![0xff, 0x00],
        };
        assert_eq!(
            response_json(&response),
            json!({"status": 200, "headers": [["content-type", "text/xml"]], "body": "/wA="})
        );
    }
}
