//! Client throughput, CPU per judgment and memory against the `ra-mock` binary running as a
//! separate process (so its CPU and memory are not counted), per issue 3's performance
//! section.
//!
//! ```text
//! cargo build --release -p ra-mock
//! cargo bench -p rewardanything-client --bench client_throughput              # all three scenarios, median of 3
//! cargo bench -p rewardanything-client --bench client_throughput -- --requests 20000 --latency-ms 200 --capacity 256
//! cargo bench -p rewardanything-client --bench client_throughput -- --requests 100000 --stream
//! ```
//!
//! Options: `--requests N` (20000), `--latency-ms L` (0), `--latency-jitter-ms J` (0: the
//! mock holds each request uniformly in `[L-J, L+J]`), `--capacity C` (0 = unlimited),
//! `--concurrency K` (256), `--think-bytes B` (1800: answers of ~2 KB), `--response-chars R`
//! (500), `--threads T` (client runtime workers, default: one per core), `--stream` (label
//! the run as the 100k streaming one; requests are always produced lazily), `--runs N`
//! (repeat in fresh processes and print medians), `--all` (the three scenarios of the issue).
//! The mock binary is `$RA_MOCK_BIN`, else `target/release/ra-mock`.
//!
//! Figures: judgments/s; % of capacity (`min(capacity, concurrency) / latency`); client
//! CPU µs per judgment (`getrusage(RUSAGE_SELF)` user+sys delta over the measured run ÷
//! judgments); peak RSS (`VmHWM`; `ru_maxrss` would include cargo's, see
//! [`peak_rss_mb`]). Each run is its own process so the peak RSS is its own.
//! Run without `--bench` (as `cargo test --benches` does), it only checks its arguments and exits.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rewardanything_client::{Client, JudgeRequest};

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Options {
    requests: usize,
    latency_ms: u64,
    jitter_ms: u64,
    capacity: usize,
    concurrency: usize,
    think_bytes: usize,
    response_chars: usize,
    threads: Option<usize>,
    stream: bool,
    runs: usize,
    all: bool,
    stages: bool,
    raw: bool,
    spawn: bool,
    bench: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            requests: 20_000,
            latency_ms: 0,
            jitter_ms: 0,
            capacity: 0,
            concurrency: 256,
            think_bytes: 1800,
            response_chars: 500,
            threads: None,
            stream: false,
            runs: 1,
            all: false,
            stages: false,
            raw: false,
            spawn: false,
            bench: false,
        }
    }
}

fn parse_args() -> Result<Options, BoxError> {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    let mut explicit = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<String, BoxError> {
            args.next()
                .ok_or_else(|| format!("{name} needs a value").into())
        };
        match arg.as_str() {
            // cargo bench passes --bench; cargo test --benches does not.
            "--bench" => o.bench = true,
            "--requests" => o.requests = value("--requests")?.parse()?,
            "--latency-ms" => o.latency_ms = value("--latency-ms")?.parse()?,
            "--latency-jitter-ms" => o.jitter_ms = value("--latency-jitter-ms")?.parse()?,
            "--capacity" => o.capacity = value("--capacity")?.parse()?,
            "--concurrency" => o.concurrency = value("--concurrency")?.parse()?,
            "--think-bytes" => o.think_bytes = value("--think-bytes")?.parse()?,
            "--response-chars" => o.response_chars = value("--response-chars")?.parse()?,
            "--threads" => o.threads = Some(value("--threads")?.parse()?),
            "--runs" => o.runs = value("--runs")?.parse::<usize>()?.max(1),
            "--stream" => o.stream = true,
            "--all" => o.all = true,
            "--stages" => o.stages = true,
            "--raw" => o.raw = true,
            "--spawn" => o.spawn = true,
            // A filter cargo may pass through; this bench has a single body.
            other if !other.starts_with("--") => {}
            other => return Err(format!("unknown option {other}").into()),
        }
        if arg != "--bench" {
            explicit = true;
        }
    }
    if !explicit {
        o.all = true;
        o.runs = 3;
    }
    Ok(o)
}

