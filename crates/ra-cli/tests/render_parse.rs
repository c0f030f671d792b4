//! `ra render` and `ra parse` end to end: the public vectors through the real binary,
//! bad and blank lines answered in place, masking modes and exit codes.

mod common;

use common::{data_path, ra};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn vectors(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(data_path(name)).expect("vector file readable");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("vector line is JSON"))
        .collect()
}

/// The `ra render` input line of a render vector. Its `responses` is a list of pairs so
/// that repeated keys survive; the line writes them as a JSON object with the repeats.
fn render_input(v: &Value) -> String {
    let pairs = v["responses"].as_array().expect("responses pairs");
    let body: Vec<String> = pairs
        .iter()
        .map(|p| format!("{}: {}", p[0], p[1]))
        .collect();
    format!(
        "{{\"principle\": {}, \"prompt\": {}, \"responses\": {{{}}}, \"mask_responses\": {}}}",
        v["principle"],
        v["prompt"],
        body.join(", "),
        v["mask_responses"]
    )
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn check_rendered(v: &Value, out: &Value) {
    let id = v["id"].as_str().unwrap_or("?");
    assert_eq!(
        out["messages"], v["expected_messages"],
        "{id}: messages differ"
    );
    assert_eq!(
        out["masked2real"], v["expected_masked2real"],
        "{id}: masked2real differs"
    );
    assert_eq!(
        keys(&out["masked2real"]),
        keys(&v["expected_masked2real"]),
        "{id}: masked2real key order"
    );
    let user = out["messages"][1]["content"]
        .as_str()
        .expect("user content");
    assert_eq!(
        hex::encode(Sha256::digest(user.as_bytes())),
        v["expected_user_content_utf8_sha256"]
            .as_str()
            .expect("sha"),
        "{id}: user content sha256"
    );
    assert_eq!(
        user.len() as u64,
        v["expected_user_content_utf8_len"].as_u64().expect("len"),
        "{id}: user content length"
    );
}

#[test]
fn render_reproduces_every_public_vector_through_the_binary() {
    let vs = vectors("render_public.jsonl");
    assert_eq!(vs.len(), 60);
    let mut input = String::new();
    for v in &vs {
        input.push_str(&render_input(v));
        input.push('\n');
    }
    let run = ra(&["render"], input.as_bytes());
    // The one vector with a repeated name (which Python's dict merges) is refused by
    // `ra`, naming it; every other vector is reproduced exactly.
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let outs = run.json_lines();
    assert_eq!(outs.len(), vs.len());
    let mut refused = 0;
    for (i, (v, out)) in vs.iter().zip(&outs).enumerate() {
        let names: Vec<&Value> = v["responses"]
            .as_array()
            .expect("pairs")
            .iter()
            .map(|p| &p[0])
            .collect();
        let repeated = names
            .iter()
            .enumerate()
            .find(|(k, n)| names[..*k].contains(n))
            .map(|(_, n)| n.as_str().expect("name"));
        match repeated {
            None => check_rendered(v, out),
            Some(name) => {
                refused += 1;
                assert_eq!(out["error"]["kind"], "bad_input", "{out}");
                assert_eq!(out["error"]["line"], i, "{out}");
                let message = out["error"]["message"].as_str().expect("message");
                assert!(
                    message.contains(&format!("duplicate name \"{name}\"")),
                    "{message}"
                );
            }
        }
    }
    assert_eq!(refused, 1, "the vectors hold one repeated name");
}

#[test]
fn render_answers_bad_and_blank_lines_in_place_and_goes_on() {
    let vs = vectors("render_public.jsonl");
    let good = |i: usize| render_input(&vs[i]);
    // Lines 1, 3, 4, 5 and 7 are bad; CRLF line ends are accepted; no final newline.
    let input = format!(
        "{}\n\n{}\r\nnot json\n{{\"principle\": \"p\"}}\n   \n{}\n[1, 2]\n\u{0}\n{}",
        good(1),
        good(2),
        good(3),
        good(4)
    );
    let run = ra(&["render"], input.as_bytes());
    assert_eq!(run.code, 1, "some lines failed: stderr {}", run.stderr);
    let outs = run.json_lines();
    assert_eq!(outs.len(), 10, "one output line per input line");
    for (line, out) in outs.iter().enumerate() {
        match line {
            0 => check_rendered(&vs[1], out),
            2 => check_rendered(&vs[2], out),
            6 => check_rendered(&vs[3], out),
            9 => check_rendered(&vs[4], out),
            _ => {
                assert_eq!(out["error"]["kind"], "bad_input", "line {line}: {out}");
                assert_eq!(out["error"]["line"], json!(line), "line {line}: {out}");
                assert!(out["error"]["message"].is_string(), "line {line}: {out}");
                assert!(out.get("messages").is_none(), "line {line}: {out}");
            }
        }
    }
}

#[test]
fn render_invalid_utf8_line_is_bad_input() {
    let vs = vectors("render_public.jsonl");
    let mut input = b"{\"principle\": \"\xff\xfe\"}\n".to_vec();
    input.extend_from_slice(render_input(&vs[0]).as_bytes());
    input.push(b'\n');
    let run = ra(&["render"], &input);
    assert_eq!(run.code, 1);
    let outs = run.json_lines();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0]["error"]["kind"], "bad_input");
    assert_eq!(outs[0]["error"]["line"], 0);
    check_rendered(&vs[0], &outs[1]);
}

