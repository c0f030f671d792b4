//! The exit status every `ra` subcommand shares (like grep and diff).

use std::process::ExitCode;

/// Every line succeeded.
pub const OK: u8 = 0;
/// The run finished but some lines have errors.
pub const SOME_FAILED: u8 = 1;
/// The run could not proceed (bad flags, unreadable input, unreachable server).
pub const CANNOT_PROCEED: u8 = 2;

/// 0 when nothing failed, else 1.
pub fn from_failures(failed: u64) -> ExitCode {
    ExitCode::from(if failed == 0 { OK } else { SOME_FAILED })
}
