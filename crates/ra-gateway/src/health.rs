//! `/health`: healthy only while an upstream endpoint answers, checked at most once per
//! interval (a scraper or load balancer polling fast must not flood the engines).

use std::time::{Duration, Instant};

use rewardanything_client::Client;

/// The last upstream check and when it ran.
#[derive(Default)]
pub struct HealthCache {
    // An async mutex: concurrent callers wait for the one probe in progress.
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl HealthCache {
    /// `Ok` when some endpoint answered within `interval`, else the reason.
    pub async fn check(
        &self,
        client: &Client,
        interval: Duration,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < interval
        {
            return result.clone();
        }
        let result = probe(client, timeout).await;
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Lists the models of every endpoint at once; healthy if any answers.
async fn probe(client: &Client, timeout: Duration) -> Result<(), String> {
    let urls = client.endpoint_urls();
    // Redacted URLs for the reason (the real ones may hold credentials).
    let shown: Vec<String> = client.endpoint_stats().into_iter().map(|e| e.url).collect();
    let probes = urls
        .iter()
        .map(|url| tokio::time::timeout(timeout, client.list_models(url)));
    let results = futures::future::join_all(probes).await;
    let mut reasons = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => reasons.push(e.to_string()),
            Err(_) => reasons.push(format!(
                "{} did not answer within {timeout:?}",
                shown.get(i).map_or("an endpoint", String::as_str)
            )),
        }
    }
    if reasons.is_empty() {
        return Err("no upstream endpoint configured".into());
    }
    Err(format!(
        "no upstream endpoint answers: {}",
        reasons.join("; ")
    ))
}
