//! The endpoints file `ra-serve` writes: `{"endpoints": ["http://…/v1", …], "model": "…"}`
//! (unknown fields ignored). `ra` follows it while running, so replicas that restart or
//! drop out are followed.

use std::path::PathBuf;
use std::time::Duration;

use rewardanything_client::Client;
pub use rewardanything_client::EndpointsFile;

/// Re-reads the file every `interval` and hands changed endpoints to the client
/// (comparing contents, not modification times, which can miss a rewrite within one
/// clock tick). A missing or half-written file keeps the last good endpoints (ra-serve
/// writes atomically, but a user may not). Stops when the returned handle is aborted.
pub fn follow(path: PathBuf, client: Client, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current = client.endpoint_urls();
        let mut warned_model = false;
        loop {
            tokio::time::sleep(interval).await;
            match EndpointsFile::read(&path) {
                // No replica healthy right now (ra-serve is restarting them): keep the
                // last endpoints; requests to them fail over or retry meanwhile.
                Ok(file) if file.endpoints.is_empty() => {}
                Ok(file) => {
                    if file.endpoints != current {
                        match client.set_endpoints(&file.endpoints) {
                            Ok(()) => {
                                // The client's view: URLs with any password redacted.
                                let shown: Vec<String> =
                                    client.endpoint_stats().into_iter().map(|e| e.url).collect();
                                tracing::info!(endpoints = ?shown, "endpoints file changed");
                            }
                            Err(e) => tracing::warn!("{e}; keeping the current endpoints"),
                        }
                        // Either way, do not re-apply (or re-warn about) the same contents.
                        current = file.endpoints;
                    }
                    if let Some(model) = file.model.filter(|m| Some(m.as_str()) != client.model())
                        && !warned_model
                    {
                        warned_model = true;
                        tracing::warn!(
                            "the endpoints file now names model {model:?}; this run keeps {:?}",
                            client.model()
                        );
                    }
                }
                // Gone (ra-serve stopped) or half-written: keep what works.
                Err(e) if path.exists() => tracing::warn!("{e:#}; keeping the current endpoints"),
                Err(_) => {}
            }
        }
    })
}
