//! A stand-in for `vllm serve` and `llama-server`, used by `ra-serve`'s tests.
//!
//! It takes the same command line as the real engines (it reads `--host`,
//! `--port`, `--served-model-name`/`--alias` and ignores the rest) and is
//! steered by environment variables, which `ra-serve` passes through:
//!
//! | variable | effect |
//! | --- | --- |
//! | `FAKE_ENGINE_RECORD=PATH` | append one JSON line `{"pid", "argv", "env", "grandchild"}` per start |
//! | `FAKE_ENGINE_REFUSE_SECS=S` | do not listen for S seconds (connection refused) |
//! | `FAKE_ENGINE_LOADING_SECS=S` | then answer `/health` with 503 for S seconds |
//! | `FAKE_ENGINE_CRASH_AFTER_SECS=S` | exit with status 3 S seconds after start |
//! | `FAKE_ENGINE_CRASH_STARTS=N` + `FAKE_ENGINE_STATE=PATH` | crash only during the first N starts (counted in PATH) |
//! | `FAKE_ENGINE_UNHEALTHY_AFTER_SECS=S` | `/health` answers 500 from S seconds after start |
//! | `FAKE_ENGINE_FAULTY_PORT=P` | crash and unhealthiness apply only to the instance on port P |
//! | `FAKE_ENGINE_IGNORE_SIGTERM=1` | ignore SIGTERM (forces the supervisor to SIGKILL) |
//! | `FAKE_ENGINE_GRANDCHILD=group\|session` | spawn a sleeping grandchild, in our process group or in a new session |
//! | `FAKE_ENGINE_SAY=TEXT` | print TEXT on stderr at start (`{key}` is replaced by the API key from the environment) |
//! | `FAKE_ENGINE_MODELS_SHAPE=vllm\|llama` | shape of the `/v1/models` answer |
//! | `FAKE_ENGINE_HITS=PATH` | append one line `PORT PATH` per request served |
//! | `FAKE_ENGINE_COMPLETION=TEXT` | answer `POST /v1/chat/completions` with TEXT as the message |
//!
//! When `VLLM_API_KEY` or `LLAMA_API_KEY` is set, `/v1/models` demands
//! `Authorization: Bearer <key>` like the real servers.

#![warn(clippy::undocumented_unsafe_blocks)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn env_secs(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
}

fn flag_value(args: &[String], names: &[&str]) -> Option<String> {
    args.iter()
        .position(|a| names.contains(&a.as_str()))
        .and_then(|i| args.get(i + 1).cloned())
}

fn api_key() -> Option<String> {
    std::env::var("VLLM_API_KEY")
        .or_else(|_| std::env::var("LLAMA_API_KEY"))
        .ok()
        .filter(|k| !k.is_empty())
}

/// Counts this start in the state file and says whether it should crash.
fn crash_this_start() -> bool {
    let Some(n) = std::env::var("FAKE_ENGINE_CRASH_STARTS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return true;
    };
    let Ok(state) = std::env::var("FAKE_ENGINE_STATE") else {
        return true;
    };
    let prev: u64 = std::fs::read_to_string(&state)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let _ = std::fs::write(&state, format!("{}", prev + 1));
    prev < n
}

fn spawn_grandchild(mode: &str) -> Option<u32> {
    let exe = std::env::current_exe().ok()?;
    let child = std::process::Command::new(exe)
        .arg("--grandchild")
        .arg(mode)
        .stdin(std::process::Stdio::null())
        .spawn()
        .ok()?;
    Some(child.id())
}

