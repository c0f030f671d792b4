//! Rewards for GRPO groups: each group is judged in one listwise call, and every
//! response gets one reward, in input order. Failed judgments give NaN (TRL masks them).
//!
//! ```sh
//! RA_ENDPOINT=http://127.0.0.1:8000/v1 cargo run -p rewardanything-client --example grpo_rewards
//! ```

use rewardanything_client::Client;
use rewardanything_client::{Normalization, OnFailure, Rewarder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint =
        std::env::var("RA_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8000/v1".to_string());
    let client = Client::builder().endpoint(endpoint).build()?;
    let rewarder = Rewarder::new(client)
        .normalization(Normalization::Centered)
        .on_failure(OnFailure::Nan);

    let principle = "Reward step-by-step reasoning that reaches the right answer.";
    let groups = vec![
        (
            principle.to_string(),
            "What is 17 * 3?".to_string(),
            vec!["51", "17 * 3 = 10 * 3 + 7 * 3 = 30 + 21 = 51.", "41"],
        ),
        (
            principle.to_string(),
            "Is 91 prime?".to_string(),
            vec!["Yes.", "No: 91 = 7 * 13.", "91 is odd, so it is prime."],
        ),
    ];
    for (i, group) in rewarder.group_rewards_many(groups).await.iter().enumerate() {
        match &group.error {
            None => println!("group {i}: {:?}", group.to_f64()),
            Some(e) => println!("group {i}: failed ({e}); rewards {:?}", group.to_f64()),
        }
    }
    Ok(())
}
