//! Integration plugins (the contract's `integration` world): loading, `describe`,
//! `check-settings`, `on-event` and `handle-webhook`, each call under the sandbox's limits on
//! an instance kept per configured integration.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::runtime::bindings::integration::{Integration, IntegrationPre};
use crate::runtime::bindings::{wit, wit_crm};
use crate::runtime::plugin::{LoadError, PluginInfo, SettingSpec, off_runtime};
use crate::runtime::sandbox::{CallContext, HostState, InstancePool, PluginError, Sandbox};

/// An integration's manifest, as the host keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrationManifest {
    /// The plugin's self-declared name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Settings it takes.
    pub settings: Vec<SettingSpec>,
    /// Hosts of the CRM's API.
    pub api_hosts: Vec<String>,
    /// The event types it wants (empty: every type).
    pub events: Vec<String>,
}

impl IntegrationManifest {
    /// Whether the plugin wants events of type `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }
}

impl From<wit_crm::IntegrationManifest> for IntegrationManifest {
    fn from(m: wit_crm::IntegrationManifest) -> Self {
        IntegrationManifest {
            name: m.name,
            version: m.version,
            settings: m.settings.into_iter().map(SettingSpec::from).collect(),
            api_hosts: m.api_hosts,
            events: m.events,
        }
    }
}

/// A loaded integration plugin, ready to instantiate, with its idle instances per configured
/// integration.
pub struct IntegrationPlugin {
    /// Identity and provenance.
    pub info: PluginInfo,
    /// What `describe` returned.
    pub manifest: IntegrationManifest,
    pre: IntegrationPre<HostState>,
    pool: Arc<InstancePool<Integration>>,
}

/// What one `on-event` call is given.
pub struct EventInput {
    /// The event.
    pub event: wit_crm::Event,
    /// What the conversation's previous event kept.
    pub memory: Vec<(String, String)>,
    /// Answers to the previous step's requests.
    pub answers: Vec<Result<wit::HttpResponse, String>>,
    /// The configured integration's settings.
    pub settings: Arc<Vec<(String, String)>>,
}

impl IntegrationPlugin {
    /// Links an integration component and asks it to describe itself.
    pub(crate) fn link(
        sandbox: &Sandbox,
        info: PluginInfo,
        instance_pre: InstancePre<HostState>,
    ) -> Result<IntegrationPlugin, LoadError> {
        let pre =
            IntegrationPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let ctx = CallContext {
            plugin: info.name.as_str().into(),
            channel: None,
        };
        let manifest = off_runtime(&ctx, "describe", || {
            sandbox.run_blocking(&ctx, "describe", |store| {
                pre.instantiate(&mut *store)?
                    .plugboard_plugin_crm()
                    .call_describe(store)
            })
        })
        .map_err(LoadError::Describe)?;
        Ok(IntegrationPlugin {
            info,
            manifest: manifest.into(),
            pre,
            pool: Arc::new(InstancePool::new()),
        })
    }

    /// `check-settings` for the configured integration `name`, at load, on a thread of its
    /// own. `Ok(Err(reason))` when the plugin refuses the settings.
    pub fn check_settings(
        &self,
        sandbox: &Sandbox,
        name: &str,
        settings: &Vec<(String, String)>,
    ) -> Result<Result<(), String>, PluginError> {
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(name.into()),
        };
        off_runtime(&ctx, "check-settings", || {
            sandbox.run_blocking(&ctx, "check-settings", |store| {
                self.pre
                    .instantiate(&mut *store)?
                    .plugboard_plugin_crm()
                    .call_check_settings(store, settings)
            })
        })
    }

    /// The instances calls of this plugin have created and keep idle, per configured
    /// integration.
    pub fn instances(&self) -> &InstancePool<Integration> {
        &self.pool
    }

    /// `on-event`, on an instance kept for the configured integration `name`.
    pub async fn on_event(
        &self,
        sandbox: &Arc<Sandbox>,
        name: &str,
        input: EventInput,
    ) -> Result<Result<wit_crm::Step, String>, PluginError> {
        let pre = self.pre.clone();
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(name.into()),
        };
        sandbox
            .run_pooled(
                &self.pool,
                name.into(),
                ctx,
                "on-event",
                move |store: &mut Store<HostState>| pre.instantiate(store),
                move |instance: &Integration, store| {
                    instance.plugboard_plugin_crm().call_on_event(
                        store,
                        &input.event,
                        &input.memory,
                        &input.answers,
                        &input.settings,
                    )
                },
            )
            .await
    }

    /// `handle-webhook`: the CRM's call to the host, on an instance kept for `name`.
    pub async fn handle_webhook(
        &self,
        sandbox: &Arc<Sandbox>,
        name: &str,
        request: wit::HttpRequest,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<wit_crm::WebhookOutcome, wit::WebhookError>, PluginError> {
        let pre = self.pre.clone();
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(name.into()),
        };
        sandbox
            .run_pooled(
                &self.pool,
                name.into(),
                ctx,
                "handle-webhook",
                move |store: &mut Store<HostState>| pre.instantiate(store),
                move |instance: &Integration, store| {
                    instance
                        .plugboard_plugin_crm()
                        .call_handle_webhook(store, &request, &settings)
                },
            )
            .await
    }
}
