//! `ra render`: JSON Lines of requests in, the exact chat messages out.

use std::process::ExitCode;

use rewardanything_client::{Masking, render};
use serde_json::json;

use crate::exit;
use crate::input::RequestInput;
use crate::lines::{DEFAULT_MAX_LINE_BYTES, LineReader, bad_input, decode, write_json_line};

/// Renders every stdin line to stdout; bad lines get their own error line.
pub async fn run(masking: Option<Masking>) -> anyhow::Result<ExitCode> {
    let mut reader = LineReader::new(crate::lines::open_input("-").await?, DEFAULT_MAX_LINE_BYTES);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0u64;
    while let Some(line) = reader.next_line().await? {
        let value = match decode::<RequestInput>(&line.body) {
            // Without --masking each line's own flag decides, permuted like the reference.
            Ok(input) => {
                let request = input.into_request();
                let rendered = render(&request, masking.unwrap_or(Masking::Reference));
                json!({"messages": rendered.messages, "masked2real": rendered.masked2real})
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
