//! The unit tests of `rollout`: the gateway's original cases, and the table shared
//! with the Python package's tests (`cases.json`).

use super::*;

fn check(query: &str, prompt: Option<&str>, question: &str, response: &str) {
    let s = split_rollout(query, prompt);
    assert_eq!(s.question, question, "question of {query:?}");
    assert_eq!(s.response, response, "response of {query:?}");
}

const QWEN_PROMPT: &str = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of Australia?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn chatml_with_the_prompt_prefix() {
    let query = format!("{QWEN_PROMPT}Canberra is the capital.<|im_end|>");
    check(
        &query,
        Some(QWEN_PROMPT),
        "What is the capital of Australia?",
        "Canberra is the capital.",
    );
    // Repeated end tokens with whitespace (padding decoded with the rest).
    let query = format!("{QWEN_PROMPT}Canberra.<|im_end|>\n<|endoftext|><|endoftext|>  ");
    check(
        &query,
        Some(QWEN_PROMPT),
        "What is the capital of Australia?",
        "Canberra.",
    );
}

#[test]
fn chatml_without_a_matching_prompt_uses_the_template() {
    let query = format!("{QWEN_PROMPT}Canberra.<|im_end|>");
    // Left-truncated prompt: the query does not start with the one sent.
    check(
        &query,
        Some("something else"),
        "What is the capital of Australia?",
        "Canberra.",
    );
    check(
        &query,
        None,
        "What is the capital of Australia?",
        "Canberra.",
    );
}

#[test]
fn chatml_multi_turn_takes_the_last_user_turn() {
    let prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nName a prime number.<|im_end|>\n<|im_start|>assistant\n";
    let query = format!("{prompt}7<|im_end|>");
    check(&query, Some(prompt), "Name a prime number.", "7");
    check(&query, None, "Name a prime number.", "7");
}

const LLAMA3_PROMPT: &str = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWrite a haiku about rust.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";

#[test]
fn llama3() {
    let query = format!(
        "{LLAMA3_PROMPT}Red bloom on iron\nslow fire eating the old gate\ntime's quiet teeth<|eot_id|>"
    );
    let answer = "Red bloom on iron\nslow fire eating the old gate\ntime's quiet teeth";
    check(
        &query,
        Some(LLAMA3_PROMPT),
        "Write a haiku about rust.",
        answer,
    );
    check(&query, None, "Write a haiku about rust.", answer);
    let query = format!("{LLAMA3_PROMPT}Iron.<|eot_id|><|end_of_text|>");
    check(&query, None, "Write a haiku about rust.", "Iron.");
}

#[test]
fn gemma_and_deepseek() {
    let prompt =
        "<bos><start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n<start_of_turn>model\n";
    let query = format!("{prompt}Rayleigh scattering.<end_of_turn>\n<eos>");
    check(
        &query,
        Some(prompt),
        "Why is the sky blue?",
        "Rayleigh scattering.",
    );
    check(&query, None, "Why is the sky blue?", "Rayleigh scattering.");
    // R1 prefills "<think>\n": the response closes a thought it never opened.
    let prompt = "<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜><think>\n";
    let query = format!("{prompt}2 and 2 make 4.\n</think>\n\nIt is 4.<｜end▁of▁sentence｜>");
    check(&query, Some(prompt), "2+2?", "It is 4.");
}

#[test]
fn qwen3_think_blocks_are_cut() {
    let query = format!(
        "{QWEN_PROMPT}<think>\nThe user asks about Australia. Sydney is larger, but the capital is Canberra.\n</think>\n\nCanberra.<|im_end|>"
    );
    check(
        &query,
        Some(QWEN_PROMPT),
        "What is the capital of Australia?",
        "Canberra.",
    );
    // Thinking disabled: Qwen3's template puts an empty block in the prompt.
    let prompt = format!("{QWEN_PROMPT}<think>\n\n</think>\n\n");
    let query = format!("{prompt}Canberra.<|im_end|>");
    check(
        &query,
        Some(&prompt),
        "What is the capital of Australia?",
        "Canberra.",
    );
    // A thought cut by the token limit: no answer, flagged.
    let query = format!("{QWEN_PROMPT}<think>\nLet me think about Sydney and");
    let s = split_rollout(&query, Some(QWEN_PROMPT));
    assert_eq!(s.response, "");
    assert!(s.unfinished_think);
    assert!(!split_rollout(&format!("{QWEN_PROMPT}Canberra."), Some(QWEN_PROMPT)).unfinished_think);
}

#[test]
fn plain_prompts_stay_as_they_are() {
    check(
        "Question: 2+2?\nAnswer: 4</s>",
        Some("Question: 2+2?\nAnswer:"),
        "Question: 2+2?\nAnswer:",
        "4",
    );
    check(
        "<s>Tell a joke. Why did</s>",
        Some("<s>Tell a joke."),
        "Tell a joke.",
        "Why did",
    );
    // Neither a prefix nor a template: the prompt is the question, the query the response.
    check(
        "whatever came back",
        Some("the prompt"),
        "the prompt",
        "whatever came back",
    );
    check("whatever came back", None, "", "whatever came back");
}

#[test]
fn a_think_word_inside_the_answer_is_kept() {
    check(
        "Q: x?\nA: I <think> so.",
        Some("Q: x?\nA:"),
        "Q: x?\nA:",
        "I <think> so.",
    );
}

/// One row of `cases.json`.
#[derive(serde::Deserialize)]
struct Case {
    name: String,
    query: String,
    prompt: Option<String>,
    question: String,
    response: String,
    unfinished_think: bool,
}

#[derive(serde::Deserialize)]
struct Table {
    cases: Vec<Case>,
}

/// The table pytest checks too (`test_openrlhf.py`): both products split alike.
#[test]
fn the_shared_table() {
    let table: Table = serde_json::from_str(include_str!("cases.json")).unwrap();
    assert!(table.cases.len() >= 20, "the table lost its rows");
    for c in &table.cases {
        let r = split_rollout(&c.query, c.prompt.as_deref());
        let want = (c.question.as_str(), c.response.as_str(), c.unfinished_think);
        let got = (r.question.as_str(), r.response.as_str(), r.unfinished_think);
        assert_eq!(got, want, "case {:?}", c.name);
    }
}

#[test]
fn label_principles() {
    use serde_json::json;
    let p = |v: serde_json::Value| label_principle(&v);
    assert_eq!(
        p(json!({"principle": "Be brief.", "answer": "4"})),
        Ok(Some("Be brief.".into()))
    );
    assert_eq!(
        p(json!(" {\"principle\": \"Be kind.\"}")),
        Ok(Some("Be kind.".into()))
    );
    // Ground-truth labels are not principles.
    for label in [
        json!("42"),
        json!("{not json"),
        json!("[1]"),
        json!(null),
        json!(7),
        json!({"answer": 1}),
        json!(r#"{"answer": 1}"#),
    ] {
        assert_eq!(p(label.clone()), Ok(None), "{label}");
    }
    for bad in [
        json!({"principle": 5}),
        json!({"principle": "  "}),
        json!({"principle": null}),
        json!(r#"{"principle": ""}"#),
    ] {
        assert_eq!(p(bad.clone()), Err(InvalidPrinciple), "{bad}");
    }
}

#[test]
fn strip_end_of_turn_keeps_inner_tokens() {
    assert_eq!(strip_end_of_turn("a</s>b</s> \n</s>"), "a</s>b");
    assert_eq!(strip_end_of_turn("<|im_end|>"), "");
    assert_eq!(user_question(""), "");
}
