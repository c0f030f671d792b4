//! The library API: `Server::builder()…spawn().await`, `wait_ready`,
//! `endpoints`, `shutdown`, and stopping on drop.

mod common;

use std::time::Duration;

use common::*;
use ra_serve::{EngineKind, Error, Server};

fn builder(dir: &std::path::Path, port: u16) -> ra_serve::ServerBuilder {
    let model = dir.join("tiny.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    Server::builder()
        .engine(EngineKind::LlamaCpp)
        .model(model.to_string_lossy())
        .engine_bin(fake_engine())
        .port(port)
        .replicas(2)
        .served_model_name("ra")
        .poll_interval(Duration::from_millis(200))
        .grace(Duration::from_secs(5))
        .endpoints_file(dir.join("endpoints.json"))
        .env(
            "FAKE_ENGINE_RECORD",
            dir.join("record.jsonl").to_string_lossy(),
        )
        .env("FAKE_ENGINE_GRANDCHILD", "session")
        .env("FAKE_ENGINE_LOADING_SECS", "0.5")
}

fn engine_pids(dir: &std::path::Path) -> Vec<u32> {
    records(&dir.join("record.jsonl"))
        .iter()
        .flat_map(|r| [r["pid"].as_u64(), r["grandchild"].as_u64()])
        .flatten()
        .map(|p| p as u32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_wait_ready_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(2);
    let server = builder(dir.path(), port).spawn().await.unwrap();
    assert_eq!(server.model(), "ra");
    let endpoints = tokio::time::timeout(SLOW, server.wait_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        endpoints,
        vec![
            format!("http://127.0.0.1:{port}/v1"),
            format!("http://127.0.0.1:{}/v1", port + 1)
        ]
    );
    assert_eq!(server.endpoints(), endpoints);
    let file = ra_serve::EndpointsFile::read(&dir.path().join("endpoints.json")).unwrap();
    assert_eq!(file.endpoints, endpoints);
    assert_eq!(file.pid, Some(std::process::id()));
    let pids = engine_pids(dir.path());
    assert_eq!(pids.len(), 4);
    assert!(pids.iter().all(|p| !gone(*p)));

    tokio::time::timeout(SLOW, server.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert!(pids.iter().all(|p| gone(*p)), "left behind: {pids:?}");
    assert!(server.endpoints().is_empty());
    assert!(!dir.path().join("endpoints.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(2);
    let server = builder(dir.path(), port).spawn().await.unwrap();
    tokio::time::timeout(SLOW, server.wait_ready())
        .await
        .unwrap()
        .unwrap();
    let pids = engine_pids(dir.path());
    assert_eq!(pids.len(), 4);
    drop(server);
    let ok =
        tokio::task::spawn_blocking(move || wait_until(SLOW, || pids.iter().all(|p| gone(*p))))
            .await
            .unwrap();
    assert!(ok, "processes survived the handle");
    assert!(wait_until(SLOW, || !dir
        .path()
        .join("endpoints.json")
        .exists()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_reports_a_startup_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(2);
    let server = builder(dir.path(), port)
        .replicas(1)
        .env("FAKE_ENGINE_LOADING_SECS", "1000")
        .startup_timeout(Duration::from_millis(1500))
        .spawn()
        .await
        .unwrap();
    let err = tokio::time::timeout(SLOW, server.wait_ready())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, Error::StartupTimeout { replica: 0, .. }),
        "{err}"
    );
    assert!(
        err.log_tail()
            .is_some_and(|t| t.iter().any(|l| l.contains("fake engine listening")))
    );
    assert!(matches!(
        server.stopped().await,
        Err(Error::StartupTimeout { .. })
    ));
    let pids = engine_pids(dir.path());
    assert!(wait_until(SLOW, || pids.iter().all(|p| gone(*p))));
}

#[test]
fn dropping_the_runtime_kills_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(async {
        let server = builder(dir.path(), port).spawn().await.unwrap();
        tokio::time::timeout(SLOW, server.wait_ready())
            .await
            .unwrap()
            .unwrap();
        server
    });
    let pids = engine_pids(dir.path());
    assert_eq!(pids.len(), 4);
    // No graceful stop can run without a runtime: the engines are killed at once.
    drop(rt);
    assert!(
        wait_until(SLOW, || pids.iter().all(|p| gone(*p))),
        "processes survived the runtime"
    );
    assert!(!dir.path().join("endpoints.json").exists());
    drop(server);
}

#[tokio::test]
async fn debug_output_and_the_dry_run_never_show_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let key = format!("sk-debug-{}", marker());
    let token = format!("hf_debug_{}", marker());
    let passthrough = format!("sk-pass-{}", marker());
    let b = builder(dir.path(), free_ports(2))
        .api_key(key.as_str())
        .env("HF_TOKEN", token.as_str());
    let with_pass = b
        .clone()
        .extra_args(["--api-key", passthrough.as_str(), "--no-webui"]);
    let shown = format!("{with_pass:?}");
    for secret in [&key, &token, &passthrough] {
        assert!(!shown.contains(secret.as_str()), "{shown}");
    }
    assert!(
        shown.contains("***") && shown.contains("--no-webui"),
        "{shown}"
    );
    let err = with_pass.dry_run().await.unwrap_err().to_string();
    assert!(!err.contains(&passthrough), "{err}");

    let plan = b.dry_run().await.unwrap();
    let shown = format!("{plan:?}\n{}", plan.describe());
    for secret in [&key, &token] {
        assert!(!shown.contains(secret.as_str()), "{shown}");
    }
    assert!(shown.contains("LLAMA_API_KEY='***'"), "{shown}");
    assert!(shown.contains("HF_TOKEN='***'"), "{shown}");
}
