//! Files someone else prepared: names planted as symbolic links in an output directory
//! (`ra eval --output DIR`, `ra score --output FILE` and their temporary and lock
//! files) are refused by name and their targets never written, and `ra eval`'s inputs
//! refuse what would silently change its figures (a gold score given twice, RM-Bench
//! items in no domain RM-Bench scores).

mod common;

use std::path::Path;

use common::{Mock, jsonl, ra, s};
use serde_json::{Value, json};

/// A file that a planted link points at; it must keep its text.
fn victim(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("victim.txt");
    std::fs::write(&path, "precious\n").expect("write victim");
    path
}

fn ranked_input(dir: &Path) -> String {
    let path = dir.join("ranked.jsonl");
    let line = json!({"principle": "p", "prompt": "q",
        "responses": {"a": "x score=4", "b": "y score=2"}, "ranking": ["a", "b"]});
    std::fs::write(&path, format!("{line}\n")).expect("write input");
    s(&path).to_string()
}

#[test]
fn ra_eval_refuses_every_output_name_planted_as_a_link() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let base = tempfile::tempdir().expect("tempdir");
    let input = ranked_input(base.path());
    let target = victim(base.path());
    // A clean run first: the links below would be followed by a run like it.
    let clean = base.path().join("clean");
    let args = |out: &Path| -> Vec<String> {
        [
            "eval",
            "--format",
            "ranked",
            "--input",
            &input,
            "--output",
            s(out),
            "--endpoint",
            &url,
            "--quiet",
        ]
        .map(String::from)
        .to_vec()
    };
    let run_eval = |out: &Path| {
        let a = args(out);
        ra(&a.iter().map(String::as_str).collect::<Vec<_>>(), b"")
    };
    let run = run_eval(&clean);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for name in [
        "units.jsonl",
        "units.jsonl.ra-tmp",
        "results.jsonl",
        "results.jsonl.lock",
        "summary.json",
        "summary.json.ra-tmp",
        "report.html",
        "report.html.ra-tmp",
    ] {
        let out = base.path().join(format!("out-{name}"));
        std::fs::create_dir(&out).expect("mkdir");
        let link = out.join(name);
        std::os::unix::fs::symlink(&target, &link).expect("plant link");
        let requests = mock.chat_requests();
        let run = run_eval(&out);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("{} is a symbolic link", link.display())),
            "{name}: the link is named: {}",
            run.stderr
        );
        assert_eq!(
            std::fs::read_to_string(&target).expect("read victim"),
            "precious\n",
            "{name}: the link's target was written"
        );
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("link")
                .file_type()
                .is_symlink(),
            "{name}: the link is left for its owner to see"
        );
        assert_eq!(mock.chat_requests(), requests, "{name}: nothing was judged");
    }
}

#[test]
fn ra_score_refuses_an_output_lock_or_temporary_file_planted_as_a_link() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = victim(dir.path());
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        jsonl(&[
            json!({"principle": "p", "prompt": "q", "responses": {"a": "x score=4", "b": "y score=2"}}),
        ]),
    )
    .expect("write input");
    let out = dir.path().join("out.jsonl");
    let score = |extra: &[&str]| {
        let mut args = vec![
            "score",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--endpoint",
            &url,
        ];
        args.extend_from_slice(extra);
        ra(&args, b"")
    };
    let keep = |what: &str, run: &common::Run, link: &Path| {
        assert_eq!(run.code, 2, "{what}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("{} is a symbolic link", link.display())),
            "{what}: {}",
            run.stderr
        );
        assert_eq!(
            std::fs::read_to_string(&target).expect("read victim"),
            "precious\n",
            "{what}: the link's target was written"
        );
    };

    // The output itself, fresh and resumed.
    std::os::unix::fs::symlink(&target, &out).expect("plant link");
    keep("output", &score(&[]), &out);
    keep("output --resume", &score(&["--resume"]), &out);
    std::fs::remove_file(&out).expect("unplant");

    // The lock file beside it.
    let lock = dir.path().join("out.jsonl.lock");
    std::os::unix::fs::symlink(&target, &lock).expect("plant link");
    keep("lock file", &score(&[]), &lock);
    std::fs::remove_file(&lock).expect("unplant");

    // The temporary file --retry-failed rewrites the output into.
    let run = score(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let written = std::fs::read(&out).expect("output");
    let temp = dir.path().join("out.jsonl.ra-tmp");
    std::os::unix::fs::symlink(&target, &temp).expect("plant link");
    keep(
        "temporary file",
        &score(&["--resume", "--retry-failed"]),
        &temp,
    );
    assert_eq!(std::fs::read(&out).expect("output"), written);
}

