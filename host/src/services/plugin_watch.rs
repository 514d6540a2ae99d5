//! Watches the plugins directory: when a `*.wasm` file appears, changes or goes away, the host
//! reloads its plugins without a restart (see [`crate::services::app::App::reload`]). Polling once a
//! second keeps it portable and dependency-free; a half-written file is refused and the
//! previous version keeps serving until the next poll sees the finished file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::services::app::App;

/// How often the directory is looked at.
const POLL: Duration = Duration::from_secs(1);

/// Name, length and modification time of every plugin file, sorted.
fn fingerprint(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().ok(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// Starts the watcher if the configuration has a plugins directory.
pub fn spawn(app: Arc<App>) {
    let Some(dir) = app.config().server.plugins_dir.clone() else {
        return;
    };
    tokio::spawn(async move {
        let mut seen = fingerprint(&dir);
        loop {
            tokio::time::sleep(POLL).await;
            let now = fingerprint(&dir);
            if now == seen {
                continue;
            }
            seen = now;
            tracing::info!(dir = %dir.display(), "plugin files changed; reloading");
            let app = app.clone();
            match tokio::task::spawn_blocking(move || app.reload_plugins()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(
                    "plugin reload refused; the previous plugins keep serving: {e:#}"
                ),
                Err(e) => tracing::error!("plugin reload failed: {e}"),
            }
        }
    });
}
