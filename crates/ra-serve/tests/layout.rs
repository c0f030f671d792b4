//! GPU partitioning, refused layouts, `--dry-run`, and flag validity against
//! the vLLM 0.33.0 `serve --help` fixture.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

fn run(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("running ra-serve");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Lines of a dry run that are commands (not `#` comments).
fn commands(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn eight_gpus_from_nvidia_smi_become_four_tp2_replicas() {
    let smi = fake_nvidia_smi(
        &(0..8)
            .map(|i| format!("{i}, 143771, 0\n"))
            .collect::<String>(),
    );
    let m = marker();
    let (code, out, err) = run(ra_serve_cmd(&m).env("PATH", path_with(smi.path())).args([
        "--dry-run",
        "--tensor-parallel-size",
        "2",
        "--vllm-bin",
        "/opt/vllm/bin/vllm",
    ]));
    assert_eq!(code, Some(0), "{err}");
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 4, "{out}");
    for (i, c) in cmds.iter().enumerate() {
        let gpus = format!("CUDA_VISIBLE_DEVICES={},{} ", 2 * i, 2 * i + 1);
        assert!(c.starts_with(&gpus), "{c}");
        assert!(c.contains(&format!("--port {} ", 8000 + i)), "{c}");
        assert!(c.contains("--tensor-parallel-size 2 "), "{c}");
        assert!(
            c.contains("/opt/vllm/bin/vllm serve zhuohaoyu/RewardAnything-8B-v1 "),
            "{c}"
        );
    }
    assert!(
        out.contains("# replica 3: http://127.0.0.1:8003/v1 on GPU 6,7"),
        "{out}"
    );
    // The missing engine is only a note in a dry run.
    assert!(
        out.contains("# note: /opt/vllm/bin/vllm not found"),
        "{out}"
    );
}

#[test]
fn cuda_visible_devices_and_gpus_flag_choose_the_gpus() {
    let m = marker();
    let (code, out, err) = run(ra_serve_cmd(&m)
        .env("CUDA_VISIBLE_DEVICES", "4,5,6,7")
        .args(["--dry-run", "--tensor-parallel-size", "2"]));
    assert_eq!(code, Some(0), "{err}");
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 2);
    assert!(cmds[0].starts_with("CUDA_VISIBLE_DEVICES=4,5 "), "{out}");
    assert!(cmds[1].starts_with("CUDA_VISIBLE_DEVICES=6,7 "), "{out}");

    let (code, out, _) = run(ra_serve_cmd(&m)
        .env("CUDA_VISIBLE_DEVICES", "4,5,6,7")
        .args([
            "--dry-run",
            "--gpus",
            "1,3",
            "--replicas",
            "1",
            "--pipeline-parallel-size",
            "2",
            "--port",
            "9000",
        ]));
    assert_eq!(code, Some(0));
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].starts_with("CUDA_VISIBLE_DEVICES=1,3 "), "{out}");
    assert!(
        cmds[0].contains("--port 9000 --tensor-parallel-size 1 --pipeline-parallel-size 2 "),
        "{out}"
    );
}

