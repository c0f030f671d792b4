//! One writer per file: an exclusive advisory lock (flock) on a sidecar lock file, held
//! for a whole run. The sidecar, not the output, is locked because a run may replace the
//! output by renaming a temporary file over it, and a lock on the replaced file would no
//! longer guard the path. The holder's PID is written into the sidecar so that a refused
//! run can name it; the sidecar is removed when the lock is dropped (a killed holder
//! leaves it behind, unlocked, and the next run takes it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fs4::FileExt;

/// Why a lock was not taken.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("x.lock");
/// let _held = ra_batch::FileLock::acquire(&path).unwrap();
/// match ra_batch::FileLock::acquire(&path) {
///     Err(ra_batch::LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
///     _ => panic!("the second lock must be refused"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error("{} (lock file {})", holder_text(*.pid), .path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's PID, when it had written it yet.
        pid: Option<u32>,
    },
    /// The lock file could not be created, locked or written.
    #[error("cannot lock {}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The lock file kept being replaced while it was being locked.
    #[error("cannot lock {}: it keeps being replaced", .path.display())]
    Replaced {
        /// The lock file.
        path: PathBuf,
    },
}

fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("PID {pid}"),
        // The holder locks first and writes its PID just after.
        None => "PID not yet written".to_string(),
    }
}

/// The held lock; released (and its file removed) on drop.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = ra_batch::lock::lock_path(&dir.path().join("results.jsonl"));
/// let lock = ra_batch::FileLock::acquire(&path).unwrap();
/// assert!(path.exists());
/// drop(lock);
/// assert!(!path.exists());
/// ```
pub struct FileLock {
    path: PathBuf,
    file: File,
}

/// The sidecar's path: the output's, its directory resolved (symlinks and `..`, so that
/// two spellings of one file share one lock), with `.lock` appended. The file name
/// itself is not resolved: an output that is a symbolic link is refused (see
/// [`crate::files`]), and resolving it would put the lock file wherever the link points.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = ra_batch::lock::lock_path(&dir.path().join("out.jsonl"));
/// assert!(p.to_str().unwrap().ends_with("out.jsonl.lock"));
/// ```
pub fn lock_path(output: &Path) -> PathBuf {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let real = match (std::fs::canonicalize(dir), output.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => output.to_path_buf(),
    };
    let mut path = real.into_os_string();
    path.push(".lock");
    PathBuf::from(path)
}

impl FileLock {
    /// Takes the lock on the file `path` (created if missing), or fails at once naming
    /// the PID that holds it.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let lock = ra_batch::FileLock::acquire(&dir.path().join("run.lock")).unwrap();
    /// ```
    pub fn acquire(path: &Path) -> Result<FileLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        // A holder removes the file before unlocking; a lock taken on a file that was
        // just removed (or replaced) guards nothing, so try again on the new one.
        for _ in 0..16 {
            // Not through a link: the PID written below would land in its target.
            let mut file = crate::files::open(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false),
                path,
            )
            .map_err(io)?;
            match FileExt::try_lock(&file) {
                Ok(()) => {}
                Err(fs4::TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        path: path.to_path_buf(),
                        pid: holder(&mut file),
                    });
                }
                Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
            }
            if !same_file(&file, path) {
                continue;
            }
            file.set_len(0).map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
            file.flush().map_err(io)?;
            return Ok(FileLock {
                path: path.to_path_buf(),
                file,
            });
        }
        Err(LockError::Replaced {
            path: path.to_path_buf(),
        })
    }
}

/// The PID written in the lock file, if any yet.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse::<u32>().ok()
}

/// Whether `path` still names the open file.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

impl Drop for FileLock {
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
        let path = lock_path(&dir.path().join("out.jsonl"));
        let first = FileLock::acquire(&path).expect("first lock");
        let err = FileLock::acquire(&path).err().expect("second refused");
        assert!(
            err.to_string()
                .contains(&format!("PID {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(!path.exists(), "the lock file is removed");
        let _again = FileLock::acquire(&path).expect("free again");
    }

    #[test]
    fn a_lock_file_planted_as_a_link_is_refused_and_its_target_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("victim");
        std::fs::write(&target, "keep").expect("write");
        let output = dir.path().join("out.jsonl");
        let path = lock_path(&output);
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let err = FileLock::acquire(&path).err().expect("refused");
        let text = format!(
            "{err}: {}",
            std::error::Error::source(&err).expect("source")
        );
        assert!(text.contains("is a symbolic link"), "{text}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
        // An output that is a link keeps its lock beside the link, not its target.
        std::fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink(&target, &output).expect("symlink");
        assert_eq!(lock_path(&output), path);
    }
}
