//! What can stop a run before its end (a line that fails is not an error: it gets its
//! own error line and the run goes on).

use std::path::PathBuf;

/// Why a run could not proceed or had to stop.
///
/// ```
/// let e = ra_batch::BatchError::InputShorter { kept: 3 };
/// assert!(e.to_string().contains("fewer lines than the 3"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Reading or writing a file failed.
    #[error("{what} {}", .path.display())]
    Io {
        /// What was being done (`cannot read the output`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading the input failed.
    #[error("reading the input")]
    Input(#[source] std::io::Error),
    /// Writing a result line failed.
    #[error("writing the output")]
    Write(#[source] std::io::Error),
    /// A kept input line differs from the one the output was written for.
    #[error(
        "input line {line} changed since the output was written (hash {hash} ≠ {stored}); \
         refusing to mix results"
    )]
    InputChanged {
        /// The line, counted from 1.
        line: usize,
        /// Its hash now.
        hash: String,
        /// The hash stored in the output.
        stored: String,
    },
    /// The input ended before the lines the output already holds.
    #[error("the input has fewer lines than the {kept} already in the output: it changed")]
    InputShorter {
        /// Lines kept in the output.
        kept: usize,
    },
    /// A kept output line could not be read again (another process wrote it); the
    /// source names the line.
    #[error("the output changed while running")]
    OutputChanged(#[source] crate::results::ResultLineError),
    /// Stdout cannot be resumed.
    #[error("resuming needs an output file, not stdout")]
    ResumeStdout,
}

impl BatchError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BatchError::Io { what, path, source }
    }
}
