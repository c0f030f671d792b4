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

/// `ra-serve --dry-run --port P` on free ports: a dry run checks the ports as a real start would.
fn dry_run(m: &str) -> (std::process::Command, u16) {
    let port = free_ports(8);
    let mut cmd = ra_serve_cmd(m);
    cmd.args(["--dry-run", "--port", &port.to_string()]);
    (cmd, port)
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
    let (mut cmd, port) = dry_run(&marker());
    let (code, out, err) = run(cmd.env("PATH", path_with(smi.path())).args([
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
        assert!(
            c.contains(&format!("--port {} ", usize::from(port) + i)),
            "{c}"
        );
        assert!(c.contains("--tensor-parallel-size 2 "), "{c}");
        assert!(
            c.contains("/opt/vllm/bin/vllm serve zhuohaoyu/RewardAnything-8B-v1 "),
            "{c}"
        );
    }
    assert!(
        out.contains(&format!(
            "# replica 3: http://127.0.0.1:{}/v1 on GPU 6,7",
            port + 3
        )),
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
    let (mut cmd, _) = dry_run(&marker());
    let (code, out, err) = run(cmd
        .env("CUDA_VISIBLE_DEVICES", "4,5,6,7")
        .args(["--tensor-parallel-size", "2"]));
    assert_eq!(code, Some(0), "{err}");
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 2);
    assert!(cmds[0].starts_with("CUDA_VISIBLE_DEVICES=4,5 "), "{out}");
    assert!(cmds[1].starts_with("CUDA_VISIBLE_DEVICES=6,7 "), "{out}");

    let (mut cmd, port) = dry_run(&marker());
    let (code, out, _) = run(cmd.env("CUDA_VISIBLE_DEVICES", "4,5,6,7").args([
        "--gpus",
        "1,3",
        "--replicas",
        "1",
        "--pipeline-parallel-size",
        "2",
    ]));
    assert_eq!(code, Some(0));
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].starts_with("CUDA_VISIBLE_DEVICES=1,3 "), "{out}");
    assert!(
        cmds[0].contains(&format!(
            "--port {port} --tensor-parallel-size 1 --pipeline-parallel-size 2 "
        )),
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
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected `{expected}` in\n{err}"
        );
        assert!(!record.exists(), "{args:?} started an engine");
    }
    // The same layout with memory to spare is accepted.
    let (mut cmd, _) = dry_run(&marker());
    let (code, out, err) = run(cmd.env("PATH", path_with(smi.path())).args([
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
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no GPUs found") && err.contains("--engine llama-cpp"),
        "{err}"
    );

    let (code, _, err) =
        run(ra_serve_cmd(&m).args(["--gpus", "0", "--vllm-bin", "/nonexistent/vllm"]));
    assert_eq!(code, Some(2));
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
    assert_eq!(code, Some(2));
    assert!(
        err.contains("llama-server not found") && err.contains("--llama-server-bin"),
        "{err}"
    );
    // The repository's own installer, not a package manager the machine may not have.
    assert!(
        err.contains("eval \"$(scripts/setup-llama.sh)\"") && !err.contains("brew"),
        "{err}"
    );

    let (code, _, err) =
        run(ra_serve_cmd(&m).args(["--engine", "llama-cpp", "--model", "org/model"]));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("needs --model to be a local .gguf file"),
        "{err}"
    );
}

