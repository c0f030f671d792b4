//! Every public render vector, the permutation table and the MT19937 traces from the spec.

use indexmap::IndexMap;
use rewardanything_client::compat::mt19937::{Mt19937, reference_permutation};
use rewardanything_client::{JudgeRequest, Masking, render};
use rewardanything_client::{Role, SYSTEM_PROMPT};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn data(name: &str) -> String {
    let path = format!("{}/../../tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn system_prompt_is_byte_exact() {
    assert_eq!(SYSTEM_PROMPT.len(), 1121);
    assert_eq!(
        sha256_hex(SYSTEM_PROMPT.as_bytes()),
        "e4a48f412b96a723feb0227a90c52a4c4556f77c28b019b16635ef547b18cf98"
    );
    assert_eq!(SYSTEM_PROMPT, data("system_prompt.txt"));
}

#[test]
fn every_public_render_vector() {
    let text = data("render_public.jsonl");
    let mut checked = 0;
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line).expect("vector is JSON");
        let id = v["id"].as_str().unwrap_or("?");
        let mut responses = IndexMap::new();
        for pair in v["responses"].as_array().expect("responses pairs") {
            // Python dict semantics: first position, last value.
            responses.insert(
                pair[0].as_str().expect("key").to_string(),
                pair[1].as_str().expect("text").to_string(),
            );
        }
        let req = JudgeRequest {
            principle: v["principle"].as_str().expect("principle").into(),
            prompt: v["prompt"].as_str().expect("prompt").into(),
            responses,
            mask_responses: v["mask_responses"].as_bool().expect("mask flag"),
        };
        let out = render(&req, Masking::Reference);
        let expected = v["expected_messages"].as_array().expect("messages");
        assert_eq!(out.messages.len(), expected.len(), "{id}");
        assert_eq!(out.messages[0].role, Role::System);
        assert_eq!(
            out.messages[0].content,
            expected[0]["content"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(out.messages[1].role, Role::User);
        let user = &out.messages[1].content;
        assert_eq!(user, expected[1]["content"].as_str().unwrap(), "{id}");
        assert_eq!(
            sha256_hex(user.as_bytes()),
            v["expected_user_content_utf8_sha256"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(
            user.len() as u64,
            v["expected_user_content_utf8_len"].as_u64().unwrap(),
            "{id}"
        );
        let m2r = serde_json::to_value(&out.masked2real).unwrap();
        assert_eq!(m2r, v["expected_masked2real"], "{id}");
        // Key order of the mapping matters too: read it with an order-keeping map
        // (serde_json's own map sorts keys without the `preserve_order` feature).
        #[derive(serde::Deserialize)]
        struct Expected {
            expected_masked2real: Option<IndexMap<String, String>>,
        }
        let expected: Expected = serde_json::from_str(line).expect("vector is JSON");
        if let (Some(got), Some(want)) = (&out.masked2real, &expected.expected_masked2real) {
            let got: Vec<_> = got.keys().collect();
            let want: Vec<_> = want.keys().collect();
            assert_eq!(got, want, "{id}");
        }
        checked += 1;
    }
    assert_eq!(checked, 60, "public render vectors");
    println!("render vectors: {checked} passed");
}

#[test]
fn permutations_match_python_for_1_to_64() {
    let perms: Value = serde_json::from_str(&data("perms.json")).unwrap();
    let perms = perms.as_object().unwrap();
    assert_eq!(perms.len(), 64);
    for n in 1..=64usize {
        let want: Vec<usize> = serde_json::from_value(perms[&n.to_string()].clone()).unwrap();
        assert_eq!(reference_permutation(n), want, "N={n}");
    }
    assert!(reference_permutation(0).is_empty());
}

#[test]
fn mt19937_outputs_and_shuffle_traces() {
    let v: Value = serde_json::from_str(&data("mt19937_seed42.json")).unwrap();
    let mut rng = Mt19937::from_python_int(42);
    for want in v["first_uint32"].as_array().unwrap() {
        assert_eq!(u64::from(rng.next_u32()), want.as_u64().unwrap());
    }
    let traces = v["shuffle_traces"].as_object().unwrap();
    assert!(!traces.is_empty());
    for (n, steps) in traces {
        let n: usize = n.parse().unwrap();
        let mut rng = Mt19937::from_python_int(42);
        for step in steps.as_array().unwrap() {
            let bound = step["n"].as_u64().unwrap() as u32;
            let j = rng.randbelow(bound);
            assert_eq!(
                u64::from(j),
                step["j"].as_u64().unwrap(),
                "N={n} step {step}"
            );
        }
    }
}

/// Golden values for `Masking::Seeded`, computed with CPython:
/// `random.seed((h << 64) | s); l = list(range(n)); random.shuffle(l)`.
#[test]
fn seeded_masking_is_pinned() {
    let req = JudgeRequest::new("Be concise.", "What is 2+2?")
        .response("a", "4")
        .response("b", "four")
        .response("c", "2+2=4")
        .response("d", "The answer is 4.")
        .response("e", "IV");
    let h = rewardanything_client::content_hash(&req);
    assert_eq!(
        h, SEEDED_HASH,
        "FNV-1a over principle, prompt, names and texts"
    );
    let out = render(&req, Masking::Seeded(7));
    let names: Vec<&str> = out
        .masked2real
        .as_ref()
        .unwrap()
        .values()
        .map(String::as_str)
        .collect();
    assert_eq!(names, SEEDED_7_ORDER);
    // Reproducible, and different seeds give different orders for this request.
    assert_eq!(render(&req, Masking::Seeded(7)), out);
    assert_ne!(
        render(&req, Masking::Seeded(8)).masked2real,
        out.masked2real
    );
}

const SEEDED_HASH: u64 = 0x3a91_c678_8b25_dc7b;
const SEEDED_7_ORDER: [&str; 5] = ["d", "b", "c", "e", "a"];
