//! Micro-benchmark of rendering and parsing (issue 2's target: under 20 µs each for a
//! 4-response, ~2 KB request / answer). Prints medians; run by hand:
//!
//! ```sh
//! cargo bench -p rewardanything-client --bench render_parse
//! ```

use std::hint::black_box;
use std::time::Instant;

use rewardanything_client::{Completion, parse_completion};
use rewardanything_client::{JudgeRequest, Masking, render};

fn median_ns_per_iter(mut f: impl FnMut(), iters: u32, rounds: usize) -> f64 {
    let mut per_round: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    per_round.sort_by(f64::total_cmp);
    per_round[rounds / 2]
}

fn main() {
    let text = |seed: &str| seed.repeat(500 / seed.len() + 1)[..500].to_string();
    let request = JudgeRequest::new(
        "Prefer responses that are factually correct, concise and directly answer the question.",
        "Explain how a hash map handles collisions, with one short example.",
    )
    .response(
        "gpt-4o",
        text("Separate chaining stores colliding keys in a list. "),
    )
    .response(
        "claude-3-opus",
        text("Open addressing probes the next free slot. \"quoted\"\n"),
    )
    .response(
        "llama-3-70b",
        text("A hash map uses buckets; collisions go to the same bucket. "),
    )
    .response(
        "qwen-2-72b",
        text("Robin Hood hashing evens out probe lengths — été ✓. "),
    );
    let request_bytes: usize = request.responses.values().map(String::len).sum();

    let rendered = render(&request, Masking::Reference);
    let masked2real = rendered.masked2real.clone();
    let think = "I compare each response against the principle. ".repeat(30);
    let answer = format!(
        "<think>\n{think}\n</think>\n\n{{\n  \"scores\": {{\"model-1\": 4, \"model-2\": 2, \"model-3\": 5, \"model-4\": 3}},\n  \"best-to-worst\": [\"model-3\", \"model-1\", \"model-4\", \"model-2\"]\n}}"
    );
    let completion = Completion::new(&answer);
    assert!(parse_completion(&completion, masked2real.as_ref()).is_ok());

    let render_ns = median_ns_per_iter(
        || {
            black_box(render(black_box(&request), Masking::Reference));
        },
        20_000,
        9,
    );
    let seeded_ns = median_ns_per_iter(
        || {
            black_box(render(black_box(&request), Masking::Seeded(7)));
        },
        20_000,
        9,
    );
    let parse_ns = median_ns_per_iter(
        || {
            let _ = black_box(parse_completion(
                black_box(&completion),
                masked2real.as_ref(),
            ));
        },
        20_000,
        9,
    );
    println!(
        "request: 4 responses, {request_bytes} bytes of response text; answer: {} bytes",
        answer.len()
    );
    println!(
        "render (reference masking): {:>8.0} ns/op (median of 9 rounds)",
        render_ns
    );
    println!("render (seeded masking):    {:>8.0} ns/op", seeded_ns);
    println!("parse_completion:           {:>8.0} ns/op", parse_ns);
}