fn grandchild_main(mode: &str) -> ! {
    if mode == "session" {
        // SAFETY: setsid has no memory-safety preconditions.
        unsafe {
            libc::setsid();
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Do the fault settings apply to the instance on `port`?
fn faulty(port: &str) -> bool {
    std::env::var("FAKE_ENGINE_FAULTY_PORT").map_or(true, |p| p == port)
}

/// The request line's path and the `Authorization` header, if any; the body
/// (at most 16 MiB) is read and dropped so that closing the socket does not reset it.
fn read_request(stream: &TcpStream) -> Option<(String, Option<String>)> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut auth = None;
    let mut length: u64 = 0;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let _ = std::io::copy(
        &mut std::io::Read::take(&mut reader, length.min(16 << 20)),
        &mut std::io::sink(),
    );
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    Some((path, auth))
}

/// Appends `PORT PATH` to `FAKE_ENGINE_HITS`, so tests can count probes.
fn record_hit(port: &str, path: &str) {
    if let Ok(file) = std::env::var("FAKE_ENGINE_HITS")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
    {
        let _ = f.write_all(format!("{port} {path}\n").as_bytes());
    }
}

fn health(stream: &mut TcpStream, elapsed: Duration, ready_at: Duration, faulty: bool) {
    if elapsed < ready_at {
        respond(stream, "503 Service Unavailable", r#"{"status":"loading"}"#);
    } else if faulty && env_secs("FAKE_ENGINE_UNHEALTHY_AFTER_SECS").is_some_and(|s| elapsed >= s) {
        respond(stream, "500 Internal Server Error", r#"{"status":"error"}"#);
    } else {
        respond(stream, "200 OK", r#"{"status":"ok"}"#);
    }
}

fn models(stream: &mut TcpStream, auth: Option<&str>, loading: bool, name: &str) {
    if let Some(key) = api_key()
        && auth != Some(&format!("Bearer {key}"))
    {
        respond(stream, "401 Unauthorized", r#"{"error":"invalid api key"}"#);
        return;
    }
    if loading {
        respond(stream, "503 Service Unavailable", r#"{"error":"loading"}"#);
        return;
    }
    let body = match std::env::var("FAKE_ENGINE_MODELS_SHAPE").as_deref() {
        Ok("llama") => serde_json::json!({
            "models": [{"name": name, "model": name, "type": "model"}]
        }),
        _ => serde_json::json!({
            "object": "list",
            "data": [{"id": name, "object": "model", "owned_by": "vllm"}]
        }),
    };
    respond(stream, "200 OK", &body.to_string());
}

/// What one instance serves: its start, readiness time, name, port and faults.
struct Instance {
    started: Instant,
    ready_at: Duration,
    name: String,
    port: String,
    faulty: bool,
}

fn handle(mut stream: TcpStream, me: &Instance) {
    let Some((path, auth)) = read_request(&stream) else {
        return;
    };
    record_hit(&me.port, &path);
    let elapsed = me.started.elapsed();
    match path.as_str() {
        "/health" | "/v1/health" => health(&mut stream, elapsed, me.ready_at, me.faulty),
        "/v1/models" | "/models" => models(
            &mut stream,
            auth.as_deref(),
            elapsed < me.ready_at,
            &me.name,
        ),
        "/v1/chat/completions" => match std::env::var("FAKE_ENGINE_COMPLETION") {
            Ok(content) => completion(&mut stream, &content, &me.name),
            Err(_) => respond(&mut stream, "404 Not Found", r#"{"error":"not found"}"#),
        },
        _ => respond(&mut stream, "404 Not Found", r#"{"error":"not found"}"#),
    }
}

/// An OpenAI chat completion whose message is `content`.
fn completion(stream: &mut TcpStream, content: &str, name: &str) {
    let body = serde_json::json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": name,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    });
    respond(stream, "200 OK", &body.to_string());
}

/// Appends this start to `FAKE_ENGINE_RECORD`.
fn record_start(args: &[String], grandchild: Option<u32>) {
    let Ok(path) = std::env::var("FAKE_ENGINE_RECORD") else {
        return;
    };
    let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let line = serde_json::json!({
        "pid": std::process::id(),
        "argv": args,
        "env": env,
        "grandchild": grandchild,
    });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        // One write per line: replicas append to the same file concurrently.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// Exits with status 3 after `FAKE_ENGINE_CRASH_AFTER_SECS`, when asked to.
fn arm_crash(faulty: bool) {
    if let Some(after) = env_secs("FAKE_ENGINE_CRASH_AFTER_SECS")
        && faulty
        && crash_this_start()
    {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            eprintln!("fake engine: crashing as asked");
            std::process::exit(3);
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--grandchild") {
        grandchild_main(args.get(2).map(String::as_str).unwrap_or("group"));
    }
    let started = Instant::now();
    if std::env::var("FAKE_ENGINE_IGNORE_SIGTERM").as_deref() == Ok("1") {
        // SAFETY: installing SIG_IGN has no memory-safety preconditions.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
    let grandchild = std::env::var("FAKE_ENGINE_GRANDCHILD")
        .ok()
        .and_then(|mode| spawn_grandchild(&mode));
    record_start(&args, grandchild);
    if let Ok(say) = std::env::var("FAKE_ENGINE_SAY") {
        eprintln!("{}", say.replace("{key}", &api_key().unwrap_or_default()));
    }
    let host = flag_value(&args, &["--host"]).unwrap_or_else(|| "127.0.0.1".into());
    let port = flag_value(&args, &["--port"]).unwrap_or_else(|| "8000".into());
    let name = flag_value(&args, &["--served-model-name", "--alias"])
        .or_else(|| flag_value(&args, &["serve", "-m"]))
        .unwrap_or_else(|| "fake".into());
    println!(
        "fake engine pid {} starting on {host}:{port} as {name}",
        std::process::id()
    );
    let faulty = faulty(&port);
    arm_crash(faulty);
    if let Some(refuse) = env_secs("FAKE_ENGINE_REFUSE_SECS") {
        std::thread::sleep(refuse);
    }
    let ready_at = started.elapsed() + env_secs("FAKE_ENGINE_LOADING_SECS").unwrap_or_default();
    let listener = match TcpListener::bind(format!("{host}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "ERROR: [Errno 98] error while attempting to bind on address ({host}, {port}): {e}"
            );
            std::process::exit(1);
        }
    };
    println!("fake engine listening");
    let me = std::sync::Arc::new(Instance {
        started,
        ready_at,
        name,
        port,
        faulty,
    });
    for stream in listener.incoming().flatten() {
        let me = std::sync::Arc::clone(&me);
        std::thread::spawn(move || handle(stream, &me));
    }
}
