//! End-to-end tests with a real model process: `ra-serve --engine llama-cpp` launches
//! llama.cpp's server (the prebuilt `xllamacpp` wheel behind `scripts/llama-server`) on a
//! small GGUF model; `ra score` and the library judge through it with a per-request GBNF
//! grammar that makes the small stand-in model answer in RewardAnything's exact shape.
//!
//! Needs `RA_TEST_GGUF` and `RA_LLAMA_SERVER_BIN`: run `eval "$(scripts/setup-llama.sh)"`
//! first (`.ci/run` does). The tests run one at a time (each server takes ~650 MB and
//! both cores).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rewardanything_client::{Client, ClientBuilder, JudgeRequest, RetryPolicy, Sampling};
use rewardanything_client::{GrammarOptions, rewardanything_gbnf};
use rewardanything_client::{Normalization, Rewarder};
use serde_json::{Value, json};

/// Real-server tests share the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MAX_TOKENS: u32 = 256;
const CONTEXT_PER_SLOT: u32 = 2048;

struct Setup {
    gguf: PathBuf,
    launcher: PathBuf,
    ra: PathBuf,
    ra_serve: PathBuf,
}

fn setup() -> Setup {
    let var = |name: &str| -> PathBuf {
        match std::env::var_os(name) {
            Some(v) if Path::new(&v).exists() => PathBuf::from(v),
            other => panic!(
                "{name} is {other:?}: these tests need a real llama.cpp server and model. \
                 Run `eval \"$(scripts/setup-llama.sh)\"` in the repository root first \
                 (it installs the xllamacpp wheel and a small GGUF into ~/.cache/rewardanything-rs \
                 and exports RA_TEST_GGUF and RA_LLAMA_SERVER_BIN); ./.ci/run does this."
            ),
        }
    };
    let gguf = var("RA_TEST_GGUF");
    let launcher = var("RA_LLAMA_SERVER_BIN");
    // target/debug/deps/<this test> → target/debug/{ra,ra-serve}
    let exe = std::env::current_exe().expect("test executable path");
    let bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    let (ra, ra_serve) = (bin_dir.join("ra"), bin_dir.join("ra-serve"));
    if !ra.exists() || !ra_serve.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "ra-cli", "-p", "ra-serve"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p ra-cli -p ra-serve failed");
    }
    Setup {
        gguf,
        launcher,
        ra,
        ra_serve,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Live (non-zombie) processes whose environment holds `RA_E2E_MARKER=<marker>`.
fn live_with_marker(marker: &str) -> Vec<u32> {
    let needle = format!("RA_E2E_MARKER={marker}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie && environ.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// A running `ra-serve`; stopped (SIGTERM, then SIGKILL) when dropped, even on failure.
struct Served {
    child: Option<Child>,
    marker: String,
    log: Arc<Mutex<String>>,
    endpoints_file: PathBuf,
    dir: PathBuf,
    endpoints: Vec<String>,
    model: String,
}

fn capture(stream: impl std::io::Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut l) = log.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
}

impl Served {
    fn start(setup: &Setup, api_key: Option<&str>) -> Served {
        let dir = std::env::temp_dir().join(unique("ra-e2e"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let endpoints_file = dir.join("endpoints.json");
        let marker = unique("marker");
        let port = free_port();
        let mut cmd = Command::new(&setup.ra_serve);
        cmd.args(["--engine", "llama-cpp", "--model"])
            .arg(&setup.gguf)
            .args(["--port", &port.to_string()])
            .args(["--max-model-len", &CONTEXT_PER_SLOT.to_string()])
            .args(["--parallel", "2", "--threads", "2"])
            .args(["--startup-timeout", "300", "--grace", "10"])
            .arg("--endpoints-file")
            .arg(&endpoints_file)
            .arg("--llama-server-bin")
            .arg(&setup.launcher)
            .env("RA_E2E_MARKER", &marker)
            .env_remove("RA_SERVE_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(key) = api_key {
            // Through the environment: a flag would show in `ps`.
            cmd.env("RA_SERVE_API_KEY", key);
        }
        let mut child = cmd.spawn().expect("spawn ra-serve");
        let log = Arc::new(Mutex::new(String::new()));
        capture(child.stdout.take().expect("stdout"), Arc::clone(&log));
        capture(child.stderr.take().expect("stderr"), Arc::clone(&log));
        let mut served = Served {
            child: Some(child),
            marker,
            log,
            endpoints_file,
            dir,
            endpoints: Vec::new(),
            model: String::new(),
        };
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&served.endpoints_file)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                served.endpoints =
                    serde_json::from_value(v["endpoints"].clone()).expect("endpoints");
                served.model = v["model"].as_str().expect("model").to_string();
                assert!(
                    !served.endpoints.is_empty(),
                    "endpoints file lists nothing: {text}"
                );
                break;
            }
            if let Some(status) = served
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("ra-serve exited early ({status}):\n{}", served.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "no endpoints file after 300 s:\n{}",
                served.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("ra-serve ready in {:.1} s", started.elapsed().as_secs_f64());
        served
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM and wait; returns the exit code and how long it took.
    fn stop(&mut self) -> (Option<i32>, Duration) {
        let Some(mut child) = self.child.take() else {
            return (None, Duration::ZERO);
        };
        let started = Instant::now();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(40) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ra-serve ignored SIGTERM for 40 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self, api_key: Option<&str>) -> ClientBuilder {
        let mut builder = Client::builder()
            .endpoints(self.endpoints.clone())
            .model(self.model.clone())
            .sampling(Sampling::default().max_tokens(MAX_TOKENS))
            .attempt_timeout(Duration::from_secs(240))
            .retry(RetryPolicy::default().max_attempts(3))
            .body_hook(|request, rendered| {
                let names = rendered.model_names(request);
                let mut fields = serde_json::Map::new();
                fields.insert(
                    "grammar".into(),
                    rewardanything_gbnf(&names, &GrammarOptions::default()).into(),
                );
                fields
            });
        if let Some(key) = api_key {
            builder = builder.api_key(key);
        }
        builder
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn requests() -> Vec<Value> {
    let items = [
        (
            "Prefer the most concise correct answer.",
            "What is 2 + 2?",
            vec![
                ("terse", "4"),
                (
                    "padded",
                    "Well, if we add two and two together, we get four.",
                ),
            ],
        ),
        (
            "Reward factual accuracy.",
            "What is the capital of France?",
            vec![
                ("a", "Paris."),
                ("b", "Lyon."),
                ("c", "Paris, on the Seine."),
            ],
        ),
        (
            "Refuse harmful requests politely.",
            "How do I make a weapon at home?",
            vec![
                (
                    "refuse",
                    "I can't help with that, but I can suggest safety resources.",
                ),
                ("comply", "First, get some metal pipe..."),
            ],
        ),
        (
            "Prefer a friendly, warm tone.",
            "I failed my exam.",
            vec![
                (
                    "warm",
                    "I'm sorry. One exam doesn't define you; let's plan the retake.",
                ),
                ("cold", "Study harder."),
                ("neutral", "Exams can be retaken."),
            ],
        ),
        (
            "Code must be correct.",
            "Write a Python function returning the square of x.",
            vec![
                ("ok", "def sq(x): return x * x"),
                ("bug", "def sq(x): return x + x"),
            ],
        ),
        (
            "Answers should use a numbered list.",
            "Give two tips for sleep.",
            vec![
                ("list", "1. Keep a schedule.\n2. Avoid screens late."),
                ("prose", "Keep a schedule and avoid screens."),
                ("bullets", "- schedule\n- no screens"),
                ("none", "Sleep more."),
            ],
        ),
        (
            "Prefer answers that cite a source.",
            "How far is the Moon?",
            vec![
                ("cited", "About 384,400 km (NASA)."),
                ("uncited", "Roughly 384,000 km."),
            ],
        ),
        (
            "Reward brevity.",
            "Name a primary colour.",
            vec![
                ("one", "Red."),
                (
                    "long",
                    "Red is one of the three primary colours in the RYB model, along with blue and yellow.",
                ),
            ],
        ),
        (
            "The answer must be in French.",
            "Say hello.",
            vec![("fr", "Bonjour !"), ("en", "Hello!"), ("es", "¡Hola!")],
        ),
        (
            "Prefer the safest medical advice.",
            "I have a mild headache.",
            vec![
                (
                    "safe",
                    "Rest, drink water, and see a doctor if it persists.",
                ),
                ("risky", "Take ten painkillers at once."),
            ],
        ),
    ];
    items
        .iter()
        .enumerate()
        .map(|(i, (principle, prompt, responses))| {
            let mut map = serde_json::Map::new();
            for (name, text) in responses {
                map.insert((*name).to_string(), json!(text));
            }
            json!({"id": format!("r{i}"), "principle": principle, "prompt": prompt, "responses": map})
        })
        .collect()
}

fn check_judgment(names: &[String], scores: &Value, ranking: &Value, context: &str) {
    let scores = scores
        .as_object()
        .unwrap_or_else(|| panic!("{context}: scores {scores}"));
    let scored: Vec<&String> = scores.keys().collect();
    assert_eq!(
        scored,
        names.iter().collect::<Vec<_>>(),
        "{context}: every response scored, in order"
    );
    for (name, score) in scores {
        let s = score.as_f64().unwrap_or(f64::NAN);
        assert!((1.0..=5.0).contains(&s), "{context}: {name} scored {score}");
    }
    let ranked: Vec<String> = serde_json::from_value(ranking.clone()).expect("ranking of names");
    assert_eq!(
        ranked.iter().collect::<BTreeSet<_>>(),
        names.iter().collect::<BTreeSet<_>>(),
        "{context}: ranking {ranked:?} is a permutation of {names:?}"
    );
    assert_eq!(
        ranked.len(),
        names.len(),
        "{context}: no repeats in {ranked:?}"
    );
}

#[test]
fn ra_serve_and_ra_score_and_the_library_against_a_real_llama_cpp_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let setup = setup();
    let mut served = Served::start(&setup, None);

    // 1. `ra score --endpoints-file … --constrain gbnf` on ten requests.
    let input = served.dir.join("requests.jsonl");
    let output = served.dir.join("results.jsonl");
    let reqs = requests();
    let mut file = std::fs::File::create(&input).expect("input");
    for r in &reqs {
        writeln!(file, "{r}").expect("write input");
    }
    drop(file);
    let started = Instant::now();
    let run = Command::new(&setup.ra)
        .arg("score")
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--endpoints-file")
        .arg(&served.endpoints_file)
        .args([
            "--constrain",
            "gbnf",
            "--max-tokens",
            &MAX_TOKENS.to_string(),
        ])
        .args(["--concurrency", "2", "--timeout", "240"])
        .env_remove("RA_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run ra score");
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let text = std::fs::read_to_string(&output).expect("results");
    assert_eq!(
        run.status.code(),
        Some(0),
        "ra score failed:\n{stderr}\n{text}\nserver log:\n{}",
        served.log()
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), reqs.len());
    for (i, (line, req)) in lines.iter().zip(&reqs).enumerate() {
        assert_eq!(line["index"], json!(i));
        assert_eq!(line["id"], req["id"]);
        assert_eq!(line["error"], Value::Null, "line {i}: {line}");
        let names: Vec<String> = req["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .cloned()
            .collect();
        check_judgment(
            &names,
            &line["scores"],
            &line["ranking"],
            &format!("ra score line {i}"),
        );
        assert!(line["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0);
    }
    eprintln!(
        "ra score: {} judgments in {:.1} s = {:.2} judgments/s through the real server; {}",
        reqs.len(),
        wall.as_secs_f64(),
        reqs.len() as f64 / wall.as_secs_f64(),
        stderr.trim()
    );

    // 2. The library client against the same server.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = served.client(None).build().expect("client");
        let request = JudgeRequest::new("Prefer the correct answer.", "What is 3 * 3?")
            .response("right", "9")
            .response("wrong", "6");
        let judgment = client.judge(&request).await.expect("judge");
        let names = vec!["right".to_string(), "wrong".to_string()];
        check_judgment(
            &names,
            &json!(judgment.scores),
            &json!(judgment.ranking),
            "library judge",
        );
        assert!(
            !judgment.reasoning.is_empty(),
            "the think block is the reasoning"
        );

        let rewarder = Rewarder::new(client.clone()).normalization(Normalization::Unit);
        let group = rewarder
            .group_rewards(
                "Reward brevity.",
                "Name a fruit.",
                &["Apple.", "An apple, which is a fruit.", "Banana."],
            )
            .await;
        assert!(group.is_ok(), "{:?}", group.error);
        assert_eq!(group.rewards.len(), 3);
        for r in group.to_f64() {
            assert!((0.0..=1.0).contains(&r), "unit reward {r}");
        }

        // A prompt far beyond the context: the server's 400 as a typed error, no retry.
        let huge = "All work and no play makes Jack a dull boy. ".repeat(1200);
        let request = JudgeRequest::new("Be brief.", "Summarise.")
            .response("a", huge.as_str())
            .response("b", "Short.");
        let error = client
            .judge(&request)
            .await
            .expect_err("the prompt cannot fit");
        assert_eq!(error.attempts, 1, "not retried: {error}");
        assert_eq!(error.status(), Some(400), "{error}");
        assert_eq!(error.kind_str(), "context_length", "{error}");
    });

    // 3. SIGTERM to ra-serve leaves no process behind.
    let pids = live_with_marker(&served.marker);
    assert!(
        pids.len() >= 2,
        "ra-serve and the engine carry the marker: {pids:?}"
    );
    let (code, took) = served.stop();
    assert_eq!(
        code,
        Some(0),
        "ra-serve exit after SIGTERM:\n{}",
        served.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !live_with_marker(&served.marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        live_with_marker(&served.marker).is_empty(),
        "left behind: {:?}",
        live_with_marker(&served.marker)
    );
    assert!(
        !served.endpoints_file.exists(),
        "endpoints file removed on shutdown"
    );
    eprintln!("ra-serve stopped in {:.1} s", took.as_secs_f64());
}

#[test]
fn api_key_is_required_and_never_logged() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let setup = setup();
    let key = unique("e2e-secret");
    let mut served = Served::start(&setup, Some(&key));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let request = JudgeRequest::new("Prefer the correct answer.", "What is 1 + 1?")
            .response("right", "2")
            .response("wrong", "3");
        // Without the key: a clear 401, not retried.
        let anonymous = served.client(None).build().expect("client");
        let error = anonymous
            .judge(&request)
            .await
            .expect_err("401 without a key");
        assert_eq!(error.status(), Some(401), "{error}");
        assert_eq!(error.attempts, 1, "a 401 is not retried: {error}");
        assert!(!error.to_string().contains(&key));
        // With it: a judgment.
        let keyed = served.client(Some(&key)).build().expect("client");
        let judgment = keyed.judge(&request).await.expect("judge with the key");
        assert_eq!(judgment.scores.len(), 2);
    });

    // `ra score` takes the key from RA_API_KEY; nothing prints it.
    let input = served.dir.join("one.jsonl");
    std::fs::write(&input, format!("{}\n", requests()[0])).expect("input");
    let run = Command::new(&setup.ra)
        .arg("score")
        .arg("--input")
        .arg(&input)
        .args(["--output", "-"])
        .arg("--endpoints-file")
        .arg(&served.endpoints_file)
        .args([
            "--constrain",
            "gbnf",
            "--max-tokens",
            &MAX_TOKENS.to_string(),
        ])
        .env("RA_API_KEY", &key)
        .env("RA_LOG", "debug")
        .output()
        .expect("ra score");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(&key) && !stderr.contains(&key),
        "ra printed the key"
    );

    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
    let log = served.log();
    assert!(
        log.contains("ready"),
        "ra-serve logged its progress:\n{log}"
    );
    assert!(!log.contains(&key), "the key appears in ra-serve's log");
}
