//! One call to a local judge, the equivalent of the Python package's `from_pretrained`:
//! `ra-serve`'s library starts and supervises the server, the client judges through it,
//! and dropping the handle stops everything (no process outlives this program).
//!
//! ```sh
//! # CPU host: llama.cpp's server and a small stand-in model (a few minutes the first time):
//! eval "$(scripts/setup-llama.sh)"     # exports RA_TEST_GGUF and RA_LLAMA_SERVER_BIN
//! cargo run -p ra-serve --example local
//! # GPU host, vLLM (the default model when a GPU is visible):
//! cargo run -p ra-serve --example local
//! # Any model: a Hugging Face id (vLLM) or a .gguf file (llama.cpp)
//! RA_LOCAL_MODEL=~/models/RewardAnything-8B-v1-Q4_K_M.gguf cargo run -p ra-serve --example local
//! ```
//!
//! Which engine: `RA_LOCAL_MODEL` if set (a `.gguf` file runs on llama.cpp),
//! else vLLM with RewardAnything when `nvidia-smi` lists a GPU, else llama.cpp
//! with `RA_TEST_GGUF`, the stand-in model `scripts/setup-llama.sh` installs.
//! Without any of these it prints how to get one and exits with status 2.
//!
//! The stand-in is not RewardAnything, so it gets a per-request grammar that
//! forces the output format (`RA_LOCAL_GBNF=1` turns that on for other models;
//! RewardAnything itself never needs it).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use ra_serve::{EngineKind, Server};
use rewardanything_client::{Client, JudgeRequest, Sampling};
use rewardanything_client::{GrammarOptions, rewardanything_gbnf};

/// What to serve, and whether it needs the output grammar.
struct Choice {
    engine: EngineKind,
    model: String,
    grammar: bool,
}

const CPU_HINT: &str = "no GPU found (nvidia-smi lists none) and no GGUF model given.
On a CPU host, install llama.cpp's server and a small stand-in model, then run again:
    eval \"$(scripts/setup-llama.sh)\"     # exports RA_TEST_GGUF and RA_LLAMA_SERVER_BIN
    cargo run -p ra-serve --example local
or set RA_LOCAL_MODEL to a RewardAnything .gguf file (llama-server on PATH, or RA_LLAMA_SERVER_BIN).";

/// Is a GPU visible to vLLM here?
async fn gpu_visible() -> bool {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        // `-1` or empty hide every GPU; anything else names some.
        let v = v.trim();
        if v.is_empty() || v.starts_with('-') {
            return false;
        }
    }
    matches!(
        ra_serve::gpus::query_nvidia_smi(Path::new("nvidia-smi")).await,
        Ok(Some(gpus)) if !gpus.is_empty()
    )
}

/// The engine and model, from the environment and the hardware; `Err` is the hint to print.
async fn choose() -> Result<Choice, String> {
    let gbnf = std::env::var_os("RA_LOCAL_GBNF").is_some();
    if let Ok(model) = std::env::var("RA_LOCAL_MODEL") {
        let engine = if model.ends_with(".gguf") {
            EngineKind::LlamaCpp
        } else {
            EngineKind::Vllm
        };
        return Ok(Choice {
            engine,
            model,
            grammar: gbnf,
        });
    }
    if gpu_visible().await {
        return Ok(Choice {
            engine: EngineKind::Vllm,
            model: ra_serve::DEFAULT_MODEL.to_string(),
            grammar: gbnf,
        });
    }
    match std::env::var("RA_TEST_GGUF") {
        Ok(model) if !model.is_empty() => Ok(Choice {
            engine: EngineKind::LlamaCpp,
            model,
            grammar: true,
        }),
        _ => Err(CPU_HINT.to_string()),
    }
}

/// A port nobody listens on now (`ra-serve` checks it again before starting).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn judge(choice: Choice) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "serving {} with {} (first start may take minutes)…",
        choice.model,
        choice.engine.name()
    );
    let server = Server::builder()
        .engine(choice.engine)
        .model(choice.model)
        .port(free_port()?)
        .max_model_len(8192)
        .startup_timeout(Duration::from_secs(900))
        .spawn()
        .await?;
    let endpoints = server.wait_ready().await?;

    let mut builder = Client::builder().endpoints(endpoints).model(server.model());
    if choice.grammar {
        builder = builder
            .sampling(Sampling::default().max_tokens(256))
            .body_hook(|request, rendered| {
                let grammar =
                    rewardanything_gbnf(&rendered.model_names(request), &GrammarOptions::default());
                let mut fields = serde_json::Map::new();
                fields.insert("grammar".into(), grammar.into());
                fields
            });
    }
    let client = builder.build()?;

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

#[tokio::main]
async fn main() -> ExitCode {
    let choice = match choose().await {
        Ok(c) => c,
        Err(hint) => {
            eprintln!("{hint}");
            return ExitCode::from(2);
        }
    };
    match judge(choice).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
