//! One writer per output: `ra score` and `ra eval` hold `ra_batch::FileLock` on a
//! sidecar `OUTPUT.lock` for their whole run (see `ra_batch::lock` for why a sidecar).

use std::path::Path;

use ra_batch::{FileLock, LockError};

/// Takes the lock for the results file `output`, or fails at once naming the PID that
/// holds it. `command` (`ra score`) and `shown` (the `--output` the user gave) word the
/// message.
pub fn lock_output(output: &Path, shown: &Path, command: &str) -> anyhow::Result<FileLock> {
    let path = ra_batch::lock::lock_path(output);
    match FileLock::acquire(&path) {
        Ok(lock) => Ok(lock),
        Err(LockError::Held { path, pid }) => {
            let holder = match pid {
                Some(pid) => format!("PID {pid}"),
                None => "PID not yet written".to_string(),
            };
            anyhow::bail!(
                "--output {} is being written by another {command} ({holder}, lock file {}); \
                 wait for it to finish or choose another --output",
                shown.display(),
                path.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}
