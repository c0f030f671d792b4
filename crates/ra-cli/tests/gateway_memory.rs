//! `ra gateway`'s peak resident memory (VmHWM of the real binary) under two attacks of
//! issue 16: one `/get_reward` call of thousands of rollouts with a large configured
//! principle, and a burst of huge upstream answers. Before the fix the first peaked at
//! about 110 KB per rollout (every rollout copied the principle, and all were judged at
//! once) and the second at one answer per request in flight; the bounds below leave wide
//! headroom over the fixed figures and sit far under the old ones.

mod common;

use std::time::Duration;

use common::{ChildGuard, Mock, gateway_command, runtime, s, spawn_gateway, wait_healthy};
use ra_mock::{Fault, Latency, MockServer};
use serde_json::{Value, json};

/// `VmHWM` (peak) and `VmRSS` (now) of a process, in MiB.
fn memory(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} not in /proc/{pid}/status"))
            / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn gateway(mock: &Mock, dir: &std::path::Path, extra: &[&str]) -> (ChildGuard, String) {
    let outputs = dir.join("outputs");
    let url = mock.url();
    let mut args = vec![
        "--endpoint",
        &url,
        "--base-output-path",
        s(&outputs),
        "--max-retries",
        "0",
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.into_iter().map(str::to_string).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_gateway(gateway_command(&args))
}

/// 5,000 rollouts with a 50 KB `--principle-file`: before, every rollout held its own
/// copy of the principle and all 5,000 were judged at once (about 550 MB); now the
/// principle is shared and a window of rollouts is judged at a time.
#[test]
fn get_reward_with_a_large_principle_file_stays_small() {
    const ROLLOUTS: usize = 5_000;
    const BOUND_MIB: u64 = 200;
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let principle = dir.path().join("principle.txt");
    let text = "Prefer answers that are correct, concise and kind. ".repeat(1000);
    std::fs::write(&principle, &text[..50_000]).expect("write principle");
    let (mut child, base) = gateway(&mock, dir.path(), &["--principle-file", s(&principle)]);
    let rt = runtime();
    let http = reqwest::Client::new();
    let query: Vec<String> = (0..ROLLOUTS)
        .map(|i| {
            format!(
                "<|im_start|>user\nWhat is {i} + {i}?<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>",
                2 * i
            )
        })
        .collect();
    let (status, answer) = rt.block_on(async {
        wait_healthy(&http, &base, &mut child).await;
        let r = http
            .post(format!("{base}/get_reward"))
            .json(&json!({ "query": query }))
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .expect("get_reward answered");
        (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
    });
    assert_eq!(status, 200, "{answer}");
    let failed = answer["extra_logs"]["ra_failed"]
        .as_array()
        .expect("ra_failed");
    assert_eq!(failed.len(), ROLLOUTS);
    assert!(
        failed.iter().all(|f| f.as_f64() == Some(0.0)),
        "every rollout is judged"
    );
    assert_eq!(mock.chat_requests(), ROLLOUTS as u64);
    let (peak, _) = memory(child.pid());
    eprintln!("/get_reward, {ROLLOUTS} rollouts, 50 KB principle: peak RSS {peak} MiB");
    assert!(peak < BOUND_MIB, "peak RSS {peak} MiB over {BOUND_MIB} MiB");
}

/// 128 judgments at once whose upstream answers are 8 MiB each (the default
/// `max_response_bytes`): before, each request in flight buffered its whole answer (about
/// 1 GiB); now the client's answer budget (64 MiB) holds them.
#[test]
fn a_burst_of_huge_upstream_answers_stays_within_the_answer_budget() {
    const CALLS: usize = 128;
    const BOUND_MIB: u64 = 300;
    let mock =
        Mock::start(MockServer::builder().latency(Latency::Fixed(Duration::from_millis(300))));
    mock.handle()
        .set_forced_fault(Some(Fault::HugeBody { bytes: 8 << 20 }));
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, base) = gateway(&mock, dir.path(), &[]);
    let rt = runtime();
    let http = reqwest::Client::new();
    let statuses: Vec<(u16, Value)> = rt.block_on(async {
        wait_healthy(&http, &base, &mut child).await;
        let calls = (0..CALLS).map(|i| {
            let body = json!({
                "principle": "Prefer correct answers.",
                "prompt": format!("Question {i}"),
                "responses": {"a": "yes", "b": "no"},
            });
            let http = http.clone();
            let url = format!("{base}/api/rewardanything");
            async move {
                let r = http
                    .post(url)
                    .json(&body)
                    .timeout(Duration::from_secs(600))
                    .send()
                    .await
                    .expect("answered");
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        });
        futures::future::join_all(calls).await
    });
    // Each answer is cut short (a chat completion that never closes): every call fails
    // cleanly with the upstream's bad answer, none hangs or is lost.
    for (status, body) in &statuses {
        assert_eq!(*status, 502, "{body}");
    }
    assert_eq!(mock.chat_requests(), CALLS as u64);
    let (peak, now) = memory(child.pid());
    eprintln!("{CALLS} x 8 MiB answers: peak RSS {peak} MiB, {now} MiB right after");
    assert!(peak < BOUND_MIB, "peak RSS {peak} MiB over {BOUND_MIB} MiB");
}
