//! Reading JSON Lines: one raw line at a time, CRLF accepted, constant memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Reads raw lines (without the `\n` or `\r\n`) from an async reader.
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    index: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(reader: R) -> Self {
        LineReader {
            reader,
            buf: Vec::with_capacity(8192),
            index: 0,
        }
    }

    /// The next line and its 0-based number; `None` at the end. A last line without a
    /// newline still counts.
    pub async fn next_line(&mut self) -> std::io::Result<Option<(usize, Vec<u8>)>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        let index = self.index;
        self.index += 1;
        Ok(Some((index, std::mem::take(&mut self.buf))))
    }
}

/// Decodes one input line as `T`, with a message fit for a `bad_input` error.
pub fn decode<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    if text.trim().is_empty() {
        return Err("blank line".to_string());
    }
    serde_json::from_str(text).map_err(|e| format!("invalid request: {e}"))
}

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

/// The `{"error": {"kind": "bad_input", …}}` line for an input line that is not a request.
pub fn bad_input(message: String, line: usize) -> serde_json::Value {
    serde_json::json!({"error": {"kind": "bad_input", "message": message, "line": line}})
}
