//! Bot plugins (the contract's `bot` world): loading, `describe`, `check-settings` and
//! `respond`, each call under the sandbox's limits on an instance kept per configured bot.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::runtime::bindings::bot::{Bot, BotPre};
use crate::runtime::bindings::{wit, wit_bot, wit_conversations};
use crate::runtime::plugin::{LoadError, PluginInfo, SettingSpec, off_runtime};
use crate::runtime::sandbox::{CallContext, HostState, InstancePool, PluginError, Sandbox};

/// A bot's manifest, as the host keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct BotManifest {
    /// The plugin's self-declared name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Settings it takes.
    pub settings: Vec<SettingSpec>,
    /// Hosts of the services it builds requests for.
    pub api_hosts: Vec<String>,
}

impl From<wit_bot::BotManifest> for BotManifest {
    fn from(m: wit_bot::BotManifest) -> Self {
        BotManifest {
            name: m.name,
            version: m.version,
            settings: m.settings.into_iter().map(SettingSpec::from).collect(),
            api_hosts: m.api_hosts,
        }
    }
}

/// A loaded bot plugin, ready to instantiate, with its idle instances per configured bot.
pub struct BotPlugin {
    /// Identity and provenance.
    pub info: PluginInfo,
    /// What `describe` returned.
    pub manifest: BotManifest,
    pre: BotPre<HostState>,
    pool: Arc<InstancePool<Bot>>,
}

/// What one `respond` call is given.
pub struct BotInput {
    /// The conversation's facts.
    pub facts: wit_conversations::ConversationFacts,
    /// Its recent history, oldest first.
    pub history: Vec<wit_conversations::Turn>,
    /// What the bot's previous turn kept.
    pub memory: Vec<(String, String)>,
    /// Answers to the previous step's requests.
    pub answers: Vec<Result<wit::HttpResponse, String>>,
    /// The configured bot's settings.
    pub settings: Arc<Vec<(String, String)>>,
}

impl BotPlugin {
    /// Links a bot component and asks it to describe itself.
    pub(crate) fn link(
        sandbox: &Sandbox,
        info: PluginInfo,
        instance_pre: InstancePre<HostState>,
    ) -> Result<BotPlugin, LoadError> {
        let pre = BotPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let ctx = CallContext {
            plugin: info.name.as_str().into(),
            channel: None,
        };
        let manifest = off_runtime(&ctx, "describe", || {
            sandbox.run_blocking(&ctx, "describe", |store| {
                pre.instantiate(&mut *store)?
                    .plugboard_plugin_chat_bot()
                    .call_describe(store)
            })
        })
        .map_err(LoadError::Describe)?;
        Ok(BotPlugin {
            info,
            manifest: manifest.into(),
            pre,
            pool: Arc::new(InstancePool::new()),
        })
    }

    /// `check-settings` for the configured bot `bot`, at load, on a thread of its own.
    /// `Ok(Err(reason))` when the plugin refuses the settings.
    pub fn check_settings(
        &self,
        sandbox: &Sandbox,
        bot: &str,
        settings: &Vec<(String, String)>,
    ) -> Result<Result<(), String>, PluginError> {
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(bot.into()),
        };
        off_runtime(&ctx, "check-settings", || {
            sandbox.run_blocking(&ctx, "check-settings", |store| {
                self.pre
                    .instantiate(&mut *store)?
                    .plugboard_plugin_chat_bot()
                    .call_check_settings(store, settings)
            })
        })
    }

    /// The instances calls of this plugin have created and keep idle, per configured bot.
    pub fn instances(&self) -> &InstancePool<Bot> {
        &self.pool
    }

    /// `respond`, on an instance kept for the configured bot `bot` (or a new one); `channel`
    /// names the conversation's channel in log lines.
    pub async fn respond(
        &self,
        sandbox: &Arc<Sandbox>,
        bot: &str,
        channel: &str,
        input: BotInput,
    ) -> Result<Result<wit_bot::Step, String>, PluginError> {
        let pre = self.pre.clone();
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(channel.into()),
        };
        sandbox
            .run_pooled(
                &self.pool,
                bot.into(),
                ctx,
                "respond",
                move |store: &mut Store<HostState>| pre.instantiate(store),
                move |instance: &Bot, store| {
                    instance.plugboard_plugin_chat_bot().call_respond(
                        store,
                        &input.facts,
                        &input.history,
                        &input.memory,
                        &input.answers,
                        &input.settings,
                    )
                },
            )
            .await
    }
}