#[test]
fn dry_run_redacts_the_api_key() {
    let key = format!("sk-dry-{}", marker());
    let (mut cmd, _) = dry_run(&marker());
    let (code, out, err) = run(cmd.env("RA_SERVE_API_KEY", &key).args([
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
    let (mut cmd, _) = dry_run(&marker());
    let (code, out, err) = run(cmd.args([
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
    assert_eq!(code, Some(2));
    assert!(
        err.contains("does not divide the 8 available GPU(s)"),
        "{err}"
    );
}

#[test]
fn vllm_data_parallel_passthrough_gets_all_its_gpus() {
    let (mut cmd, _) = dry_run(&marker());
    let (code, out, err) = run(cmd.args([
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

/// Runs `ra-serve` for real (not a dry run) with the fake engine for both
/// engines, on free ports, and asserts it exits 1 with `expected` in its
/// error before starting any engine.
fn assert_refused(args: &[&str], env: &[(&str, &str)], expected: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    let mut cmd = ra_serve_cmd(&marker());
    cmd.env("FAKE_ENGINE_RECORD", &record)
        .arg("--vllm-bin")
        .arg(fake_engine())
        .arg("--llama-server-bin")
        .arg(fake_engine())
        .args(["--port", &free_ports(2).to_string()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if args.contains(&"llama-cpp") {
        cmd.arg("--model").arg(&model);
    }
    let (code, out, err) = run(cmd.args(args));
    assert_eq!(code, Some(2), "{args:?}: {out}{err}");
    assert!(
        err.contains(expected),
        "{args:?}: expected `{expected}` in\n{err}"
    );
    assert!(!record.exists(), "{args:?} started an engine");
    out + &err
}

#[test]
fn sizes_that_overflow_or_make_no_sense_are_refused_before_anything_starts() {
    let cases: [(&[&str], &str); 10] = [
        // 2^62 × 4 wraps to 0 in 64 bits: it used to plan zero replicas.
        (
            &[
                "--gpus",
                "0",
                "--replicas",
                "4611686018427387904",
                "--tensor-parallel-size",
                "4",
            ],
            "4611686018427387904 replica(s) from port",
        ),
        (
            &[
                "--gpus",
                "0,1",
                "--tensor-parallel-size",
                "4294967296",
                "--pipeline-parallel-size",
                "4294967296",
            ],
            "TP 4294967296 × PP 4294967296 × DP 1 GPUs per replica is more than can be counted",
        ),
        (
            &[
                "--gpus",
                "0,1",
                "--tensor-parallel-size",
                "2",
                "--",
                "-dp",
                "18446744073709551615",
            ],
            "× DP 18446744073709551615 GPUs per replica is more than can be counted",
        ),
        (
            &["--gpus", "0", "--max-model-len", "0"],
            "--max-model-len must be between 1 and 16777216 tokens, got 0",
        ),
        (
            &["--gpus", "0", "--max-model-len", "16777217"],
            "--max-model-len must be between 1 and 16777216 tokens, got 16777217",
        ),
        (
            &["--engine", "llama-cpp", "--threads", "0"],
            "--threads must be between 1 and 512, got 0",
        ),
        (
            &["--engine", "llama-cpp", "--threads", "100000"],
            "--threads must be between 1 and 512, got 100000",
        ),
        (
            &["--engine", "llama-cpp", "--max-model-len", "0"],
            "--max-model-len must be between 1 and 16777216 tokens, got 0",
        ),
        (
            &[
                "--engine",
                "llama-cpp",
                "--max-model-len",
                "16777216",
                "--parallel",
                "2",
            ],
            "--max-model-len 16777216 × --parallel 2 is a context of more than 16777216 tokens",
        ),
        // Refused before a vector of that many replicas is allocated.
        (
            &["--engine", "llama-cpp", "--replicas", "4611686018427387904"],
            "beyond 65535",
        ),
    ];
    for (args, expected) in cases {
        assert_refused(args, &[], expected);
    }
}

/// A dry run plans exactly as a start does, and ends either way (a start that was not
/// refused would serve until killed).
#[test]
fn an_empty_or_blank_served_model_name_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    for name in ["", "  ", "\t"] {
        let expected = format!("--served-model-name must name the model, got {name:?}");
        let (mut vllm, _) = dry_run(&marker());
        vllm.args(["--gpus", "0", "--vllm-bin", "/bin/true"]);
        let (mut llama, _) = dry_run(&marker());
        llama
            .args(["--engine", "llama-cpp", "--llama-server-bin", "/bin/true"])
            .arg("--model")
            .arg(&model);
        for cmd in [&mut vllm, &mut llama] {
            let (code, out, err) = run(cmd.args(["--served-model-name", name]));
            assert_eq!(code, Some(2), "{name:?}: {out}{err}");
            assert!(err.contains(&expected), "{name:?}: {err}");
            assert!(commands(&out).is_empty(), "{name:?}: planned {out}");
        }
    }
}

#[test]
fn duplicate_non_numeric_and_hiding_gpu_ids_are_refused() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 6] = [
        (
            &["--gpus", "0,0"],
            &[],
            "GPU 0 is listed twice in --gpus 0,0",
        ),
        // `00` is GPU 0 too.
        (
            &["--gpus", "0,1,00"],
            &[],
            "GPU 0 is listed twice in --gpus 0,1,00",
        ),
        (
            &["--gpus", "0,abc"],
            &[],
            "--gpus 0,abc: GPU id `abc` is neither a whole number nor a GPU-…/MIG-… UUID",
        ),
        (
            &[],
            &[("CUDA_VISIBLE_DEVICES", "-1")],
            "CUDA_VISIBLE_DEVICES=-1: GPU id `-1` is negative, which hides every GPU",
        ),
        (
            &[],
            &[("CUDA_VISIBLE_DEVICES", "1,1")],
            "GPU 1 is listed twice in CUDA_VISIBLE_DEVICES=1,1",
        ),
        (
            &[],
            &[("CUDA_VISIBLE_DEVICES", "")],
            "CUDA_VISIBLE_DEVICES set but empty hides every GPU",
        ),
    ];
    for (args, env, expected) in cases {
        assert_refused(args, env, expected);
    }
    // GPU UUIDs stay valid ids.
    let (mut cmd, _) = dry_run(&marker());
    let (code, out, err) = run(cmd.args(["--gpus", "GPU-8f3e2b6c-0d1a,GPU-11aa22bb-3c4d"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("CUDA_VISIBLE_DEVICES=GPU-8f3e2b6c-0d1a "),
        "{out}"
    );
}

#[test]
fn passthrough_arguments_that_contradict_ra_serve_are_refused() {
    let vllm: [(&[&str], &str); 10] = [
        (
            &["--port", "9"],
            "`--port 9` after `--` contradicts ra-serve's --port",
        ),
        (
            &["--port=9"],
            "`--port=9` after `--` contradicts ra-serve's --port",
        ),
        (
            &["--host", "0.0.0.0"],
            "`--host 0.0.0.0` after `--` contradicts ra-serve's --host 127.0.0.1",
        ),
        (
            &["--tensor-parallel-size", "2"],
            "contradicts ra-serve's --tensor-parallel-size 1",
        ),
        (&["-tp", "2"], "`-tp 2` after `--` contradicts"),
        (&["-tp=2"], "`-tp=2` after `--` contradicts"),
        (
            &["--tensor_parallel_size=2"],
            "`--tensor_parallel_size=2` after `--` contradicts",
        ),
        (
            &["-pp", "2"],
            "`-pp 2` after `--` contradicts ra-serve's --pipeline-parallel-size 1",
        ),
        (
            &["--pipeline-parallel-size=2"],
            "contradicts ra-serve's --pipeline-parallel-size 1",
        ),
        (&["--uds", "/tmp/ra.sock"], "`--uds` after `--` is refused"),
    ];
    for (extra, expected) in vllm {
        let mut args = vec!["--gpus", "0", "--"];
        args.extend_from_slice(extra);
        assert_refused(&args, &[], expected);
    }
    // Two replicas: any passthrough port contradicts one of them.
    assert_refused(
        &["--gpus", "0,1", "--", "--port", "8000"],
        &[],
        "contradicts ra-serve's --port (replica i listens on",
    );
    let llama: [(&[&str], &str); 4] = [
        (&["--port", "9"], "`--port 9` after `--` contradicts"),
        (&["-c", "64"], "`-c 64` after `--` contradicts"),
        (
            &["-t", "64"],
            "`-t 64` after `--` contradicts ra-serve's --threads 2",
        ),
        (
            &["--host=0.0.0.0"],
            "`--host=0.0.0.0` after `--` contradicts",
        ),
    ];
    for (extra, expected) in llama {
        let mut args = vec!["--engine", "llama-cpp", "--threads", "2", "--"];
        args.extend_from_slice(extra);
        assert_refused(&args, &[], expected);
    }
    // Agreeing values and unrelated options pass through.
    let (mut cmd, port) = dry_run(&marker());
    let (code, out, err) = run(cmd.args(["--gpus", "0", "--"]).args([
        "--host",
        "127.0.0.1",
        "-tp=1",
        "--port",
        &port.to_string(),
        "--max-num-seqs",
        "8",
    ]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("--max-num-seqs 8"), "{out}");
}

#[test]
fn a_passthrough_api_key_is_refused_and_never_printed() {
    let secret = format!("sk-passthrough-{}", marker());
    let inline = format!("--api-key={secret}");
    for extra in [
        vec!["--gpus", "0", "--", "--api-key", &secret],
        vec!["--gpus", "0", "--", &inline],
        vec!["--gpus", "0", "--", "--api-key", "first", &secret],
        vec!["--engine", "llama-cpp", "--", "--api-key", &secret],
        vec!["--engine", "llama-cpp", "--", "--api-key-file", &secret],
    ] {
        let all = assert_refused(
            &extra,
            &[],
            "after `--` is refused: API keys go through the environment",
        );
        assert!(!all.contains(&secret), "the key was printed: {all}");
        // Nor in a dry run.
        let (mut cmd, _) = dry_run(&marker());
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"GGUF").unwrap();
        if extra.contains(&"llama-cpp") {
            cmd.arg("--model").arg(&model);
        }
        let (code, out, err) = run(cmd.args(&extra));
        assert_eq!(code, Some(2), "{out}{err}");
        assert!(err.contains("RA_SERVE_API_KEY"), "{err}");
        assert!(
            !out.contains(&secret) && !err.contains(&secret),
            "the key was printed: {out}{err}"
        );
    }
}

#[test]
fn dry_run_checks_ports_and_the_endpoints_directory_like_a_real_start() {
    let (mut cmd, port) = dry_run(&marker());
    let _held = std::net::TcpListener::bind(("127.0.0.1", port + 1)).unwrap();
    let (code, out, err) = run(cmd.args(["--gpus", "0,1"]));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        err.contains(&format!(
            "port {} on 127.0.0.1 is already in use by pid {}",
            port + 1,
            std::process::id()
        )),
        "{err}"
    );
    // The cause first, then the flag that changes it.
    let hint = err.find("choose other ports with --port").expect(&err);
    assert!(err.find("already in use").unwrap() < hint, "{err}");
    assert!(out.is_empty(), "a refused dry run printed commands: {out}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let missing = dir.path().join("no/such/dir/ep.json");
    let under_file = file.join("ep.json");
    let cases = [
        (
            missing.clone(),
            format!(
                "its directory {} does not exist",
                missing.parent().unwrap().display()
            ),
        ),
        (
            under_file.clone(),
            format!("{} is not a directory", file.display()),
        ),
        // Exists, is a directory, and nobody (root included) may create files in it.
        (
            "/proc/ep.json".into(),
            "cannot create files in /proc".into(),
        ),
        (dir.path().to_path_buf(), "it is a directory".into()),
    ];
    for (path, expected) in &cases {
        let (mut cmd, _) = dry_run(&marker());
        let (code, _, err) = run(cmd.args(["--gpus", "0"]).arg("--endpoints-file").arg(path));
        assert_eq!(code, Some(2), "{}: {err}", path.display());
        assert!(
            err.contains("could not write the endpoints file") && err.contains(expected.as_str()),
            "{}: expected `{expected}` in {err}",
            path.display()
        );
        // A real start refuses it before starting an engine, not after loading.
        let p = path.to_string_lossy();
        assert_refused(&["--gpus", "0", "--endpoints-file", &p], &[], expected);
    }
    // A writable directory passes and keeps no probe file behind.
    let (mut cmd, _) = dry_run(&marker());
    let (code, _, err) = run(cmd
        .args(["--gpus", "0"])
        .arg("--endpoints-file")
        .arg(dir.path().join("ep.json")));
    assert_eq!(code, Some(0), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "probe file left behind: {left:?}");
}

#[test]
fn an_engine_binary_that_cannot_run_is_named_before_spawning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let not_exec = dir.path().join("vllm");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (bin, expected) in [
        (
            not_exec.clone(),
            format!(
                "cannot run the engine {}: it is not executable",
                not_exec.display()
            ),
        ),
        (
            dir.path().to_path_buf(),
            format!(
                "cannot run the engine {}: it is a directory",
                dir.path().display()
            ),
        ),
    ] {
        let (code, _, err) = run(ra_serve_cmd(&marker())
            .args(["--gpus", "0", "--port", &free_ports(1).to_string()])
            .arg("--vllm-bin")
            .arg(&bin));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(&expected), "expected `{expected}` in {err}");
        // A dry run notes it.
        let (mut cmd, _) = dry_run(&marker());
        let (code, out, err) = run(cmd.args(["--gpus", "0"]).arg("--vllm-bin").arg(&bin));
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains(&format!("# note: {expected}")), "{out}");
    }
    // Found on PATH but not executable: said so, not "not found".
    let (code, _, err) = run(ra_serve_cmd(&marker())
        .env("PATH", path_with(dir.path()))
        .args(["--gpus", "0", "--port", &free_ports(1).to_string()]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("it is not executable"), "{err}");
}

/// `ra`'s convention: 2 when nothing could be started (flags clap refuses, values
/// `ra-serve` refuses itself, preflight failures), as a test of the binary's status.
#[test]
fn failures_before_serving_exit_2_like_ra() {
    let m = marker();
    let (code, _, err) = run(ra_serve_cmd(&m).args(["--dry-run", "--no-such-flag"]));
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = run(ra_serve_cmd(&m).args(["--dry-run", "--grace=-1"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--grace must be a non-negative number"),
        "{err}"
    );
}
