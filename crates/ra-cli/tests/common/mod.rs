//! Shared helpers of the end-to-end tests: run the real `ra` binary (with a timeout and
//! a parent-death signal, so no child outlives a test), an in-process mock server on its
//! own runtime, request generators and the checks every scored line must pass.

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ra_mock::{MockHandle, MockServerBuilder, expected_ranking, expected_score};
use serde_json::{Value, json};

/// Path of the `ra` binary under test.
pub const RA: &str = env!("CARGO_BIN_EXE_ra");

/// The repository's test data directory.
pub fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

/// A finished `ra` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout).expect("stdout is UTF-8")
    }

    /// stdout as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout_str()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

/// A command for `ra` with a clean environment for the variables it reads, and a
/// parent-death signal so that the child dies with the test thread that spawned it.
pub fn ra_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(RA);
    cmd.args(args)
        .env_remove("RA_ENDPOINT")
        .env_remove("RA_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RA_LOG");
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// A running child that is killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard {
    pub child: Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    started: Instant,
}

impl ChildGuard {
    /// Spawns `cmd` with piped stdio; `stdin` is written (then closed) from a thread.
    pub fn spawn(mut cmd: Command, stdin: Option<Vec<u8>>) -> ChildGuard {
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        Self::spawn_inner(cmd, stdin)
    }

    /// Spawns `cmd` with the stdin it was given (e.g. a terminal), stdout/stderr piped.
    pub fn spawn_with_stdin_set(cmd: Command) -> ChildGuard {
        Self::spawn_inner(cmd, None)
    }

