//! The endpoints file `ra-serve` writes and clients follow:
//! `{"endpoints": ["http://127.0.0.1:8000/v1", …], "model": "<served name>", "pid": <ra-serve pid>}`.
//!
//! One definition for the writer (`ra-serve`) and every reader (`ra`, the Python package).
//! Unknown fields are ignored, so the file can grow.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest endpoints file read: a list of URLs, never megabytes; a bigger file is refused
/// rather than read into memory.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Contents of the endpoints file.
///
/// ```
/// use rewardanything_client::EndpointsFile;
/// let f: EndpointsFile = serde_json::from_str(
///     r#"{"endpoints": ["http://127.0.0.1:8000/v1"], "model": "m", "pid": 7, "future": 1}"#,
/// ).unwrap();
/// assert_eq!((f.endpoints.len(), f.model.as_deref(), f.pid), (1, Some("m"), Some(7)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointsFile {
    /// OpenAI-compatible base URLs of the healthy replicas.
    pub endpoints: Vec<String>,
    /// Served model name to send in requests.
    #[serde(default)]
    pub model: Option<String>,
    /// Process id of the supervisor that wrote the file.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// Why an endpoints file could not be read or written.
///
/// ```
/// use rewardanything_client::EndpointsFile;
/// let e = EndpointsFile::read(std::path::Path::new("/nonexistent/ep.json")).unwrap_err();
/// assert!(e.to_string().contains("/nonexistent/ep.json"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointsFileError {
    /// The file could not be read or written.
    #[error("endpoints file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an endpoints file (bad JSON, or too large).
    #[error("invalid endpoints file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl EndpointsFile {
    /// A file listing these endpoints for this model, written by this process.
    ///
    /// ```
    /// use rewardanything_client::EndpointsFile;
    /// let f = EndpointsFile::new(vec!["http://127.0.0.1:8000/v1".into()], "m");
    /// assert_eq!(f.pid, Some(std::process::id()));
    /// ```
    pub fn new(endpoints: Vec<String>, model: impl Into<String>) -> Self {
        EndpointsFile {
            endpoints,
            model: Some(model.into()),
            pid: Some(std::process::id()),
        }
    }

    /// Reads and checks an endpoints file: valid JSON, at most 1 MiB. An empty list is
    /// valid: `ra-serve` writes it while no replica is healthy (readers keep what they
    /// have, or wait).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ra-ep-doc-read-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// use rewardanything_client::EndpointsFile;
    /// let path = dir.join("endpoints.json");
    /// std::fs::write(&path, r#"{"endpoints": []}"#).unwrap();
    /// assert!(EndpointsFile::read(&path).unwrap().endpoints.is_empty());
    /// std::fs::write(&path, r#"{"endpoints": "#).unwrap();
    /// assert!(EndpointsFile::read(&path).unwrap_err().to_string().contains("invalid"));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn read(path: &Path) -> Result<EndpointsFile, EndpointsFileError> {
        let io = |source| EndpointsFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |reason: String| EndpointsFileError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_FILE_BYTES + 1),
            &mut text,
        )
        .map_err(io)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(invalid(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))
    }

    /// Writes the file atomically (a temporary file beside it, then a rename), so
    /// readers never see half a file.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ra-ep-doc-write-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// use rewardanything_client::EndpointsFile;
    /// let path = dir.join("endpoints.json");
    /// let f = EndpointsFile::new(vec!["http://127.0.0.1:8000/v1".into()], "m");
    /// f.write_atomic(&path).unwrap();
    /// assert_eq!(EndpointsFile::read(&path).unwrap(), f);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn write_atomic(&self, path: &Path) -> Result<(), EndpointsFileError> {
        let tmp = temp_path(path);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            // Best effort: the temporary file may not even exist.
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|source| EndpointsFileError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "endpoints".into());
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}
