//! From an OpenRLHF `query` (the decoded prompt + response, special tokens kept) to what
//! the judge needs: the user's question and the response text.
//!
//! * The response is the query after its `prompts[i]` prefix; when the query does not
//!   start with the prompt (a left-truncated prompt, a tokenizer round trip that changed
//!   it, no prompt sent), the text after the first assistant header that follows the
//!   last user turn of a known template; failing that, the whole query.
//! * Trailing end-of-turn tokens (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, `</s>`,
//!   …), repeated and with whitespace between, are cut.
//! * A reasoning block is cut: a leading `<think>…</think>` (Qwen3), or everything up
//!   to the first `</think>` when the prompt ends with `<think>` (DeepSeek-R1 prefills
//!   it). The judge scores the answer the user would read; a thought that never closed
//!   (the rollout ran out of tokens while thinking) leaves an empty answer, flagged.
//! * The question is the content of the last user turn of a ChatML/Qwen, Llama 3,
//!   Gemma or DeepSeek template (system prompts and earlier turns are not shown to the
//!   judge); a prompt with no template markers is the question as it is.

/// Tokens that end a turn or a sequence, cut from the end of a response.
const END_TOKENS: [&str; 8] = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "</s>",
    "<end_of_turn>",
    "<eos>",
    "<｜end▁of▁sentence｜>",
];

/// Tokens that may open a plain prompt (no template): cut from the question.
const BEGIN_TOKENS: [&str; 4] = [
    "<|begin_of_text|>",
    "<s>",
    "<bos>",
    "<｜begin▁of▁sentence｜>",
];

/// The markers of one chat template.
struct Template {
    /// Opens a user turn (its header; a newline after it is skipped).
    user: &'static str,
    /// Opens an assistant turn.
    assistant: &'static str,
    /// Ends a turn.
    end: &'static str,
}

/// ChatML (Qwen, Qwen3, many fine-tunes), Llama 3, Gemma, DeepSeek (V3, R1).
const TEMPLATES: [Template; 4] = [
    Template {
        user: "<|im_start|>user",
        assistant: "<|im_start|>assistant",
        end: "<|im_end|>",
    },
    Template {
        user: "<|start_header_id|>user<|end_header_id|>",
        assistant: "<|start_header_id|>assistant<|end_header_id|>",
        end: "<|eot_id|>",
    },
    Template {
        user: "<start_of_turn>user",
        assistant: "<start_of_turn>model",
        end: "<end_of_turn>",
    },
    Template {
        user: "<｜User｜>",
        assistant: "<｜Assistant｜>",
        end: "<｜end▁of▁sentence｜>",
    },
];

/// The question and response recovered from one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The last user turn (or the plain prompt), trimmed.
    pub question: String,
    /// The response, its reasoning block and end tokens cut, trimmed.
    pub response: String,
    /// The response opened a reasoning block that never closed (so it has no answer).
    pub unfinished_think: bool,
}

/// Splits `query` using `prompt` (OpenRLHF's `prompts[i]`) when the query starts with it.
pub fn split(query: &str, prompt: Option<&str>) -> Split {
    let (head, tail) = match prompt.filter(|p| !p.is_empty()) {
        Some(p) if query.starts_with(p) => (p, &query[p.len()..]),
        _ => match assistant_start(query) {
            Some(at) => (&query[..at.0], &query[at.1..]),
            // No way to tell where the response starts: the prompt (if any) is still
            // the best question, and the query is all the response there is.
            None => (prompt.unwrap_or(""), query),
        },
    };
    let prefilled = head.trim_end().ends_with("<think>");
    let (answer, unfinished_think) = strip_think(strip_end_tokens(tail), prefilled);
    Split {
        question: question(head),
        response: answer.trim().to_string(),
        unfinished_think,
    }
}

/// The question of a prompt: its last user turn, or the prompt itself.
fn question(prompt: &str) -> String {
    for t in &TEMPLATES {
        if let Some(at) = prompt.rfind(t.user) {
            let turn = &prompt[at + t.user.len()..];
            let stop = [t.end, t.assistant]
                .iter()
                .filter_map(|m| turn.find(m))
                .min()
                .unwrap_or(turn.len());
            return turn[..stop].trim().to_string();
        }
    }
    let mut plain = prompt.trim();
    while let Some(rest) = BEGIN_TOKENS.iter().find_map(|b| plain.strip_prefix(b)) {
        plain = rest.trim_start();
    }
    plain.to_string()
}

/// Where the generated response starts in a query with no usable prompt: the end of the
/// first assistant header after the last user turn (the header's line included).
/// Returns (start of the header, start of the response).
fn assistant_start(query: &str) -> Option<(usize, usize)> {
    TEMPLATES.iter().find_map(|t| {
        let user = query.rfind(t.user)?;
        let header = user + query[user..].find(t.assistant)?;
        let mut start = header + t.assistant.len();
        // The header's own line break(s): "\n" (ChatML, Gemma), "\n\n" (Llama 3).
        while query[start..].starts_with('\n') {
            start += 1;
        }
        Some((header, start))
    })
}

/// Cuts end tokens (and whitespace) from the end, as many as there are.
fn strip_end_tokens(text: &str) -> &str {
    let mut text = text.trim_end();
    while let Some(rest) = END_TOKENS.iter().find_map(|t| text.strip_suffix(t)) {
        text = rest.trim_end();
    }
    text
}

/// Cuts a reasoning block; `prefilled`: the prompt already opened it.
fn strip_think(text: &str, prefilled: bool) -> (&str, bool) {
    const CLOSE: &str = "</think>";
    let trimmed = text.trim_start();
    let thought = match trimmed.strip_prefix("<think>") {
        Some(rest) => rest,
        None if prefilled => trimmed,
        None => return (text, false),
    };
    match thought.find(CLOSE) {
        Some(at) => (&thought[at + CLOSE.len()..], false),
        None => ("", true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str, prompt: Option<&str>, question: &str, response: &str) {
        let s = split(query, prompt);
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
        let s = split(&query, Some(QWEN_PROMPT));
        assert_eq!(s.response, "");
        assert!(s.unfinished_think);
        assert!(!split(&format!("{QWEN_PROMPT}Canberra."), Some(QWEN_PROMPT)).unfinished_think);
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
}
