//! Reading JSON Lines: the bounded line reader is `ra_batch::lines`; here, what only the
//! command line needs (stdin, line-by-line output, the `bad_input` object).

pub use ra_batch::lines::{DEFAULT_MAX_LINE_BYTES, LineReader, decode};
use tokio::io::AsyncBufRead;

/// Opens `-` as stdin, anything else as a file, buffered.
pub async fn open_input(path: &str) -> std::io::Result<Box<dyn AsyncBufRead + Unpin + Send>> {
    if path == "-" {
        Ok(Box::new(tokio::io::BufReader::with_capacity(
            1 << 16,
            tokio::io::stdin(),
        )))
    } else {
        let file = tokio::fs::File::open(path).await?;
        Ok(Box::new(tokio::io::BufReader::with_capacity(1 << 16, file)))
    }
}

/// Writes one JSON value as a line and flushes it (`ra render`/`ra parse` stream line by
/// line).
pub fn write_json_line(
    out: &mut impl std::io::Write,
    value: &serde_json::Value,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The `{"error": {"kind": "bad_input", …}}` line for an input line that is not a
/// request: the message counts lines from 1, the `line` field from 0 (like `index`).
pub fn bad_input(message: String, index: usize) -> serde_json::Value {
    let message = format!("line {}: {message}", index + 1);
    serde_json::json!({"error": {"kind": "bad_input", "message": message, "line": index}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_counts_lines_from_one_in_the_message() {
        let v = bad_input("blank line".into(), 1);
        assert_eq!(v["error"]["message"], "line 2: blank line");
        assert_eq!(v["error"]["line"], 1);
    }
}
