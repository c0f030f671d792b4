//! `ra judge`: one request from flags (or one JSON request on stdin), printed readably.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indexmap::IndexMap;
use rewardanything_client::{JudgeRequest, Judged, render};
use serde_json::json;

use crate::connect::ClientArgs;
use crate::exit;
use crate::input::{RequestInput, read_capped, read_text_capped};

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// The evaluation principle.
    #[arg(long, conflicts_with = "principle_file")]
    principle: Option<String>,
    /// Read the principle from a file.
    #[arg(long, value_name = "PATH")]
    principle_file: Option<PathBuf>,
    /// The prompt the responses answer.
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long, value_name = "PATH")]
    prompt_file: Option<PathBuf>,
    /// A response as name=text (repeat; order is kept; each name once).
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

/// Most bytes read from one `--*-file` or from stdin: a request line's limit in `ra score`.
const MAX_FILE_BYTES: u64 = crate::lines::DEFAULT_MAX_LINE_BYTES as u64;

const USAGE: &str = "give --principle (or --principle-file), --prompt (or --prompt-file) and \
    --response NAME=TEXT (or --response-file NAME=PATH), or pipe one JSON request \
    {\"principle\", \"prompt\", \"responses\": {…}} on stdin";

fn split_pair(pair: &str, flag: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = pair
        .split_once('=')
        .with_context(|| format!("{flag} expects NAME=VALUE, got {pair:?}"))?;
    Ok((name.to_string(), value.to_string()))
}

/// A flag's text, or the file it names.
fn text_or_file(
    text: &Option<String>,
    file: &Option<PathBuf>,
    flag: &str,
) -> anyhow::Result<Option<String>> {
    match (text, file) {
        (Some(t), _) => Ok(Some(t.clone())),
        (None, Some(path)) => {
            read_text_capped(path, MAX_FILE_BYTES, &format!("--{flag}-file")).map(Some)
        }
        (None, None) => Ok(None),
    }
}

impl JudgeArgs {
    fn has_request_flags(&self) -> bool {
        self.principle.is_some()
            || self.principle_file.is_some()
            || self.prompt.is_some()
            || self.prompt_file.is_some()
            || !self.responses.is_empty()
            || !self.response_files.is_empty()
    }

    fn request(&self) -> anyhow::Result<JudgeRequest> {
        if !self.has_request_flags() {
            return request_from_stdin();
        }
        let principle = text_or_file(&self.principle, &self.principle_file, "principle")?
            .context("--principle (or --principle-file) is required")?;
        let prompt = text_or_file(&self.prompt, &self.prompt_file, "prompt")?
            .context("--prompt (or --prompt-file) is required")?;
        let mut responses = IndexMap::new();
        let mut add = |name: String, text: String, flag: &str| {
            if responses.contains_key(&name) {
                anyhow::bail!("{flag}: response name {name:?} is given more than once");
            }
            responses.insert(name, text);
            Ok(())
        };
        for pair in &self.responses {
            let (name, text) = split_pair(pair, "--response")?;
            add(name, text, "--response")?;
        }
        for pair in &self.response_files {
            let (name, path) = split_pair(pair, "--response-file")?;
            let text = read_text_capped(Path::new(&path), MAX_FILE_BYTES, "--response-file")?;
            add(name, text, "--response-file")?;
        }
        let mut request = JudgeRequest::new(principle, prompt);
        request.responses = responses;
        // The client library's one set of request rules, told in flags.
        request.validate().map_err(|e| {
            let flags = match e.field() {
                "principle" => "--principle (or --principle-file)",
                _ => "--response NAME=TEXT (or --response-file NAME=PATH)",
            };
            anyhow::anyhow!("{e} (give {flags})")
        })?;
        Ok(request)
    }
}

/// One JSON request on stdin; refused at once on a terminal, where nobody would know
/// that `ra judge` waits for one.
fn request_from_stdin() -> anyhow::Result<JudgeRequest> {
    if std::io::stdin().is_terminal() {
        anyhow::bail!("no request: {USAGE}");
    }
    let bytes = read_capped(
        std::io::stdin().lock(),
        MAX_FILE_BYTES,
        "the request on stdin",
    )?;
    let text = std::str::from_utf8(&bytes).context("the request on stdin is not UTF-8")?;
    let input: RequestInput = serde_json::from_str(text.trim())
        .with_context(|| format!("stdin is not a valid request ({USAGE})"))?;
    let request = input.into_request();
    // The client library's one set of request rules (this path had none before).
    request
        .validate()
        .map_err(|e| anyhow::anyhow!("the request on stdin: {e}"))?;
    Ok(request)
}

pub async fn run(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    let request = args.request()?;
    let connection = args.client.connect().await?;
    // The names the model saw (the client masks the same way): its reasoning speaks of
    // `model-1`, `model-2`, …, so the reader needs the key.
    let masked2real = render(&request, args.client.masking).masked2real;
    match connection.client.judge_detailed(&request).await {
        Ok(judged) => {
            if args.json {
                print_json(&judged, masked2real.as_ref());
            } else {
                print_table(&judged, masked2real.as_ref());
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

fn print_json(judged: &Judged, masked2real: Option<&IndexMap<String, String>>) {
    let j = &judged.judgment;
    println!(
        "{}",
        json!({
            "scores": j.scores, "ranking": j.ranking, "reasoning": j.reasoning,
            "consistent": j.consistent, "masked2real": masked2real,
            "attempts": judged.attempts,
            "latency_ms": judged.latency.as_millis() as u64, "usage": judged.usage,
        })
    );
}

/// The ranking table with the masked name beside each real one, then the reasoning.
fn print_table(judged: &Judged, masked2real: Option<&IndexMap<String, String>>) {
    let j = &judged.judgment;
    let masked_of = |name: &str| {
        masked2real
            .and_then(|m| m.iter().find(|(_, real)| *real == name))
            .map(|(masked, _)| masked.as_str())
    };
    let width = j
        .ranking
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let masked_header = if masked2real.is_some() {
        "  in the reasoning"
    } else {
        ""
    };
    println!("{:>4}  {:<width$}  score{masked_header}", "rank", "name");
    for (i, name) in j.ranking.iter().enumerate() {
        let score = j
            .scores
            .get(name)
            .map_or("-".to_string(), |s| s.to_string());
        let masked = masked_of(name).map_or(String::new(), |m| format!("  {m}"));
        println!("{:>4}  {name:<width$}  {score:<5}{masked}", i + 1);
    }
    if !j.consistent {
        println!("(note: the ranking disagrees with the scores)");
    }
    if let Some(m) = masked2real {
        let key: Vec<String> = m
            .iter()
            .map(|(masked, real)| format!("{masked} = {real}"))
            .collect();
        println!("(the model saw the responses as {})", key.join(", "));
    }
    println!("\n{}", j.reasoning);
}
