//! Writing files where someone else may plant names: an output directory under `/tmp` or
//! a shared disk can hold `summary.json -> ~/.bashrc`, and a plain `File::create` would
//! overwrite the link's target. Every file `ra` writes goes through here: opened with
//! `O_NOFOLLOW` (a link in the last component is refused, naming the file), temporary
//! files created with `O_EXCL`, and whole files renamed into place (a rename replaces a
//! link, never its target). Links in the directories above are the caller's choice and
//! are followed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The error for a file that is a symbolic link (kind `InvalidInput`), naming it.
///
/// ```
/// let e = ra_batch::files::symlink_error("out/summary.json".as_ref());
/// assert!(e.to_string().contains("out/summary.json is a symbolic link"));
/// ```
pub fn symlink_error(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link; ra never writes through one (remove the link or name \
             the file it points to)",
            path.display()
        ),
    )
}

/// Fails with [`symlink_error`] when `path` itself is a symbolic link (a missing file is
/// fine). A check before work starts, so that a run is refused before it judges; the
/// opens below are what makes writing safe.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let link = dir.path().join("out.jsonl");
/// std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
/// assert!(ra_batch::files::refuse_symlink(&link).is_err());
/// assert!(ra_batch::files::refuse_symlink(&dir.path().join("new.jsonl")).is_ok());
/// ```
pub fn refuse_symlink(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(symlink_error(path)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` with `options` and `O_NOFOLLOW`: a symbolic link is refused with
/// [`symlink_error`] instead of being followed.
///
/// ```
/// use std::fs::OpenOptions;
/// let dir = tempfile::tempdir().unwrap();
/// let target = dir.path().join("target");
/// std::fs::write(&target, "keep").unwrap();
/// let link = dir.path().join("out.jsonl");
/// std::os::unix::fs::symlink(&target, &link).unwrap();
/// let e = ra_batch::files::open(OpenOptions::new().write(true).create(true).truncate(true), &link)
///     .unwrap_err();
/// assert!(e.to_string().contains("is a symbolic link"));
/// assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
/// ```
pub fn open(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    options.custom_flags(libc::O_NOFOLLOW);
    options.open(path).map_err(|e| {
        // ELOOP is also a loop in the directories above: name the link only when it is one.
        if e.raw_os_error() == Some(libc::ELOOP) && refuse_symlink(path).is_err() {
            symlink_error(path)
        } else {
            e
        }
    })
}

/// Creates (or truncates) `path` for writing in place, refusing a symbolic link.
pub fn create(path: &Path) -> io::Result<File> {
    open(
        OpenOptions::new().write(true).create(true).truncate(true),
        path,
    )
}

/// Where [`create_temp`] writes the file that will become `path`: `path.ra-tmp`.
///
/// ```
/// let t = ra_batch::files::temp_path("out/summary.json".as_ref());
/// assert_eq!(t, std::path::PathBuf::from("out/summary.json.ra-tmp"));
/// ```
pub fn temp_path(path: &Path) -> PathBuf {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".ra-tmp");
    PathBuf::from(temp)
}

/// Creates the temporary file for `path` ([`temp_path`]) with `O_EXCL`: a file left
/// there by a killed run is removed first, a symbolic link is refused (never removed:
/// somebody put it there), and a name that reappears meanwhile fails the create.
/// Returns the temporary path and the file; [`persist`] renames it into place.
pub fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let temp = temp_path(path);
    refuse_symlink(&temp)?;
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = open(OpenOptions::new().write(true).create_new(true), &temp)?;
    Ok((temp, file))
}

/// Renames a finished temporary file over `path`, refusing a `path` that is a symbolic
/// link (the rename itself would replace the link, not its target; refusing says so
/// instead of silently turning a link into a file). The temporary file is removed when
/// refused.
pub fn persist(temp: &Path, path: &Path) -> io::Result<()> {
    if let Err(e) = refuse_symlink(path) {
        let _ = std::fs::remove_file(temp);
        return Err(e);
    }
    std::fs::rename(temp, path)
}

/// Writes `bytes` as the whole of `path`: a temporary file beside it, then a rename,
/// so that readers see the old file or the new one, never half of one, and a planted
/// link is refused (see the module's notes).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("summary.json");
/// ra_batch::files::write_atomic(&path, b"{}\n").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
/// assert!(!ra_batch::files::temp_path(&path).exists());
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (temp, mut file) = create_temp(path)?;
    let written = file.write_all(bytes).and_then(|()| file.flush());
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    persist(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link planted at every name a write uses: the target is never changed.
    #[test]
    fn planted_links_are_refused_and_their_targets_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let out = dir.path().join("summary.json");
        for planted in [out.clone(), temp_path(&out)] {
            std::os::unix::fs::symlink(&target, &planted).unwrap();
            let e = write_atomic(&out, b"new").unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("{} is a symbolic link", planted.display())),
                "{e}"
            );
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
            assert!(
                std::fs::symlink_metadata(&planted)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "the link stays for its owner to see"
            );
            std::fs::remove_file(&planted).unwrap();
        }
        // A stale temporary file (a killed run's) is replaced.
        std::fs::write(temp_path(&out), "stale").unwrap();
        write_atomic(&out, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
        assert!(!temp_path(&out).exists());
        std::os::unix::fs::symlink(&target, dir.path().join("in-place")).unwrap();
        let e = create(&dir.path().join("in-place")).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