    fn spawn_inner(mut cmd: Command, stdin: Option<Vec<u8>>) -> ChildGuard {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn ra");
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            std::thread::spawn(move || {
                // The child may exit before reading everything (e.g. bad flags).
                let _ = pipe.write_all(&data);
            });
        }
        let mut out = child.stdout.take().expect("stdout piped");
        let mut err = child.stderr.take().expect("stderr piped");
        let stdout = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let stderr = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        ChildGuard {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
            started,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits at most `limit` for the exit; `None` if still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit (panics after `limit`, killing the child) and collects output.
    pub fn finish(mut self, limit: Duration) -> Run {
        let status = match self.wait_timeout(limit) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!(
                    "ra did not finish within {limit:?}; stderr: {}",
                    String::from_utf8_lossy(&err.unwrap_or_default())
                );
            }
        };
        let elapsed = self.started.elapsed();
        let stdout = self.stdout.take().map(|h| h.join().unwrap_or_default());
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        Run {
            // A signal death has no code: report it as -signal.
            code: status.code().unwrap_or_else(|| {
                -std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
            }),
            stdout: stdout.unwrap_or_default(),
            stderr: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
            elapsed,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A bare child that is killed and reaped when dropped (for tests that drive its pipes).
pub struct ChildGuardRaw(pub Child);

impl Drop for ChildGuardRaw {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `ra ARGS` with `stdin`, to completion (at most 60 s).
pub fn ra(args: &[&str], stdin: &[u8]) -> Run {
    ChildGuard::spawn(ra_command(args), Some(stdin.to_vec())).finish(Duration::from_secs(60))
}

/// Spawns `ra ARGS` without stdin, for tests that interrupt it.
pub fn spawn_ra(args: &[&str]) -> ChildGuard {
    ChildGuard::spawn(ra_command(args), None)
}

/// An in-process mock server on its own runtime (the tests themselves are synchronous).
pub struct Mock {
    handle: Option<MockHandle>,
    rt: tokio::runtime::Runtime,
}

impl Mock {
    pub fn start(builder: MockServerBuilder) -> Mock {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("mock runtime");
        let handle = rt.block_on(builder.start()).expect("mock starts");
        Mock {
            handle: Some(handle),
            rt,
        }
    }

    /// A mock with the library defaults (no latency, no faults, model `RewardAnything-8B-v1`).
    pub fn default_mock() -> Mock {
        Mock::start(ra_mock::MockServer::builder())
    }

    pub fn handle(&self) -> &MockHandle {
        self.handle.as_ref().expect("mock running")
    }

    pub fn url(&self) -> String {
        self.handle().base_url()
    }

    pub fn chat_requests(&self) -> u64 {
        self.handle().stats().chat_requests
    }

    pub fn kill(&self) {
        self.rt.block_on(self.handle().kill_and_wait());
    }

    /// Brings a killed mock back on the same port.
    pub fn restart(&self) {
        self.rt
            .block_on(self.handle().restart())
            .expect("mock restarts");
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

/// A base URL where nothing listens (a port bound then released).
pub fn dead_url() -> String {
    format!("http://127.0.0.1:{}/v1", free_port())
}

/// A port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A path as `&str`, for argument lists (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// splitmix64: a tiny deterministic RNG for generating inputs and kill points.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the clock unless `RA_TEST_SEED` is set; the seed is printed so a
    /// failure can be replayed.
    pub fn from_env_or_time(what: &str) -> Rng {
        let seed = std::env::var("RA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{what}: RA_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &[
    "gpt-4o",
    "claude-3-opus",
    "llama-3-70b",
    "mistral-7b-instruct",
    "qwen2-72b",
    "模型甲",
    "model-2",
    "a \"quoted\" name",
];

const TEXTS: &[&str] = &[
    "Paris is the capital of France.",
    "The capital of France is Paris, a city of about two million people on the Seine.",
    "I think it might be Lyon, but I am not sure.",
    "Use `std::fs::read_to_string(path)?` and handle the error.",
    "Sure! Here's a long answer that goes on and on without getting to the point…",
    "No. That request is unsafe; here is a safer alternative instead.",
    "1. Preheat the oven.\n2. Mix the flour.\n3. Bake for 20 minutes.",
    "Ça dépend — 東京 is the answer, with emoji 🤖 and a tab\there.",
];

/// A realistic request line number `i` (2–4 responses, random names and texts; some with
/// `score=K` markers, some scored by the mock's hash). `prompt_extra` is appended to the
/// prompt (for `[[…]]` markers).
pub fn request(rng: &mut Rng, i: usize, prompt_extra: &str) -> Value {
    let n = rng.range(2, 5) as usize;
    let mut names: Vec<&str> = Vec::new();
    while names.len() < n {
        let name = *rng.pick(NAMES);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut responses = serde_json::Map::new();
    for (k, name) in names.iter().enumerate() {
        let mut text = rng.pick(TEXTS).to_string();
        if rng.range(0, 2) == 0 {
            text.push_str(&format!(" score={}", rng.range(1, 6)));
        } else {
            // Unique text so hash scores vary across lines.
            text.push_str(&format!(" (line {i}, answer {k})"));
        }
        responses.insert((*name).to_string(), Value::String(text));
    }
    json!({
        "principle": *rng.pick(&[
            "Prefer concise answers.",
            "Prefer factually correct answers.",
            "Refuse unsafe requests politely.",
            "Prefer well-structured answers with numbered steps.",
        ]),
        "prompt": format!("Question {i}?{prompt_extra}"),
        "responses": responses,
    })
}

/// Builds the text of a JSONL file from values.
pub fn jsonl(values: &[Value]) -> String {
    let mut s = String::new();
    for v in values {
        s.push_str(&v.to_string());
        s.push('\n');
    }
    s
}

/// Reads a file of JSON lines (each must parse).
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read output");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Checks one successful `ra score` line against the mock's deterministic judgment of
/// its request: every caller name scored (in the caller's order) with
/// `expected_score`, the ranking best first, unmasked lines ranked exactly like the mock.
pub fn check_judged(out: &Value, req: &Value) {
    let ctx = || format!("output {out}\nrequest {req}");
    assert!(out["error"].is_null(), "unexpected error: {}", ctx());
    let responses = req["responses"].as_object().expect("responses");
    let scores = out["scores"]
        .as_object()
        .unwrap_or_else(|| panic!("no scores: {}", ctx()));
    let want_keys: Vec<&String> = responses.keys().collect();
    let got_keys: Vec<&String> = scores.keys().collect();
    assert_eq!(got_keys, want_keys, "score keys/order: {}", ctx());
    for (name, text) in responses {
        let want = f64::from(expected_score(text.as_str().expect("text")));
        assert_eq!(
            scores[name].as_f64(),
            Some(want),
            "score of {name}: {}",
            ctx()
        );
    }
    let ranking: Vec<&str> = out["ranking"]
        .as_array()
        .unwrap_or_else(|| panic!("no ranking: {}", ctx()))
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    let mut sorted_names: Vec<&str> = ranking.clone();
    sorted_names.sort_unstable();
    let mut caller: Vec<&str> = responses.keys().map(String::as_str).collect();
    caller.sort_unstable();
    assert_eq!(
        sorted_names,
        caller,
        "ranking is not a permutation: {}",
        ctx()
    );
    let rank_scores: Vec<f64> = ranking
        .iter()
        .map(|n| scores[*n].as_f64().unwrap_or(0.0))
        .collect();
    assert!(
        rank_scores.windows(2).all(|w| w[0] >= w[1]),
        "ranking not best first: {}",
        ctx()
    );
    if req.get("mask_responses") == Some(&Value::Bool(false)) {
        let want = expected_ranking(
            responses
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())),
        );
        assert_eq!(ranking, want, "unmasked ranking: {}", ctx());
    }
    assert_eq!(out["consistent"], json!(true), "{}", ctx());
    assert!(out["reasoning"].is_string(), "{}", ctx());
    assert!(
        out["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "{}",
        ctx()
    );
    assert!(out["attempts"].as_u64().unwrap_or(0) >= 1, "{}", ctx());
}

/// The fields of a result line, in the documented order (plus the resume hash).
pub const RESULT_FIELDS: &[&str] = &[
    "index",
    "id",
    "scores",
    "ranking",
    "reasoning",
    "consistent",
    "error",
    "attempts",
    "latency_ms",
    "usage",
];

/// Checks the shape every result line shares: documented fields present, index, id.
pub fn check_shape(out: &Value, index: usize, id: &Value) {
    let obj = out
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {out}"));
    for f in RESULT_FIELDS {
        assert!(obj.contains_key(*f), "field {f} missing in {out}");
    }
    assert_eq!(out["index"], json!(index), "index of {out}");
    assert_eq!(&out["id"], id, "id of {out}");
}

/// The output text with the run-dependent numbers (`latency_ms`, `attempts`) zeroed, so
/// two runs compare byte for byte on everything else.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["\"latency_ms\":", "\"attempts\":"]
            .iter()
            .filter_map(|k| rest.find(k).map(|p| (p, *k)))
            .min();
        let Some((pos, key)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..pos + key.len()]);
        out.push('0');
        rest = rest[pos + key.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
}

/// Polls `cond` every 10 ms for at most `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Number of complete (newline-ended) lines in a file (0 if missing).
pub fn complete_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

// --- `ra gateway` on a port it picks itself (the gateway tests' helpers) -------------

/// The start of the line `ra gateway` prints on stderr once its port is bound.
const GATEWAY_LISTENING: &str = "ra gateway: listening on ";

/// How long a gateway may take to print that line.
const GATEWAY_START: Duration = Duration::from_secs(30);

/// `ra gateway --port 0 ARGS`: the port is chosen by the system when the gateway binds,
/// so no other process can take it between a test's choice and the bind.
pub fn gateway_command(args: &[&str]) -> Command {
    let mut all = vec!["gateway", "--port", "0"];
    all.extend_from_slice(args);
    ra_command(&all)
}

/// Spawns `cmd` (see [`gateway_command`]) and waits until it prints the address it
/// listens on; returns the child (killed on drop, even when the test fails) and the
/// gateway's base URL `http://ADDR`. Its stderr is drained all along (the child never
/// blocks on a full pipe) and kept: in [`ChildGuard::finish`]'s output, and in the panic
/// when the gateway exits or says nothing within 30 s.
pub fn spawn_gateway(mut cmd: Command) -> (ChildGuard, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn ra gateway");
    let mut out = child.stdout.take().expect("stdout piped");
    let err = child.stderr.take().expect("stderr piped");
    let stdout = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = {
        let seen = seen.clone();
        std::thread::spawn(move || scan_gateway_stderr(err, &seen, tx))
    };
    let guard = ChildGuard {
        child,
        stdout: Some(stdout),
        stderr: Some(stderr),
        started,
    };
    match rx.recv_timeout(GATEWAY_START) {
        Ok(url) => (guard, url),
        Err(e) => {
            let said = String::from_utf8_lossy(&lock(&seen)).into_owned();
            let why = match e {
                std::sync::mpsc::RecvTimeoutError::Timeout => "is not listening after 30 s",
                std::sync::mpsc::RecvTimeoutError::Disconnected => "exited before it listened",
            };
            panic!("ra gateway {why}; its stderr:\n{said}")
        }
    }
}

/// Reads the gateway's stderr to the end, keeping every line in `seen`, and sends the
/// URL of the first listening line; returns all of it.
fn scan_gateway_stderr(
    pipe: std::process::ChildStderr,
    seen: &std::sync::Mutex<Vec<u8>>,
    tx: std::sync::mpsc::Sender<String>,
) -> Vec<u8> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(pipe);
    let mut tx = Some(tx);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => lock(seen).extend_from_slice(&line),
        }
        if let Some(url) = listening_url(&line) {
            // The first one only; the receiver may have given up (then nobody waits).
            if let Some(tx) = tx.take() {
                let _ = tx.send(url);
            }
        }
    }
    lock(seen).clone()
}

/// `http://ADDR` from `ra gateway: listening on http://ADDR (…)`.
fn listening_url(line: &[u8]) -> Option<String> {
    let rest = std::str::from_utf8(line)
        .ok()?
        .strip_prefix(GATEWAY_LISTENING)?;
    let url = rest.split_whitespace().next()?;
    url.starts_with("http://").then(|| url.to_string())
}

/// The lines kept so far (a panicking reader cannot leave them half-written).
fn lock(seen: &std::sync::Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ChildGuard {
    /// Panics if the child has exited (a server that should still be running).
    pub fn assert_running(&mut self) {
        let status = self.child.try_wait().expect("try_wait");
        assert!(status.is_none(), "ra exited: {status:?}");
    }
}

/// A single-threaded runtime for the HTTP calls of a synchronous test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Waits until the gateway at `base` answers `/health` with 200 while `child` runs
/// (bounded, so a regression fails).
pub async fn wait_healthy(http: &reqwest::Client, base: &str, child: &mut ChildGuard) {
    let started = Instant::now();
    loop {
        let up = http.get(format!("{base}/health")).send().await;
        if up.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not become healthy"
        );
        child.assert_running();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
