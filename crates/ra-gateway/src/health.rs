//! `/health`: healthy only while an upstream endpoint answers, checked at most once per
//! interval (a scraper or load balancer polling fast must not flood the engines).

use std::net::SocketAddr;
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

// --- An upstream that is this gateway itself ----------------------------------------

/// How long resolving an endpoint's host may take before it is left out.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

/// The reason to give when an upstream endpoint of `client` is `own` (the address this
/// gateway listens on) — asking it for a model gets this gateway's own 404, which says
/// nothing of the loop. `None` when no endpoint resolves to `own`.
pub async fn self_loop(client: &Client, own: SocketAddr) -> Option<String> {
    // Redacted URLs for the reason (the real ones may hold credentials).
    let shown: Vec<String> = client.endpoint_stats().into_iter().map(|e| e.url).collect();
    for (i, url) in client.endpoint_urls().iter().enumerate() {
        if resolves_to(url, own).await {
            return Some(format!(
                "the upstream endpoint {} is this gateway itself (it listens on {own}); point \
                 --endpoint at the model server's /v1 (ra-serve or vLLM, e.g. \
                 http://127.0.0.1:8000/v1)",
                shown.get(i).map_or(url.as_str(), String::as_str)
            ));
        }
    }
    None
}

/// Whether `url`'s host and port reach `own`: the same address, or, when `own` listens
/// on every interface, a loopback or unspecified address on the same port.
async fn resolves_to(url: &str, own: SocketAddr) -> bool {
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    if port != own.port() {
        return false;
    }
    let Ok(Ok(addrs)) = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((host.to_string(), port)),
    )
    .await
    else {
        return false;
    };
    addrs.into_iter().any(|a| {
        a == own || (own.ip().is_unspecified() && (a.ip().is_loopback() || a.ip().is_unspecified()))
    })
}

#[cfg(test)]
mod self_loop_tests {
    use super::*;

    #[tokio::test]
    async fn an_endpoint_on_the_gateways_own_address_is_a_loop() {
        let own: SocketAddr = "127.0.0.1:8200".parse().unwrap();
        assert!(resolves_to("http://127.0.0.1:8200/v1", own).await);
        assert!(resolves_to("http://localhost:8200/v1", own).await);
        assert!(!resolves_to("http://127.0.0.1:8000/v1", own).await);
        assert!(!resolves_to("http://127.0.0.2:8200/v1", own).await);
        let any: SocketAddr = "0.0.0.0:8200".parse().unwrap();
        assert!(resolves_to("http://127.0.0.1:8200/v1", any).await);
        assert!(!resolves_to("http://127.0.0.1:8201/v1", any).await);
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert!(resolves_to("http://[::1]/v1", v6).await);
    }
}
