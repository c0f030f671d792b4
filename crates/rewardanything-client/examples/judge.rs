//! Judge one request against a running server.
//!
//! ```sh
//! RA_ENDPOINT=http://127.0.0.1:8000/v1 cargo run -p rewardanything-client --example judge
//! ```

use rewardanything_client::{Client, JudgeRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint =
        std::env::var("RA_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8000/v1".to_string());
    // The model name is discovered from /v1/models when the server serves one model.
    let client = Client::builder().endpoint(endpoint).build()?;

    let request = JudgeRequest::new(
        "Prefer answers that are correct and concise; penalise padding.",
        "What is the capital of Australia?",
    )
    .response("terse", "Canberra.")
    .response(
        "padded",
        "Great question! Many people think Sydney, but it is Canberra.",
    )
    .response("wrong", "Sydney.");

    let judged = client.judge_detailed(&request).await?;
    let judgment = &judged.judgment;
    for (rank, name) in judgment.ranking.iter().enumerate() {
        println!("{}. {name}: {}", rank + 1, judgment.scores[name]);
    }
    println!(
        "attempts: {}, latency: {:?}, consistent: {}",
        judged.attempts, judged.latency, judgment.consistent
    );
    println!("\n{}", judgment.reasoning);
    Ok(())
}