/// One measured run's figures, as the child prints them on its `RESULT` line.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    judgments: f64,
    errors: f64,
    secs: f64,
    per_sec: f64,
    steady_per_sec: f64,
    cpu_us: f64,
    user_us: f64,
    sys_us: f64,
    peak_rss_mb: f64,
    start_rss_mb: f64,
}

impl Figures {
    fn to_line(self) -> String {
        format!(
            "RESULT judgments={} errors={} secs={} per_sec={} steady_per_sec={} cpu_us={} user_us={} sys_us={} peak_rss_mb={} start_rss_mb={}",
            self.judgments,
            self.errors,
            self.secs,
            self.per_sec,
            self.steady_per_sec,
            self.cpu_us,
            self.user_us,
            self.sys_us,
            self.peak_rss_mb,
            self.start_rss_mb
        )
    }

    fn from_line(line: &str) -> Option<Figures> {
        let mut f = Figures::default();
        for kv in line.strip_prefix("RESULT ")?.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: f64 = v.parse().ok()?;
            match k {
                "judgments" => f.judgments = v,
                "errors" => f.errors = v,
                "secs" => f.secs = v,
                "per_sec" => f.per_sec = v,
                "steady_per_sec" => f.steady_per_sec = v,
                "cpu_us" => f.cpu_us = v,
                "user_us" => f.user_us = v,
                "sys_us" => f.sys_us = v,
                "peak_rss_mb" => f.peak_rss_mb = v,
                "start_rss_mb" => f.start_rss_mb = v,
                _ => {}
            }
        }
        Some(f)
    }
}

struct Usage {
    user: Duration,
    sys: Duration,
    /// Kept for comparison only (see [`peak_rss_mb`]).
    max_rss_kb: i64,
}

fn rusage() -> Usage {
    // SAFETY: getrusage only writes the struct we pass; a zeroed rusage is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Usage {
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        max_rss_kb: ru.ru_maxrss,
    }
}

/// The mock process; killed and reaped on drop, and it exits by itself when our end of
/// its stdin closes (`--exit-on-stdin-eof`), so it never outlives the bench.
struct Mock {
    child: Child,
    base_url: String,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mock_binary() -> PathBuf {
    match std::env::var_os("RA_MOCK_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/ra-mock"),
    }
}