fn eval_ranked(mock: &Mock, dir: &Path, lines: &str) -> common::Run {
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines).expect("write input");
    let url = mock.url();
    ra(
        &[
            "eval",
            "--format",
            "ranked",
            "--input",
            s(&input),
            "--output",
            s(&dir.join("out")),
            "--endpoint",
            &url,
            "--quiet",
        ],
        b"",
    )
}

#[test]
fn a_gold_score_given_twice_is_refused_naming_the_line_and_the_name() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = json!({"principle": "p", "prompt": "q",
        "responses": {"a": "x score=4", "b": "y score=2"}, "scores": {"a": 2, "b": 1}});
    // serde_json keeps the last of two equal keys: b would silently become the best.
    let twice = r#"{"principle": "p", "prompt": "q", "responses": {"a": "x score=4", "b": "y score=2"}, "scores": {"a": 2, "b": 1, "b": 9}}"#;
    let run = eval_ranked(&mock, dir.path(), &format!("{good}\n{twice}\n"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--input line 2") && run.stderr.contains("duplicate name \"b\""),
        "{}",
        run.stderr
    );
    assert_eq!(mock.chat_requests(), 0, "nothing was judged");
}

fn rm_bench_item(id: u32, domain: &str) -> Value {
    json!({
        "id": id,
        "prompt": format!("question {id}"),
        "chosen": ["good score=4", "good score=4", "good score=4"],
        "rejected": ["bad score=2", "bad score=2", "bad score=2"],
        "domain": domain,
    })
}

fn eval_rm_bench(mock: &Mock, dir: &Path, items: &Value) -> common::Run {
    let input = dir.join("total_dataset.json");
    std::fs::write(&input, items.to_string()).expect("write input");
    let url = mock.url();
    ra(
        &[
            "eval",
            "--format",
            "rm-bench",
            "--input",
            s(&input),
            "--output",
            s(&dir.join("out")),
            "--endpoint",
            &url,
            "--quiet",
        ],
        b"",
    )
}

#[test]
fn rm_bench_items_in_no_known_domain_are_an_error_when_all_and_a_warning_when_some() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let all_unknown = json!([
        rm_bench_item(1, "writing"),
        rm_bench_item(2, "poetry"),
        rm_bench_item(3, "writing"),
    ]);
    let run = eval_rm_bench(&mock, dir.path(), &all_unknown);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for part in [
        "no item of --input is in an RM-Bench domain",
        "\"writing\" (2 items), \"poetry\" (1 item)",
        "chat, math, code, safety",
    ] {
        assert!(run.stderr.contains(part), "{part:?} in {}", run.stderr);
    }
    assert_eq!(mock.chat_requests(), 0, "nothing was judged");

    let some_unknown = json!([rm_bench_item(1, "chat"), rm_bench_item(2, "writing")]);
    let run = eval_rm_bench(&mock, dir.path(), &some_unknown);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "warning: 1 of 2 items are in no RM-Bench domain (\"writing\" (1 item); RM-Bench \
             scores domains starting with chat, math, code, safety)"
        ),
        "{}",
        run.stderr
    );
    let summary: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out/summary.json")).expect("summary"),
    )
    .expect("json");
    assert_eq!(summary["rm_bench"]["chat"], 1.0, "{summary}");
}
