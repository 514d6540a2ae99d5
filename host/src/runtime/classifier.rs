//! Classifier plugins (the contract's `classifier` world): custom work classification, a pure
//! call per new or reopened conversation, on an instance kept per rule.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::runtime::bindings::classifier::{Classifier, ClassifierPre};
use crate::runtime::bindings::{wit_classification, wit_conversations};
use crate::runtime::plugin::{LoadError, PluginInfo};
use crate::runtime::sandbox::{CallContext, HostState, InstancePool, PluginError, Sandbox};

/// A loaded classifier plugin, ready to instantiate, with its idle instances per rule.
pub struct ClassifierPlugin {
    /// Identity and provenance.
    pub info: PluginInfo,
    pre: ClassifierPre<HostState>,
    pool: Arc<InstancePool<Classifier>>,
}

impl ClassifierPlugin {
    /// Links a classifier component.
    pub(crate) fn link(
        info: PluginInfo,
        instance_pre: InstancePre<HostState>,
    ) -> Result<ClassifierPlugin, LoadError> {
        let pre =
            ClassifierPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        Ok(ClassifierPlugin {
            info,
            pre,
            pool: Arc::new(InstancePool::new()),
        })
    }

    /// `classify`, on an instance kept for `key` (the rule that names the plugin).
    pub async fn classify(
        &self,
        sandbox: &Arc<Sandbox>,
        key: &str,
        facts: wit_conversations::ConversationFacts,
        text: Option<String>,
        settings: Arc<Vec<(String, String)>>,
    ) -> Result<Result<Option<wit_classification::Classification>, String>, PluginError> {
        let pre = self.pre.clone();
        let ctx = CallContext {
            plugin: self.info.name.as_str().into(),
            channel: Some(facts.channel.as_str().into()),
        };
        sandbox
            .run_pooled(
                &self.pool,
                key.into(),
                ctx,
                "classify",
                move |store: &mut Store<HostState>| pre.instantiate(store),
                move |instance: &Classifier, store| {
                    instance.plugboard_plugin_classification().call_classify(
                        store,
                        &facts,
                        text.as_deref(),
                        &settings,
                    )
                },
            )
            .await
    }
}
