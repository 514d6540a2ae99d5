//! The credential check (the "Test" / "Validate" button of the source documents): the channel's
//! plugin builds a harmless authenticated provider request, the host performs it, and the plugin
//! says whether the credentials work.

use serde::Serialize;

use crate::runtime::bindings::describe_send_error;
use crate::runtime::provider_http::ProviderClient;
use crate::runtime::sandbox::Sandbox;
use crate::services::catalog::ChannelInstance;

/// What a credential check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "message")]
pub enum CheckOutcome {
    /// The provider accepted the credentials.
    Ok,
    /// The provider refused them, or could not be reached; the message says which.
    Failed(String),
    /// The plugin offers no check for this provider.
    Unsupported(String),
}

/// Runs the check for one channel instance.
pub async fn check(
    sandbox: &std::sync::Arc<Sandbox>,
    client: &ProviderClient,
    channel: &ChannelInstance,
) -> CheckOutcome {
    let plugin = &channel.plugin;
    let request = match plugin
        .prepare_check(sandbox, &channel.name, channel.settings.clone())
        .await
    {
        Err(e) => return CheckOutcome::Failed(format!("plugin error: {e}")),
        Ok(Err(e)) => return CheckOutcome::Failed(describe_send_error(&e)),
        Ok(Ok(None)) => {
            return CheckOutcome::Unsupported(format!(
                "plugin {} offers no credential check",
                plugin.info.name
            ));
        }
        Ok(Ok(Some(req))) => req,
    };
    let response = match client.perform(&channel.allowed_hosts, request).await {
        Ok(r) => r,
        Err(e) => return CheckOutcome::Failed(e.to_string()),
    };
    match plugin
        .read_check_response(sandbox, &channel.name, response, channel.settings.clone())
        .await
    {
        Err(e) => CheckOutcome::Failed(format!("plugin error: {e}")),
        Ok(Err(e)) => CheckOutcome::Failed(describe_send_error(&e)),
        Ok(Ok(())) => CheckOutcome::Ok,
    }
}
