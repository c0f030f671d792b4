//! One call to a local judge, the equivalent of the Python package's `from_pretrained`:
//! `ra-serve`'s library starts and supervises the server, the client judges through it,
//! and dropping the handle stops everything (no process outlives this program).
//!
//! ```sh
//! # CPU, llama.cpp (any llama-server; scripts/setup-llama.sh provides one and a small model):
//! eval "$(scripts/setup-llama.sh)"
//! RA_LOCAL_MODEL="$RA_TEST_GGUF" RA_LOCAL_GBNF=1 cargo run -p ra-serve --example local
//! # GPU, vLLM:
//! RA_LOCAL_MODEL=zhuohaoyu/RewardAnything-8B-v1 cargo run -p ra-serve --example local
//! ```
//!
//! `RA_LOCAL_GBNF=1` adds a per-request grammar that forces the model's output format:
//! needed only for small stand-in models, never for RewardAnything itself.

use std::time::Duration;

use ra_serve::{EngineKind, Server};
use rewardanything_client::grammar::{GrammarOptions, rewardanything_gbnf};
use rewardanything_client::{Client, JudgeRequest, Sampling};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::var("RA_LOCAL_MODEL")
        .unwrap_or_else(|_| "zhuohaoyu/RewardAnything-8B-v1".to_string());
    let engine = if model.ends_with(".gguf") {
        EngineKind::LlamaCpp
    } else {
        EngineKind::Vllm
    };
    let server = Server::builder()
        .engine(engine)
        .model(model)
        .port(8000)
        .max_model_len(8192)
        .startup_timeout(Duration::from_secs(900))
        .spawn()
        .await?;
    let endpoints = server.wait_ready().await?;

    let mut builder = Client::builder().endpoints(endpoints).model(server.model());
    if std::env::var_os("RA_LOCAL_GBNF").is_some() {
        builder = builder
            .sampling(Sampling {
                max_tokens: 256,
                ..Sampling::default()
            })
            .body_hook(|request, rendered| {
                let grammar =
                    rewardanything_gbnf(&rendered.model_names(request), &GrammarOptions::default());
                let mut fields = serde_json::Map::new();
                fields.insert("grammar".into(), grammar.into());
                fields
            });
    }
    let client = builder.build().await?;

    let request = JudgeRequest::new(
        "Prefer answers that are correct and concise.",
        "What is the boiling point of water at sea level in Celsius?",
    )
    .response("exact", "100 °C.")
    .response(
        "rambling",
        "Water, a fascinating substance, boils at various temperatures; at sea level it is 100 °C.",
    )
    .response("wrong", "90 °C.");
    let judgment = client.judge(&request).await?;
    for (rank, name) in judgment.ranking.iter().enumerate() {
        println!("{}. {name}: {}", rank + 1, judgment.scores[name]);
    }

    server.shutdown().await?;
    Ok(())
}
