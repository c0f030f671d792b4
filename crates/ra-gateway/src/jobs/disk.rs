//! A job on disk: `<base>/<id>/` holds `requests.jsonl` (the accepted requests, one per
//! line), `job.json` (its state) and `results.jsonl` (written by `ra_batch`, resumed
//! after a crash). A job directory is written under a temporary name, synced, and
//! renamed: it exists under its id only once complete. Blocking I/O: call from
//! `spawn_blocking`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rewardanything_client::JudgeRequest;
use serde::{Deserialize, Serialize};

pub const REQUESTS: &str = "requests.jsonl";
pub const RESULTS: &str = "results.jsonl";
pub const STATE: &str = "job.json";
/// The prefix of a job directory being written (removed at start-up if left behind).
pub const TEMP_PREFIX: &str = ".tmp-";
/// The lock file of the gateway using the base directory.
pub const LOCK: &str = ".ra-gateway.lock";

/// `job.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub start_time: String,
    pub num_requests: usize,
    pub complete: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// Whether `name` is a job id: a uuid in its lowercase hyphenated form, the only form a
/// job path is built from (no `..`, no separators, one spelling per job).
pub fn is_job_id(name: &str) -> bool {
    uuid::Uuid::try_parse(name).is_ok_and(|u| u.hyphenated().to_string() == name)
}

/// Writes a new job's directory (requests and state) and gives it its name.
pub fn create(
    base: &Path,
    id: &str,
    state: &State,
    requests: &[JudgeRequest],
) -> std::io::Result<PathBuf> {
    let temp = base.join(format!("{TEMP_PREFIX}{id}"));
    std::fs::create_dir(&temp)?;
    let written = (|| {
        let mut out = BufWriter::new(File::create(temp.join(REQUESTS))?);
        for request in requests {
            serde_json::to_writer(&mut out, request)?;
            out.write_all(b"\n")?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        write_synced(&temp.join(STATE), &serde_json::to_vec(state)?)?;
        sync_dir(&temp)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(e);
    }
    let dir = base.join(id);
    std::fs::rename(&temp, &dir)?;
    sync_dir(base)?;
    Ok(dir)
}

/// Replaces `job.json` atomically (temporary file, sync, rename).
pub fn write_state(dir: &Path, state: &State) -> std::io::Result<()> {
    let temp = dir.join(format!("{STATE}.tmp"));
    write_synced(&temp, &serde_json::to_vec(state)?)?;
    std::fs::rename(&temp, dir.join(STATE))?;
    sync_dir(dir)
}

pub fn read_state(dir: &Path) -> Result<State, String> {
    let bytes = std::fs::read(dir.join(STATE)).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename or a new entry in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What start-up finds in the base directory: every job with its state; leftovers of
/// an interrupted creation are removed; unreadable jobs are skipped with a warning.
pub fn scan(base: &Path) -> std::io::Result<Vec<(String, PathBuf, State)>> {
    let mut jobs = Vec::new();
    for entry in std::fs::read_dir(base)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.starts_with(TEMP_PREFIX) && is_job_id(&name[TEMP_PREFIX.len()..]) {
            // Never complete: it was never accepted.
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
            continue;
        }
        if !is_job_id(name) || !entry.file_type()?.is_dir() {
            continue;
        }
        match read_state(&path) {
            Ok(state) => jobs.push((name.to_string(), path, state)),
            Err(e) => tracing::warn!("skipping job {name}: cannot read its {STATE}: {e}"),
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_uuid_form_is_an_id() {
        let id = uuid::Uuid::new_v4().to_string();
        assert!(is_job_id(&id));
        assert!(!is_job_id(&id.to_uppercase()));
        assert!(!is_job_id(&id.replace('-', "")));
        assert!(!is_job_id(&format!("{{{id}}}")));
        assert!(!is_job_id("../etc"));
        assert!(!is_job_id(""));
    }

    #[test]
    fn a_created_job_reads_back_and_leftovers_are_removed() {
        let base = tempfile::tempdir().expect("tempdir");
        let id = uuid::Uuid::new_v4().to_string();
        let state = State {
            start_time: "t".into(),
            num_requests: 1,
            complete: false,
            error: None,
        };
        let request = JudgeRequest::new("p", "q").response("a", "x");
        let dir = create(base.path(), &id, &state, &[request]).expect("create");
        let leftover = base
            .path()
            .join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&leftover).expect("leftover");
        std::fs::create_dir(base.path().join("not-a-job")).expect("other dir");
        let found = scan(base.path()).expect("scan");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, id);
        assert_eq!(found[0].1, dir);
        assert!(!leftover.exists(), "an unfinished creation is removed");
        let lines = std::fs::read_to_string(dir.join(REQUESTS)).expect("requests");
        assert_eq!(lines.lines().count(), 1);
    }
}
