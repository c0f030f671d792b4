//! `cargo run -p ra-serve --example local` on a CPU host: it picks llama.cpp
//! with the stand-in model, or says precisely how to get one.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::*;

/// The example's executable, built on first use like the fake engine.
fn example() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "ra-serve",
                "--example",
                "local",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo build --example local");
        assert!(out.status.success(), "cargo build --example local failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "local")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no executable for the example")
    })
    .clone()
}

/// The example on a host whose `nvidia-smi` lists no GPU, with nothing chosen.
fn cpu_host(m: &str, no_gpu: &std::path::Path) -> Command {
    let mut cmd = Command::new(example());
    cmd.env("RA_TEST_MARKER", m)
        .env("PATH", path_with(no_gpu))
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("RA_LOCAL_MODEL")
        .env_remove("RA_LOCAL_GBNF")
        .env_remove("RA_TEST_GGUF")
        .env_remove("RA_LLAMA_SERVER_BIN")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn without_gpu_or_model_it_says_how_to_get_the_cpu_stand_in() {
    let no_gpu = fake_nvidia_smi("");
    let out = cpu_host(&marker(), no_gpu.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no GPU found"), "{err}");
    assert!(err.contains("eval \"$(scripts/setup-llama.sh)\""), "{err}");
    assert!(err.contains("RA_LOCAL_MODEL"), "{err}");
}

#[test]
fn on_a_cpu_host_it_serves_the_stand_in_with_llama_cpp_and_judges() {
    let no_gpu = fake_nvidia_smi("");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("stand-in.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    let record = dir.path().join("record.jsonl");
    let m = marker();
    let out = cpu_host(&m, no_gpu.path())
        .env("RA_TEST_GGUF", &model)
        .env("RA_LLAMA_SERVER_BIN", fake_engine())
        .env("FAKE_ENGINE_RECORD", &record)
        .env(
            "FAKE_ENGINE_COMPLETION",
            r#"<think>ok</think>{"scores": {"model-1": 5, "model-2": 3, "model-3": 1}, "best-to-worst": ["model-1", "model-2", "model-3"]}"#,
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("with llama-cpp"), "{stdout}");
    // One line per response, ranked, with real names.
    for (rank, score) in [("1. ", ": 5"), ("2. ", ": 3"), ("3. ", ": 1")] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(rank) && l.ends_with(score)),
            "{stdout}"
        );
    }
    for name in ["exact", "rambling", "wrong"] {
        assert!(stdout.contains(&format!(" {name}: ")), "{stdout}");
    }
    let recs = records(&record);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["argv"][1], "-m", "not a llama-server command line");
    assert_eq!(recs[0]["argv"][2], model.to_string_lossy().as_ref());
    // The example returned after shutdown: nothing of the server is left.
    assert_nothing_left(&m);
}
