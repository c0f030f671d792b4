//! `ra parse`: model outputs in, validated judgments (or typed errors) out.

use std::process::ExitCode;

use indexmap::IndexMap;
use rewardanything_client::{Completion, ParseOptions, parse_completion_with};
use serde::Deserialize;
use serde_json::json;

use crate::exit;
use crate::lines::{DEFAULT_MAX_LINE_BYTES, LineReader, bad_input, decode, write_json_line};

#[derive(Deserialize)]
struct ParseInput {
    output_text: String,
    #[serde(default, deserialize_with = "crate::input::unique_masked_names")]
    masked2real: Option<IndexMap<String, String>>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// Parses every stdin line to stdout. Lenient by default (the reference's values are
/// kept, with `consistent: false` when they fail validation); `strict` makes incomplete
/// scores, out-of-range scores and non-permutation rankings errors.
pub async fn run(strict: bool) -> anyhow::Result<ExitCode> {
    let options = if strict {
        ParseOptions::strict()
    } else {
        ParseOptions::default()
    };
    let mut reader = LineReader::new(crate::lines::open_input("-").await?, DEFAULT_MAX_LINE_BYTES);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0u64;
    while let Some(line) = reader.next_line().await? {
        let value = match decode::<ParseInput>(&line.body) {
            Ok(input) => {
                let completion = Completion {
                    content: &input.output_text,
                    reasoning: input.reasoning.as_deref(),
                    finish_reason: input.finish_reason.as_deref(),
                };
                match parse_completion_with(&completion, input.masked2real.as_ref(), &options) {
                    Ok(j) => json!({"ok": {
                        "scores": j.scores,
                        "ranking": j.ranking,
                        "reasoning": j.reasoning,
                        "consistent": j.consistent,
                    }}),
                    Err(e) => {
                        failed += 1;
                        json!({"error": {"kind": e.kind.as_str(), "message": e.message}})
                    }
                }
            }
            Err(message) => {
                failed += 1;
                bad_input(message, line.index)
            }
        };
        write_json_line(&mut out, &value)?;
    }
    Ok(exit::from_failures(failed))
}
