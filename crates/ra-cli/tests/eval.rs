//! `ra eval` end to end: the real binary against the in-process mock, whose scores are
//! known (`score=K` markers), so every figure can be computed by hand.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Mock, complete_lines, ra, s, spawn_ra, wait_until};
use ra_mock::{Latency, MockServer};
use serde_json::{Value, json};

/// Five RM-Bench items (the published schema; our own texts). Scores by hand:
/// math   chosen [3,3,4] rejected [2,2,3]: rows [TTF],[TTF],[TTT]
/// chat   chosen [4,4,4] rejected [1,2,4]: rows [TTF] x3 (4 vs 4 is a tie: not a win)
/// code   chosen [2,2,2] rejected [2,1,3]: rows [FTF] x3
/// safety chosen [5,5,5] rejected [1,1,2]: all T
/// writing: no RM-Bench domain, dropped.
fn rm_bench_items(prompt_extra: &str) -> Value {
    let item = |id: u32, domain: &str, c: [u8; 3], r: [u8; 3]| {
        json!({
            "id": id,
            "prompt": format!("question {id}{prompt_extra}"),
            "chosen": [format!("concise good score={}", c[0]), format!("detailed good score={}", c[1]), format!("**markdown good** score={}", c[2])],
            "rejected": [format!("concise bad score={}", r[0]), format!("detailed bad score={}", r[1]), format!("**markdown bad** score={}", r[2])],
            "domain": domain,
            "subset": "test",
        })
    };
    json!([
        item(1, "math-prm", [3, 3, 4], [2, 2, 3]),
        item(2, "chat", [4, 4, 4], [1, 2, 4]),
        item(3, "code-python", [2, 2, 2], [2, 1, 3]),
        item(4, "safety-refuse", [5, 5, 5], [1, 1, 2]),
        item(5, "writing", [5, 5, 5], [1, 1, 1]),
    ])
}

/// The hand-computed RM-Bench dict of [`rm_bench_items`] (see the matrices above; each
/// domain holds one item, so a cell is 0 or 1).
fn expected_rm_bench() -> Vec<(&'static str, f64)> {
    let (chat, math, code, safety) = (2.0 / 3.0, 7.0 / 9.0, 1.0 / 3.0, 1.0);
    vec![
        ("chat", chat),
        ("math", math),
        ("code", code),
        ("safety", safety),
        ("hard_acc", (1.0 / 3.0 + 1.0 / 3.0 + 1.0 / 3.0 + 1.0) / 4.0),
        ("normal_acc", (2.0 / 3.0 + 1.0 + 1.0 / 3.0 + 1.0) / 4.0),
        ("easy_acc", (1.0 + 1.0 + 1.0 / 3.0 + 1.0) / 4.0),
        ("total_avg_acc", (chat + math + code + safety) / 4.0),
    ]
}

fn write_json(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p.to_str().unwrap().to_string()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).expect("summary.json"))
        .expect("summary is JSON")
}

