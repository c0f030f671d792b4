//! `ra gateway` driven by the reference package's own client, `rewardanything.Client`
//! 1.0.1 from PyPI, unmodified: `judge`, `judge_batch` (in order, exactly attributed),
//! `health_check`, and bearer auth. Needs `RA_TEST_PYTHON`: run
//! `eval "$(scripts/setup-python.sh)"` first (`.ci/run` does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ChildGuard, Mock, dead_url, gateway_command, s, spawn_gateway};

fn python() -> PathBuf {
    match std::env::var_os("RA_TEST_PYTHON") {
        Some(p) if std::path::Path::new(&p).exists() => PathBuf::from(p),
        other => panic!(
            "RA_TEST_PYTHON is {other:?}: these tests drive the gateway with the reference \
             package's client. Run `eval \"$(scripts/setup-python.sh)\"` in the repository \
             root first (it installs rewardanything 1.0.1 into a venv under \
             ~/.cache/rewardanything-rs and exports RA_TEST_PYTHON); ./.ci/run does this."
        ),
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference_client.py")
}

/// Starts `ra gateway` on a port of its own in front of `upstream`, its jobs in `jobs`;
/// returns once it listens.
fn gateway(upstream: &str, key: Option<&str>, jobs: &Path) -> (ChildGuard, String) {
    let mut cmd = gateway_command(&[
        "--base-output-path",
        s(jobs),
        "--endpoint",
        upstream,
        "--concurrency",
        "64",
        "--grace",
        "1",
    ]);
    if let Some(key) = key {
        cmd.env("RA_GATEWAY_API_KEY", key);
    }
    spawn_gateway(cmd)
}

fn run_script(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .expect("run the reference client script");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "reference client check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout.into_owned()
}

#[test]
fn the_reference_client_gets_correct_in_order_results() {
    let mock = Mock::default_mock();
    let key = "ref-client-k3y";
    let jobs = tempfile::tempdir().expect("tempdir");
    let (gw, url) = gateway(&mock.url(), Some(key), jobs.path());
    let stdout = run_script(&["check", "--url", &url, "--api-key", key, "--batch", "300"]);
    assert!(stdout.contains("judge_batch of 300 in order"), "{stdout}");
    // 2 single judgments and the batch, each exactly once (the client does not retry).
    assert_eq!(mock.chat_requests(), 302);
    drop(gw);
}

#[test]
fn the_reference_health_check_is_false_without_an_upstream() {
    let jobs = tempfile::tempdir().expect("tempdir");
    let (gw, url) = gateway(&dead_url(), None, jobs.path());
    let stdout = run_script(&["check-down", "--url", &url]);
    assert!(stdout.contains("health_check() is False"), "{stdout}");
    drop(gw);
}

/// The marker before the README's reference-client snippet: the block this test runs.
const SNIPPET_MARKER: &str = "<!-- tested: reference client snippet -->";

/// The ```python block right after [`SNIPPET_MARKER`] in README.md, verbatim.
fn readme_snippet() -> String {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let after = text
        .split_once(SNIPPET_MARKER)
        .unwrap_or_else(|| panic!("README.md has no {SNIPPET_MARKER}"))
        .1;
    let block = after
        .trim_start()
        .strip_prefix("```python\n")
        .expect("a ```python block right after the marker");
    block
        .split_once("\n```")
        .expect("the block's closing fence")
        .0
        .to_string()
}

/// The README's snippet for the reference client, run as written by the reference venv's
/// Python (which has no torch, like the user's machine) against `ra gateway` with a key.
#[test]
fn the_readme_reference_client_snippet_runs_as_written_without_torch() {
    let torch = Command::new(python())
        .args([
            "-c",
            "import importlib.util as u; print(u.find_spec('torch') is None)",
        ])
        .output()
        .expect("run python");
    assert_eq!(
        String::from_utf8_lossy(&torch.stdout).trim(),
        "True",
        "the reference venv has torch: the snippet would not be tested as a user without it runs it"
    );
    let mock = Mock::default_mock();
    let key = "snippet-k3y";
    let jobs = tempfile::tempdir().expect("tempdir");
    let (gw, url) = gateway(&mock.url(), Some(key), jobs.path());
    let out = Command::new(python())
        .args(["-c", &readme_snippet()])
        .env("RA_GATEWAY_URL", &url)
        .env("RA_GATEWAY_API_KEY", key)
        .output()
        .expect("run the snippet");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the README snippet failed:\n{stdout}\n{stderr}"
    );
    // judge's scores and ranking, then judge_batch's two rankings in input order.
    let lines: Vec<&str> = stdout.lines().collect();
    let (first, last) = (lines[0], lines[lines.len() - 1]);
    assert!(
        first.contains("'terse'") && first.contains("'wordy'"),
        "{stdout}"
    );
    assert!(last.starts_with("[['") && last.contains("'b'"), "{stdout}");
    assert_eq!(mock.chat_requests(), 3);
    drop(gw);
}