fn start_mock(o: &Options) -> Result<Mock, BoxError> {
    let bin = mock_binary();
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release -p ra-mock` or set RA_MOCK_BIN",
            bin.display()
        )
        .into());
    }
    let mut child = Command::new(&bin)
        .args(["--port", "0", "--exit-on-stdin-eof"])
        .args(["--latency-ms", &o.latency_ms.to_string()])
        .args(["--latency-jitter-ms", &o.jitter_ms.to_string()])
        .args(["--capacity", &o.capacity.to_string()])
        .args(["--think-bytes", &o.think_bytes.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut mock = Mock {
        child,
        base_url: String::new(),
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    mock.base_url = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected first line from ra-mock: {line:?}"))?
        .to_owned();
    Ok(mock)
}

/// A pool of distinct ~`chars`-byte response texts with the scores the mock gives them.
fn text_pool(chars: usize) -> Vec<(String, f64)> {
    const WORDS: [&str; 8] = [
        "the", "answer", "explains", "why", "bridges", "carry", "load", "safely",
    ];
    (0..64)
        .map(|i| {
            let mut t = format!("Response {i}: ");
            let mut k = i;
            while t.len() < chars {
                t.push_str(WORDS[k % WORDS.len()]);
                t.push(' ');
                k = k.wrapping_mul(31).wrapping_add(7);
            }
            let score = f64::from(ra_mock::expected_score(&t));
            (t, score)
        })
        .collect()
}

fn pool_index(i: usize, j: usize) -> usize {
    (i.wrapping_mul(7) + j * 13) % 64
}

fn make_request(pool: &[(String, f64)], i: usize) -> JudgeRequest {
    let mut r = JudgeRequest::new(
        "Prefer the response that explains its reasoning clearly and correctly.",
        format!("Question {i}: why do bridges not fall down?"),
    );
    for (j, name) in ["a", "b", "c", "d"].iter().enumerate() {
        r = r.response(*name, pool[pool_index(i, j)].0.clone());
    }
    r
}

/// A `/proc/self/status` memory line (`VmRSS`, `VmHWM`) in MB.
fn proc_status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The resident set now.
fn rss_now_mb() -> f64 {
    proc_status_mb("VmRSS")
}

/// The peak resident set of this process image. `ru_maxrss` is not used for this: Linux
/// carries it over `execve` from the parent's image at fork, so under `cargo bench` it
/// reports cargo's own ~70 MB.
fn peak_rss_mb() -> f64 {
    proc_status_mb("VmHWM")
}

async fn measured_run(o: &Options) -> Result<Figures, BoxError> {
    let verbose = std::env::var_os("BENCH_VERBOSE").is_some();
    if verbose {
        eprintln!("rss at start {:.1} MB", rss_now_mb());
    }
    let mock = start_mock(o)?;
    let client = Client::builder()
        .endpoint(mock.base_url.clone())
        .max_in_flight(o.concurrency)
        .build()?;
    let pool = std::sync::Arc::new(text_pool(o.response_chars));

    // Warm-up: open the connections, fill allocator caches; not measured.
    let warm = o.concurrency * 2;
    let p = pool.clone();
    let mut s = client.judge_many((0..warm).map(move |i| make_request(&p, i)));
    while let Some((_, r)) = s.next().await {
        r?;
    }
    drop(s);
    if verbose {
        eprintln!(
            "rss after warm-up {:.1} MB (peak {:.1} MB, ru_maxrss {:.1} MB)",
            rss_now_mb(),
            peak_rss_mb(),
            rusage().max_rss_kb as f64 / 1024.0
        );
    }

    let start_rss_mb = peak_rss_mb();
    let before = rusage();
    let started = Instant::now();
    // A lazy iterator: requests are built as the client pulls them, never held in a Vec.
    let p = pool.clone();
    let mut results = client.judge_many((0..o.requests).map(move |i| make_request(&p, i)));
    let (mut ok, mut errors, mut wrong) = (0u64, 0u64, 0u64);
    let mut samples = Vec::new();
    let every = (o.requests / 10).max(1);
    // Completion times, for the steady-state rate (the ramp-up and the drain of the last
    // partial round are not the client's throughput). 4 bytes per request.
    // Not kept in the streaming run, whose point is flat memory.
    let mut done_at: Vec<f32> = Vec::with_capacity(if o.stream { 0 } else { o.requests });
    while let Some((i, r)) = results.next().await {
        if !o.stream {
            done_at.push(started.elapsed().as_secs_f32());
        }
        if ((ok + errors) as usize).is_multiple_of(every) {
            samples.push(rss_now_mb());
        }
        match r {
            Ok(j) => {
                ok += 1;
                // Attribution check: the scores must be this request's.
                let right = j
                    .scores
                    .values()
                    .enumerate()
                    .all(|(k, s)| *s == pool[pool_index(i, k)].1);
                if !right || j.scores.len() != 4 {
                    wrong += 1;
                }
            }
            Err(e) => {
                if errors < 3 {
                    eprintln!("request {i}: {e}");
                }
                errors += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let after = rusage();
    // Rate between the 10th and the 90th percentile of completion times.
    let steady_per_sec = {
        let (lo, hi) = (done_at.len() / 10, done_at.len() * 9 / 10);
        let span = f64::from(done_at.get(hi).copied().unwrap_or(0.0))
            - f64::from(done_at.get(lo).copied().unwrap_or(0.0));
        if span > 0.0 {
            (hi - lo) as f64 / span
        } else {
            f64::NAN
        }
    };
    if verbose || o.stream {
        let s: Vec<String> = samples.iter().map(|m| format!("{m:.1}")).collect();
        eprintln!(
            "RSS (MB) at each tenth of the run: {}; at the end {:.1}",
            s.join(" "),
            rss_now_mb()
        );
    }
    if wrong > 0 {
        return Err(format!("{wrong} judgments carried another request's scores").into());
    }
    let user = (after.user - before.user).as_secs_f64() * 1e6;
    let sys = (after.sys - before.sys).as_secs_f64() * 1e6;
    let n = ok as f64;
    drop(mock);
    Ok(Figures {
        judgments: n,
        errors: errors as f64,
        secs,
        per_sec: n / secs,
        steady_per_sec,
        cpu_us: (user + sys) / n.max(1.0),
        user_us: user / n.max(1.0),
        sys_us: sys / n.max(1.0),
        peak_rss_mb: peak_rss_mb(),
        start_rss_mb,
    })
}

fn child_args(o: &Options) -> Vec<String> {
    let mut a = vec![
        "--bench".to_string(),
        "--requests".into(),
        o.requests.to_string(),
        "--latency-ms".into(),
        o.latency_ms.to_string(),
        "--latency-jitter-ms".into(),
        o.jitter_ms.to_string(),
        "--capacity".into(),
        o.capacity.to_string(),
        "--concurrency".into(),
        o.concurrency.to_string(),
        "--think-bytes".into(),
        o.think_bytes.to_string(),
        "--response-chars".into(),
        o.response_chars.to_string(),
    ];
    if let Some(t) = o.threads {
        a.extend(["--threads".into(), t.to_string()]);
    }
    if o.stream {
        a.push("--stream".into());
    }
    if o.raw {
        a.push("--raw".into());
    }
    if o.spawn {
        a.push("--spawn".into());
    }
    a
}

/// Runs one scenario `runs` times, each in a fresh process, and returns the figures.
fn run_children(o: &Options) -> Result<Vec<Figures>, BoxError> {
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for _ in 0..o.runs {
        let output = Command::new(&exe)
            .args(child_args(o))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let figures = text
            .lines()
            .find_map(Figures::from_line)
            .ok_or_else(|| format!("run failed ({}): {text}", output.status))?;
        out.push(figures);
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(label: &str, o: &Options, runs: &[Figures]) {
    let m = |f: fn(&Figures) -> f64| median(runs.iter().map(f).collect());
    let capacity = if o.latency_ms > 0 {
        let slots = if o.capacity == 0 {
            o.concurrency
        } else {
            o.capacity.min(o.concurrency)
        };
        Some(slots as f64 * 1000.0 / o.latency_ms as f64)
    } else {
        None
    };
    println!(
        "{label}: {} requests, concurrency {}, latency {} ± {} ms, capacity {}, answers ~{} B, {} run(s), medians:",
        o.requests,
        o.concurrency,
        o.latency_ms,
        o.jitter_ms,
        if o.capacity == 0 {
            "unlimited".to_string()
        } else {
            o.capacity.to_string()
        },
        o.think_bytes + 200,
        runs.len()
    );
    let per_sec = m(|f| f.per_sec);
    let steady = m(|f| f.steady_per_sec);
    match capacity {
        Some(c) => println!(
            "  throughput      {per_sec:>10.0} judgments/s  ({:.2}% of {c:.0}/s); steady state {steady:.0}/s ({:.2}%)",
            100.0 * per_sec / c,
            100.0 * steady / c
        ),
        None => {
            println!("  throughput      {per_sec:>10.0} judgments/s; steady state {steady:.0}/s")
        }
    }
    println!(
        "  client CPU      {:>10.1} µs/judgment  (user {:.1}, sys {:.1})",
        m(|f| f.cpu_us),
        m(|f| f.user_us),
        m(|f| f.sys_us)
    );
    println!(
        "  peak RSS        {:>10.1} MB  (after warm-up {:.1} MB)",
        m(|f| f.peak_rss_mb),
        m(|f| f.start_rss_mb)
    );
    println!(
        "  errors          {:>10.0}    wall {:.2} s",
        m(|f| f.errors),
        m(|f| f.secs)
    );
    if runs.len() > 1 {
        let each: Vec<String> = runs
            .iter()
            .map(|f| {
                format!(
                    "{:.0}/s {:.1}µs {:.1}MB",
                    f.per_sec, f.cpu_us, f.peak_rss_mb
                )
            })
            .collect();
        println!("  runs            {}", each.join(" | "));
    }
}

/// Times the client's per-judgment CPU stages one by one on a single thread, by
/// re-doing what `Client::judge` does outside the HTTP stack: render, content hash,
/// body serialization, response decoding, parsing. What remains of the measured CPU per
/// judgment is the HTTP stack, the runtime and the kernel.
async fn stages(o: &Options) -> Result<(), BoxError> {
    use rewardanything_client::{Completion, parse_completion};
    use rewardanything_client::{Masking, render};
    use rewardanything_client::{Message, content_hash};

    #[derive(serde::Serialize)]
    struct ChatBody<'a> {
        model: &'a str,
        messages: &'a [Message],
        temperature: f64,
        max_tokens: u32,
    }
    #[derive(serde::Deserialize)]
    struct ChatResponse {
        choices: Vec<Choice>,
    }
    #[derive(serde::Deserialize)]
    struct Choice {
        message: ChoiceMessage,
        finish_reason: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ChoiceMessage {
        content: Option<String>,
        reasoning: Option<String>,
    }

    let mock = start_mock(o)?;
    let pool = text_pool(o.response_chars);
    let request = make_request(&pool, 1);
    let rendered = render(&request, Masking::Reference);
    let body = |m: &[Message]| {
        serde_json::to_vec(&ChatBody {
            model: ra_mock::DEFAULT_MODEL,
            messages: m,
            temperature: 0.0,
            max_tokens: 4096,
        })
    };
    let answer = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url))
        .header("content-type", "application/json")
        .body(body(&rendered.messages)?)
        .send()
        .await?
        .bytes()
        .await?;
    println!(
        "request body {} B, answer body {} B",
        body(&rendered.messages)?.len(),
        answer.len()
    );
    let n = 20_000u32;
    let time = |label: &str, f: &mut dyn FnMut() -> usize| {
        let before = rusage();
        let mut sink = 0usize;
        for _ in 0..n {
            sink = sink.wrapping_add(f());
        }
        let after = rusage();
        let us = ((after.user + after.sys) - (before.user + before.sys)).as_secs_f64() * 1e6;
        println!("  {label:<34} {:>7.2} µs  ({sink})", us / f64::from(n));
    };
    time("clone JudgeRequest (caller side)", &mut || {
        std::hint::black_box(request.clone()).responses.len()
    });
    time("render (Reference masking)", &mut || {
        render(std::hint::black_box(&request), Masking::Reference)
            .messages
            .len()
    });
    time("content_hash", &mut || {
        content_hash(std::hint::black_box(&request)) as usize & 1
    });
    time("serialize body", &mut || {
        body(&rendered.messages).map_or(0, |b| b.len())
    });
    time("body.to_vec() copy per attempt", &mut || {
        let b = body(&rendered.messages).unwrap_or_default();
        std::hint::black_box(b.to_vec()).len()
    });
    time("decode chat completion JSON", &mut || {
        serde_json::from_slice::<ChatResponse>(std::hint::black_box(&answer))
            .map_or(0, |r| r.choices.len())
    });
    let decoded: ChatResponse = serde_json::from_slice(&answer)?;
    let msg = &decoded.choices[0].message;
    let completion = Completion {
        content: msg.content.as_deref().unwrap_or_default(),
        reasoning: msg.reasoning.as_deref(),
        finish_reason: decoded.choices[0].finish_reason.as_deref(),
    };
    time("parse_completion + unmask", &mut || {
        parse_completion(
            std::hint::black_box(&completion),
            rendered.masked2real.as_ref(),
        )
        .map_or(0, |j| j.scores.len())
    });
    drop(mock);
    Ok(())
}

/// The transport floor: the same requests through a bare `reqwest::Client` (one
/// pre-serialized body, answer bytes read and dropped, no render, no parse), with the
/// same concurrency, runtime and mock. The client's CPU per judgment minus this is what
/// the client adds on top of reqwest.
async fn raw_run(o: &Options) -> Result<Figures, BoxError> {
    let mock = start_mock(o)?;
    let pool = text_pool(o.response_chars);
    let rendered = rewardanything_client::render(
        &make_request(&pool, 1),
        rewardanything_client::Masking::Reference,
    );
    let body = bytes_body(&rendered.messages)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .tcp_nodelay(true)
        .build()?;
    let url = reqwest::Url::parse(&format!("{}/chat/completions", mock.base_url))?;
    let one = |http: reqwest::Client, url: reqwest::Url, body: Vec<u8>| async move {
        let r = http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let ok = r.status().is_success();
        let b = r.bytes().await?;
        Ok::<bool, reqwest::Error>(ok && !b.is_empty())
    };
    let run = |n: usize| {
        futures::stream::iter(0..n)
            .map(|_| one(http.clone(), url.clone(), body.clone()))
            .buffer_unordered(o.concurrency)
            .fold(0u64, |acc, r| async move {
                acc + u64::from(matches!(r, Ok(true)))
            })
    };
    run(o.concurrency * 2).await;
    let before = rusage();
    let started = Instant::now();
    let ok = run(o.requests).await;
    let secs = started.elapsed().as_secs_f64();
    let after = rusage();
    let user = (after.user - before.user).as_secs_f64() * 1e6;
    let sys = (after.sys - before.sys).as_secs_f64() * 1e6;
    let n = ok as f64;
    drop(mock);
    Ok(Figures {
        judgments: n,
        errors: (o.requests as u64 - ok) as f64,
        secs,
        per_sec: n / secs,
        steady_per_sec: f64::NAN,
        cpu_us: (user + sys) / n.max(1.0),
        user_us: user / n.max(1.0),
        sys_us: sys / n.max(1.0),
        peak_rss_mb: peak_rss_mb(),
        start_rss_mb: f64::NAN,
    })
}

fn bytes_body(messages: &[rewardanything_client::Message]) -> Result<Vec<u8>, BoxError> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "model": ra_mock::DEFAULT_MODEL,
        "messages": messages,
        "temperature": 0.0,
        "max_tokens": 4096,
    }))?)
}

fn main() -> Result<(), BoxError> {
    let o = parse_args()?;
    if !o.bench {
        println!("client_throughput: run with `cargo bench` (skipped under `cargo test`)");
        return Ok(());
    }
    if o.all {
        let scenarios = [
            (
                "instant mock",
                Options {
                    latency_ms: 0,
                    capacity: 0,
                    ..o.clone()
                },
            ),
            (
                "200 ms mock, 256 slots",
                Options {
                    latency_ms: 200,
                    capacity: 256,
                    // Whole rounds of 256: with a fixed latency the slots move in lockstep,
                    // so 20,000 requests would end on a round of 32 and cap the overall
                    // rate at 98.9% whatever the client does.
                    requests: o.requests.div_ceil(o.concurrency.max(1)) * o.concurrency.max(1),
                    ..o.clone()
                },
            ),
            (
                "streaming 100k (instant mock)",
                Options {
                    requests: 100_000,
                    latency_ms: 0,
                    capacity: 0,
                    stream: true,
                    runs: 1,
                    ..o.clone()
                },
            ),
        ];
        for (label, s) in scenarios {
            let runs = run_children(&s)?;
            report(label, &s, &runs);
        }
        return Ok(());
    }
    if o.stages {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(stages(&o));
    }
    if o.runs > 1 {
        let runs = run_children(&o)?;
        report("custom", &o, &runs);
        return Ok(());
    }
    // `--threads 0`: a current-thread runtime (no cross-thread wake-ups at all).
    let mut rt = match o.threads {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    if let Some(t) = o.threads.filter(|&t| t > 0) {
        rt.worker_threads(t);
    }
    let rt = rt.build()?;
    let figures = if o.raw {
        rt.block_on(raw_run(&o))?
    } else if o.spawn {
        // The consumer as a runtime task, as in a server, rather than on the block_on thread.
        let task = o.clone();
        rt.block_on(async move { tokio::spawn(async move { measured_run(&task).await }).await })??
    } else {
        rt.block_on(measured_run(&o))?
    };
    println!("{}", figures.to_line());
    let label = match (o.raw, o.stream) {
        (true, _) => "bare reqwest",
        (false, true) => "streaming",
        (false, false) => "run",
    };
    report(label, &o, &[figures]);
    Ok(())
}
