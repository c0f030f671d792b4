//! Judging the units file into `results.jsonl` with `ra-batch` (the engine of `ra
//! score`: one line per unit in unit order, flushed as it goes, resumable after a kill,
//! input lines checked by hash on resume, a graceful stop on signals), and reading the
//! results back with `ra_batch::results`.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use indexmap::IndexMap;
use ra_batch::Batch;
use ra_batch::results::ResultReader;

use super::EvalArgs;
use crate::run::{BatchRun, stored_line_bytes};

/// A unit's answer as stored: scores and ranking by masked name (`model-k`).
pub type RawAnswer = (IndexMap<String, f64>, Vec<String>);

/// Connects (nothing is judged when no endpoint serves the model) and judges every unit
/// not yet in `results`, writing lines in unit order. Returns whether a signal
/// interrupted it.
pub async fn judge_units(
    args: &EvalArgs,
    units: &Path,
    total: usize,
    results: &Path,
) -> anyhow::Result<bool> {
    let connection = args.client.connect().await?;
    let run = BatchRun::new(
        "ra eval",
        &connection,
        Some(total as u64),
        args.quiet,
        Instant::now(),
    );
    let prepared = run
        .prepare(
            Batch::to_file(results).resume(args.resume),
            args.grace.grace,
            args.client.max_response_bytes,
        )
        .await?;
    let input = tokio::io::BufReader::new(
        tokio::fs::File::open(units)
            .await
            .with_context(|| format!("cannot read {}", units.display()))?,
    );
    Ok(run.run(prepared, input).await?.interrupted)
}

/// Reads the results of a finished run back: for each unit, its scores and ranking (by
/// `model-k`), or `None` when it failed. A line that cannot be read, or a count of lines
/// other than `units`, is an error naming the file (and the line): the file changed
/// after the run wrote it, and figures from it would be wrong.
pub async fn read_results(
    path: &Path,
    units: usize,
    max_response_bytes: usize,
) -> anyhow::Result<Vec<Option<RawAnswer>>> {
    let what = || format!("cannot read {}", path.display());
    let file = tokio::fs::File::open(path).await.with_context(what)?;
    let mut lines = ResultReader::new(
        tokio::io::BufReader::with_capacity(1 << 16, file),
        stored_line_bytes(max_response_bytes),
    );
    let mut out = Vec::with_capacity(units);
    while let Some(line) = lines.next().await.with_context(what)? {
        out.push(line.outcome.ok().map(|j| (j.scores, j.ranking)));
    }
    if out.len() != units {
        anyhow::bail!(
            "{} holds {} lines for {units} units: it changed after the run; run again with \
             --resume",
            path.display(),
            out.len()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_are_read_by_ra_batch_and_a_bad_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.jsonl");
        let lines = [
            r#"{"index":0,"id":null,"scores":{"model-2":2.0,"model-1":5.0},"ranking":["model-1","model-2"],"reasoning":"r","input_hash":"a"}"#,
            r#"{"index":1,"id":null,"error":{"kind":"timeout","message":"slow"},"input_hash":"b"}"#,
        ];
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let got = read_results(&path, 2, 1 << 20).await.expect("read");
        let (scores, ranking) = got[0].clone().expect("judged");
        assert_eq!(scores.keys().collect::<Vec<_>>(), ["model-2", "model-1"]);
        assert_eq!(ranking, ["model-1", "model-2"]);
        assert!(got[1].is_none(), "a failed unit");

        let e = read_results(&path, 3, 1 << 20)
            .await
            .expect_err("a line missing");
        assert!(e.to_string().contains("holds 2 lines for 3 units"), "{e:#}");

        std::fs::write(&path, format!("{}\n{{\"index\":1,\n", lines[0])).expect("write");
        let e = read_results(&path, 2, 1 << 20)
            .await
            .expect_err("a bad line");
        assert!(
            format!("{e:#}").ends_with(
                "result line 2: not a result line: EOF while parsing a value at column 11"
            ),
            "{e:#}"
        );
    }
}
