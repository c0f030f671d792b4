//! The endpoints file `ra-serve` writes: `{"endpoints": ["http://…/v1", …], "model": "…"}`
//! (unknown fields ignored). `ra` follows it while running, so replicas that restart or
//! drop out are followed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rewardanything_client::Client;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EndpointsFile {
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub model: Option<String>,
}

impl EndpointsFile {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read endpoints file {}: {e}", path.display()))?;
        let file: EndpointsFile = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid endpoints file {}: {e}", path.display()))?;
        if file.endpoints.is_empty() {
            anyhow::bail!("endpoints file {} lists no endpoint", path.display());
        }
        Ok(file)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Re-reads the file when its modification time changes and hands the new endpoints to
/// the client. A missing or half-written file keeps the last good endpoints (ra-serve
/// writes atomically, but a user may not). Stops when the returned handle is dropped.
pub fn follow(path: PathBuf, client: Client, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_seen = modified(&path);
        let mut current = client.endpoint_urls();
        loop {
            tokio::time::sleep(interval).await;
            let now = modified(&path);
            if now.is_none() || now == last_seen {
                continue;
            }
            last_seen = now;
            match EndpointsFile::read(&path) {
                Ok(file) if file.endpoints != current => {
                    tracing::info!(endpoints = ?file.endpoints, "endpoints file changed");
                    client.set_endpoints(&file.endpoints);
                    current = file.endpoints;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("{e:#}; keeping the current endpoints"),
            }
        }
    })
}
