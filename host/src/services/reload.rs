//! Reloading a running host without a restart: the configuration file and the plugins
//! directory are read again and swapped in (see [`App::reload_config`]), then the services
//! that keep state per agent or queue take in the new configuration. SIGHUP and `POST
//! /api/v1/admin/reload` both come here; the plugins-directory watcher reloads plugins only.

use std::sync::Arc;

use crate::services::agents::Agents;
use crate::services::app::{App, ReloadError};
use crate::services::catalog::ReloadReport;
use crate::services::events::EventHub;
use crate::services::routing::Dispatcher;

/// The services a configuration reload reaches.
#[derive(Clone)]
pub struct Reloader {
    /// Configuration, catalog, storage.
    pub app: Arc<App>,
    /// Agents' live facts (new agents join, offline).
    pub agents: Arc<Agents>,
    /// Who hears about new messages of each queue.
    pub events: Arc<EventHub>,
    /// Asked to look at waiting work again, under the new queues and agents.
    pub dispatcher: Arc<Dispatcher>,
}

impl Reloader {
    /// Re-reads the configuration file and the plugins and applies them; nothing changes
    /// when either is refused. Work in flight finishes under what it started with. Runs in a
    /// task of its own, so a caller that goes away (a timed-out request) never leaves a reload
    /// half applied.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let this = self.clone();
        tokio::spawn(async move { this.apply().await })
            .await
            .map_err(|e| ReloadError::Refused(anyhow::anyhow!("the reload task failed: {e}")))?
    }

    async fn apply(&self) -> Result<ReloadReport, ReloadError> {
        let app = self.app.clone();
        let report = tokio::task::spawn_blocking(move || app.reload_config())
            .await
            .map_err(|e| ReloadError::Refused(anyhow::anyhow!("the reload task failed: {e}")))??;
        let config = self.app.config();
        for contact in &config.contacts {
            let contact = crate::model::Contact {
                address: contact.address.clone(),
                name: contact.name.clone(),
            };
            if let Err(e) = self.app.storage.put_contact(&contact).await {
                tracing::error!(address = %contact.address, "configured contact not stored: {e}");
            }
        }
        if let Err(e) = self.agents.adopt(&config).await {
            tracing::error!(
                "agents added by the reload start offline without their stored facts: {e}"
            );
        }
        self.events.reconfigure(&config);
        self.dispatcher.kick();
        Ok(report)
    }
}