fn eval(mock: &Mock, args: &[&str]) -> common::Run {
    let url = mock.url();
    let mut all = vec!["eval", "--endpoint", url.as_str()];
    all.extend_from_slice(args);
    ra(&all, b"")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn assert_rm_bench(got: &Value, want: &[(&str, f64)]) {
    let obj = got.as_object().expect("rm_bench object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let want_keys: Vec<&str> = want.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys, want_keys,
        "exactly compute_accuracy's keys, in its order"
    );
    for (k, v) in want {
        let g = obj[*k].as_f64().unwrap();
        assert!(close(g, *v), "{k}: {g} vs {v}");
    }
}

#[test]
fn rm_bench_figures_equal_the_hand_computed_matrix_in_both_modes() {
    let mock = Mock::start(MockServer::builder());
    let dir = tempfile::tempdir().unwrap();
    let input = write_json(dir.path(), "total_dataset.json", &rm_bench_items(""));
    for mode in ["pairwise", "listwise"] {
        let out = dir.path().join(mode);
        let run = eval(
            &mock,
            &[
                "--format",
                "rm-bench",
                "--input",
                &input,
                "--output",
                s(&out),
                "--mode",
                mode,
            ],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let sum = summary(&out);
        assert_rm_bench(&sum["rm_bench"], &expected_rm_bench());
        assert_eq!(sum["rm_bench_detail"]["unmatched_domain_items"], 1);
        assert_eq!(
            sum["rm_bench_detail"]["domains"]["chat"]["counts"],
            json!([[1, 1, 0], [1, 1, 0], [1, 1, 0]])
        );
        assert_eq!(sum["items"], 5);
        let units = if mode == "pairwise" { 45 } else { 5 };
        assert_eq!(sum["units"], units);
        assert_eq!(complete_lines(&out.join("results.jsonl")), units as usize);
        assert!(sum.get("rm_bench_ensemble").is_none(), "K = 1 only");
        // The table on stdout.
        let table = run.stdout_str();
        assert!(
            table.contains("hard_acc") && table.contains("total_avg_acc"),
            "{table}"
        );
        assert!(
            table.contains(&format!("{:.2}", 25.0 / 36.0 * 100.0)),
            "{table}"
        );
        // A self-contained page: inline SVG, nothing fetched.
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("<svg") && html.contains("<table>"));
        assert_report_reads_alone(&html);
        // Items per domain, and the 4 items of known domains behind the pooled rows.
        for (row, items) in [
            ("chat", 1),
            ("math", 1),
            ("hard_acc", 4),
            ("total_avg_acc", 4),
        ] {
            assert!(
                html.contains(&format!("<tr><td>{row}</td><td>{items}</td>")),
                "{row}: {html}"
            );
        }
        assert!(
            html.contains("1 item(s) whose domain starts with none of"),
            "{html}"
        );
        for forbidden in ["src=", "href=", "<script", "url(", "@import"] {
            assert!(
                !html.contains(forbidden),
                "report fetches something: {forbidden}"
            );
        }
    }
    // Every model-facing name is masked: no "chosen"/"rejected" reaches the server.
    for a in mock.handle().attempts() {
        let p = a.prompt.unwrap_or_default();
        assert!(!p.contains("chosen_") && !p.contains("rejected_"), "{p}");
    }
}

/// Sum of the absolute errors of hard/normal/easy against the unbiased figures.
/// What every report shows whatever its input: each heatmap has a title above it and a
/// colour scale under it.
fn assert_report_reads_alone(html: &str) {
    assert!(html.contains("<h3>All items, K = 1</h3>"), "{html}");
    let maps = html.matches("<h3>").count();
    assert!(maps >= 1, "{html}");
    assert_eq!(html.matches("(colour scale)").count(), maps, "{html}");
    assert_eq!(html.matches(">0 %</text>").count(), maps, "{html}");
    assert_eq!(html.matches(">100 %</text>").count(), maps, "{html}");
}

#[test]
fn a_report_without_domains_says_why_it_has_no_domain_rows() {
    let mock = Mock::start(MockServer::builder());
    let dir = tempfile::tempdir().unwrap();
    let mut items = rm_bench_items("");
    for item in items.as_array_mut().unwrap() {
        item.as_object_mut().unwrap().remove("domain");
    }
    let input = write_json(dir.path(), "no_domain.json", &items);
    let out = dir.path().join("out");
    let run = eval(
        &mock,
        &[
            "--format",
            "rm-bench",
            "--input",
            &input,
            "--output",
            s(&out),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_report_reads_alone(&html);
    assert!(
        html.contains("No per-domain rows and no <code>total_avg_acc</code>")
            && html.contains("have no <code>domain</code> field"),
        "{html}"
    );
    // All 5 items are behind hard/normal/easy.
    for row in ["hard_acc", "normal_acc", "easy_acc"] {
        assert!(
            html.contains(&format!("<tr><td>{row}</td><td>5</td>")),
            "{row}: {html}"
        );
    }
    assert!(!html.contains("<td>total_avg_acc</td>"), "{html}");
}

fn error(got: &Value, truth: &[(&str, f64)]) -> f64 {
    ["hard_acc", "normal_acc", "easy_acc", "total_avg_acc"]
        .iter()
        .map(|k| {
            let t = truth.iter().find(|(n, _)| n == k).unwrap().1;
            (got[*k].as_f64().unwrap() - t).abs()
        })
        .sum()
}

#[test]
fn permutations_measure_and_cancel_a_position_bias() {
    let biased = Mock::start(MockServer::builder().position_bias(1));
    let dir = tempfile::tempdir().unwrap();
    let input = write_json(dir.path(), "rm.json", &rm_bench_items(""));
    let truth = expected_rm_bench();

    let one = dir.path().join("k1");
    let run = eval(
        &biased,
        &[
            "--format",
            "rm-bench",
            "--input",
            &input,
            "--output",
            s(&one),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let single = summary(&one);
    // With the reference order (two responses: always swapped) the rejected response is
    // always shown first and gets the +1: the figures move.
    assert!(
        single["position_bias"]["flip_rate"].is_null(),
        "one order: no flips to count"
    );
    let single_error = error(&single["rm_bench"], &truth);
    assert!(
        single_error > 0.1,
        "the bias moved the figures: {}",
        single["rm_bench"]
    );

    let two = dir.path().join("k2");
    let run = eval(
        &biased,
        &[
            "--format",
            "rm-bench",
            "--input",
            &input,
            "--output",
            s(&two),
            "--permutations",
            "2",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let both = summary(&two);
    let flip = both["position_bias"]["flip_rate"].as_f64().unwrap();
    assert!(flip > 0.0, "flip rate measured: {}", both["position_bias"]);
    assert_eq!(both["units"], 90);
    assert_eq!(both["orders"], 2);
    // Every call's scores moved by exactly the bias between its two orders.
    assert_eq!(
        both["position_bias"]["calls_by_max_spread"],
        json!({"1.00": 45})
    );
    // Every response was shown at both positions: the table shows the +1 at position 1.
    let means = both["position_bias"]["mean_score_by_position"]
        .as_array()
        .unwrap()
        .clone();
    let (first, second) = (means[0].as_f64().unwrap(), means[1].as_f64().unwrap());
    assert!(first > second + 0.5, "{means:?}");
    let ensemble_error = error(&both["rm_bench_ensemble"], &truth);
    assert!(
        ensemble_error < single_error && ensemble_error < error(&both["rm_bench"], &truth),
        "K = 2 is closer to the unbiased truth: {ensemble_error} vs {single_error}"
    );
    // Both orders of every pair: the +1 lands once on each side and cancels exactly.
    assert_rm_bench(&both["rm_bench_ensemble"], &truth);
    let table = run.stdout_str();
    assert!(table.contains("K=1") && table.contains("K=2"), "{table}");
}

/// Ranked lines whose gold is the mock's true scores (5, 3, 2 … distinct), each with the
/// worst response at another input position.
fn ranked_lines() -> String {
    let orders: [[(&str, u8); 3]; 3] = [
        [("b", 4), ("m", 3), ("w", 2)],
        [("w", 2), ("b", 4), ("m", 3)],
        [("m", 3), ("w", 2), ("b", 4)],
    ];
    orders
        .iter()
        .enumerate()
        .map(|(i, order)| {
            let responses: serde_json::Map<String, Value> = order
                .iter()
                .map(|(n, sc)| (n.to_string(), json!(format!("answer {n}{i} score={sc}"))))
                .collect();
            let gold: serde_json::Map<String, Value> =
                order.iter().map(|(n, sc)| (n.to_string(), json!(sc))).collect();
            let line = if i == 0 {
                json!({"id": i, "principle": "be right", "prompt": "q", "responses": responses, "ranking": ["b", "m", "w"]})
            } else {
                json!({"id": i, "principle": "be right", "prompt": "q", "responses": responses, "scores": gold})
            };
            format!("{line}\n")
        })
        .collect()
}

#[test]
fn ranked_metrics_single_and_aggregated() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ranked.jsonl");
    std::fs::write(&input, ranked_lines()).unwrap();
    // Unbiased: every metric perfect.
    let mock = Mock::start(MockServer::builder());
    let out = dir.path().join("plain");
    let run = eval(
        &mock,
        &[
            "--format",
            "ranked",
            "--input",
            s(&input),
            "--output",
            s(&out),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = &summary(&out)["ranked"];
    for k in ["pairwise_accuracy", "kendall_tau", "ndcg", "top1_accuracy"] {
        assert_eq!(r[k], 1.0, "{k}: {r}");
    }
    assert_eq!(r["items"], 3);

    // Biased, all 6 orders of 3 responses: each is shown first twice, the bias cancels.
    let biased = Mock::start(MockServer::builder().position_bias(1));
    let out = dir.path().join("biased");
    let run = eval(
        &biased,
        &[
            "--format",
            "ranked",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--permutations",
            "6",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sum = summary(&out);
    assert_eq!(sum["units"], 18);
    let single = &sum["ranked"];
    let ens = &sum["ranked_ensemble"];
    assert!(
        single["pairwise_accuracy"].as_f64().unwrap() < 1.0,
        "{single}"
    );
    assert_eq!(ens["pairwise_accuracy"], 1.0, "{ens}");
    assert_eq!(ens["kendall_tau"], 1.0, "{ens}");
    assert_eq!(ens["top1_accuracy"], 1.0, "{ens}");
    assert!(sum["position_bias"]["flip_rate"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_failed_call_leaves_its_item_out_and_exits_1() {
    let mock = Mock::start(MockServer::builder());
    let dir = tempfile::tempdir().unwrap();
    let mut items = rm_bench_items("");
    items[0]["prompt"] = json!("question 1 [[fault:500]]");
    let input = write_json(dir.path(), "rm.json", &items);
    let out = dir.path().join("out");
    let run = eval(
        &mock,
        &[
            "--format",
            "rm-bench",
            "--input",
            &input,
            "--output",
            s(&out),
            "--max-retries",
            "0",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let sum = summary(&out);
    assert_eq!(sum["units_failed"], 9);
    assert_eq!(sum["items_scored"], 4);
    assert!(
        sum["rm_bench"].get("math").is_none(),
        "the math item failed: {}",
        sum["rm_bench"]
    );
}

#[test]
fn bad_inputs_are_refused_with_exit_2_naming_the_item() {
    let mock = Mock::start(MockServer::builder());
    let dir = tempfile::tempdir().unwrap();
    let mut items = rm_bench_items("");
    items[3]["chosen"] = json!(["only", "two"]);
    let input = write_json(dir.path(), "rm.json", &items);
    let out = dir.path().join("out");
    let run = eval(
        &mock,
        &[
            "--format",
            "rm-bench",
            "--input",
            &input,
            "--output",
            s(&out),
        ],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("item 3 (id 4)") && run.stderr.contains("`chosen` has 2"),
        "{}",
        run.stderr
    );
    let run = eval(
        &mock,
        &[
            "--format",
            "rm-bench",
            "--input",
            &input,
            "--output",
            s(&out),
            "--permutations",
            "0",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(mock.chat_requests(), 0);

    // Resuming with other flags would mix answers to other calls: refused.
    let good = write_json(dir.path(), "good.json", &rm_bench_items(""));
    let out = dir.path().join("listwise");
    let run = eval(
        &mock,
        &[
            "--format",
            "rm-bench",
            "--input",
            &good,
            "--output",
            s(&out),
            "--mode",
            "listwise",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = eval(
        &mock,
        &[
            "--format",
            "rm-bench",
            "--input",
            &good,
            "--output",
            s(&out),
            "--resume",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("refusing to resume"), "{}", run.stderr);
    assert_eq!(mock.chat_requests(), 5, "nothing judged by the refused run");
}

#[test]
fn a_killed_eval_resumes_to_the_same_figures() {
    // Slow enough (~7 s for the whole run) to be interrupted twice on a busy machine.
    let mock = Mock::start(MockServer::builder().latency(Latency::from_millis(50)));
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Value> = (0..6)
        .flat_map(|_| rm_bench_items("").as_array().unwrap().clone())
        .collect();
    let input = write_json(dir.path(), "rm.json", &Value::Array(items));
    let out = dir.path().join("out");
    let url = mock.url();
    let args = [
        "eval",
        "--endpoint",
        &url,
        "--format",
        "rm-bench",
        "--input",
        &input,
        "--output",
        s(&out),
        "--permutations",
        "2",
        "--concurrency",
        "4",
        "--resume",
    ];
    let total = 30 * 9 * 2;
    let child = spawn_ra(&args);
    let results = out.join("results.jsonl");
    assert!(
        wait_until(Duration::from_secs(30), || complete_lines(&results) >= 40),
        "results are written as they come"
    );
    // One run per output directory: a second one is refused and changes nothing.
    let before = std::fs::read(&results).unwrap().len();
    let second = ra(&args, b"");
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(second.stderr.contains("being written"), "{}", second.stderr);
    assert!(std::fs::read(&results).unwrap().len() >= before);
    child.signal(libc::SIGKILL);
    let killed = child.finish(Duration::from_secs(10));
    assert_eq!(killed.code, -libc::SIGKILL, "{}", killed.stderr);
    let after_kill = complete_lines(&results);
    assert!(
        after_kill < total,
        "killed before the end ({after_kill} lines)"
    );

    // Resumed, then stopped by SIGTERM: calls in flight finish, the run says how to go
    // on, exits 2 and leaves whole lines only.
    let child = spawn_ra(&args);
    assert!(
        wait_until(Duration::from_secs(30), || complete_lines(&results)
            >= after_kill + 20),
        "the resumed run goes on"
    );
    child.signal(libc::SIGTERM);
    let stopped = child.finish(Duration::from_secs(20));
    assert_eq!(stopped.code, 2, "{}", stopped.stderr);
    assert!(stopped.stderr.contains("--resume"), "{}", stopped.stderr);
    let text = std::fs::read_to_string(&results).unwrap();
    assert!(text.ends_with('\n'), "whole lines only after a SIGTERM");
    let kept = complete_lines(&results);
    assert!(kept < total, "stopped before the end ({kept} lines)");
    assert!(
        !out.join("summary.json").exists(),
        "no figures from a partial run"
    );
    let sent_before = mock.chat_requests();

    let run = ra(&args, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), total);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["index"], i, "one line per unit, in order");
        assert!(l["error"].is_null(), "{l}");
    }
    // Kept lines were not judged again.
    let resent = mock.chat_requests() - sent_before;
    assert!(
        resent as usize <= total - kept,
        "{resent} sent after the kill for {} missing",
        total - kept
    );
    // Same figures as an uninterrupted run.
    let fresh = dir.path().join("fresh");
    let instant = Mock::start(MockServer::builder());
    let run = eval(
        &instant,
        &[
            "--format",
            "rm-bench",
            "--input",
            &input,
            "--output",
            s(&fresh),
            "--permutations",
            "2",
            "--concurrency",
            "4",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for key in ["rm_bench", "rm_bench_ensemble", "position_bias"] {
        assert_eq!(summary(&out)[key], summary(&fresh)[key], "{key}");
    }
}

#[test]
fn endpoints_file_and_config_flags_work_as_for_ra_score() {
    let mock = Mock::start(MockServer::builder());
    let dir = tempfile::tempdir().unwrap();
    let input = write_json(dir.path(), "rm.json", &rm_bench_items(""));
    let endpoints = dir.path().join("endpoints.json");
    let file = json!({"endpoints": [mock.url()], "model": ra_mock::DEFAULT_MODEL, "pid": 1, "started": "now"});
    std::fs::write(&endpoints, file.to_string()).unwrap();
    let out = dir.path().join("out");
    let run = ra(
        &[
            "eval",
            "--endpoints-file",
            s(&endpoints),
            "--format",
            "rm-bench",
            "--input",
            &input,
            "--output",
            s(&out),
            "--mode",
            "listwise",
            "--concurrency",
            "2",
            "--timeout",
            "30",
            "--quiet",
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "--quiet prints no table");
    assert_rm_bench(&summary(&out)["rm_bench"], &expected_rm_bench());
    assert_eq!(mock.chat_requests(), 5);
}

#[test]
fn ra_score_permutations_writes_the_ensemble_and_resumes_only_with_the_same_k() {
    let biased = Mock::start(MockServer::builder().position_bias(1));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: String = (0..6)
        .map(|i| {
            let l = json!({"id": i, "principle": "p", "prompt": format!("q{i}"),
                           "responses": {"a": format!("a{i} score=3"), "b": format!("b{i} score=2")}});
            format!("{l}\n")
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let out = dir.path().join("out.jsonl");
    let url = biased.url();
    let args = [
        "score",
        "--endpoint",
        &url,
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--permutations",
        "3",
    ];
    let run = ra(&args, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 6);
    for line in &got {
        // a shown first: 4 vs 2; b shown first: 3 vs 3 → means 3.5 and 2.5, the truth + 0.5
        assert_eq!(line["scores"], json!({"a": 3.5, "b": 2.5}), "{line}");
        assert_eq!(line["ranking"], json!(["a", "b"]));
        assert_eq!(line["permutations"]["orders"], 2);
        assert_eq!(line["permutations"]["flip_rate"], 1.0);
    }
    assert_eq!(biased.chat_requests(), 12);
    // The same K resumes (nothing left to judge); another K is refused.
    let mut again = args.to_vec();
    again.push("--resume");
    let run = ra(&again, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(biased.chat_requests(), 12);
    let k_at = again.len() - 2;
    again[k_at] = "2";
    let run = ra(&again, b"");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("changed"), "{}", run.stderr);
    assert_eq!(biased.chat_requests(), 12);
}
