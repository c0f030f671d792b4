//! Drives a running mock at a fixed number of requests in flight and prints the
//! achieved rate: a check that the mock itself is not the bottleneck.
//!
//! ```text
//! ra-mock --port 18080 --latency-ms 200 &
//! cargo run --release -p ra-mock --example drive -- http://127.0.0.1:18080/v1 256 20000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use futures::StreamExt;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18080/v1".into());
    let in_flight: usize = args.next().map_or(Ok(256), |s| s.parse())?;
    let total: u64 = args.next().map_or(Ok(20_000), |s| s.parse())?;

    let text = "lorem ipsum dolor sit amet ".repeat(19); // ~500 chars
    let user = json!({
        "principle": "Prefer the most helpful answer.",
        "prompt": "Explain the thing.",
        "responses": {"model-1": text, "model-2": text, "model-3": text, "model-4": text},
    })
    .to_string();
    let body = Arc::new(
        json!({"messages": [{"role": "user", "content": user}], "max_tokens": 4096, "temperature": 0})
            .to_string(),
    );
    let url = Arc::new(format!("{base}/chat/completions"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(in_flight)
        .build()?;
    let errors = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let micros = Arc::new(AtomicU64::new(0));

    let start = Instant::now();
    futures::stream::iter(0..total)
        .for_each_concurrent(in_flight, |_| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            let (errors, bytes, micros) = (errors.clone(), bytes.clone(), micros.clone());
            async move {
                let sent_at = Instant::now();
                let sent = http
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(b) => {
                            bytes.fetch_add(b.len() as u64, Relaxed);
                            micros.fetch_add(sent_at.elapsed().as_micros() as u64, Relaxed);
                        }
                        Err(_) => _ = errors.fetch_add(1, Relaxed),
                    },
                    _ => _ = errors.fetch_add(1, Relaxed),
                }
            }
        })
        .await;
    let secs = start.elapsed().as_secs_f64();
    let ok = total - errors.load(Relaxed);
    println!(
        "{total} requests, {in_flight} in flight: {secs:.2} s, {:.0} req/s, {} errors, mean answer {} bytes, mean latency {:.2} ms",
        total as f64 / secs,
        errors.load(Relaxed),
        bytes.load(Relaxed) / ok.max(1),
        micros.load(Relaxed) as f64 / 1000.0 / ok.max(1) as f64,
    );
    Ok(())
}
