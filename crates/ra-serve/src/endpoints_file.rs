//! The endpoints file: where clients (`ra score --endpoints-file`) learn the live replicas.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Contents of the endpoints file:
/// `{"endpoints": ["http://127.0.0.1:8000/v1", …], "model": "<served name>", "pid": <ra-serve pid>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointsFile {
    /// OpenAI-compatible base URLs of the healthy replicas.
    pub endpoints: Vec<String>,
    /// Model name to send in requests.
    pub model: String,
    /// Process id of the supervisor that wrote the file.
    pub pid: u32,
}

impl EndpointsFile {
    /// Writes the file atomically: a temporary file beside it, then a rename,
    /// so readers never see half a file.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("ra-serve-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// use ra_serve::EndpointsFile;
    /// let path = dir.join("endpoints.json");
    /// let f = EndpointsFile { endpoints: vec!["http://127.0.0.1:8000/v1".into()], model: "m".into(), pid: 1 };
    /// f.write_atomic(&path).unwrap();
    /// assert_eq!(EndpointsFile::read(&path).unwrap(), f);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
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
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads and parses an endpoints file.
    pub fn read(path: &Path) -> std::io::Result<EndpointsFile> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "endpoints".into());
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}
