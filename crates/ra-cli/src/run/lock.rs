//! One writer per output file: `ra score` holds `ra_batch::FileLock` on a sidecar
//! `OUTPUT.lock` for its whole run (see `ra_batch::lock` for why a sidecar).

use std::path::Path;

use ra_batch::{FileLock, LockError};

/// Takes the lock for `output`, or fails at once naming the PID that holds it.
pub fn lock_output(output: &Path) -> anyhow::Result<FileLock> {
    let path = ra_batch::lock::lock_path(output);
    match FileLock::acquire(&path) {
        Ok(lock) => Ok(lock),
        Err(LockError::Held { path, pid }) => {
            let holder = match pid {
                Some(pid) => format!("PID {pid}"),
                None => "PID not yet written".to_string(),
            };
            anyhow::bail!(
                "--output {} is being written by another ra score ({holder}, lock file {}); \
                 wait for it to finish or choose another --output",
                output.display(),
                path.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}