#[test]
fn render_exit_codes() {
    let ok = ra(&["render"], b"");
    assert_eq!(ok.code, 0, "empty input is a successful run");
    assert!(ok.stdout.is_empty());
    let line = "{\"principle\": \"p\", \"prompt\": \"q\", \"responses\": {\"a\": \"x\"}}\n";
    assert_eq!(ra(&["render"], line.as_bytes()).code, 0);
    for bad in [
        vec!["render", "--masking", "bogus"],
        vec!["render", "--masking", "seeded:notanumber"],
        vec!["render", "--no-such-flag"],
    ] {
        let run = ra(&bad, line.as_bytes());
        assert_eq!(run.code, 2, "{bad:?} is a usage error");
        assert!(run.stdout.is_empty(), "{bad:?} writes nothing on stdout");
        assert!(!run.stderr.is_empty(), "{bad:?} explains on stderr");
    }
    assert_eq!(ra(&["render", "--help"], b"").code, 0);
}

/// The user message's `responses` object of a rendered line.
fn rendered_responses(out: &Value) -> serde_json::Map<String, Value> {
    let user = out["messages"][1]["content"]
        .as_str()
        .expect("user content");
    let v: Value = serde_json::from_str(user).expect("user content is JSON");
    v["responses"].as_object().expect("responses").clone()
}

#[test]
fn render_masking_none_passes_keys_as_given() {
    let line = json!({"principle": "p", "prompt": "q",
        "responses": {"zeta": "last", "alpha": "first", "model-1": "looks masked"}});
    let run = ra(
        &["render", "--masking", "none"],
        format!("{line}\n").as_bytes(),
    );
    assert_eq!(run.code, 0);
    let out = &run.json_lines()[0];
    assert!(out["masked2real"].is_null(), "{out}");
    let resp = rendered_responses(out);
    assert_eq!(
        resp.keys().collect::<Vec<_>>(),
        ["zeta", "alpha", "model-1"],
        "keys in the caller's order"
    );
    assert_eq!(resp["alpha"], "first");
}

