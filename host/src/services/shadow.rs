//! Shadow runs: an admin attaches a candidate plugin (loaded from the plugins directory under
//! a name of its own) to a live channel; each webhook the channel's plugin reads is then also
//! given to the candidate, in the background, at most [`MAX_IN_FLIGHT`] at once for the whole
//! host (a webhook finding none free is skipped and counted), never delaying or failing the
//! real call. The candidate's outcome is compared with the real one and thrown away: agreements
//! and divergences are counted per kind (`events`, `response`, or `outcome`: one accepted,
//! refused or failed the call where the other did otherwise; both failing agree), the first
//! [`KEPT_DIVERGENCES`] divergences are kept for reading, and `/metrics` counts them too.
//! Promoting the candidate is the hot swap that already exists (drop its file in under the
//! channel's plugin name).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::runtime::bindings::wit;
use crate::runtime::plugin::ChannelPlugin;
use crate::runtime::sandbox::PluginError;
use crate::services::app::App;

/// Candidate calls running at once, over every shadowed channel.
pub const MAX_IN_FLIGHT: usize = 4;

/// Divergences kept per shadow for reading.
pub const KEPT_DIVERGENCES: usize = 5;

/// The most bytes of an outcome a kept divergence shows.
const SHOWN_BYTES: usize = 2048;

/// One outcome of `handle-webhook`, as the host got it.
pub type Outcome = Result<Result<wit::WebhookOutcome, wit::WebhookError>, PluginError>;

/// What a shadow has seen so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowReport {
    /// The channel.
    pub channel: String,
    /// The candidate plugin.
    pub plugin: String,
    /// Webhooks compared.
    pub compared: u64,
    /// Of them, those where both agreed.
    pub agreed: u64,
    /// Webhooks not given to the candidate (no slot free).
    pub skipped: u64,
    /// Divergences by kind.
    pub diverged: BTreeMap<String, u64>,
    /// The first few divergences.
    pub first: Vec<Divergence>,
}

/// One divergence, for reading.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// Its kind.
    pub kind: String,
    /// The live plugin's outcome (shortened).
    pub live: String,
    /// The candidate's outcome (shortened).
    pub candidate: String,
}

/// Why a shadow could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// No such channel.
    #[error("no channel named {0:?} is configured")]
    UnknownChannel(String),
    /// No loaded channel plugin of that name.
    #[error("no channel plugin named {0:?} is loaded (drop it into plugins_dir under that name)")]
    UnknownPlugin(String),
}

struct Shadow {
    plugin: Arc<ChannelPlugin>,
    report: ShadowReport,
}

/// The shadows attached on this host.
pub struct Shadows {
    attached: Mutex<HashMap<String, Shadow>>,
    slots: Arc<Semaphore>,
}

impl Default for Shadows {
    fn default() -> Self {
        Shadows {
            attached: Mutex::default(),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl Shadows {
    /// Attaches the loaded channel plugin `plugin` to `channel` in shadow (replacing any
    /// shadow it had, and its counts).
    pub fn attach(
        &self,
        app: &App,
        channel: &str,
        plugin: &str,
    ) -> Result<ShadowReport, ShadowError> {
        if app.config().channel(channel).is_none() {
            return Err(ShadowError::UnknownChannel(channel.to_owned()));
        }
        let Some(candidate) = app.catalog().plugins.channels.get(plugin).cloned() else {
            return Err(ShadowError::UnknownPlugin(plugin.to_owned()));
        };
        let report = ShadowReport {
            channel: channel.to_owned(),
            plugin: plugin.to_owned(),
            ..ShadowReport::default()
        };
        self.lock().insert(
            channel.to_owned(),
            Shadow {
                plugin: candidate,
                report: report.clone(),
            },
        );
        tracing::info!(channel, candidate = plugin, "shadow attached");
        Ok(report)
    }

    /// Detaches `channel`'s shadow; its last report.
    pub fn detach(&self, channel: &str) -> Option<ShadowReport> {
        self.lock().remove(channel).map(|s| s.report)
    }

    /// `channel`'s shadow report, if one is attached.
    pub fn report(&self, channel: &str) -> Option<ShadowReport> {
        self.lock().get(channel).map(|s| s.report.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shadow>> {
        self.attached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the webhook `request` of `channel`, which the live plugin answered `live`, to
    /// the channel's candidate in the background, if one is attached and a slot is free.
    /// `request` is only built then.
    pub fn compare(
        app: &Arc<App>,
        channel: &str,
        settings: Arc<Vec<(String, String)>>,
        live: &Outcome,
        request: impl FnOnce() -> wit::HttpRequest,
    ) {
        let shadows = &app.shadows;
        let Some(candidate) = shadows.lock().get(channel).map(|s| s.plugin.clone()) else {
            return;
        };
        let Ok(permit) = shadows.slots.clone().try_acquire_owned() else {
            if let Some(s) = shadows.lock().get_mut(channel) {
                s.report.skipped += 1;
            }
            return;
        };
        let live = describe(live);
        let request = request();
        let (app, channel) = (app.clone(), channel.to_owned());
        tokio::spawn(async move {
            let _permit = permit;
            let name = format!("{channel} (shadow)");
            let outcome = candidate
                .handle_webhook(&app.sandbox, &name, request, settings)
                .await;
            let shadow = describe(&outcome);
            let kind = divergence(&live, &shadow);
            app.metrics.shadow(&channel, kind.unwrap_or("agreed"));
            let mut attached = app.shadows.lock();
            let Some(s) = attached.get_mut(&channel) else {
                return;
            };
            s.report.compared += 1;
            match kind {
                None => s.report.agreed += 1,
                Some(kind) => {
                    *s.report.diverged.entry(kind.to_owned()).or_default() += 1;
                    if s.report.first.len() < KEPT_DIVERGENCES {
                        s.report.first.push(Divergence {
                            kind: kind.to_owned(),
                            live: shorten(&live.text),
                            candidate: shorten(&shadow.text),
                        });
                    }
                }
            }
        });
    }
}

/// An outcome reduced to what is compared.
struct Described {
    /// `ok`, `refused` or `failed`.
    class: &'static str,
    events: String,
    response: String,
    text: String,
}

fn describe(outcome: &Outcome) -> Described {
    match outcome {
        Ok(Ok(o)) => {
            let events = format!("{:?}", o.events);
            let response = format!("{:?}", o.response);
            Described {
                class: "ok",
                text: format!("events {events}; response {response}"),
                events,
                response,
            }
        }
        Ok(Err(e)) => Described {
            class: "refused",
            events: String::new(),
            response: format!("{e:?}"),
            text: format!("refused: {e:?}"),
        },
        Err(e) => Described {
            class: "failed",
            events: String::new(),
            response: String::new(),
            text: format!("failed: {e}"),
        },
    }
}

/// How `shadow` diverges from `live`, if it does.
fn divergence(live: &Described, shadow: &Described) -> Option<&'static str> {
    match (live.class, shadow.class) {
        (a, b) if a != b => Some("outcome"),
        ("failed", _) => None,
        _ if live.events != shadow.events => Some("events"),
        _ if live.response != shadow.response => Some("response"),
        _ => None,
    }
}

fn shorten(text: &str) -> String {
    if text.len() <= SHOWN_BYTES {
        return text.to_owned();
    }
    let mut end = SHOWN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
