//! One writer per output file: `ra score` holds an exclusive advisory lock (flock) on a
//! sidecar `OUTPUT.lock` for its whole run. The sidecar, not the output, is locked
//! because `--retry-failed` replaces the output by renaming a temporary file over it, and
//! a lock on the replaced file would no longer guard the path. The holder's PID is
//! written into the sidecar so that a refused run can name it; the sidecar is removed
//! when the run ends (a killed run leaves it behind, unlocked, and the next run takes it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fs4::FileExt;

/// The held lock; released (and its file removed) on drop.
pub struct OutputLock {
    path: PathBuf,
    file: File,
}

/// The sidecar's path: the real output's (symlinks and `..` resolved, so that two
/// spellings of one file share one lock) with `.lock` appended.
pub fn lock_path(output: &Path) -> PathBuf {
    let real = std::fs::canonicalize(output).unwrap_or_else(|_| {
        // Not created yet: resolve its directory.
        let dir = match output.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match (std::fs::canonicalize(dir), output.file_name()) {
            (Ok(dir), Some(name)) => dir.join(name),
            _ => output.to_path_buf(),
        }
    });
    let mut path = real.into_os_string();
    path.push(".lock");
    PathBuf::from(path)
}

impl OutputLock {
    /// Takes the lock for `output`, or fails at once naming the PID that holds it.
    pub fn acquire(output: &Path) -> anyhow::Result<OutputLock> {
        let path = lock_path(output);
        // A holder removes the file before unlocking; a lock taken on a file that was
        // just removed (or replaced) guards nothing, so try again on the new one.
        for _ in 0..16 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot create the lock file {}", path.display()))?;
            match FileExt::try_lock(&file) {
                Ok(()) => {}
                Err(fs4::TryLockError::WouldBlock) => {
                    anyhow::bail!(
                        "--output {} is being written by another ra score ({}); \
                         wait for it to finish or choose another --output",
                        output.display(),
                        holder(&mut file, &path)
                    )
                }
                Err(fs4::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0)?;
            write!(file, "{}", std::process::id())?;
            file.flush()?;
            return Ok(OutputLock { path, file });
        }
        anyhow::bail!("cannot lock {}: it keeps being replaced", path.display())
    }
}

/// "PID n" from the lock file, or why not.
fn holder(file: &mut File, path: &Path) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.take(32).read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!("PID {pid}, lock file {}", path.display()),
        // The holder locks first and writes its PID just after.
        Err(_) => format!("PID not yet written, lock file {}", path.display()),
    }
}

/// Whether `path` still names the open file.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other run can lock this inode and then lose
        // it to the removal.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_pid_and_the_first_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        let first = OutputLock::acquire(&out).expect("first lock");
        let err = OutputLock::acquire(&out).err().expect("second refused");
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("PID {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        assert!(!lock_path(&out).exists(), "the lock file is removed");
        let _again = OutputLock::acquire(&out).expect("free again");
    }
}