#[test]
fn render_masking_seeded_is_a_reproducible_per_request_permutation() {
    let names = ["a", "b", "c", "d", "e", "f"];
    let mut lines = Vec::new();
    for i in 0..20 {
        let responses: serde_json::Map<String, Value> = names
            .iter()
            .map(|n| ((*n).to_string(), json!(format!("{n} answers {i}"))))
            .collect();
        lines.push(json!({"principle": "p", "prompt": format!("q{i}"), "responses": responses}));
    }
    // Line 20 repeats line 3: the permutation depends on the content, not the position.
    lines.push(lines[3].clone());
    // A line that asks not to be masked stays unmasked whatever the mode.
    lines.push(
        json!({"principle": "p", "prompt": "q", "responses": {"x": "1", "y": "2"},
        "mask_responses": false}),
    );
    let input = common::jsonl(&lines);
    let run7 = ra(&["render", "--masking", "seeded:7"], input.as_bytes());
    let again = ra(&["render", "--masking", "seeded:7"], input.as_bytes());
    let run8 = ra(&["render", "--masking", "seeded:8"], input.as_bytes());
    for r in [&run7, &again, &run8] {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(run7.stdout, again.stdout, "same seed, same output");
    let (o7, o8) = (run7.json_lines(), run8.json_lines());
    let mut differs = 0;
    for i in 0..21 {
        let m = o7[i]["masked2real"].as_object().expect("masked");
        let masked: Vec<String> = (1..=6).map(|k| format!("model-{k}")).collect();
        assert_eq!(m.keys().cloned().collect::<Vec<_>>(), masked, "line {i}");
        let mut real: Vec<&str> = m.values().map(|v| v.as_str().expect("name")).collect();
        real.sort_unstable();
        assert_eq!(real, names, "line {i}: a permutation of the caller's names");
        // Each masked name carries its real response's text.
        let resp = rendered_responses(&o7[i]);
        for (masked, real) in m {
            let text = lines[i]["responses"][real.as_str().expect("name")].clone();
            assert_eq!(resp[masked], text, "line {i}");
        }
        if o7[i]["masked2real"] != o8[i]["masked2real"] {
            differs += 1;
        }
    }
    assert_eq!(o7[20], o7[3], "same request, same permutation");
    assert!(differs > 0, "another seed gives other permutations");
    assert!(o7[21]["masked2real"].is_null());
    assert_eq!(
        rendered_responses(&o7[21]).keys().collect::<Vec<_>>(),
        ["x", "y"]
    );
    // Without --masking, masked lines follow the reference (the golden test pins it).
    let reference = ra(&["render"], input.as_bytes());
    let explicit = ra(&["render", "--masking", "reference"], input.as_bytes());
    assert_eq!(reference.stdout, explicit.stdout);
    assert_ne!(reference.stdout, run7.stdout);
}

/// The snake_case kind `ra parse` reports for a SPEC error kind.
fn snake_kind(spec: &str) -> &'static str {
    match spec {
        "NoJsonObject" => "no_json_object",
        "NotAnObject" => "not_an_object",
        "MissingScores" => "missing_scores",
        "MissingRanking" => "missing_ranking",
        "InvalidScores" => "invalid_scores",
        "InvalidRanking" => "invalid_ranking",
        "NonFiniteOrOversizedNumber" => "non_finite_number",
        "UnmaskCollision" => "unmask_collision",
        other => panic!("unknown SPEC kind {other}"),
    }
}

/// Vectors where the library documents a better recovery than the suggested error.
const BETTER_RECOVERY: &[&str] = &["close-think-only-with-braces", "text-after-with-braces"];

fn check_parsed(id: &str, ok: &Value, want: &Value) {
    assert_eq!(ok["reasoning"], want["reasoning"], "{id}: reasoning");
    assert_eq!(ok["ranking"], want["ranking"], "{id}: ranking");
    let got = ok["scores"].as_object().expect("scores object");
    let exp = want["scores"].as_object().expect("expected scores");
    assert_eq!(got.len(), exp.len(), "{id}: {ok}");
    for (k, v) in exp {
        assert_eq!(
            got.get(k).and_then(Value::as_f64),
            v.as_f64(),
            "{id}: score of {k}"
        );
    }
    if let Some(order) = want["scores_key_order"].as_array() {
        let order: Vec<&str> = order.iter().filter_map(Value::as_str).collect();
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            order,
            "{id}: key order"
        );
    }
    assert!(ok["consistent"].is_boolean(), "{id}: {ok}");
}

#[test]
fn parse_follows_every_public_vector_through_the_binary() {
    let vs = vectors("parse_public.jsonl");
    assert_eq!(vs.len(), 88);
    let input: Vec<Value> = vs
        .iter()
        .map(|v| json!({"output_text": v["output_text"], "masked2real": v["masked2real"]}))
        .collect();
    let run = ra(&["parse"], common::jsonl(&input).as_bytes());
    assert_eq!(
        run.code, 1,
        "error vectors make the run exit 1: {}",
        run.stderr
    );
    let outs = run.json_lines();
    assert_eq!(outs.len(), vs.len());
    let (mut same, mut different, mut errors) = (0, 0, 0);
    for (v, out) in vs.iter().zip(&outs) {
        let id = v["id"].as_str().expect("id");
        let sug = &v["suggested"];
        match sug["status"].as_str().expect("status") {
            "same" => {
                same += 1;
                check_parsed(id, &out["ok"], &v["expected"]);
            }
            "different" => {
                different += 1;
                check_parsed(id, &out["ok"], &sug["value"]);
            }
            "error" => {
                errors += 1;
                let want = snake_kind(sug["error_kind"].as_str().expect("kind"));
                if BETTER_RECOVERY.iter().any(|t| id.ends_with(t)) && out.get("ok").is_some() {
                    // A better recovery must be a full judgment: every real name scored
                    // and ranked.
                    let scores = out["ok"]["scores"].as_object().expect("scores");
                    let ranking = out["ok"]["ranking"].as_array().expect("ranking");
                    if let Some(m) = v["masked2real"].as_object() {
                        assert_eq!(scores.len(), m.len(), "{id}: {out}");
                        assert_eq!(ranking.len(), m.len(), "{id}: {out}");
                        for real in m.values() {
                            assert!(
                                scores.contains_key(real.as_str().unwrap_or("")),
                                "{id}: {out}"
                            );
                        }
                    } else {
                        assert!(!scores.is_empty(), "{id}: {out}");
                    }
                    continue;
                }
                assert_eq!(out["error"]["kind"], want, "{id}: {out}");
                assert!(out["error"]["message"].is_string(), "{id}: {out}");
            }
            s => panic!("{id}: unknown status {s}"),
        }
    }
    assert_eq!((same, different, errors), (45, 2, 41));
}