#[test]
fn impossible_layouts_are_refused_before_anything_starts() {
    let smi = fake_nvidia_smi("0, 81559, 0\n1, 81559, 60000\n");
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--gpus", "0,1,2"],
            "GPU 2 was asked for but nvidia-smi lists only 2 GPU(s)",
        ),
        (
            &["--gpus", "0", "--tensor-parallel-size", "2"],
            "TP 2 × PP 1 = 2 does not divide the 1 available GPU(s)",
        ),
        (
            &["--gpus", "0", "--replicas", "2"],
            "2 replica(s) × TP 1 × PP 1 need 2 GPUs but only 1 are available",
        ),
        (
            &["--gpus", "0,1"],
            "GPU 1 already has 60000 MiB of 81559 MiB in use",
        ),
        (
            &["--gpus", "0", "--gpu-memory-utilization", "1.5"],
            "--gpu-memory-utilization must be in (0, 1]",
        ),
    ];
    for (args, expected) in cases {
        let m = marker();
        let (code, _, err) = run(ra_serve_cmd(&m)
            .env("PATH", path_with(smi.path()))
            .env("FAKE_ENGINE_RECORD", &record)
            .arg("--vllm-bin")
            .arg(fake_engine())
            .args(["--port", &free_ports(3).to_string()])
            .args(args));
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected `{expected}` in\n{err}"
        );
        assert!(!record.exists(), "{args:?} started an engine");
    }
    // The same layout with memory to spare is accepted.
    let (code, out, err) = run(ra_serve_cmd(&marker())
        .env("PATH", path_with(smi.path()))
        .args([
            "--dry-run",
            "--gpus",
            "0,1",
            "--gpu-memory-utilization",
            "0.2",
        ]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(commands(&out).len(), 2);
}

#[test]
fn no_gpus_and_missing_engines_give_clear_errors() {
    let m = marker();
    let (code, _, err) = run(ra_serve_cmd(&m)
        .env("PATH", path_with(fake_nvidia_smi("").path()))
        .arg("--dry-run"));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no GPUs found") && err.contains("--engine llama-cpp"),
        "{err}"
    );

    let (code, _, err) =
        run(ra_serve_cmd(&m).args(["--gpus", "0", "--vllm-bin", "/nonexistent/vllm"]));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/nonexistent/vllm not found: install it with `pip install vllm"),
        "{err}"
    );
    assert!(err.contains("--vllm-bin / RA_VLLM_BIN"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    let (code, _, err) = run(ra_serve_cmd(&m)
        .env("PATH", "/nonexistent")
        .args(["--engine", "llama-cpp"])
        .arg("--model")
        .arg(&model));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("llama-server not found") && err.contains("--llama-server-bin"),
        "{err}"
    );

    let (code, _, err) =
        run(ra_serve_cmd(&m).args(["--engine", "llama-cpp", "--model", "org/model"]));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("needs --model to be a local .gguf file"),
        "{err}"
    );
}

#[test]
fn dry_run_redacts_the_api_key() {
    let key = format!("sk-dry-{}", marker());
    let (code, out, err) = run(ra_serve_cmd(&marker()).env("RA_SERVE_API_KEY", &key).args([
        "--dry-run",
        "--gpus",
        "0",
        "--reasoning-parser",
        "qwen3",
        "--",
        "--max-num-seqs",
        "64",
    ]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("VLLM_API_KEY='***'"), "{out}");
    assert!(!out.contains(&key) && !err.contains(&key));
    assert!(
        out.contains("--reasoning-parser qwen3 --enable-prefix-caching --max-num-seqs 64"),
        "{out}"
    );
}

/// Every `--flag` in the fixture's option list.
fn vllm_help_flags() -> BTreeSet<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vllm-0.33.0-serve-help.txt");
    let text = std::fs::read_to_string(&path).expect("vLLM help fixture");
    text.split(|c: char| {
        c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '{' || c == '}'
    })
    .filter(|w| w.starts_with("--") && w.len() > 2)
    .map(|w| {
        w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string()
    })
    .collect()
}

#[test]
fn every_flag_ra_serve_gives_vllm_exists_in_vllm_0_33_0() {
    let flags = vllm_help_flags();
    assert!(
        flags.len() > 100,
        "fixture parsed badly: {} flags",
        flags.len()
    );
    let cfg = ra_serve::ServeConfig {
        tensor_parallel_size: 2,
        pipeline_parallel_size: 2,
        reasoning_parser: Some("qwen3".into()),
        served_model_name: Some("ra".into()),
        api_key: Some("k".into()),
        ..Default::default()
    };
    let layout = ra_serve::engine::ReplicaLayout {
        index: 0,
        port: 8000,
        gpus: vec!["0".into()],
    };
    let cmd = ra_serve::engine::command(&cfg, Path::new("vllm"), &layout);
    assert_eq!(cmd.args[0], "serve");
    let used: Vec<&String> = cmd.args.iter().filter(|a| a.starts_with("--")).collect();
    assert_eq!(used.len(), 9, "{used:?}");
    for flag in used {
        assert!(
            flags.contains(flag.as_str()),
            "{flag} is not a vLLM 0.33.0 serve option"
        );
    }
    // The key travels in the environment, never as --api-key.
    assert!(!cmd.args.iter().any(|a| a == "--api-key" || a == "k"));
    // The reasoning parser named by the CLI exists in 0.33.0's list.
    let help = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vllm-0.33.0-serve-help.txt"),
    )
    .unwrap();
    assert!(help.contains("qwen3"));
    // A made-up flag is caught, so the check can fail.
    assert!(!flags.contains("--enable-prefix-cache"));
}

#[test]
fn multi_node_ray_leaves_gpu_placement_to_ray() {
    let (code, out, err) = run(ra_serve_cmd(&marker()).args([
        "--dry-run",
        "--tensor-parallel-size",
        "8",
        "--pipeline-parallel-size",
        "2",
        "--",
        "--distributed-executor-backend",
        "ray",
    ]));
    assert_eq!(code, Some(0), "{err}");
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1, "{out}");
    assert!(!cmds[0].contains("CUDA_VISIBLE_DEVICES"), "{out}");
    assert!(
        cmds[0].ends_with("--enable-prefix-caching --distributed-executor-backend ray"),
        "{out}"
    );
    // Without Ray the same 16 GPUs do not fit on this (fake) 8-GPU host.
    let (code, _, err) = run(ra_serve_cmd(&marker()).args([
        "--dry-run",
        "--tensor-parallel-size",
        "8",
        "--pipeline-parallel-size",
        "2",
    ]));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("does not divide the 8 available GPU(s)"),
        "{err}"
    );
}

#[test]
fn vllm_data_parallel_passthrough_gets_all_its_gpus() {
    let (code, out, err) = run(ra_serve_cmd(&marker()).args([
        "--dry-run",
        "--tensor-parallel-size",
        "2",
        "--",
        "--data-parallel-size",
        "4",
    ]));
    assert_eq!(code, Some(0), "{err}");
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1, "{out}");
    assert!(
        cmds[0].starts_with("CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 "),
        "{out}"
    );
}
