//! `ra judge`: one request from flags (or one JSON request on stdin), printed readably.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rewardanything_client::JudgeRequest;
use serde_json::json;

use crate::connect::ClientArgs;
use crate::exit;

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// The evaluation principle.
    #[arg(long)]
    principle: Option<String>,
    /// The prompt the responses answer.
    #[arg(long)]
    prompt: Option<String>,
    /// A response as name=text (repeat; order is kept).
    #[arg(long = "response", value_name = "NAME=TEXT")]
    responses: Vec<String>,
    /// A response read from a file, as name=path (repeat; after the --response ones).
    #[arg(long = "response-file", value_name = "NAME=PATH")]
    response_files: Vec<String>,
    /// Print the judgment as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

fn split_pair(pair: &str, flag: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = pair
        .split_once('=')
        .with_context(|| format!("{flag} expects NAME=VALUE, got {pair:?}"))?;
    Ok((name.to_string(), value.to_string()))
}

impl JudgeArgs {
    fn request(&self) -> anyhow::Result<JudgeRequest> {
        if self.principle.is_none()
            && self.prompt.is_none()
            && self.responses.is_empty()
            && self.response_files.is_empty()
        {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the request from stdin")?;
            return serde_json::from_str(text.trim()).context(
                "stdin is not a JSON request {\"principle\", \"prompt\", \"responses\": {…}}",
            );
        }
        let principle = self.principle.clone().context("--principle is required")?;
        let prompt = self.prompt.clone().context("--prompt is required")?;
        let mut request = JudgeRequest::new(principle, prompt);
        for pair in &self.responses {
            let (name, text) = split_pair(pair, "--response")?;
            request = request.response(name, text);
        }
        for pair in &self.response_files {
            let (name, path) = split_pair(pair, "--response-file")?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read --response-file {path}"))?;
            request = request.response(name, text);
        }
        if request.responses.is_empty() {
            anyhow::bail!("give at least one --response or --response-file");
        }
        Ok(request)
    }
}

pub async fn run(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    let request = args.request()?;
    let connection = args.client.connect().await?;
    match connection.client.judge_detailed(&request).await {
        Ok(judged) => {
            let j = &judged.judgment;
            if args.json {
                println!(
                    "{}",
                    json!({
                        "scores": j.scores, "ranking": j.ranking, "reasoning": j.reasoning,
                        "consistent": j.consistent, "attempts": judged.attempts,
                        "latency_ms": judged.latency.as_millis() as u64, "usage": judged.usage,
                    })
                );
            } else {
                let width = j
                    .ranking
                    .iter()
                    .map(|n| n.chars().count())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                println!("{:>4}  {:<width$}  score", "rank", "name");
                for (i, name) in j.ranking.iter().enumerate() {
                    let score = j
                        .scores
                        .get(name)
                        .map_or("-".to_string(), |s| s.to_string());
                    println!("{:>4}  {name:<width$}  {score}", i + 1);
                }
                if !j.consistent {
                    println!("(note: the ranking disagrees with the scores)");
                }
                println!("\n{}", j.reasoning);
            }
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    json!({"error": {"kind": e.kind_str(), "message": e.to_string()}})
                );
            } else {
                eprintln!("ra judge: {e}");
            }
            Ok(ExitCode::from(exit::SOME_FAILED))
        }
    }
}