#[test]
fn parse_exit_code_is_zero_when_every_line_parses() {
    let vs = vectors("parse_public.jsonl");
    let input: Vec<Value> = vs
        .iter()
        .filter(|v| v["suggested"]["status"] == "same")
        .map(|v| json!({"output_text": v["output_text"], "masked2real": v["masked2real"]}))
        .collect();
    let run = ra(&["parse"], common::jsonl(&input).as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json_lines().len(), input.len());
    assert!(run.json_lines().iter().all(|o| o.get("ok").is_some()));
}

#[test]
fn parse_reasoning_field_finish_reason_and_bad_lines() {
    let m = json!({"model-1": "alpha", "model-2": "beta"});
    let answer =
        r#"{"scores": {"model-1": 2, "model-2": 5}, "best-to-worst": ["model-2", "model-1"]}"#;
    let lines = [
        // The server split the reasoning off.
        json!({"output_text": answer, "masked2real": m, "reasoning": "beta is better"}).to_string(),
        // A pre-filled <think>: content holds only the closing tag.
        json!({"output_text": format!("beta wins\n</think>\n\n{answer}"), "masked2real": m}).to_string(),
        // Cut by max_tokens inside the think block.
        json!({"output_text": "<think>\nI am still thinking about", "masked2real": m,
            "finish_reason": "length"}).to_string(),
        String::new(),
        "{\"masked2real\": null}".to_string(),
        // No mapping: names are kept as the model wrote them.
        json!({"output_text": answer, "masked2real": null}).to_string(),
        // A ranking that disagrees with the scores is kept but flagged.
        json!({"output_text": r#"{"scores": {"model-1": 2, "model-2": 5}, "best-to-worst": ["model-1", "model-2"]}"#,
            "masked2real": m}).to_string(),
    ];
    let run = ra(&["parse"], (lines.join("\n") + "\n").as_bytes());
    assert_eq!(run.code, 1);
    let o = run.json_lines();
    assert_eq!(o.len(), 7);
    assert_eq!(o[0]["ok"]["scores"], json!({"alpha": 2.0, "beta": 5.0}));
    assert_eq!(o[0]["ok"]["ranking"], json!(["beta", "alpha"]));
    assert_eq!(o[0]["ok"]["reasoning"], "beta is better");
    assert_eq!(o[0]["ok"]["consistent"], true);
    assert_eq!(o[1]["ok"]["ranking"], json!(["beta", "alpha"]));
    assert_eq!(o[1]["ok"]["reasoning"], "beta wins");
    assert_eq!(o[2]["error"]["kind"], "truncated", "{}", o[2]);
    assert_eq!(o[3]["error"]["kind"], "bad_input");
    assert_eq!(o[3]["error"]["line"], 3);
    assert_eq!(o[4]["error"]["kind"], "bad_input");
    assert_eq!(o[4]["error"]["line"], 4);
    assert_eq!(
        o[5]["ok"]["scores"],
        json!({"model-1": 2.0, "model-2": 5.0})
    );
    assert_eq!(o[6]["ok"]["consistent"], false, "{}", o[6]);
    assert_eq!(o[6]["ok"]["ranking"], json!(["alpha", "beta"]));
}

#[test]
fn parse_bad_flags_exit_2() {
    let run = ra(&["parse", "--bogus"], b"");
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
}
